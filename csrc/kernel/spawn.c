// spawn.c — the fd model. process_create() gives its caller a builder fd to an embryo: a
// process with zero threads, an empty address space and an empty descriptor table. Through
// the builder fd the caller maps files or anonymous memory into the embryo, writes and reads
// its memory, installs descriptors from its own table or opens files straight into the
// embryo's, sets its cwd, credentials (dropping privileges only) and start registers.
// Closing the builder fd starts the first thread, so nobody ever holds a manipulating handle
// to a running process. A second, weaker handle, the wait handle (like a pidfd), can only
// wait for the process and signal it.
//
// The builder fd is the one handle to the embryo: close-on-exec, not inherited by fork or
// vfork, refused by dup/dup2/dup3, and never installed into any table (into its own embryo
// it would be a cycle that never launches). An embryo whose creator exits or execs without
// closing the builder dies of SIGKILL (a zombie its wait handle reports), its memory and
// descriptors released at once. Credentials come from the creator and can only be dropped:
// setuid bits are honoured by a kernel-side exec only, never through a builder.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "kernel/kernel.h"

#define ANON_INODE_MINOR 0xe  // the anon_inode filesystem's device, as in Linux maps

// The process a handle's inode refers to, or NULL once it has been reaped (a reused pid is a
// different process: serials differ).
struct proc *proc_by_handle(struct kernel *k, const struct inode *ino) {
  struct proc *p = proc_get_any(k, ino->target);
  return (p && p->serial == ino->target_serial) ? p : NULL;
}

// A new handle inode for target (refs 0: the file takes its reference). NULL: out of memory.
struct inode *handle_inode_new(struct kernel *k, enum inode_kind kind, struct proc *target) {
  struct inode *ino = calloc(1, sizeof(*ino));
  if (!ino)
    return NULL;
  ino->kind = kind;
  ino->mode = S_IFREG | 0600;
  ino->host_fd = -1;
  ino->ino = ++k->next_ino;
  ino->dev_minor = ANON_INODE_MINOR;
  ino->target = target->pid;
  ino->target_serial = target->serial;
  return ino;
}

// An open file (refs 1) on a new handle inode.
static struct file *handle_file_new(struct kernel *k, enum inode_kind kind, struct proc *t) {
  struct file *f = calloc(1, sizeof(*f));
  struct inode *ino = f ? handle_inode_new(k, kind, t) : NULL;
  if (!ino) {
    free(f);
    return NULL;
  }
  f->ino = ino;
  f->flags = O_RDWR;
  f->refs = 1;
  inode_get(ino);
  return f;
}

// Start the embryo behind a builder file (its holder closed it). Returns the launched pid,
// or 0 when there is nothing to launch (the embryo was killed or reaped meanwhile).
int builder_launch(struct kernel *k, struct file *f) {
  struct proc *e = proc_by_handle(k, f->ino);
  if (!e || e->state != PS_EMBRYO)
    return 0;
  e->state = PS_RUNNING;
  e->forknoexec = 0;   // it runs a new program: as after an exec (setpgid: EACCES)
  f->ino->target = 0;  // launched: the file no longer refers to anything
  return e->pid;
}

// The last reference to a builder file is gone without a launch (its holder exited or
// exec'd, or the builder was aborted): the embryo dies of SIGKILL.
void builder_release(struct kernel *k, struct inode *ino) {
  struct proc *e = proc_by_handle(k, ino);
  ino->target = 0;
  if (e && e->state == PS_EMBRYO)
    proc_exit(k, e, SIGKILL);
}

// Resolve a caller and its builder fd to the embryo. -EBADF: not an open builder fd;
// -ESRCH: the process behind it is no embryo any more (launched, killed, reaped).
static int builder_embryo(struct kernel *k, struct proc *p, int bfd, struct proc **embryo) {
  struct file *f = fdt_get(&p->fds, bfd);
  if (!f || f->ino->kind != IK_BUILDER)
    return -EBADF;
  struct proc *e = proc_by_handle(k, f->ino);
  if (!e || e->state != PS_EMBRYO)
    return -ESRCH;
  *embryo = e;
  return 0;
}

// ENTER for builder operations: the caller p, and e, the embryo behind its builder fd.
#define BUILDER_ENTER(k, pid, bfd, p, e)      \
  do {                                        \
    ENTER(k, pid, p);                         \
    int berr_ = builder_embryo(k, p, bfd, &(e)); \
    if (berr_)                                \
      return berr_;                           \
  } while (0)

// Undo a process_create that failed after the embryo existed: nothing was installed.
static void create_rollback(struct kernel *k, struct proc *e, struct file *bf,
                            struct file *wf) {
  if (bf) {
    bf->ino->target = 0;  // never launched, never released: just freed with the embryo
    file_put(k, bf);
  }
  if (wf)
    file_put(k, wf);
  proc_free(k, e);
}

// process_create(2): an embryo child of the caller with the caller's credentials and cwd;
// out[0] the builder fd, out[1] the wait handle (both close-on-exec), out[2] the child's pid.
int sfd_process_create(struct kernel *k, int pid, int flags, int *out) {
  struct proc *p, *e;
  ENTER(k, pid, p);
  if (flags)
    return -EINVAL;
  int err = proc_new(k, pid, NULL, &e);
  if (err)
    return LEAVE(k, err);
  e->state = PS_EMBRYO;
  e->cred = p->cred;
  memcpy(e->cwd, p->cwd, sizeof(e->cwd));
  struct file *bf = handle_file_new(k, IK_BUILDER, e);
  struct file *wf = bf ? handle_file_new(k, IK_PIDFD, e) : NULL;
  if (!wf) {
    create_rollback(k, e, bf, NULL);
    return -ENOMEM;
  }
  int bfd = fdt_alloc(&p->fds, 0, bf, 1);
  int wfd = bfd < 0 ? bfd : fdt_alloc(&p->fds, 0, wf, 1);
  if (wfd < 0) {
    if (bfd >= 0)
      p->fds.fd[bfd] = NULL;
    create_rollback(k, e, bf, wf);
    return wfd;
  }
  out[0] = bfd;
  out[1] = wfd;
  out[2] = e->pid;
  return LEAVE(k, 0);
}

// mmap(2) into the embryo; fd names a file in the caller's table.
int sfd_spawn_mmap(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len, int prot,
                   int flags, int fd, uint64_t off, uint64_t *out) {
  struct proc *p, *e;
  struct file *f = NULL;
  BUILDER_ENTER(k, pid, bfd, p, e);
  if (off & (PAGE_SIZE - 1))
    return -EINVAL;
  if (!(flags & MAP_ANONYMOUS) && (!(f = fdt_get(&p->fds, fd)) || (f->flags & O_PATH)))
    return -EBADF;
  return LEAVE(k, mm_mmap(e, addr, len, prot, flags, f, off, out));
}

int sfd_spawn_munmap(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  return LEAVE(k, mm_munmap(e->mm, addr, len));
}

// The address step v names, given the bias so far. -EINVAL if it overflows.
static int mapv_addr(const struct sfd_mapv *v, uint64_t bias, uint64_t *addr) {
  if (v->rel != SFD_MAPV_REL) {
    *addr = v->rel == SFD_MAPV_BIAS ? 0 : v->addr;
    return 0;
  }
  return __builtin_add_overflow(bias, v->addr, addr) ? -EINVAL : 0;
}

// Run one step of sfd_spawn_mmapv on embryo e (files from the creator p's table).
static int mapv_step(struct proc *p, struct proc *e, struct sfd_mapv *v, uint64_t *bias) {
  uint64_t addr;
  int err = mapv_addr(v, *bias, &addr);
  if (err)
    return err;
  switch (v->op) {
  case SFD_MAPV_MMAP: {
    struct file *f = NULL;
    if (v->off & (PAGE_SIZE - 1))
      return -EINVAL;
    if (!(v->flags & MAP_ANONYMOUS) && (!(f = fdt_get(&p->fds, v->fd)) || (f->flags & O_PATH)))
      return -EBADF;
    if ((err = mm_mmap(e, addr, v->len, v->prot, v->flags, f, v->off, &v->out)))
      return err;
    if (v->rel == SFD_MAPV_BIAS)
      *bias = v->out - v->addr;  // wraps as the loader's own arithmetic would
    return 0;
  }
  case SFD_MAPV_MUNMAP:
    return mm_munmap(e->mm, addr, v->len);
  case SFD_MAPV_ZERO: {
    static const uint8_t zero[PAGE_SIZE];
    if (v->len > PAGE_SIZE)
      return -EINVAL;
    return mm_access(e->mm, addr, NULL, zero, v->len);
  }
  }
  return -EINVAL;
}

// A user-space ELF loader's mmap, munmap and padzero steps on the embryo in one call, in
// order. Only the first step may be SFD_MAPV_BIAS; REL steps are relative to the bias it
// sets. On failure every mapping this call made is unmapped again (the step that failed is
// *failed) and the error returned; otherwise *bias is the bias and each MMAP step's out set.
int sfd_spawn_mmapv(struct kernel *k, int pid, int bfd, struct sfd_mapv *v, uint32_t n,
                    uint64_t *bias, uint32_t *failed) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  if (n > SFD_MAPV_MAX)
    return -EINVAL;
  *bias = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (v[i].rel == SFD_MAPV_BIAS && (i || v[i].op != SFD_MAPV_MMAP))
      return -EINVAL;
    if (v[i].rel < SFD_MAPV_ABS || v[i].rel > SFD_MAPV_BIAS)
      return -EINVAL;
  }
  for (uint32_t i = 0; i < n; i++) {
    int err = mapv_step(p, e, &v[i], bias);
    if (err) {
      *failed = i;
      while (i--)  // undo: nothing of this call stays mapped
        if (v[i].op == SFD_MAPV_MMAP)
          mm_munmap(e->mm, v[i].out, v[i].len);
      return LEAVE(k, err);
    }
  }
  return LEAVE(k, 0);
}

int sfd_spawn_mprotect(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len,
                       int prot) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  return LEAVE(k, mm_mprotect(e->mm, addr, len, prot));
}

// Read (rbuf) or write (wbuf) the embryo's memory, through its fault path like
// process_vm_readv/writev (a write to read-only memory is -EFAULT).
int sfd_spawn_access(struct kernel *k, int pid, int bfd, uint64_t addr, uint8_t *rbuf,
                     const uint8_t *wbuf, uint64_t len) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  return LEAVE(k, mm_access(e->mm, addr, rbuf, wbuf, len));
}

// Put f at descriptor fd of the embryo (-1: the lowest free one), closing what was there.
static int embryo_install(struct kernel *k, struct proc *e, struct file *f, int fd,
                          int cloexec) {
  if (fd < 0)
    return fdt_alloc(&e->fds, 0, f, cloexec);
  if (fd >= FD_MAX)
    return -EBADF;
  if (fdt_get(&e->fds, fd))
    fdt_close(k, &e->fds, fd);
  int got = fdt_alloc(&e->fds, fd, f, cloexec);
  return got == fd ? fd : (got < 0 ? got : -EBADF);
}

// Install the caller's descriptor src as the embryo's dst (-1: lowest free); flags: O_CLOEXEC.
// A builder fd can be installed nowhere (-EINVAL): it is the one handle to its embryo.
int sfd_spawn_install_fd(struct kernel *k, int pid, int bfd, int src, int dst, int flags) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  struct file *f = fdt_get(&p->fds, src);
  if (!f || dst < -1)
    return -EBADF;
  if (flags & ~O_CLOEXEC)
    return -EINVAL;
  if (f->ino->kind == IK_BUILDER)
    return -EINVAL;
  f->refs++;
  int fd = embryo_install(k, e, f, dst, flags & O_CLOEXEC);
  if (fd < 0)
    file_put(k, f);
  return LEAVE(k, fd);
}

// open(2) performed for the embryo (its cwd and credentials), the result installed as its
// descriptor dst (-1: lowest free). Returns the descriptor in the embryo.
int sfd_spawn_open(struct kernel *k, int pid, int bfd, const char *path, int flags,
                   unsigned mode, int dst) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  if (dst < -1 || dst >= FD_MAX)
    return -EBADF;
  struct file *f;
  int err = file_open(k, e, path, flags, mode, &f);
  if (err)
    return LEAVE(k, err);
  int fd = embryo_install(k, e, f, dst, flags & O_CLOEXEC);
  if (fd < 0)
    file_put(k, f);
  return LEAVE(k, fd);
}

int sfd_spawn_chdir(struct kernel *k, int pid, int bfd, const char *path) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  return LEAVE(k, proc_chdir(k, e, path));
}

// setresuid + setresgid for the embryo (see cred_change): privileges can be dropped, never
// gained.
int sfd_spawn_set_creds(struct kernel *k, int pid, int bfd, const uint32_t *ids) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  return cred_change(&e->cred, ids);
}

int sfd_spawn_set_regs(struct kernel *k, int pid, int bfd, uint64_t rip, uint64_t rsp) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  e->rip = rip;
  e->rsp = rsp;
  return 0;
}

// The SysV initial stack, written into the embryo by the code execve uses (a [stack] vma,
// the strings, AT_RANDOM, argc/argv/envp/auxv with the embryo's credentials); sets the
// registers: rip = start, rsp = the new stack pointer.
int sfd_spawn_setup_stack(struct kernel *k, int pid, int bfd, const char *execfn,
                          const char *strings, uint64_t len, int argc, int envc,
                          uint64_t seed, const uint64_t *aux, uint64_t start, uint64_t *rsp) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  struct stack_aux a = {.phdr = aux[0], .phnum = aux[1], .base = aux[2], .entry = aux[3]};
  uint64_t sp;
  int err = exec_build_stack(e, execfn, strings, len, argc, envc, seed, &a, &sp);
  if (!err) {
    e->rip = start;
    e->rsp = *rsp = sp;
  }
  return LEAVE(k, err);
}

// Map [addr, addr + len) of process src into the embryo copy-on-write at the same
// addresses, sharing last-level tables of whole 2 MiB chunks: a zygote without fork. src
// must be the caller or one of its children with the same credentials.
int sfd_spawn_map_cow(struct kernel *k, int pid, int bfd, int src, uint64_t addr,
                      uint64_t len) {
  struct proc *p, *e;
  BUILDER_ENTER(k, pid, bfd, p, e);
  struct proc *s = proc_get(k, src);
  if (!s)
    return -ESRCH;
  if (s != p && (s->ppid != p->pid || s->cred.uid != p->cred.uid))
    return -EPERM;
  if (s->vfork_child)
    return -EAGAIN;
  uint64_t end = addr + len;
  if (!PAGE_ALIGNED(addr) || !PAGE_ALIGNED(len) || !len || end < addr || end > TASK_SIZE)
    return -EINVAL;
  if (!vma_range_free(&e->mm->vmas, addr, end))
    return -EEXIST;
  return LEAVE(k, mm_map_cow(e->mm, s->mm, addr, end));
}

// close(2) restricted to a handle (builder fd or wait handle) that refers to pid: what a
// library closes on its user's behalf, never a descriptor the number was reused for.
// Returns what sfd_close returns (the launched pid for a builder fd); -EBADF otherwise.
int sfd_close_handle(struct kernel *k, int pid, int fd, int target) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f || (f->ino->kind != IK_BUILDER && f->ino->kind != IK_PIDFD) ||
      f->ino->target != target || !target)
    return -EBADF;
  return sfd_close(k, pid, fd);
}

// Wait-handle helpers: the process (any state) a wait handle or builder refers to.
int sfd_handle_target(struct kernel *k, int pid, int fd, int *target, int *state) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f || (f->ino->kind != IK_PIDFD && f->ino->kind != IK_BUILDER))
    return -EBADF;
  struct proc *t = proc_by_handle(k, f->ino);
  if (!t)
    return -ESRCH;
  *target = t->pid;
  *state = (int)t->state;
  return 0;
}

// The credentials of a live process or embryo: uid, euid, suid, gid, egid, sgid.
int sfd_getcred(struct kernel *k, int pid, uint32_t *ids) {
  struct proc *p = proc_get_any(k, pid);
  if (k->panicked)
    return -KPANIC;
  if (!p || p->state == PS_ZOMBIE)
    return -ESRCH;
  const struct cred *c = &p->cred;
  uint32_t v[6] = {c->uid, c->euid, c->suid, c->gid, c->egid, c->sgid};
  memcpy(ids, v, sizeof(v));
  return 0;
}
