// sys_spawnfd.c — the fd model as system calls (issue 15): the builder steps of
// kernel/spawn.c reached from running code, numbered in a private range Linux does not use
// (SPAWNFD_NR_BASE, spawnfd/include/spawnfd/abi.h, the header C programs include), and the
// two Linux calls a wait handle answers: waitid(P_PIDFD) and pidfd_send_signal. Each handler
// copies its user memory in or out through the page tables (copy_from_user & co: a bad
// pointer is -EFAULT) and calls the same sfd_spawn_* function the Python Builder calls: the
// rules (builder fd never duplicated or installed, -ESRCH after launch, credentials only
// drop) are spawn.c's, not repeated here. close(2) of a builder fd launches (syscall_64.c
// sys_close: CPU_LAUNCHED asks the trio layer to start the first thread). docs/abi.md is the
// reference, one man-page section per call.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arch/x86/syscalls.h"
#define SPAWNFD_ABI_KERNEL
#include <spawnfd/abi.h>  // the ABI C programs include (spawnfd/include)

#define IOV_MAX_ 1024
#define WNOHANG_ 0x1
#define WSTOPPED_ 0x2
#define WEXITED_ 0x4
#define WCONTINUED_ 0x8
#define WNOWAIT_ 0x01000000
#define WNOTHREAD_ 0x20000000
#define WALL_ 0x40000000
#define WCLONE_ 0x80000000U
#define P_ALL_ 0
#define P_PID_ 1
#define P_PGID_ 2
#define P_PIDFD_ 3
#define SIGINFO_BYTES 128
#define RUSAGE_BYTES 144

_Static_assert(sizeof(struct spawnfd_mapv) == sizeof(struct sfd_mapv), "mapv layout");
_Static_assert(sizeof(struct spawnfd_mmap_args) == SPAWNFD_MMAP_ARGS_SIZE0, "mmap args");
_Static_assert(sizeof(struct spawnfd_regs) == SPAWNFD_REGS_SIZE0, "regs");
_Static_assert(sizeof(struct spawnfd_handles) == 8, "handles");

// A structure that may grow: usize bytes at src, of which the kernel knows ksize. Shorter
// than the first version (size0): -EINVAL; longer than what the kernel knows: the rest must
// be zero (-E2BIG otherwise, and beyond a page). compare copy_struct_from_user().
static int copy_struct_in(struct cpu *c, void *dst, size_t ksize, size_t size0, uint64_t src,
                          uint64_t usize) {
  if (usize < size0)
    return -EINVAL;
  if (usize > PAGE_SIZE)
    return -E2BIG;
  memset(dst, 0, ksize);
  int err = copy_from_user(c, dst, src, usize < ksize ? usize : ksize);
  if (err || usize <= ksize)
    return err;
  uint8_t tail[PAGE_SIZE];
  if ((err = copy_from_user(c, tail, src + ksize, usize - ksize)))
    return err;
  for (uint64_t i = 0; i < usize - ksize; i++)
    if (tail[i])
      return -E2BIG;
  return 0;
}

// The embryo behind the caller's builder fd bfd: -EBADF if it is no builder fd, -ESRCH once
// its process was launched, killed or reaped (the checks of spawn.c's builder_embryo, made
// before a call copies user memory for nothing). compare pidfd_get_task(): fd to task.
static int builder_check(struct proc *p, struct kernel *k, int bfd) {
  struct file *f = fdt_get(&p->fds, bfd);
  if (!f || f->ino->kind != IK_BUILDER)
    return -EBADF;
  struct proc *e = proc_by_handle(k, f->ino);
  return e && e->state == PS_EMBRYO ? 0 : -ESRCH;
}

// spawnfd_create(struct spawnfd_handles *h, unsigned flags): an embryo child of the caller;
// h gets the builder fd and the wait handle; returns its pid. compare clone3(CLONE_PIDFD).
static int64_t sys_spawnfd_create(struct cpu *c, struct proc *p, const uint64_t *a) {
  int out[3], st;
  if ((uint32_t)a[1])
    return -EINVAL;
  if (user_range_ok(c, a[0], sizeof(struct spawnfd_handles), 1))
    return -EFAULT;
  int err = sfd_process_create(c->k, p->pid, 0, out);
  if (err)
    return err;
  struct spawnfd_handles h = {out[0], out[1]};
  if ((err = copy_to_user(c, a[0], &h, sizeof(h)))) {  // undo: nothing stays behind
    fdt_close(c->k, &p->fds, out[0]);  // released without a launch: the embryo dies
    fdt_close(c->k, &p->fds, out[1]);
    sfd_wait(c->k, p->pid, out[2], 1, &st);
    return err;
  }
  return out[2];
}

// spawnfd_mmap(bfd, const struct spawnfd_mmap_args *args, size_t size): mmap(2) into the
// embryo; returns the address. compare i386 old_mmap() (struct mmap_arg_struct).
static int64_t sys_spawnfd_mmap(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct spawnfd_mmap_args m;
  uint64_t out;
  int err = copy_struct_in(c, &m, sizeof(m), SPAWNFD_MMAP_ARGS_SIZE0, a[1], a[2]);
  if (err)
    return err;
  if (m.pad)
    return -EINVAL;
  err = sfd_spawn_mmap(c->k, p->pid, (int)a[0], m.addr, m.len, m.prot, m.flags, m.fd, m.off,
                       &out);
  return err ? err : (int64_t)out;
}

// spawnfd_munmap(bfd, addr, len). compare munmap(2), __vm_munmap().
static int64_t sys_spawnfd_munmap(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_spawn_munmap(c->k, p->pid, (int)a[0], a[1], a[2]);
}

// spawnfd_mprotect(bfd, addr, len, prot). compare mprotect(2), do_mprotect_pkey().
static int64_t sys_spawnfd_mprotect(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_spawn_mprotect(c->k, p->pid, (int)a[0], a[1], a[2], (int)a[3]);
}

// Read an iovec array of cnt entries from user memory; *total: the bytes it names.
// compare import_iovec(): -EINVAL past SSIZE_MAX in all.
static int iov_in(struct cpu *c, uint64_t uiov, uint64_t cnt, uint64_t *iov, uint64_t *total) {
  int err = copy_from_user(c, iov, uiov, cnt * 16);
  if (err)
    return err;
  *total = 0;
  for (uint64_t i = 0; i < cnt; i++)
    if (iov[2 * i + 1] > (uint64_t)SSIZE_MAX || (*total += iov[2 * i + 1]) > (uint64_t)SSIZE_MAX)
      return -EINVAL;
  return 0;
}

// spawnfd_vm_writev / spawnfd_vm_readv(bfd, local, lcnt, remote, rcnt, flags): copy between
// the caller's memory (local) and the embryo's (remote), a remote page at a time through the
// embryo's fault path. Returns the bytes moved; a fault after some bytes moved ends the call
// with that count. compare process_vm_rw().
static int64_t do_vm_rw(struct cpu *c, struct proc *p, const uint64_t *a, int write) {
  int bfd = (int)a[0];
  uint64_t lcnt = a[2], rcnt = a[4], ltot, rtot;
  uint8_t buf[PAGE_SIZE];
  if (a[5])
    return -EINVAL;
  if (lcnt > IOV_MAX_ || rcnt > IOV_MAX_)
    return -EINVAL;
  uint64_t *l = malloc((lcnt + rcnt + 1) * 16), *r = l + 2 * lcnt;
  if (!l)
    return -ENOMEM;
  int64_t done = 0;
  int err = iov_in(c, a[1], lcnt, l, &ltot);
  if (!err)
    err = iov_in(c, a[3], rcnt, r, &rtot);
  if (!err)
    err = builder_check(p, c->k, bfd);
  for (uint64_t li = 0, ri = 0, lo = 0, ro = 0; !err && li < lcnt && ri < rcnt;) {
    if (lo == l[2 * li + 1]) {
      li++, lo = 0;
      continue;
    }
    if (ro == r[2 * ri + 1]) {
      ri++, ro = 0;
      continue;
    }
    uint64_t la = l[2 * li] + lo, ra = r[2 * ri] + ro, n = PAGE_SIZE - (ra & (PAGE_SIZE - 1));
    if (n > l[2 * li + 1] - lo)
      n = l[2 * li + 1] - lo;
    if (n > r[2 * ri + 1] - ro)
      n = r[2 * ri + 1] - ro;
    if (write) {
      err = copy_from_user(c, buf, la, n);
      if (!err)
        err = sfd_spawn_access(c->k, p->pid, bfd, ra, NULL, buf, n);
    } else {
      err = sfd_spawn_access(c->k, p->pid, bfd, ra, buf, NULL, n);
      if (!err)
        err = copy_to_user(c, la, buf, n);
    }
    if (!err) {
      done += (int64_t)n;
      lo += n;
      ro += n;
    }
  }
  free(l);
  return done ? done : err;
}

static int64_t sys_spawnfd_vm_writev(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_vm_rw(c, p, a, 1);
}

static int64_t sys_spawnfd_vm_readv(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_vm_rw(c, p, a, 0);
}

// spawnfd_install_fd(bfd, fd, child_fd, flags): the caller's fd becomes the embryo's
// child_fd (-1: lowest free). compare dup3(2), from one table into another.
static int64_t sys_spawnfd_install_fd(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_spawn_install_fd(c->k, p->pid, (int)a[0], (int)a[1], (int)a[2], (int)(uint32_t)a[3]);
}

// A path argument: -EFAULT, -ENAMETOOLONG. compare getname().
static int path_in(struct cpu *c, uint64_t upath, char **out) {
  if (!(*out = malloc(PATH_MAX)))
    return -ENOMEM;
  int err = strncpy_from_user(c, *out, upath, PATH_MAX);
  if (err) {
    free(*out);
    *out = NULL;
  }
  return err;
}

// spawnfd_open(bfd, path, flags, mode, child_fd): open(2) as the embryo. compare openat(2).
static int64_t sys_spawnfd_open(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path;
  int err = path_in(c, a[1], &path);
  if (err)
    return err;
  err = sfd_spawn_open(c->k, p->pid, (int)a[0], path, (int)a[2], (unsigned)a[3], (int)a[4]);
  free(path);
  return err;
}

// spawnfd_chdir(bfd, path). compare chdir(2).
static int64_t sys_spawnfd_chdir(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path;
  int err = path_in(c, a[1], &path);
  if (err)
    return err;
  err = sfd_spawn_chdir(c->k, p->pid, (int)a[0], path);
  free(path);
  return err;
}

// spawnfd_setresuid / spawnfd_setresgid(bfd, r, e, s): compare setresuid(2), setresgid(2).
static int64_t do_setres(struct cpu *c, struct proc *p, const uint64_t *a, int gid) {
  uint32_t ids[6] = {NO_ID, NO_ID, NO_ID, NO_ID, NO_ID, NO_ID};
  for (int i = 0; i < 3; i++)
    ids[(gid ? 3 : 0) + i] = (uint32_t)a[1 + i];
  return sfd_spawn_set_creds(c->k, p->pid, (int)a[0], ids);
}

static int64_t sys_spawnfd_setresuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setres(c, p, a, 0);
}

static int64_t sys_spawnfd_setresgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setres(c, p, a, 1);
}

// spawnfd_setregs(bfd, const struct spawnfd_regs *regs, size_t size): the first thread's
// rip and rsp. compare start_thread() at the end of load_elf_binary().
static int64_t sys_spawnfd_setregs(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct spawnfd_regs r;
  int err = copy_struct_in(c, &r, sizeof(r), SPAWNFD_REGS_SIZE0, a[1], a[2]);
  return err ? err : sfd_spawn_set_regs(c->k, p->pid, (int)a[0], r.rip, r.rsp);
}

// spawnfd_map_cow(bfd, src, addr, len): src 0 is the caller. compare copy_page_range().
static int64_t sys_spawnfd_map_cow(struct cpu *c, struct proc *p, const uint64_t *a) {
  int src = (int)a[1];
  if (src < 0)
    return -EINVAL;
  return sfd_spawn_map_cow(c->k, p->pid, (int)a[0], src ? src : p->pid, a[2], a[3]);
}

// spawnfd_mmapv(bfd, struct spawnfd_mapv *v, unsigned n, struct spawnfd_mapv_result *res):
// sfd_spawn_mmapv's steps in one call; each MMAP step's out is written back, res gets the
// bias (and, on failure, the index of the failing step). compare the elf_map() / padzero()
// / vm_brk_flags() calls of load_elf_binary(), made by the creator.
static int64_t sys_spawnfd_mmapv(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint32_t n = (uint32_t)a[2], failed = 0;
  uint64_t bias = 0;
  if (n > SPAWNFD_MAPV_MAX)
    return -EINVAL;
  if (user_range_ok(c, a[3], sizeof(struct spawnfd_mapv_result), 1) ||
      user_range_ok(c, a[1], (uint64_t)n * sizeof(struct sfd_mapv), 1))
    return -EFAULT;
  struct sfd_mapv *v = malloc((n ? n : 1) * sizeof(*v));
  if (!v)
    return -ENOMEM;
  int err = copy_from_user(c, v, a[1], (uint64_t)n * sizeof(*v));
  if (!err) {
    err = sfd_spawn_mmapv(c->k, p->pid, (int)a[0], v, n, &bias, &failed);
    struct spawnfd_mapv_result res = {bias, failed, 0};
    int cerr = copy_to_user(c, a[3], &res, sizeof(res));
    if (!err && !cerr)
      cerr = copy_to_user(c, a[1], v, (uint64_t)n * sizeof(*v));
    if (!err)
      err = cerr;
  }
  free(v);
  return err;
}

static const syscall_fn spawnfd_table[SPAWNFD_NR_COUNT] = {
    sys_spawnfd_create,     sys_spawnfd_mmap,       sys_spawnfd_munmap,
    sys_spawnfd_mprotect,   sys_spawnfd_vm_writev,  sys_spawnfd_vm_readv,
    sys_spawnfd_install_fd, sys_spawnfd_open,       sys_spawnfd_chdir,
    sys_spawnfd_setresuid,  sys_spawnfd_setresgid,  sys_spawnfd_setregs,
    sys_spawnfd_map_cow,    sys_spawnfd_mmapv,
};

// Whether nr is one of the private range's numbers (compare the range check of
// do_syscall_x64()).
int spawnfd_syscall_nr(uint64_t nr) {
  return nr - SPAWNFD_NR_BASE < SPAWNFD_NR_COUNT;
}

// Run private call nr (spawnfd_syscall_nr(nr) is true). compare x64_sys_call().
int64_t sys_spawnfd(struct cpu *c, struct proc *p, uint64_t nr, const uint64_t *a) {
  return spawnfd_table[nr - SPAWNFD_NR_BASE](c, p, a);
}

// close(2) launched the embryo pid: the trio layer starts its first thread (CPU_LAUNCHED).
// compare wake_up_new_task() at the end of kernel_clone().
void spawnfd_launched(struct cpu *c, int pid) {
  c->stop = CPU_LAUNCHED;
  c->status = pid;
}

// pidfd_send_signal(pidfd, sig, info, flags) on a wait handle: as kill(2) of its process (an
// embryo has no thread to run a handler: its default dispositions end it at once); a
// zombie: nothing (0). info must be NULL (the
// siginfo is kill's). compare sys_pidfd_send_signal().
int64_t sys_pidfd_send_signal(struct cpu *c, struct proc *p, const uint64_t *a) {
  int fd = (int)a[0], sig = (int)a[1];
  if ((uint32_t)a[3] || a[2])
    return -EINVAL;
  if (sig < 0 || sig > SIG_NSIG)
    return -EINVAL;
  struct file *f = fdt_get(&p->fds, fd);
  if (fd < 0 || !f || f->ino->kind != IK_PIDFD)
    return -EBADF;
  struct proc *t = proc_by_handle(c->k, f->ino);
  if (!t)
    return -ESRCH;
  if (t->state == PS_ZOMBIE || !sig)
    return 0;
  uint64_t b[2] = {(uint64_t)t->pid, (uint64_t)sig};  // kill(2)'s path: an embryo ends at
  return sys_kill(c, p, b);  // once by its default dispositions (the trio layer's outbox)
}

