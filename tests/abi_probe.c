// The fd model's system calls (spawnfd/abi.h) from a real C program running on the
// simulator: every call's success and its errors, the rules (builder fd not inherited, not
// duplicated, not installed; no step once the embryo is gone; an embryo dies with its
// creator; setuid bits only through execve) and a fuzzer. Run by tests/test_abi.py, which
// compiles it with examples/c/fdspawn.c. Each check prints "ok ..." or "FAIL ..."; the
// last line counts them.
//
//   abi_probe calls | rules | suid PATH | fuzz N SEED | ids
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawnfd/abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdspawn.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

extern char **environ;
static int checks, failures;
static const char rodata[64] = "read-only";

// r is what the call returned (-1 and errno on failure); want_errno 0: success.
static void expect(const char *what, long r, int want_errno) {
  int e = r == -1 ? errno : 0;
  checks++;
  if (e == want_errno) {
    printf("ok %s\n", what);
  } else {
    failures++;
    printf("FAIL %s: returned %ld errno %d (%s), want errno %d (%s)\n", what, r, e,
           strerror(e), want_errno, strerror(want_errno));
  }
  errno = 0;
}

static void truth(const char *what, int cond) {
  checks++;
  if (cond) {
    printf("ok %s\n", what);
  } else {
    failures++;
    printf("FAIL %s\n", what);
  }
}

static int finish(void) {
  printf("checks %d failed %d\n", checks, failures);
  return failures != 0;
}

// An embryo; dies with SIGKILL and is reaped by kill_embryo().
static pid_t embryo(struct spawnfd_handles *h) {
  pid_t pid = spawnfd_create(h, 0);
  if (pid < 0) {
    perror("spawnfd_create");
    exit(2);
  }
  return pid;
}

static void kill_embryo(const struct spawnfd_handles *h) {
  spawnfd_kill(h->wait_fd, SIGKILL);
  int st = spawnfd_wait(h->wait_fd);
  truth("an embryo killed through its wait handle died of SIGKILL", st == SIGKILL);
  close(h->builder_fd);
  close(h->wait_fd);
}

static void *emmap(int bfd, void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  return spawnfd_mmap(bfd, addr, len, prot, flags, fd, off);
}

static long mret(void *p) { return p == MAP_FAILED ? -1 : (long)(uintptr_t)p; }

static void test_create(void) {
  struct spawnfd_handles h;
  pid_t pid = spawnfd_create(&h, 0);
  truth("create returns the pid", pid > 0);
  truth("builder fd and wait handle are descriptors",
        h.builder_fd >= 0 && h.wait_fd >= 0 && h.builder_fd != h.wait_fd);
  truth("both are close-on-exec", fcntl(h.builder_fd, F_GETFD) == FD_CLOEXEC &&
                                      fcntl(h.wait_fd, F_GETFD) == FD_CLOEXEC);
  siginfo_t si;
  memset(&si, 0xff, sizeof(si));
  expect("waitid WNOHANG on an embryo", spawnfd_waitid(h.wait_fd, &si, WEXITED | WNOHANG), 0);
  truth("... reports nothing (si_pid 0)", si.si_pid == 0);
  kill_embryo(&h);
  expect("create flags 1", spawnfd_create(&h, 1), EINVAL);
  expect("create bad pointer", spawnfd_create((struct spawnfd_handles *)8, 0), EFAULT);
  expect("create read-only pointer", spawnfd_create((struct spawnfd_handles *)rodata, 0),
         EFAULT);
  expect("nothing left behind: no child", waitpid(-1, NULL, WNOHANG), ECHILD);
}

static void test_memory(void) {
  struct spawnfd_handles h;
  embryo(&h);
  int b = h.builder_fd;
  char buf[64];
  void *a = emmap(b, NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  expect("mmap anonymous", mret(a), 0);
  expect("write its memory", spawnfd_write(b, (char *)a + 4000, "across a page", 14), 0);
  expect("read it back", spawnfd_read(b, (char *)a + 4000, buf, 14), 0);
  truth("... the same bytes", !memcmp(buf, "across a page", 14));
  int fd = open("/bin/true", O_RDONLY | O_CLOEXEC);
  void *f = emmap(b, NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  expect("mmap a file of the caller", mret(f), 0);
  expect("read the file's page", spawnfd_read(b, f, buf, 4), 0);
  truth("... an ELF header", !memcmp(buf, "\177ELF", 4));
  expect("write to read-only memory", spawnfd_write(b, f, "x", 1), EFAULT);
  expect("mmap bad builder fd", mret(emmap(-1, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), EBADF);
  expect("mmap closed builder fd", mret(emmap(999, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), EBADF);
  expect("mmap through a file (not a builder)", mret(emmap(fd, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), EBADF);
  expect("mmap through the wait handle", mret(emmap(h.wait_fd, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), EBADF);
  expect("mmap of a bad file descriptor", mret(emmap(b, NULL, 4096, PROT_READ, MAP_PRIVATE, 999, 0)), EBADF);
  expect("mmap length 0", mret(emmap(b, NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), EINVAL);
  expect("mmap overflowing length", mret(emmap(b, NULL, ~0UL - 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), ENOMEM);
  expect("mmap unaligned offset", mret(emmap(b, NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 100)), EINVAL);
  expect("mmap MAP_FIXED_NOREPLACE over a mapping", mret(emmap(b, a, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)), EEXIST);
  struct spawnfd_mmap_args m = {0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 0};
  uint8_t big[64] = {0};
  expect("mmap args bad pointer", syscall(SPAWNFD_NR_mmap, b, 8, sizeof(m)), EFAULT);
  expect("mmap args size 8", syscall(SPAWNFD_NR_mmap, b, &m, 8), EINVAL);
  expect("mmap args size 8192", syscall(SPAWNFD_NR_mmap, b, &m, 8192), E2BIG);
  memcpy(big, &m, sizeof(m));
  expect("mmap args larger, zero tail", syscall(SPAWNFD_NR_mmap, b, big, sizeof(big)), 0);
  big[50] = 1;
  expect("mmap args larger, non-zero tail", syscall(SPAWNFD_NR_mmap, b, big, sizeof(big)), E2BIG);
  m.pad = 1;
  expect("mmap args pad not zero", syscall(SPAWNFD_NR_mmap, b, &m, sizeof(m)), EINVAL);
  expect("mprotect read-only", spawnfd_mprotect(b, a, 4096, PROT_READ), 0);
  expect("... then a write faults", spawnfd_write(b, a, "x", 1), EFAULT);
  expect("mprotect unaligned", spawnfd_mprotect(b, (char *)a + 1, 4096, PROT_READ), EINVAL);
  expect("mprotect unmapped", spawnfd_mprotect(b, (void *)0x10000, 4096, PROT_READ), ENOMEM);
  expect("mprotect bad builder fd", spawnfd_mprotect(fd, a, 4096, PROT_READ), EBADF);
  expect("munmap", spawnfd_munmap(b, f, 4096), 0);
  expect("... then a read faults", spawnfd_read(b, f, buf, 1), EFAULT);
  expect("munmap unaligned", spawnfd_munmap(b, (char *)a + 1, 4096), EINVAL);
  expect("munmap length 0", spawnfd_munmap(b, a, 0), EINVAL);
  expect("munmap bad builder fd", spawnfd_munmap(-5, a, 4096), EBADF);
  close(fd);
  kill_embryo(&h);
}

static void test_vm(void) {
  struct spawnfd_handles h;
  embryo(&h);
  int b = h.builder_fd;
  char *a = emmap(b, NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char one[] = "hello, ", two[] = "embryo!", back[32] = {0};
  struct iovec l[2] = {{one, 7}, {two, 7}}, r[3] = {{a, 3}, {a + 4095, 2}, {a + 8000, 9}};
  expect("vm_writev scatters", spawnfd_vm_writev(b, l, 2, r, 3, 0) == 14 ? 0 : -1, 0);
  struct iovec lb = {back, 14};
  expect("vm_readv gathers", spawnfd_vm_readv(b, &lb, 1, r, 3, 0) == 14 ? 0 : -1, 0);
  truth("... the same bytes", !memcmp(back, "hello, embryo!", 14));
  expect("vm_writev flags", spawnfd_vm_writev(b, l, 2, r, 3, 1), EINVAL);
  expect("vm_writev 1025 local iovecs", spawnfd_vm_writev(b, l, 1025, r, 3, 0), EINVAL);
  expect("vm_readv 1025 remote iovecs", spawnfd_vm_readv(b, l, 2, r, 1025, 0), EINVAL);
  expect("vm_writev bad local iovec array", spawnfd_vm_writev(b, (void *)8, 1, r, 1, 0), EFAULT);
  expect("vm_writev bad remote iovec array", spawnfd_vm_writev(b, l, 1, (void *)8, 1, 0), EFAULT);
  struct iovec bad = {(void *)8, 4}, over[2] = {{one, SSIZE_MAX}, {two, 2}};
  expect("vm_writev bad local buffer", spawnfd_vm_writev(b, &bad, 1, r, 1, 0), EFAULT);
  struct iovec ro = {(void *)rodata, 4};
  expect("vm_readv into read-only memory", spawnfd_vm_readv(b, &ro, 1, r, 1, 0), EFAULT);
  expect("vm_writev overflowing length", spawnfd_vm_writev(b, over, 2, r, 1, 0), EINVAL);
  struct iovec un = {(void *)0x10000, 4};
  expect("vm_writev to unmapped memory", spawnfd_vm_writev(b, l, 1, &un, 1, 0), EFAULT);
  expect("vm_writev bad builder fd", spawnfd_vm_writev(h.wait_fd, l, 1, r, 1, 0), EBADF);
  expect("munmap the last page", spawnfd_munmap(b, a + 8192, 4096), 0);
  static char page2[8192];
  struct iovec lp = {page2, 8192}, rp = {a + 4096, 8192};
  truth("vm_writev across the end: a partial count",
        spawnfd_vm_writev(b, &lp, 1, &rp, 1, 0) == 4096);
  expect("vm_writev nothing", spawnfd_vm_writev(b, l, 0, r, 0, 0), 0);
  kill_embryo(&h);
}

static void test_fds(void) {
  struct spawnfd_handles h, h2;
  embryo(&h);
  embryo(&h2);
  int b = h.builder_fd, p[2];
  if (pipe(p))
    exit(2);
  expect("install a pipe as fd 1", spawnfd_install_fd(b, p[1], 1, 0) == 1 ? 0 : -1, 0);
  expect("install at the lowest free (0)", spawnfd_install_fd(b, p[0], -1, 0) == 0 ? 0 : -1, 0);
  expect("install the wait handle", spawnfd_install_fd(b, h.wait_fd, 7, O_CLOEXEC) == 7 ? 0 : -1, 0);
  expect("install a bad descriptor", spawnfd_install_fd(b, 999, 3, 0), EBADF);
  expect("install the builder fd into its own embryo", spawnfd_install_fd(b, b, 3, 0), EINVAL);
  expect("install another builder fd", spawnfd_install_fd(b, h2.builder_fd, 3, 0), EINVAL);
  expect("install with bad flags", spawnfd_install_fd(b, p[0], 3, 1), EINVAL);
  expect("install at 5000", spawnfd_install_fd(b, p[0], 5000, 0), EBADF);
  expect("install at -2", spawnfd_install_fd(b, p[0], -2, 0), EBADF);
  expect("install through a pipe (not a builder)", spawnfd_install_fd(p[0], p[0], 3, 0), EBADF);
  expect("open /dev/null as fd 2", spawnfd_open(b, "/dev/null", O_RDWR, 0, 2) == 2 ? 0 : -1, 0);
  expect("open a missing file", spawnfd_open(b, "/nonexistent", O_RDONLY, 0, -1), ENOENT);
  expect("open bad path pointer", spawnfd_open(b, (char *)8, O_RDONLY, 0, -1), EFAULT);
  static char longpath[PATH_MAX + 10];
  memset(longpath, 'a', sizeof(longpath) - 1);
  expect("open a path longer than PATH_MAX", spawnfd_open(b, longpath, O_RDONLY, 0, -1), ENAMETOOLONG);
  expect("open at 5000", spawnfd_open(b, "/dev/null", O_RDONLY, 0, 5000), EBADF);
  expect("chdir /usr", spawnfd_chdir(b, "/usr"), 0);
  expect("open relative to the embryo's cwd", spawnfd_open(b, "bin/true", O_RDONLY, 0, 4) == 4 ? 0 : -1, 0);
  expect("open relative to ours (not its)", spawnfd_open(b, "usr/bin/true", O_RDONLY, 0, -1), ENOENT);
  expect("chdir a missing directory", spawnfd_chdir(b, "/nonexistent"), ENOENT);
  expect("chdir a file", spawnfd_chdir(b, "/bin/true"), ENOTDIR);
  expect("chdir bad pointer", spawnfd_chdir(b, (char *)8), EFAULT);
  expect("chdir bad builder fd", spawnfd_chdir(-1, "/"), EBADF);
  close(p[0]);
  close(p[1]);
  kill_embryo(&h);
  kill_embryo(&h2);
}

static void test_creds_regs(void) {
  struct spawnfd_handles h;
  embryo(&h);
  int b = h.builder_fd;
  expect("setresgid 1000 (as root)", spawnfd_setresgid(b, 1000, 1000, 1000), 0);
  expect("setresuid 1000", spawnfd_setresuid(b, 1000, 1000, 1000), 0);
  expect("setresuid back to 0", spawnfd_setresuid(b, 0, 0, 0), EPERM);
  expect("setresgid to 0", spawnfd_setresgid(b, 0, -1, -1), EPERM);
  expect("setresuid -1 -1 -1", spawnfd_setresuid(b, -1, -1, -1), 0);
  expect("setresuid bad builder fd", spawnfd_setresuid(99, 1, 1, 1), EBADF);
  truth("our own ids are unchanged", getuid() == 0 && geteuid() == 0 && getgid() == 0);
  expect("setregs", spawnfd_setregs(b, 0x401000, 0x7ffffffde000), 0);
  struct spawnfd_regs r = {0, 0};
  expect("setregs bad pointer", syscall(SPAWNFD_NR_setregs, b, 8, sizeof(r)), EFAULT);
  expect("setregs size 8", syscall(SPAWNFD_NR_setregs, b, &r, 8), EINVAL);
  expect("setregs bad builder fd", syscall(SPAWNFD_NR_setregs, h.wait_fd, &r, sizeof(r)), EBADF);
  kill_embryo(&h);
}

static void test_map_cow(void) {
  struct spawnfd_handles h;
  embryo(&h);
  int b = h.builder_fd;
  size_t len = 4 << 20;
  char *raw = mmap(NULL, len + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *a = (char *)(((uintptr_t)raw + (2 << 20) - 1) & ~((uintptr_t)(2 << 20) - 1)), buf[8];
  for (size_t i = 0; i < len; i += 4096)
    a[i] = (char)(i >> 12);
  expect("map_cow 4 MiB of ourselves", spawnfd_map_cow(b, 0, a, len), 0);
  expect("... read in the embryo", spawnfd_read(b, a + 4096 * 5, buf, 1), 0);
  truth("... our bytes", buf[0] == 5);
  expect("... a write in the embryo", spawnfd_write(b, a + 4096 * 5, "E", 1), 0);
  truth("... copies: ours unchanged", a[4096 * 5] == 5);
  a[4096 * 6] = 'P';
  expect("... and ours", spawnfd_read(b, a + 4096 * 6, buf, 1), 0);
  truth("... does not reach it", buf[0] == 6);
  expect("map_cow again: the range is taken", spawnfd_map_cow(b, 0, a, 4096), EEXIST);
  expect("map_cow unaligned", spawnfd_map_cow(b, 0, raw + 1, 4096), EINVAL);
  expect("map_cow length 0", spawnfd_map_cow(b, 0, raw, 0), EINVAL);
  expect("map_cow overflowing", spawnfd_map_cow(b, 0, raw, ~0UL & ~4095UL), EINVAL);
  expect("map_cow of no such process", spawnfd_map_cow(b, 30000, raw, 4096), ESRCH);
  expect("map_cow of a negative pid", spawnfd_map_cow(b, -1, raw, 4096), EINVAL);
  expect("map_cow of our parent", spawnfd_map_cow(b, getppid(), raw, 4096), EPERM);
  expect("map_cow bad builder fd", spawnfd_map_cow(0, 0, raw, 4096), EBADF);
  munmap(raw, len + (2 << 20));
  kill_embryo(&h);
}

static void test_mmapv(void) {
  struct spawnfd_handles h;
  embryo(&h);
  int b = h.builder_fd;
  struct spawnfd_mapv v[3] = {
      {0, 3 * 4096, 0, SPAWNFD_MAPV_MMAP, SPAWNFD_MAPV_BIAS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 0},
      {4096, 4096, 0, SPAWNFD_MAPV_MUNMAP, SPAWNFD_MAPV_REL, 0, 0, 0, 0, 0},
      {8192, 4096, 0, SPAWNFD_MAPV_MMAP, SPAWNFD_MAPV_REL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, 0}};
  struct spawnfd_mapv_result res;
  expect("mmapv: reserve, punch, map", spawnfd_mmapv(b, v, 3, &res), 0);
  truth("... bias and out written back", res.bias == v[0].out && v[2].out == res.bias + 8192);
  expect("... the hole is a hole", spawnfd_read(b, (void *)(res.bias + 4096), &res.pad, 1), EFAULT);
  v[1].op = 7;
  expect("mmapv bad op", spawnfd_mmapv(b, v, 3, &res), EINVAL);
  truth("... says which step failed", res.failed == 1);
  v[1].op = SPAWNFD_MAPV_MUNMAP;
  v[1].rel = SPAWNFD_MAPV_BIAS;
  expect("mmapv BIAS not first", spawnfd_mmapv(b, v, 3, &res), EINVAL);
  expect("mmapv 4097 steps", spawnfd_mmapv(b, v, 4097, &res), EINVAL);
  expect("mmapv bad steps pointer", spawnfd_mmapv(b, (void *)8, 3, &res), EFAULT);
  expect("mmapv bad result pointer", spawnfd_mmapv(b, v, 3, (void *)8), EFAULT);
  expect("mmapv bad builder fd", spawnfd_mmapv(-1, v, 0, &res), EBADF);
  kill_embryo(&h);
}

static void test_wait_signal(void) {
  struct spawnfd_handles h;
  siginfo_t si;
  pid_t pid = embryo(&h);
  expect("pidfd_send_signal 0 to an embryo", spawnfd_kill(h.wait_fd, 0), 0);
  expect("pidfd_send_signal SIGCHLD (ignored)", spawnfd_kill(h.wait_fd, SIGCHLD), 0);
  expect("... still an embryo", mret(emmap(h.builder_fd, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), 0);
  expect("pidfd_send_signal bad signal", spawnfd_kill(h.wait_fd, 65), EINVAL);
  expect("pidfd_send_signal flags", syscall(SPAWNFD_NR_pidfd_send_signal, h.wait_fd, SIGTERM, NULL, 1), EINVAL);
  expect("pidfd_send_signal through the builder fd", spawnfd_kill(h.builder_fd, SIGTERM), EBADF);
  expect("pidfd_send_signal through a bad fd", spawnfd_kill(-1, SIGTERM), EBADF);
  expect("pidfd_send_signal SIGTERM", spawnfd_kill(h.wait_fd, SIGTERM), 0);
  expect("a step after its death", spawnfd_chdir(h.builder_fd, "/"), ESRCH);
  expect("... mmap too", mret(emmap(h.builder_fd, NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)), ESRCH);
  expect("waitid WNOWAIT", spawnfd_waitid(h.wait_fd, &si, WEXITED | WNOWAIT), 0);
  truth("... SIGCHLD, CLD_KILLED, the pid, SIGTERM",
        si.si_signo == SIGCHLD && si.si_code == CLD_KILLED && si.si_pid == pid && si.si_status == SIGTERM);
  expect("waitid bad infop (reaps it)", syscall(SPAWNFD_NR_waitid, SPAWNFD_P_PIDFD, h.wait_fd, 8, WEXITED, NULL), EFAULT);
  expect("waitid after the reap", spawnfd_waitid(h.wait_fd, &si, WEXITED), ECHILD);
  expect("pidfd_send_signal after the reap", spawnfd_kill(h.wait_fd, SIGTERM), ESRCH);
  expect("close of its builder fd: no launch", close(h.builder_fd), 0);
  expect("waitid no options", spawnfd_waitid(h.wait_fd, &si, 0), EINVAL);
  expect("waitid bad options", spawnfd_waitid(h.wait_fd, &si, WEXITED | 0x100), EINVAL);
  expect("waitid bad idtype", syscall(SPAWNFD_NR_waitid, 9, 0, &si, WEXITED, NULL), EINVAL);
  expect("waitid P_PIDFD of a pipe", syscall(SPAWNFD_NR_waitid, SPAWNFD_P_PIDFD, 0, &si, WEXITED, NULL), EBADF);
  close(h.wait_fd);
  expect("waitid P_PIDFD closed fd", spawnfd_waitid(h.wait_fd, &si, WEXITED), EBADF);
  expect("waitid P_ALL without children", syscall(SPAWNFD_NR_waitid, P_ALL, 0, &si, WEXITED, NULL), ECHILD);
}

// A program launched by the builder: /bin/echo through the whole ABI, by hand and by fdspawn.
static void test_launch(void) {
  pid_t pid;
  int wfd, p[2];
  if (pipe(p))
    exit(2);
  char *argv[] = {"echo", "launched", "by", "close", NULL};
  struct fdspawn_attr attr = {.nfds = 1, .fds = {{1, p[1]}}};
  expect("fdspawn /bin/echo, stdout a pipe", fdspawn(&pid, &wfd, "/bin/echo", &attr, argv, environ) ? -1 : 0, 0);
  close(p[1]);
  char out[64] = {0};
  ssize_t n = read(p[0], out, sizeof(out) - 1);
  truth("... its output", n == 18 && !strcmp(out, "launched by close\n"));
  siginfo_t si;
  expect("waitid P_PIDFD", spawnfd_waitid(wfd, &si, WEXITED), 0);
  truth("... exited 0", si.si_code == CLD_EXITED && si.si_status == 0 && si.si_pid == pid);
  close(wfd);
  close(p[0]);
  attr.flags = FDSPAWN_LDSO;
  attr.nfds = 0;
  attr.cwd = "/usr";
  char *pwd[] = {"sh", "-c", "pwd; exit 7", NULL};
  fflush(stdout);
  expect("fdspawn through ld.so alone, cwd /usr", fdspawn(&pid, &wfd, "/bin/sh", &attr, pwd, environ) ? -1 : 0, 0);
  truth("... exited 7", spawnfd_wait(wfd) == 7 << 8);
  close(wfd);
  expect("fdspawn a missing program", fdspawn(&pid, &wfd, "/nonexistent", NULL, argv, environ) == ENOENT ? 0 : -1, 0);
  expect("fdspawn a text file", fdspawn(&pid, &wfd, "/etc/passwd", NULL, argv, environ) == EACCES ? 0 : -1, 0);
  expect("... nothing left behind", waitpid(-1, NULL, WNOHANG), ECHILD);
  // poll(2) on the wait handle: readable once the child exited, hung up once reaped
  struct pollfd pfd = {.events = POLLIN};
  char *ex3[] = {"sh", "-c", "exit 3", NULL};
  expect("fdspawn sh -c 'exit 3'", fdspawn(&pid, &wfd, "/bin/sh", NULL, ex3, environ) ? -1 : 0, 0);
  pfd.fd = wfd;
  truth("poll on its wait handle waits for its exit", poll(&pfd, 1, -1) == 1 && pfd.revents == POLLIN);
  truth("... then waitid reaps it", spawnfd_wait(wfd) == 3 << 8);
  truth("... and poll says hung up", poll(&pfd, 1, 0) == 1 && pfd.revents == (POLLIN | POLLHUP));
  close(wfd);
  struct spawnfd_handles hp;
  embryo(&hp);
  pfd.fd = hp.wait_fd;
  truth("poll on an embryo's wait handle: not ready", poll(&pfd, 1, 0) == 0);
  close(hp.builder_fd);  // launched with nothing mapped: it faults at once
  truth("... ready once it died", poll(&pfd, 1, 1000) == 1 && pfd.revents == POLLIN);
  truth("... of SIGSEGV", spawnfd_wait(hp.wait_fd) == SIGSEGV);
  close(hp.wait_fd);
  // a running child, signalled through its wait handle: as kill(2)
  char *slp[] = {"sleep", "30", NULL};
  expect("fdspawn /bin/sleep 30", fdspawn(&pid, &wfd, "/bin/sleep", NULL, slp, environ) ? -1 : 0, 0);
  expect("pidfd_send_signal 0 to it, running", spawnfd_kill(wfd, 0), 0);
  expect("pidfd_send_signal SIGTERM to it", spawnfd_kill(wfd, SIGTERM), 0);
  truth("... it died of SIGTERM", spawnfd_wait(wfd) == SIGTERM);
  close(wfd);
  // built by hand: 12 bytes of code (exit_group(42)) and a stack of junk, which nothing
  // reads: the code runs
  static const unsigned char code[] = {0xbf, 42, 0, 0, 0, 0xb8, 231, 0, 0, 0, 0x0f, 0x05};
  uint64_t junk[4] = {1000000, 8, 16, 0xdeadbeef};
  struct spawnfd_handles hh;
  embryo(&hh);
  char *text = emmap(hh.builder_fd, NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *stk = emmap(hh.builder_fd, NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  expect("hand-built: code", spawnfd_write(hh.builder_fd, text, code, sizeof(code)), 0);
  expect("hand-built: junk on the stack", spawnfd_write(hh.builder_fd, stk + 4096, junk, sizeof(junk)), 0);
  expect("hand-built: r-x", spawnfd_mprotect(hh.builder_fd, text, 4096, PROT_READ | PROT_EXEC), 0);
  expect("hand-built: registers", spawnfd_setregs(hh.builder_fd, (uintptr_t)text, (uintptr_t)stk + 4096), 0);
  expect("hand-built: launch", close(hh.builder_fd), 0);
  truth("... it ran its code: exit status 42", spawnfd_wait(hh.wait_fd) == 42 << 8);
  close(hh.wait_fd);
  // launched with nothing mapped: the first thread faults
  struct spawnfd_handles h;
  embryo(&h);
  expect("close launches an empty embryo", close(h.builder_fd), 0);
  truth("... it dies of SIGSEGV", spawnfd_wait(h.wait_fd) == SIGSEGV);
  expect("... a step after launch: its fd is closed", spawnfd_chdir(h.builder_fd, "/"), EBADF);
  close(h.wait_fd);
}

static int calls(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  test_create();
  test_memory();
  test_vm();
  test_fds();
  test_creds_regs();
  test_map_cow();
  test_mmapv();
  test_wait_signal();
  test_launch();
  return finish();
}

// The rules of the fd model, from C.
static int rules(void) {
  struct spawnfd_handles h;
  int p[2], st;
  char buf[8];
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t e = embryo(&h);
  int b = h.builder_fd;
  expect("dup of the builder fd", dup(b), EINVAL);
  expect("dup2 of the builder fd", dup2(b, 50), EINVAL);
  expect("dup3 of the builder fd", dup3(b, 50, O_CLOEXEC), EINVAL);
  expect("F_DUPFD of the builder fd", fcntl(b, F_DUPFD, 50), EINVAL);
  expect("dup of the wait handle works", close(dup(h.wait_fd)), 0);
  expect("read of the builder fd", read(b, buf, 1), EINVAL);
  expect("write of the builder fd", write(b, "x", 1), EINVAL);
  expect("lseek of the builder fd", lseek(b, 0, SEEK_SET), ESPIPE);
  expect("install into its own embryo", spawnfd_install_fd(b, b, -1, 0), EINVAL);
  pid_t c = fork();
  if (c == 0) {  // the child: no builder fd, the wait handle is inherited
    int ok = fcntl(b, F_GETFD) == -1 && errno == EBADF && fcntl(h.wait_fd, F_GETFD) >= 0 &&
             spawnfd_chdir(b, "/") == -1 && errno == EBADF;
    _exit(ok ? 0 : 1);
  }
  waitpid(c, &st, 0);
  truth("a fork child has no builder fd, but the wait handle", WIFEXITED(st) && WEXITSTATUS(st) == 0);
  c = vfork();
  if (c == 0)  // a vfork child (posix_spawn's way) neither
    _exit(fcntl(b, F_GETFD) == -1 && fcntl(h.wait_fd, F_GETFD) >= 0 ? 0 : 1);
  waitpid(c, &st, 0);
  truth("a vfork child has no builder fd, but the wait handle", WIFEXITED(st) && WEXITSTATUS(st) == 0);
  kill_embryo(&h);
  (void)e;
  // released without close(2): dup2 over it, close_range of it -- the embryo dies
  embryo(&h);
  expect("dup2 over the builder fd", dup2(0, h.builder_fd) == h.builder_fd ? 0 : -1, 0);
  truth("... its embryo died of SIGKILL", spawnfd_wait(h.wait_fd) == SIGKILL);
  close(h.builder_fd);
  close(h.wait_fd);
  embryo(&h);
  expect("close_range of the builder fd", syscall(SYS_close_range, h.builder_fd, h.builder_fd, 0), 0);
  truth("... its embryo died of SIGKILL", spawnfd_wait(h.wait_fd) == SIGKILL);
  close(h.wait_fd);
  // the creator exits without launching: the embryo dies with it
  if (pipe(p))
    exit(2);
  c = fork();
  if (c == 0) {
    struct spawnfd_handles h2;
    pid_t e2 = spawnfd_create(&h2, 0);
    spawnfd_mmap(h2.builder_fd, NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    _exit(write(p[1], &e2, sizeof(e2)) == sizeof(e2) ? 0 : 1);
  }
  pid_t e2 = 0;
  truth("the creator sent its embryo's pid", read(p[0], &e2, sizeof(e2)) == sizeof(e2));
  waitpid(c, &st, 0);
  truth("the creator exited", WIFEXITED(st));
  // dead, a zombie for init to reap (Linux too: kill(2) of a zombie succeeds); the test
  // reaps it through init and checks it died of SIGKILL
  printf("orphan %d\n", (int)e2);
  // the creator execs: the builder fd is close-on-exec, the embryo dies
  c = fork();
  if (c == 0) {
    struct spawnfd_handles h3;
    pid_t e3 = spawnfd_create(&h3, 0);
    if (write(p[1], &e3, sizeof(e3)) != sizeof(e3))
      _exit(1);
    char *sh[] = {"sh", "-c", "exit 3", NULL};
    execve("/bin/sh", sh, environ);
    _exit(127);
  }
  pid_t e3 = 0;
  truth("the creator sent its embryo's pid", read(p[0], &e3, sizeof(e3)) == sizeof(e3));
  waitpid(c, &st, 0);
  truth("the creator exec'd a shell", WIFEXITED(st) && WEXITSTATUS(st) == 3);
  printf("orphan %d\n", (int)e3);
  close(p[0]);
  close(p[1]);
  // the wait handle is inherited: a fork child kills our embryo while we wait for it
  e = embryo(&h);
  c = fork();
  if (c == 0) {
    usleep(20000);
    int r = spawnfd_kill(h.wait_fd, SIGTERM);
    siginfo_t si;
    int w = spawnfd_waitid(h.wait_fd, &si, WEXITED | WNOHANG);  // not its child
    if (r || w != -1 || errno != ECHILD)
      _exit(1);
    sleep(30);  // alive until killed: our wait must end by the embryo's death alone
    _exit(2);
  }
  truth("our wait ends when a fork child kills the embryo", spawnfd_wait(h.wait_fd) == SIGTERM);
  expect("... the child is still running", waitpid(c, &st, WNOHANG), 0);
  kill(c, SIGKILL);
  waitpid(c, &st, 0);
  truth("... and it got ECHILD from waitid on our embryo", WIFSIGNALED(st));
  close(h.builder_fd);
  close(h.wait_fd);
  return finish();
}

// setuid bits only through execve: as uid 1000, exec'ing a setuid-root program gives euid
// 0; fdspawn of the same file gives euid 1000.
static int suid(const char *path) {
  setvbuf(stdout, NULL, _IONBF, 0);
  char *argv[] = {(char *)path, "ids", NULL};
  pid_t c = fork();
  if (c == 0) {
    if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
      _exit(2);
    execve(path, argv, environ);
    _exit(127);
  }
  int st;
  waitpid(c, &st, 0);
  c = fork();
  if (c == 0) {
    pid_t pid;
    int wfd;
    if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
      _exit(2);
    int err = fdspawn(&pid, &wfd, path, NULL, argv, environ);
    _exit(err ? 100 + err : (spawnfd_wait(wfd) >> 8));
  }
  waitpid(c, &st, 0);
  c = fork();
  if (c == 0) {  // and dropping through the builder: the child starts as 1000 from root
    pid_t pid;
    int wfd;
    struct fdspawn_attr a = {.flags = FDSPAWN_SETIDS, .uid = 1000, .gid = 1000};
    int err = fdspawn(&pid, &wfd, path, &a, argv, environ);
    _exit(err ? 100 + err : (spawnfd_wait(wfd) >> 8));
  }
  waitpid(c, &st, 0);
  return 0;
}

static int ids(void) {
  uid_t r, e, s;
  getresuid(&r, &e, &s);
  printf("uid %u euid %u suid %u\n", r, e, s);
  return 0;
}

// Whether the fuzzer's embryo is gone (killed by a signal it sent, reaped by a waitid).
static int embryo_gone(const struct spawnfd_handles *h) {
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  if (spawnfd_waitid(h->wait_fd, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
    return 1;
  return si.si_pid != 0;
}

static uint64_t pick(const uint64_t *v, size_t n) { return v[(size_t)rand() % n]; }

// Random arguments to every call of the private range and to the wait-handle calls, against
// an embryo, its handles, ordinary descriptors and garbage; half of the time arguments of
// the right shape (paths, iovecs into the embryo's mappings, loader steps) so that calls get
// past their checks. Every call returns (a value or -1 with an errno), the caller survives.
static int fuzz(long n, unsigned seed) {
  srand(seed);
  struct spawnfd_handles h;
  embryo(&h);
  static char scratch[65536] __attribute__((aligned(4096)));
  static const char *paths[] = {"/dev/null", "/usr", "/nonexistent", "/bin/true", "/tmp",
                                "/tmp/fuzzed", "", "bin", "/etc/passwd"};
  uint64_t pool[] = {0, 1, 8, 4095, 4096, 65536, (uint64_t)-1, (uint64_t)-4096,
                     (uint64_t)(uintptr_t)scratch, (uint64_t)(uintptr_t)rodata,
                     0x7ffffffff000, 0x555555554000, 0x10000, 1 << 30, (uint64_t)INT32_MAX + 1};
  uint64_t mapped[8] = {0x10000, 0x10000, 0x10000, 0x10000, 0x10000, 0x10000, 0x10000, 0x10000};
  long ok = 0, fail = 0, replaced = 0;
  for (long i = 0; i < n; i++) {
    int which = rand() % (SPAWNFD_NR_COUNT + 2);
    long nr = which < SPAWNFD_NR_COUNT ? SPAWNFD_NR_BASE + which
              : which == SPAWNFD_NR_COUNT ? SPAWNFD_NR_waitid : SPAWNFD_NR_pidfd_send_signal;
    if (nr == SPAWNFD_NR_BASE)  // create: keep the table small
      nr = SPAWNFD_NR_BASE + 1;
    uint64_t a[6];
    for (int j = 0; j < 6; j++) {
      int k = rand() % 4;
      a[j] = k == 0 ? pick(pool, sizeof(pool) / 8)
             : k == 1 ? (uint64_t)(rand() % 12)
             : k == 2 ? (uint64_t)rand() << (rand() % 40)
                      : (uint64_t)(uintptr_t)(scratch + (rand() % 60000));
    }
    if (rand() % 2)
      a[0] = rand() % 2 ? (uint64_t)h.builder_fd : (uint64_t)h.wait_fd;
    uint64_t at = pick(mapped, 8) + (uint64_t)(rand() % 4) * 4096, len = (uint64_t)(rand() % 8) * 4096;
    char *blk = scratch + 4096 * (rand() % 8);  // argument blocks live here
    int shaped = rand() % 2;
    if (shaped) {  // the right shape
      a[0] = (uint64_t)h.builder_fd;
      switch (nr - SPAWNFD_NR_BASE) {
      case 1: {
        struct spawnfd_mmap_args *m = (void *)blk;
        m->addr = rand() % 2 ? 0 : at;
        m->len = len + 4096 * (rand() % 2);
        m->prot = rand() % 8;
        m->flags = (rand() % 2 ? MAP_PRIVATE : MAP_SHARED) | (rand() % 3 ? MAP_ANONYMOUS : 0) |
                   (rand() % 4 ? 0 : MAP_FIXED) | (rand() % 4 ? 0 : MAP_POPULATE);
        m->fd = rand() % 6;
        m->pad = 0;
        m->off = 4096 * (uint64_t)(rand() % 2);
        a[1] = (uint64_t)(uintptr_t)m;
        a[2] = sizeof(*m);
        break;
      }
      case 2: case 3:  // munmap, mprotect
        a[1] = at, a[2] = len, a[3] = (uint64_t)(rand() % 8);
        break;
      case 4: case 5: {  // vm_writev, vm_readv
        struct iovec *v = (void *)blk;
        v[0].iov_base = scratch + 32768 + rand() % 4096;
        v[0].iov_len = (size_t)(rand() % 6000);
        v[1].iov_base = (void *)(uintptr_t)(at + (uint64_t)(rand() % 4096));
        v[1].iov_len = (size_t)(rand() % 6000);
        a[1] = (uint64_t)(uintptr_t)&v[0], a[2] = 1, a[3] = (uint64_t)(uintptr_t)&v[1], a[4] = 1,
        a[5] = 0;
        break;
      }
      case 6:  // install_fd
        a[1] = (uint64_t)(rand() % 8), a[2] = (uint64_t)(int64_t)(rand() % 9 - 1),
        a[3] = rand() % 2 ? 0 : O_CLOEXEC;
        break;
      case 7: case 8: {  // open, chdir
        const char *pth = paths[rand() % (sizeof(paths) / sizeof(paths[0]))];
        strcpy(blk, pth);
        a[1] = (uint64_t)(uintptr_t)blk;
        a[2] = (uint64_t)(rand() % 3 ? O_RDONLY : O_RDWR | O_CREAT);
        a[3] = 0644, a[4] = (uint64_t)(int64_t)(rand() % 9 - 1);
        break;
      }
      case 9: case 10:  // setresuid, setresgid
        for (int j = 1; j < 4; j++)
          a[j] = rand() % 3 ? (uint64_t)-1 : (uint64_t)(rand() % 2 ? 0 : 1000);
        break;
      case 11: {
        struct spawnfd_regs *r = (void *)blk;
        r->rip = at, r->rsp = at + len;
        a[1] = (uint64_t)(uintptr_t)r, a[2] = sizeof(*r);
        break;
      }
      case 12:  // map_cow of ourselves
        a[1] = 0, a[2] = (uint64_t)(uintptr_t)scratch + 4096 * (uint64_t)(rand() % 16),
        a[3] = len;
        break;
      case 13: {  // mmapv: 1-3 loader steps
        struct spawnfd_mapv *v = (void *)blk;
        unsigned k = 1 + (unsigned)rand() % 3;
        for (unsigned j = 0; j < k; j++) {
          struct spawnfd_mapv st = {j ? (uint64_t)(rand() % 4) * 4096 : at, len + 4096, 0,
                                    rand() % 3, j ? rand() % 2 : rand() % 3,
                                    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                                    (j ? MAP_FIXED : 0), -1, 0, 0};
          v[j] = st;
        }
        a[1] = (uint64_t)(uintptr_t)v, a[2] = k, a[3] = (uint64_t)(uintptr_t)(scratch + 40000);
        break;
      }
      default:  // waitid, pidfd_send_signal on the wait handle
        a[0] = nr == SPAWNFD_NR_waitid ? SPAWNFD_P_PIDFD : (uint64_t)h.wait_fd;
        a[1] = nr == SPAWNFD_NR_waitid ? (uint64_t)h.wait_fd : rand() % 16 ? 0 : SIGKILL;
        a[2] = nr == SPAWNFD_NR_waitid ? (uint64_t)(uintptr_t)blk : 0;
        a[3] = nr == SPAWNFD_NR_waitid ? WEXITED | WNOHANG : 0, a[4] = 0;
      }
    }
    if (nr == SPAWNFD_NR_waitid)
      a[3] |= WNOHANG;  // never wait
    if (nr == SPAWNFD_NR_pidfd_send_signal && !shaped && rand() % 8)
      a[1] = 0;  // mostly signal 0: the embryo lives on
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r == -1) {
      fail++;
    } else {
      ok++;
      if (nr == SPAWNFD_NR_mmap && r > 0)
        mapped[rand() % 8] = (uint64_t)r;
    }
    if (r == -1 && errno == ESRCH && embryo_gone(&h)) {  // killed or reaped: a new one
      close(h.builder_fd);  // no launch: it is dead
      spawnfd_waitid(h.wait_fd, NULL, WEXITED | WNOHANG);
      close(h.wait_fd);
      embryo(&h);
      replaced++;
    }
  }
  printf("fuzz %ld calls: %ld succeeded, %ld failed, %ld embryos replaced\n", n, ok, fail,
         replaced);
  spawnfd_kill(h.wait_fd, SIGKILL);
  spawnfd_wait(h.wait_fd);
  close(h.builder_fd);
  close(h.wait_fd);
  for (int fd = 3; fd < 1024; fd++)  // what the fuzzer may have opened or installed
    close(fd);
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  truth("the fuzzer's caller survived with its embryo gone", kill(getpid(), 0) == 0);
  return finish();
}

// What the program sees of its initial stack: argv and environ (addresses and strings),
// the auxiliary vector, the depth of main's frame. A process built by fdspawn must see
// exactly what one made by execve sees (AT_RANDOM's bytes aside: a seed of its own).
static int stackdump(int argc, char **argv) {
  int local = 0;
  printf("argc %d argv %p environ %p local %p\n", argc, (void *)argv, (void *)environ,
         (void *)&local);
  for (int i = 0; i < argc; i++)
    printf("argv[%d] %p %s\n", i, (void *)argv[i], argv[i]);
  for (int i = 0; environ[i]; i++)
    printf("env[%d] %p %s\n", i, (void *)environ[i], environ[i]);
  static const struct {
    unsigned long type;
    const char *name;
  } at[] = {{AT_PHDR, "PHDR"}, {AT_PHENT, "PHENT"}, {AT_PHNUM, "PHNUM"}, {AT_PAGESZ, "PAGESZ"},
            {AT_BASE, "BASE"}, {AT_FLAGS, "FLAGS"}, {AT_ENTRY, "ENTRY"}, {AT_UID, "UID"},
            {AT_EUID, "EUID"}, {AT_GID, "GID"}, {AT_EGID, "EGID"}, {AT_SECURE, "SECURE"},
            {AT_RANDOM, "RANDOM"}, {AT_EXECFN, "EXECFN"}, {AT_PLATFORM, "PLATFORM"},
            {AT_HWCAP, "HWCAP"}, {AT_HWCAP2, "HWCAP2"}, {AT_CLKTCK, "CLKTCK"},
            {AT_MINSIGSTKSZ, "MINSIGSTKSZ"}};
  for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
    printf("AT_%s %#lx\n", at[i].name, getauxval(at[i].type));
  printf("execfn %s platform %s\n", (char *)getauxval(AT_EXECFN), (char *)getauxval(AT_PLATFORM));
  return 0;
}

// Start this program's stackdump by fork+execve or by fdspawn, with the same argv and env.
static int spawnvia(const char *how, const char *self) {
  char *args[] = {"abi_probe", "stackdump", "one", "two words", NULL};
  char *env[] = {"A=1", "PATH=/usr/bin:/bin", "LONGER=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", NULL};
  int st = -1;
  if (!strcmp(how, "exec")) {
    pid_t c = fork();
    if (c == 0) {
      execve(self, args, env);
      _exit(127);
    }
    waitpid(c, &st, 0);
  } else {
    pid_t pid;
    int wfd, err = fdspawn(&pid, &wfd, self, NULL, args, env);
    if (err)
      return 100 + err;
    st = spawnfd_wait(wfd);
  }
  return st == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "stackdump"))
    return stackdump(argc, argv);
  if (argc >= 3 && !strcmp(argv[1], "spawnvia"))
    return spawnvia(argv[2], argv[3] ? argv[3] : argv[0]);
  if (argc >= 2 && !strcmp(argv[1], "calls"))
    return calls();
  if (argc >= 2 && !strcmp(argv[1], "rules"))
    return rules();
  if (argc >= 3 && !strcmp(argv[1], "suid"))
    return suid(argv[2]);
  if (argc >= 2 && !strcmp(argv[1], "ids"))
    return ids();
  if (argc >= 4 && !strcmp(argv[1], "fuzz"))
    return fuzz(atol(argv[2]), (unsigned)atol(argv[3]));
  fprintf(stderr, "usage: abi_probe calls | rules | suid PATH | ids | fuzz N SEED\n");
  return 2;
}
