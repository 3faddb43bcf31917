// The probe for tests/test_cpu_programs.py: the new system calls with bad pointers and bad
// arguments, each result printed as a line ("name = -ERRNO" or "name = ok ..."). Compiled at
// test time and run natively and on the simulator: the outputs must be equal.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BAD ((void *)0x1000)           // below mmap_min_addr: never mapped
#define BAD2 ((void *)0x7ff000000000)  // an unmapped user address

static void show(const char *name, long r) {
  if (r < 0)
    printf("%s = -%s\n", name, strerrorname_np(errno));
  else
    printf("%s = ok\n", name);
}

int main(void) {
  char buf[4096];
  long r;
  int dfd = open("/", O_RDONLY | O_DIRECTORY);
  show("getdents64 bad buf", syscall(SYS_getdents64, dfd, BAD, 4096));
  show("getdents64 bad buf2", syscall(SYS_getdents64, dfd, BAD2, 4096));
  show("getdents64 tiny", syscall(SYS_getdents64, dfd, buf, 8));
  show("getdents64 not dir", syscall(SYS_getdents64, 0, buf, sizeof(buf)));
  show("getdents64 bad fd", syscall(SYS_getdents64, 999, buf, sizeof(buf)));
  show("statx bad buf", syscall(SYS_statx, AT_FDCWD, "/", 0, 0x7ff, BAD));
  show("statx bad path", syscall(SYS_statx, AT_FDCWD, BAD, 0, 0x7ff, buf));
  show("statx bad flags", syscall(SYS_statx, AT_FDCWD, "/", 0x80000000, 0x7ff, buf));
  show("statx reserved mask", syscall(SYS_statx, AT_FDCWD, "/", 0, 0x80000000, buf));
  show("statx empty", syscall(SYS_statx, AT_FDCWD, "", 0, 0x7ff, buf));
  show("newfstatat bad buf", syscall(SYS_newfstatat, AT_FDCWD, "/bin", BAD, AT_SYMLINK_NOFOLLOW));
  show("newfstatat bad path", syscall(SYS_newfstatat, AT_FDCWD, BAD, buf, 0));
  show("newfstatat bad flags", syscall(SYS_newfstatat, AT_FDCWD, "/", buf, 0x4));
  show("lstat bad buf", syscall(SYS_lstat, "/bin", BAD));
  show("lstat bad path", syscall(SYS_lstat, BAD, buf));
  show("fstat bad buf", syscall(SYS_fstat, dfd, BAD));
  show("readlink bad path", syscall(SYS_readlink, BAD, buf, 100));
  show("readlink bad buf", syscall(SYS_readlink, "/bin", BAD, 100));
  show("readlink zero size", syscall(SYS_readlink, "/bin", buf, 0));
  show("readlink not a link", syscall(SYS_readlink, "/etc/passwd", buf, 100));
  show("readlink missing", syscall(SYS_readlink, "/nonexistent", buf, 100));
  r = syscall(SYS_readlink, "/bin", buf, 100);
  printf("readlink /bin = %ld %.*s\n", r, r > 0 ? (int)r : 0, buf);
  r = syscall(SYS_readlink, "/bin", buf, 3);
  printf("readlink /bin short = %ld %.*s\n", r, r > 0 ? (int)r : 0, buf);
  show("readlinkat bad path", syscall(SYS_readlinkat, AT_FDCWD, BAD, buf, 100));
  show("unlink bad path", syscall(SYS_unlink, BAD));
  show("unlink missing", syscall(SYS_unlink, "/nonexistent"));
  show("unlinkat bad flags", syscall(SYS_unlinkat, AT_FDCWD, "/x", 0x1));
  show("unlinkat bad path", syscall(SYS_unlinkat, AT_FDCWD, BAD, 0));
  show("rmdir bad path", syscall(SYS_rmdir, BAD));
  show("rmdir not dir", syscall(SYS_rmdir, "/etc/passwd"));
  show("mkdir bad path", syscall(SYS_mkdir, BAD, 0755));
  show("mkdir exists", syscall(SYS_mkdir, "/etc", 0755));
  show("mkdirat bad path", syscall(SYS_mkdirat, AT_FDCWD, BAD, 0755));
  show("rename bad old", syscall(SYS_rename, BAD, "/x"));
  show("rename bad new", syscall(SYS_rename, "/x", BAD));
  show("renameat2 bad flags", syscall(SYS_renameat2, AT_FDCWD, "/x", AT_FDCWD, "/y", 0x100));
  show("getxattr bad path", syscall(SYS_getxattr, BAD, "user.x", buf, 10));
  show("getxattr bad name", syscall(SYS_getxattr, "/", BAD, buf, 10));
  show("getxattr empty name", syscall(SYS_getxattr, "/", "", buf, 10));
  show("getxattr none", syscall(SYS_getxattr, "/", "system.posix_acl_access", NULL, 0));
  show("lgetxattr bad path", syscall(SYS_lgetxattr, BAD, "user.x", buf, 10));
  show("lgetxattr none", syscall(SYS_lgetxattr, "/", "security.selinux", buf, 255));
  show("fgetxattr bad name", syscall(SYS_fgetxattr, dfd, BAD, buf, 10));
  show("fgetxattr bad fd", syscall(SYS_fgetxattr, 999, "user.x", buf, 10));
  show("statfs bad path", syscall(SYS_statfs, BAD, buf));
  show("statfs bad buf", syscall(SYS_statfs, "/", BAD));
  show("statfs missing", syscall(SYS_statfs, "/sys/fs/selinux-none", buf));
  show("fstatfs bad buf", syscall(SYS_fstatfs, dfd, BAD));
  show("fstatfs bad fd", syscall(SYS_fstatfs, 999, buf));
  show("fadvise64 bad fd", syscall(SYS_fadvise64, 999, 0, 0, 0));
  show("fadvise64 bad advice", syscall(SYS_fadvise64, dfd, 0, 0, 99));
  struct timespec ts = {0, 1000000000};
  show("nanosleep bad req", syscall(SYS_nanosleep, BAD, NULL));
  show("nanosleep bad nsec", syscall(SYS_nanosleep, &ts, NULL));
  ts.tv_nsec = 1000;
  show("nanosleep 1us", syscall(SYS_nanosleep, &ts, NULL));
  show("clock_nanosleep bad req", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, BAD, NULL));
  show("clock_nanosleep bad clock", syscall(SYS_clock_nanosleep, 99, 0, &ts, NULL));
  show("clock_nanosleep thread clock", syscall(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, &ts, NULL));
  struct timespec past = {1, 0};
  show("clock_nanosleep abs past", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &past, NULL));
  show("sysinfo bad", syscall(SYS_sysinfo, BAD));
  show("sysinfo", syscall(SYS_sysinfo, buf));
  show("getrusage bad", syscall(SYS_getrusage, RUSAGE_SELF, BAD));
  show("getrusage bad who", syscall(SYS_getrusage, 5, buf));
  show("sched_getaffinity bad", syscall(SYS_sched_getaffinity, 0, 128, BAD));
  show("sched_getaffinity short", syscall(SYS_sched_getaffinity, 0, 4, buf));
  show("sched_getaffinity odd", syscall(SYS_sched_getaffinity, 0, 12, buf));
  unsigned long act[4] = {0x1234, 0x04000000 /* SA_RESTORER */, 0x5678, 1UL << 9};
  unsigned long old[4] = {1, 1, 1, 1};
  show("rt_sigaction bad act", syscall(SYS_rt_sigaction, SIGUSR1, BAD, NULL, 8));
  show("rt_sigaction bad old", syscall(SYS_rt_sigaction, SIGUSR1, NULL, BAD, 8));
  show("rt_sigaction size", syscall(SYS_rt_sigaction, SIGUSR1, NULL, old, 4));
  show("rt_sigaction SIGKILL", syscall(SYS_rt_sigaction, SIGKILL, act, NULL, 8));
  show("rt_sigaction 65", syscall(SYS_rt_sigaction, 65, NULL, old, 8));
  show("rt_sigaction set", syscall(SYS_rt_sigaction, SIGUSR1, act, old, 8));
  printf("old = %lx %lx %lx %lx\n", old[0], old[1], old[2], old[3]);
  act[0] = 1;  // SIG_IGN
  act[3] = (1UL << 8) | (1UL << 18);  // SIGKILL's bit is dropped from the mask
  show("rt_sigaction set again", syscall(SYS_rt_sigaction, SIGUSR1, act, old, 8));
  printf("old = %lx %lx %lx %lx\n", old[0], old[1], old[2], old[3]);
  show("rt_sigaction read", syscall(SYS_rt_sigaction, SIGUSR1, NULL, old, 8));
  printf("old = %lx %lx %lx %lx\n", old[0], old[1], old[2], old[3]);
  unsigned long set = (1UL << 9) | (1UL << 8), oset = 7;
  show("rt_sigprocmask bad set", syscall(SYS_rt_sigprocmask, SIG_BLOCK, BAD, NULL, 8));
  show("rt_sigprocmask bad old", syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, BAD, 8));
  show("rt_sigprocmask bad how", syscall(SYS_rt_sigprocmask, 7, &set, NULL, 8));
  show("rt_sigprocmask size", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 16));
  show("rt_sigprocmask block", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, &oset, 8));
  printf("oset = %lx\n", oset);
  set = 1UL << 9;
  show("rt_sigprocmask unblock", syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, &oset, 8));
  printf("oset = %lx\n", oset);
  show("rt_sigprocmask read", syscall(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &oset, 8));
  printf("oset = %lx\n", oset);
  return 0;
}
