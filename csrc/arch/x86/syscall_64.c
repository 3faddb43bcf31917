// syscall_64.c — the x86-64 system-call table (compare Linux arch/x86/entry/syscalls/
// syscall_64.tbl and the ksys_* functions behind it). Arguments come in rdi, rsi, rdx, r10,
// r8, r9; the result or -errno goes back in rax. Every handler calls the kernel code the
// sfd_* entry points use; user memory is copied through the page tables with mm_access
// (-EFAULT on a bad pointer, never a host crash). A call that would block on a descriptor
// without O_NONBLOCK stops the CPU (CPU_BLOCKED) and runs again when the run resumes.
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/syscalls.h"

#define RW_CHUNK (1ULL << 20)  // bytes one read/write moves through the kernel at most
#define UIO_MAXIOV 1024
#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define TCGETS_ 0x5401
#define CLOSE_RANGE_UNSHARE_ 2
#define CLOSE_RANGE_CLOEXEC_ 4

int copy_from_user(struct cpu *c, void *dst, uint64_t src, uint64_t n) {
  return n ? mm_access(c->mm, src, dst, NULL, n) : 0;
}

int copy_to_user(struct cpu *c, uint64_t dst, const void *src, uint64_t n) {
  return n ? mm_access(c->mm, dst, NULL, src, n) : 0;
}

// Whether [addr, addr + n) lies in mappings that allow the access. compare access_ok() plus
// the fault a copy would take: checked before a read consumes data it could not store.
int user_range_ok(struct cpu *c, uint64_t addr, uint64_t n, int write) {
  if (addr + n < addr || addr + n > TASK_SIZE)
    return -EFAULT;
  for (uint64_t va = addr; va < addr + n;) {
    struct vma *v = vma_find(&c->mm->vmas, va);
    if (!v || !vma_allows(v, write))
      return -EFAULT;
    va = v->end;
  }
  return 0;
}

// Copy a NUL-terminated string of at most cap bytes (the NUL included) from user memory.
// compare strncpy_from_user(). -ENAMETOOLONG when no NUL comes within cap.
int strncpy_from_user(struct cpu *c, char *dst, uint64_t src, size_t cap) {
  for (size_t done = 0; done < cap;) {
    uint64_t va = src + done;
    size_t chunk = PAGE_SIZE - (va & (PAGE_SIZE - 1));
    if (chunk > cap - done)
      chunk = cap - done;
    int err = mm_access(c->mm, va, (uint8_t *)dst + done, NULL, chunk);
    if (err)
      return err;
    if (memchr(dst + done, 0, chunk))
      return 0;
    done += chunk;
  }
  return -ENAMETOOLONG;
}

// The path a *at() call names: absolute, relative to the cwd (AT_FDCWD) or to a directory
// descriptor. Writes PATH_MAX bytes at most into out.
int user_path_at(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, char *out) {
  char *rel = malloc(PATH_MAX);
  int err;
  if (!rel)
    return -ENOMEM;
  if ((err = strncpy_from_user(c, rel, upath, PATH_MAX)))
    goto out;
  if (!rel[0] || rel[0] == '/' || dirfd == AT_FDCWD_) {  // "": AT_EMPTY_PATH decides
    memcpy(out, rel, strlen(rel) + 1);
    goto out;
  }
  struct file *f = fdt_get(&p->fds, dirfd);
  if (!f) {
    err = -EBADF;
  } else if (f->ino->kind != IK_DIR || !f->ino->path) {
    err = -ENOTDIR;
  } else if (snprintf(out, PATH_MAX, "%s/%s", f->ino->path, rel) >= PATH_MAX) {
    err = -ENAMETOOLONG;
  }
out:
  free(rel);
  return err;
}

// Stop the CPU until fd changes, unless it is non-blocking (then the caller's -EAGAIN stands).
static int would_block(struct cpu *c, struct proc *p, int fd) {
  struct file *f = fdt_get(&p->fds, fd);
  if (!f || (f->flags & O_NONBLOCK))
    return 0;
  c->stop = CPU_BLOCKED;
  c->block_fd = fd;
  return 1;
}

// read(2) of at most RW_CHUNK bytes into user memory. compare ksys_read().
static int64_t do_read(struct cpu *c, struct proc *p, int fd, uint64_t buf, uint64_t n,
                       int64_t off) {
  int64_t r;
  if (n > RW_CHUNK)
    n = RW_CHUNK;
  int err = user_range_ok(c, buf, n, 1);
  if (err)
    return err;
  uint8_t *b = malloc(n ? n : 1);
  if (!b)
    return -ENOMEM;
  r = off < 0 ? sfd_read(c->k, p->pid, fd, b, n) : sfd_pread(c->k, p->pid, fd, b, n, off);
  if (r == -EAGAIN && would_block(c, p, fd))
    r = 0;
  else if (r > 0 && (err = copy_to_user(c, buf, b, (uint64_t)r)))
    r = err;
  free(b);
  return r;
}

// write(2) of at most RW_CHUNK bytes from user memory. compare ksys_write(); a pipe without
// readers sends SIGPIPE, whose default action kills.
static int64_t do_write(struct cpu *c, struct proc *p, int fd, uint64_t buf, uint64_t n) {
  if (n > RW_CHUNK)
    n = RW_CHUNK;
  uint8_t *b = malloc(n ? n : 1);
  if (!b)
    return -ENOMEM;
  int64_t r = copy_from_user(c, b, buf, n);
  if (!r)
    r = sfd_write(c->k, p->pid, fd, b, n);
  if (r == -EAGAIN && would_block(c, p, fd)) {
    r = 0;
  } else if (r == -EPIPE && signal_send(c->k, p, SIGPIPE, SI_USER, 0, 0) == SIGQ_TERM) {
    c->stop = CPU_KILLED;  // compare pipe_write(): send_sig(SIGPIPE, current, 0)
    c->status = SIGPIPE;
  }
  free(b);
  return r;
}

static int64_t sys_read(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_read(c, p, (int)a[0], a[1], a[2], -1);
}

static int64_t sys_write(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_write(c, p, (int)a[0], a[1], a[2]);
}

static int64_t sys_pread64(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int64_t)a[3] < 0)
    return -EINVAL;
  return do_read(c, p, (int)a[0], a[1], a[2], (int64_t)a[3]);
}

// readv(2)/writev(2): one segment after another until one comes up short. compare
// do_iter_readv_writev().
static int64_t do_rw_vec(struct cpu *c, struct proc *p, const uint64_t *a, int write) {
  int fd = (int)a[0];
  uint64_t iov = a[1], cnt = a[2];
  int64_t total = 0;
  if (cnt > UIO_MAXIOV)
    return -EINVAL;
  for (uint64_t i = 0; i < cnt; i++) {
    uint64_t seg[2];
    int err = copy_from_user(c, seg, iov + 16 * i, sizeof(seg));
    if (err)
      return total ? total : err;
    if ((int64_t)seg[1] < 0)
      return -EINVAL;
    if (!seg[1])
      continue;
    int64_t r = write ? do_write(c, p, fd, seg[0], seg[1]) : do_read(c, p, fd, seg[0], seg[1], -1);
    if (c->stop == CPU_BLOCKED && total) {
      c->stop = CPU_RUNNING;  // some bytes moved: return them instead of blocking
      return total;
    }
    if (r < 0)
      return total ? total : r;
    total += r;
    if ((uint64_t)r < seg[1])
      break;
  }
  return total;
}

static int64_t sys_readv(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_rw_vec(c, p, a, 0);
}

static int64_t sys_writev(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_rw_vec(c, p, a, 1);
}

static int64_t sys_openat(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path = malloc(PATH_MAX);
  if (!path)
    return -ENOMEM;
  int64_t r = user_path_at(c, p, (int)a[0], a[1], path);
  if (!r)
    r = sfd_open(c->k, p->pid, path, (int)a[2], (unsigned)a[3]);
  free(path);
  return r;
}

static int64_t sys_open(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t b[4] = {(uint64_t)(int64_t)AT_FDCWD_, a[0], a[1], a[2]};
  return sys_openat(c, p, b);
}

static int64_t sys_close(struct cpu *c, struct proc *p, const uint64_t *a) {
  int r = sfd_close(c->k, p->pid, (int)a[0]);
  if (r > 0)
    spawnfd_launched(c, r);  // a builder fd: its embryo was launched
  return r < 0 ? r : 0;
}

static int64_t sys_lseek(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_lseek(c->k, p->pid, (int)a[0], (int64_t)a[1], (int)a[2]);
}

// faccessat2(2)/access(2): the file exists and its mode allows the access (a host file is
// on a read-only file system).
static int64_t do_access(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, int mode) {
  char *path = malloc(PATH_MAX);
  struct file *f = NULL;
  int64_t r;
  if (!path)
    return -ENOMEM;
  if (mode & ~(R_OK | W_OK | X_OK))
    r = -EINVAL;
  else if (!(r = user_path_at(c, p, dirfd, upath, path)) &&
           !(r = file_open(c->k, p, path, O_RDONLY, 0, &f))) {
    if ((mode & X_OK) && !(f->ino->mode & 0111))
      r = -EACCES;
    else if ((mode & W_OK) && f->ino->kind == IK_HOST)
      r = -EROFS;
    file_put(c->k, f);
  }
  free(path);
  return r;
}

static int64_t sys_access(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_access(c, p, AT_FDCWD_, a[0], (int)a[1]);
}

static int64_t sys_faccessat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_access(c, p, (int)a[0], a[1], (int)a[2]);
}

static int64_t sys_getcwd(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t n = strlen(p->cwd) + 1;
  if (a[1] < n)
    return -ERANGE;
  int err = copy_to_user(c, a[0], p->cwd, n);
  return err ? err : (int64_t)n;
}

static int64_t sys_chdir(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path = malloc(PATH_MAX);
  if (!path)
    return -ENOMEM;
  int64_t r = strncpy_from_user(c, path, a[0], PATH_MAX);
  if (!r)
    r = sfd_chdir(c->k, p->pid, path);
  free(path);
  return r;
}

// fcntl(2): descriptor flags, status flags, F_DUPFD. compare do_fcntl().
static int64_t sys_fcntl(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  int fd = (int)a[0], cmd = (int)a[1];
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  switch (cmd) {
  case F_GETFD:
    return p->fds.cloexec[fd] ? FD_CLOEXEC : 0;
  case F_SETFD:
    p->fds.cloexec[fd] = (a[2] & FD_CLOEXEC) != 0;
    return 0;
  case F_GETFL:
    return f->flags;
  case F_SETFL:
    f->flags = (f->flags & ~(O_APPEND | O_NONBLOCK)) | ((int)a[2] & (O_APPEND | O_NONBLOCK));
    return 0;
  case F_DUPFD:
  case F_DUPFD_CLOEXEC: {
    if ((int64_t)a[2] < 0 || a[2] >= FD_MAX)
      return -EINVAL;
    if (f->ino->kind == IK_BUILDER)
      return -EINVAL;
    int n = fdt_alloc(&p->fds, (int)a[2], f, cmd == F_DUPFD_CLOEXEC);
    if (n >= 0)
      f->refs++;
    return n;
  }
  default:
    return -EINVAL;
  }
}

// ioctl(2): no descriptor here is a terminal.
static int64_t sys_ioctl(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  return fdt_get(&p->fds, (int)a[0]) ? -ENOTTY : -EBADF;
}

static int64_t sys_dup(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_dup(c->k, p->pid, (int)a[0]);
}

static int64_t sys_dup2(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_dup2(c->k, p->pid, (int)a[0], (int)a[1]);
}

static int64_t sys_dup3(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_dup3(c->k, p->pid, (int)a[0], (int)a[1], (int)a[2]);
}

static int64_t sys_pipe2(struct cpu *c, struct proc *p, const uint64_t *a) {
  int fds[2];
  int64_t r = sfd_pipe2(c->k, p->pid, (int)a[1], fds);
  if (r)
    return r;
  if ((r = copy_to_user(c, a[0], fds, sizeof(fds)))) {
    sfd_close(c->k, p->pid, fds[0]);
    sfd_close(c->k, p->pid, fds[1]);
  }
  return r;
}

static int64_t sys_pipe(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t b[2] = {a[0], 0};
  return sys_pipe2(c, p, b);
}

static int64_t sys_mmap(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t out;
  int r = sfd_mmap(c->k, p->pid, a[0], a[1], (int)a[2], (int)a[3], (int)a[4], a[5], &out);
  return r < 0 ? r : (int64_t)out;
}

static int64_t sys_munmap(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_munmap(c->k, p->pid, a[0], a[1]);
}

static int64_t sys_mprotect(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_mprotect(c->k, p->pid, a[0], a[1], (int)a[2]);
}

static int64_t sys_mremap(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_mremap(c->k, p->pid, a[0], a[1], a[2], (int)a[3], a[4]);
}

static int64_t sys_madvise(struct cpu *c, struct proc *p, const uint64_t *a) {
  return sfd_madvise(c->k, p->pid, a[0], a[1], (int)a[2]);
}

// brk(2): the break starts past the program's image (the run of mappings that begins at
// the lowest address); it grows with anonymous memory and shrinks by munmap. compare
// Linux's brk(): a request it cannot satisfy returns the current break.
static int64_t sys_brk(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct cpu *g = p->thread;  // the process's break: its first thread keeps it
  struct vma_list *l = &c->mm->vmas;
  if (!g->brk_start) {
    uint64_t end = 0;
    for (uint32_t i = 0; i < l->n && (!i || l->v[i].start == end); i++)
      end = l->v[i].end;
    g->brk_start = g->brk = end ? end : MMAP_MIN_ADDR;
  }
  uint64_t want = a[0], old_top = PAGE_ROUND_UP(g->brk), new_top = PAGE_ROUND_UP(want);
  if (want < g->brk_start || want >= MMAP_BASE)
    return (int64_t)g->brk;
  if (new_top > old_top) {
    uint64_t out;
    if (!vma_range_free(l, old_top, new_top) ||
        sfd_mmap(c->k, p->pid, old_top, new_top - old_top, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &out) < 0)
      return (int64_t)g->brk;
  } else if (new_top < old_top && sfd_munmap(c->k, p->pid, new_top, old_top - new_top) < 0) {
    return (int64_t)g->brk;
  }
  g->brk = want;
  return (int64_t)want;
}

static int64_t sys_arch_prctl(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t v;
  (void)p;
  switch (a[0]) {
  case ARCH_SET_FS:
    if (a[1] >= TASK_SIZE)
      return -EPERM;
    uc_reg_write(c->uc, UC_X86_REG_FS_BASE, &a[1]);
    return 0;
  case ARCH_GET_FS:
    uc_reg_read(c->uc, UC_X86_REG_FS_BASE, &v);
    return copy_to_user(c, a[1], &v, sizeof(v));
  default:
    return -EINVAL;
  }
}

static int64_t sys_getpid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->pid;
}

static int64_t sys_getppid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->ppid;
}

static int64_t sys_getuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->cred.uid;
}

static int64_t sys_geteuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->cred.euid;
}

static int64_t sys_getgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->cred.gid;
}

static int64_t sys_getegid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->cred.egid;
}

// getresuid(2)/getresgid(2): three ids out.
static int64_t do_getres(struct cpu *c, const uint64_t *a, const uint32_t *ids) {
  for (int i = 0; i < 3; i++) {
    int err = copy_to_user(c, a[i], &ids[i], sizeof(uint32_t));
    if (err)
      return err;
  }
  return 0;
}

static int64_t sys_getresuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint32_t ids[3] = {p->cred.uid, p->cred.euid, p->cred.suid};
  return do_getres(c, a, ids);
}

static int64_t sys_getresgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint32_t ids[3] = {p->cred.gid, p->cred.egid, p->cred.sgid};
  return do_getres(c, a, ids);
}

// setresuid(2)/setresgid(2) through the kernel's credential rules (-1: unchanged).
static int64_t do_setres(struct cpu *c, struct proc *p, const uint64_t *a, int gid) {
  uint32_t ids[6];
  for (int i = 0; i < 6; i++)
    ids[i] = NO_ID;
  for (int i = 0; i < 3; i++)
    ids[(gid ? 3 : 0) + i] = (uint32_t)a[i];
  return sfd_setcred(c->k, p->pid, ids);
}

static int64_t sys_setresuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setres(c, p, a, 0);
}

static int64_t sys_setresgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setres(c, p, a, 1);
}

// setuid(2)/setgid(2): all three ids for a privileged caller, else the effective one.
static int64_t do_setid(struct cpu *c, struct proc *p, uint64_t id, int gid) {
  uint64_t b[3] = {NO_ID, id, NO_ID};
  if (p->cred.euid == 0)
    b[0] = b[2] = id;
  return do_setres(c, p, b, gid);
}

static int64_t sys_setuid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setid(c, p, a[0], 0);
}

static int64_t sys_setgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_setid(c, p, a[0], 1);
}

static int64_t sys_getgroups(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)p;
  return (int)a[0] < 0 ? -EINVAL : 0;
}

static int64_t sys_exit_group(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)p;
  spawn_window_close(c, 1);  // a child that exits without exec'ing ends its window too
  c->stop = CPU_EXITED;
  c->status = (int)(a[0] & 0xff);
  return 0;
}

// The thread's clear_child_tid word (CLONE_CHILD_CLEARTID, set_tid_address) is zeroed and
// one waiter on it woken, as the thread goes: pthread_join waits there. A fault is
// ignored. compare mm_release().
static void thread_clear_tid(struct cpu *c) {
  uint32_t zero = 0;
  struct futex_key key;
  if (!c->clear_child_tid || copy_to_user(c, c->clear_child_tid, &zero, sizeof(zero)) ||
      futex_key_of(c, c->clear_child_tid, 0, &key))
    return;
  futex_wake(c->k, &key, 1, 0xffffffffU);
}

// exit(2): this thread ends; the process with it when no other thread runs (then it is
// exit_group). compare SYSCALL_DEFINE1(exit) -> do_exit().
static int64_t sys_exit(struct cpu *c, struct proc *p, const uint64_t *a) {
  if (cpu_thread_alone(c))
    return sys_exit_group(c, p, a);
  futex_exit_robust(c);  // compare exit_mm() -> mm_release(): robust locks, then the tid
  thread_clear_tid(c);
  c->stop = CPU_THREAD_EXITED;
  c->status = (int)(a[0] & 0xff);
  return 0;
}

// set_tid_address(2): where the thread's id is cleared when it exits; returns its tid.
static int64_t sys_set_tid_address(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)p;
  c->clear_child_tid = a[0];
  return c->tid;
}

static int64_t sys_gettid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)p;
  (void)a;
  return c->tid;
}

// sched_yield(2): the slice ends here, so another thread runs (compare do_sched_yield()).
static int64_t sys_sched_yield(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)p;
  (void)a;
  c->stop = CPU_SLICE;
  return 0;
}

// close_range(first, last, flags): close them, or with CLOSE_RANGE_CLOEXEC mark them
// close-on-exec; CLOSE_RANGE_UNSHARE changes nothing (no descriptor table is shared).
// compare Linux __close_range().
static int64_t sys_close_range(struct cpu *c, struct proc *p, const uint64_t *a) {
  unsigned first = (unsigned)a[0], last = (unsigned)a[1];
  if ((uint32_t)a[2] & ~(uint32_t)(CLOSE_RANGE_UNSHARE_ | CLOSE_RANGE_CLOEXEC_) || first > last)
    return -EINVAL;
  if (!(a[2] & CLOSE_RANGE_CLOEXEC_))
    return sfd_close_range(c->k, p->pid, first, last);
  for (uint64_t fd = first; fd < (uint64_t)p->fds.cap && fd <= last; fd++)
    if (p->fds.fd[fd])
      p->fds.cloexec[fd] = 1;
  return 0;
}

// getpeername(2), getsockname(2): there are no sockets (socket(2) is -ENOSYS, as a kernel
// built without networking), so a descriptor is -ENOTSOCK and a bad one -EBADF. compare
// sockfd_lookup_light(). (bash asks of its stdin, to know if a remote shell daemon ran it.)
static int64_t sys_getpeername(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  return fdt_get(&p->fds, (int)a[0]) ? -ENOTSOCK : -EBADF;
}

static int64_t sys_enosys(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)p;
  (void)a;
  return -ENOSYS;
}

// prlimit64(2) on itself: the limits this kernel enforces, infinity for the rest; new
// limits are accepted and not enforced.
static int64_t sys_prlimit64(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t lim[2] = {~0ULL, ~0ULL};
  if (a[0] && (int)a[0] != p->pid)
    return -ESRCH;
  if (a[1] >= 16)
    return -EINVAL;
  if (a[1] == 3)  // RLIMIT_STACK
    lim[0] = 8ULL << 20;
  if (a[1] == 7)  // RLIMIT_NOFILE
    lim[0] = lim[1] = FD_MAX;
  return a[3] ? copy_to_user(c, a[3], lim, sizeof(lim)) : 0;
}

// getrandom(2): a deterministic generator per process (the simulation stays reproducible).
static int64_t sys_getrandom(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint8_t b[256];
  uint64_t n = a[1] > sizeof(b) ? sizeof(b) : a[1];
  (void)p;
  for (uint64_t i = 0; i < n; i++) {
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    b[i] = (uint8_t)c->rng;
  }
  int err = copy_to_user(c, a[0], b, n);
  return err ? err : (int64_t)n;
}

static int64_t sys_uname(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct utsname u;
  (void)p;
  if (uname(&u))
    return -EFAULT;
  snprintf(u.nodename, sizeof(u.nodename), "spawnfd");
  return copy_to_user(c, a[0], &u, sizeof(u));
}

static int64_t sys_clock_gettime(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct timespec ts;
  (void)p;
  if (a[0] > 11 || clock_gettime((clockid_t)a[0], &ts))
    return -EINVAL;
  int64_t v[2] = {ts.tv_sec, ts.tv_nsec};
  return copy_to_user(c, a[1], v, sizeof(v));
}

static int64_t sys_gettimeofday(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct timespec ts;
  (void)p;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t v[2] = {ts.tv_sec, ts.tv_nsec / 1000};
  return a[0] ? copy_to_user(c, a[0], v, sizeof(v)) : 0;
}

static int64_t sys_time(struct cpu *c, struct proc *p, const uint64_t *a) {
  int64_t t = (int64_t)time(NULL);
  (void)p;
  int err = a[0] ? copy_to_user(c, a[0], &t, sizeof(t)) : 0;
  return err ? err : t;
}

static int64_t sys_umask(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)p;
  (void)a;
  return 022;
}

// The table, by x86-64 number (compare syscall_64.tbl). Absent: -ENOSYS, counted.
static const syscall_fn syscall_table[SFD_NR_SYSCALLS] = {
    [0] = sys_read,           [1] = sys_write,           [2] = sys_open,
    [3] = sys_close,          [4] = sys_stat,            [5] = sys_fstat,
    [6] = sys_lstat,          [7] = sys_poll,            [8] = sys_lseek,
    [9] = sys_mmap,
    [10] = sys_mprotect,      [11] = sys_munmap,         [12] = sys_brk,
    [13] = sys_rt_sigaction,  [14] = sys_rt_sigprocmask, [15] = sys_rt_sigreturn,
    [16] = sys_ioctl,
    [17] = sys_pread64,       [19] = sys_readv,          [20] = sys_writev,
    [21] = sys_access,        [22] = sys_pipe,           [23] = sys_select,
    [24] = sys_sched_yield,   [25] = sys_mremap,         [28] = sys_madvise,
    [32] = sys_dup,           [33] = sys_dup2,           [34] = sys_pause,
    [35] = sys_nanosleep,
    [39] = sys_getpid,        [51] = sys_getpeername,    [52] = sys_getpeername,
    [56] = sys_clone,         [57] = sys_fork,           [58] = sys_vfork,
    [59] = sys_execve,        [60] = sys_exit,     [61] = sys_wait4,
    [62] = sys_kill,          [63] = sys_uname,
    [72] = sys_fcntl,         [79] = sys_getcwd,         [80] = sys_chdir,
    [82] = sys_rename,        [83] = sys_mkdir,          [84] = sys_rmdir,
    [87] = sys_unlink,        [89] = sys_readlink,       [95] = sys_umask,
    [96] = sys_gettimeofday,  [98] = sys_getrusage,      [99] = sys_sysinfo,
    [102] = sys_getuid,       [104] = sys_getgid,        [105] = sys_setuid,
    [106] = sys_setgid,       [107] = sys_geteuid,       [108] = sys_getegid,
    [109] = sys_setpgid,
    [110] = sys_getppid,      [111] = sys_getpgrp,       [112] = sys_setsid,
    [115] = sys_getgroups,
    [117] = sys_setresuid,    [118] = sys_getresuid,     [119] = sys_setresgid,
    [120] = sys_getresgid,    [121] = sys_getpgid,       [124] = sys_getsid,
    [130] = sys_rt_sigsuspend, [131] = sys_sigaltstack,
    [137] = sys_statfs,       [138] = sys_fstatfs,       [158] = sys_arch_prctl,
    [186] = sys_gettid,       [191] = sys_getxattr,      [192] = sys_lgetxattr,
    [193] = sys_fgetxattr,    [200] = sys_tkill,        [201] = sys_time,          [202] = sys_futex,
    [204] = sys_sched_getaffinity,                       [217] = sys_getdents64,
    [218] = sys_set_tid_address,                         [221] = sys_fadvise64,
    [228] = sys_clock_gettime,                           [230] = sys_clock_nanosleep,
    [231] = sys_exit_group,   [234] = sys_tgkill,        [247] = sys_waitid,
    [257] = sys_openat,       [258] = sys_mkdirat,
    [262] = sys_newfstatat,   [263] = sys_unlinkat,      [264] = sys_renameat,
    [267] = sys_readlinkat,   [269] = sys_faccessat,     [270] = sys_pselect6,
    [271] = sys_ppoll,        [273] = sys_set_robust_list, [274] = sys_get_robust_list,
    [292] = sys_dup3,         [293] = sys_pipe2,         [302] = sys_prlimit64,
    [316] = sys_renameat2,    [318] = sys_getrandom,     [332] = sys_statx,
    [322] = sys_execveat,     [334] = sys_enosys,        [435] = sys_clone3,       [436] = sys_close_range,
    [424] = sys_pidfd_send_signal,                       [439] = sys_faccessat,
};

// The trace buffer (api.h sfd_trace_start): one finished call.
static void trace_record(struct cpu *c, uint64_t nr, const uint64_t *a, int64_t r) {
  struct kernel *k = c->k;
  if (!k->trace)
    return;
  if (k->trace_len == k->trace_cap) {
    k->trace_lost++;
    return;
  }
  struct sfd_trace_rec *t = &k->trace[k->trace_len++];
  t->pid = c->tid;
  t->nr = (int32_t)nr;
  t->ret = r;
  memcpy(t->args, a, sizeof(t->args));
}

int sfd_trace_start(struct kernel *k, uint32_t cap) {
  if (k->panicked)
    return -KPANIC;
  struct sfd_trace_rec *t = NULL;
  if (cap && !(t = calloc(cap, sizeof(*t))))
    return -ENOMEM;
  free(k->trace);
  k->trace = t;
  k->trace_cap = cap;
  k->trace_len = 0;
  k->trace_lost = 0;
  return 0;
}

int sfd_trace_read(struct kernel *k, struct sfd_trace_rec *out, uint32_t n, uint64_t *lost) {
  if (k->panicked)
    return -KPANIC;
  uint32_t m = n < k->trace_len ? n : k->trace_len;
  if (m) {
    memcpy(out, k->trace, m * sizeof(*out));
    memmove(k->trace, k->trace + m, (k->trace_len - m) * sizeof(*out));
    k->trace_len -= m;
  }
  *lost = k->trace_lost;
  return (int)m;
}

// Run system call nr for c's process; the result, or -errno.
static int64_t syscall_do(struct cpu *c, uint64_t nr, const uint64_t *a) {
  struct proc *p = proc_get(c->k, c->pid);
  if (!p)
    return -ESRCH;
  int spawnfd_nr = spawnfd_syscall_nr(nr);  // the fd model's private range (sys_spawnfd.c)
  if (!spawnfd_nr && (nr >= SFD_NR_SYSCALLS || !syscall_table[nr])) {
    c->k->st.syscalls_unknown++;
    c->cnt->syscalls_unknown++;
    return -ENOSYS;
  }
  c->k->syscall_pid = p->pid;  // its own vfork does not stop it (ENTER)
  int64_t r = spawnfd_nr ? sys_spawnfd(c, p, nr, a) : syscall_table[nr](c, p, a);
  c->k->syscall_pid = 0;
  return r;
}

// Finish a call: the result in rax, or park it to run again (blocked, asleep).
static void syscall_finish(struct cpu *c, uint64_t nr, const uint64_t *a, int64_t r,
                           int prev_stop) {
  if (c->stop == CPU_BLOCKED || c->stop == CPU_SLEEP || c->stop == CPU_WAIT ||
      c->stop == CPU_POLL || c->stop == CPU_FUTEX) {
    c->pending = 1;
    c->pnr = nr;
    memcpy(c->pargs, a, sizeof(c->pargs));
    return;
  }
  if (c->trace)  // SPAWNFD_STRACE=1: strace-like lines on the host's stderr
    fprintf(stderr, "[%d] %lu(%#lx, %#lx, %#lx, %#lx, %#lx, %#lx) = %ld\n", c->tid, nr, a[0],
            a[1], a[2], a[3], a[4], a[5], r);
  trace_record(c, nr, a, r);
  uc_reg_write(c->uc, UC_X86_REG_RAX, &r);
  if (c->stop == CPU_RUNNING)
    c->stop = prev_stop;  // a slice that ended on this instruction still ends
}

// The syscall instruction trapped: dispatch by rax. compare do_syscall_64().
void syscall_dispatch(struct cpu *c) {
  int ids[7] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX,
                UC_X86_REG_R10, UC_X86_REG_R8,  UC_X86_REG_R9};
  uint64_t v[7];
  void *ptrs[7];
  for (int i = 0; i < 7; i++)
    ptrs[i] = &v[i];
  uc_reg_read_batch(c->uc, ids, ptrs, 7);
  int prev = c->stop;
  c->stop = CPU_RUNNING;
  c->k->st.syscalls++;
  c->cnt->syscalls++;
  if (v[0] < SFD_NR_SYSCALLS)
    c->k->st.syscalls_by_nr[v[0]]++;
  int64_t r = syscall_do(c, v[0], v + 1);
  syscall_finish(c, v[0], v + 1, r, prev);
  if (c->stop == CPU_RUNNING && thread_signal_pending(c))
    c->resched = 1;  // a signal of its own is taken before the next instruction
  if (c->stop != CPU_RUNNING || c->resched)
    uc_emu_stop(c->uc);
}

// Run the call that blocked again (the run loop resumes).
void syscall_resume(struct cpu *c) {
  uint64_t a[6];
  memcpy(a, c->pargs, sizeof(a));
  int64_t r = syscall_do(c, c->pnr, a);
  syscall_finish(c, c->pnr, a, r, CPU_RUNNING);
}
