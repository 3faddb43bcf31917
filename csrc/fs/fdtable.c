// fdtable.c — open file descriptions (struct file) and per-process descriptor tables, and
// the descriptor system calls: open, close, read, write, pread, lseek, ftruncate, dup, dup3.
// A struct file is shared by dup'ed descriptors (one offset, as POSIX requires).
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/fs.h"
#include "kernel/kernel.h"  // up: ENTER; builder_release/launch as the builder's f_op->release

// Grow t to hold at least n descriptors.
static int fdt_grow(struct fdtable *t, int n) {
  if (n <= t->cap)
    return 0;
  int cap = t->cap ? t->cap : 16;
  while (cap < n)
    cap *= 2;
  struct file **fd = realloc(t->fd, (size_t)cap * sizeof(*fd));
  if (!fd)
    return -ENOMEM;
  t->fd = fd;
  uint8_t *ce = realloc(t->cloexec, (size_t)cap);
  if (!ce)
    return -ENOMEM;
  t->cloexec = ce;
  memset(t->fd + t->cap, 0, (size_t)(cap - t->cap) * sizeof(*fd));
  memset(t->cloexec + t->cap, 0, (size_t)(cap - t->cap));
  t->cap = cap;
  return 0;
}

// Install f at the lowest free descriptor >= lowest; the table takes the caller's reference.
// Returns the descriptor, -EMFILE when the table is full.
int fdt_alloc(struct fdtable *t, int lowest, struct file *f, int cloexec) {
  int fd = lowest;
  while (fd < t->cap && t->fd[fd])
    fd++;
  if (fd >= FD_MAX)
    return -EMFILE;
  int err = fdt_grow(t, fd + 1);
  if (err)
    return err;
  t->fd[fd] = f;
  t->cloexec[fd] = (uint8_t)!!cloexec;
  return fd;
}

// The file behind fd, or NULL.
struct file *fdt_get(struct fdtable *t, int fd) {
  return (fd >= 0 && fd < t->cap) ? t->fd[fd] : NULL;
}

// Drop a reference on an open file description.
void file_put(struct kernel *k, struct file *f) {
  if (--f->refs)
    return;
  if (f->ino->kind == IK_PIPE)
    pipe_release(f);
  if (f->ino->kind == IK_BUILDER)
    builder_release(k, f->ino);
  inode_put(k, f->ino);
  free(f);
}

// Close fd. -EBADF if it is not open.
int fdt_close(struct kernel *k, struct fdtable *t, int fd) {
  struct file *f = fdt_get(t, fd);
  if (!f)
    return -EBADF;
  t->fd[fd] = NULL;
  file_put(k, f);
  return 0;
}

// Close everything and free the table.
void fdt_fini(struct kernel *k, struct fdtable *t) {
  for (int fd = 0; fd < t->cap; fd++)
    if (t->fd[fd])
      fdt_close(k, t, fd);
  free(t->fd);
  free(t->cloexec);
  memset(t, 0, sizeof(*t));
}

#define OPEN_KNOWN (O_ACCMODE | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_APPEND | O_NONBLOCK | \
                    O_DSYNC | O_SYNC | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_LARGEFILE |   \
                    O_NOATIME | O_PATH | O_DIRECT | O_ASYNC)

// Open path for process p (its cwd): a new open file description (refs 1) in *out.
int file_open(struct kernel *k, struct proc *p, const char *path, int flags, unsigned mode,
              struct file **out) {
  char norm[PATH_MAX];
  struct inode *ino;
  if (flags & ~OPEN_KNOWN)
    flags &= OPEN_KNOWN;  // open(2) ignores unknown flags
  if ((flags & O_ACCMODE) == O_ACCMODE)
    return -EINVAL;
  int err = path_normalise(p->cwd, path, norm, sizeof(norm));
  if (!err)
    err = vfs_lookup(k, norm, flags, mode, &ino);
  if (err)
    return err;
  if (ino->uid == NO_OWNER) {  // just created: owned by the creator's effective ids
    ino->uid = p->cred.euid;
    ino->gid = p->cred.egid;
  }
  if ((flags & O_TRUNC) && ino->kind == IK_TMPFS && (flags & O_ACCMODE) != O_RDONLY &&
      (err = inode_truncate(k, ino, 0)))
    return err;
  struct file *f = calloc(1, sizeof(*f));
  if (!f)
    return -ENOMEM;
  f->ino = ino;
  f->flags = flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
  f->refs = 1;
  inode_get(ino);
  *out = f;
  return 0;
}

// open(2) in process p. Returns the new descriptor.
static int do_open(struct kernel *k, struct proc *p, const char *path, int flags,
                   unsigned mode) {
  struct file *f;
  int err = file_open(k, p, path, flags, mode, &f);
  if (err)
    return err;
  int fd = fdt_alloc(&p->fds, 0, f, flags & O_CLOEXEC);
  if (fd < 0)
    file_put(k, f);
  return fd;
}

int sfd_open(struct kernel *k, int pid, const char *path, int flags, unsigned mode) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, do_open(k, p, path, flags, mode));
}

// close(2). Closing a builder fd launches its embryo: returns the launched pid (else 0).
int sfd_close(struct kernel *k, int pid, int fd) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  int launched = (f && f->ino->kind == IK_BUILDER) ? builder_launch(k, f) : 0;
  int err = fdt_close(k, &p->fds, fd);
  return LEAVE(k, err ? err : launched);
}

static int is_handle(const struct file *f) {
  return f->ino->kind == IK_BUILDER || f->ino->kind == IK_PIDFD;
}

// close_range(2) without flags: close every open descriptor in [first, last]. A builder fd
// in the range is released without launching (its embryo dies, as when its holder exits):
// only close(2) of the builder fd itself launches.
int sfd_close_range(struct kernel *k, int pid, unsigned first, unsigned last) {
  struct proc *p;
  ENTER(k, pid, p);
  if (first > last)
    return -EINVAL;
  for (uint64_t fd = first; fd < (uint64_t)p->fds.cap && fd <= last; fd++)
    if (p->fds.fd[fd])
      fdt_close(k, &p->fds, (int)fd);
  return LEAVE(k, 0);
}

// fstat(2), the fields the simulator keeps: inode number, size, mode, owner uid and gid.
int sfd_fstat(struct kernel *k, int pid, int fd, uint64_t *out) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  out[0] = f->ino->ino;
  out[1] = f->ino->size;
  out[2] = f->ino->mode;
  out[3] = f->ino->uid == NO_OWNER ? 0 : f->ino->uid;
  out[4] = f->ino->gid == NO_OWNER ? 0 : f->ino->gid;
  // The content's version: 0 when it may change without one (a shared writable mapping).
  out[5] = f->ino->mmap_writable ? 0 : f->ino->version + 1;
  return 0;
}

// The file behind fd if it was opened for the access asked; -EBADF otherwise.
static struct file *file_for(struct proc *p, int fd, int write, int *err) {
  struct file *f = fdt_get(&p->fds, fd);
  int acc = f ? (f->flags & O_ACCMODE) : 0;
  if (!f || (f->flags & O_PATH) || (write ? acc == O_RDONLY : acc == O_WRONLY)) {
    *err = -EBADF;
    return NULL;
  }
  return f;
}

// Read from a file at off; devices and directories have their own rules.
static int64_t file_pread(struct kernel *k, struct file *f, uint8_t *buf, uint64_t n,
                          uint64_t off) {
  switch (f->ino->kind) {
  case IK_DEVNULL:
    return 0;
  case IK_DEVZERO:
    if (n > INT32_MAX)
      n = INT32_MAX;
    memset(buf, 0, n);
    return (int64_t)n;
  case IK_DIR:
    return -EISDIR;
  case IK_PIPE:
    return pipe_read(f->ino->pipe, buf, n);
  case IK_BUILDER:
  case IK_PIDFD:
    return -EINVAL;  // handles are not read, like a pidfd
  default:
    return inode_read(k, f->ino, off, buf, n);
  }
}

int64_t sfd_read(struct kernel *k, int pid, int fd, uint8_t *buf, uint64_t n) {
  struct proc *p;
  int err = 0;
  ENTER(k, pid, p);
  struct file *f = file_for(p, fd, 0, &err);
  if (!f)
    return err;
  int64_t r = file_pread(k, f, buf, n, f->pos);
  if (r > 0)
    f->pos += (uint64_t)r;
  return LEAVE(k, r);
}

int64_t sfd_pread(struct kernel *k, int pid, int fd, uint8_t *buf, uint64_t n, uint64_t off) {
  struct proc *p;
  int err = 0;
  ENTER(k, pid, p);
  struct file *f = file_for(p, fd, 0, &err);
  if (!f)
    return err;
  if (f->ino->kind == IK_PIPE || is_handle(f))
    return -ESPIPE;
  if ((int64_t)off < 0)
    return -EINVAL;
  return LEAVE(k, file_pread(k, f, buf, n, off));
}

int64_t sfd_write(struct kernel *k, int pid, int fd, const uint8_t *buf, uint64_t n) {
  struct proc *p;
  int err = 0;
  ENTER(k, pid, p);
  struct file *f = file_for(p, fd, 1, &err);
  if (!f)
    return err;
  switch (f->ino->kind) {
  case IK_DEVNULL:
  case IK_DEVZERO:
    return (int64_t)n;
  case IK_PIPE:
    return LEAVE(k, pipe_write(f->ino->pipe, buf, n));
  case IK_TMPFS:
    break;
  case IK_BUILDER:
  case IK_PIDFD:
    return -EINVAL;
  default:
    return -EBADF;
  }
  if (f->flags & O_APPEND)
    f->pos = f->ino->size;
  int64_t r = inode_write(k, p->mm, f->ino, f->pos, buf, n);
  if (r > 0)
    f->pos += (uint64_t)r;
  return LEAVE(k, r);
}

int64_t sfd_lseek(struct kernel *k, int pid, int fd, int64_t off, int whence) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  if (f->ino->kind == IK_PIPE || is_handle(f))
    return -ESPIPE;
  int64_t base;
  switch (whence) {
  case SEEK_SET: base = 0; break;
  case SEEK_CUR: base = (int64_t)f->pos; break;
  case SEEK_END: base = (int64_t)f->ino->size; break;
  default: return -EINVAL;
  }
  if ((off > 0 && base > INT64_MAX - off) || base + off < 0)
    return -EINVAL;  // compare vfs_setpos(): past MAX_LFS_FILESIZE or negative
  f->pos = (uint64_t)(base + off);
  return (int64_t)f->pos;
}

int sfd_ftruncate(struct kernel *k, int pid, int fd, int64_t length) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  if (length < 0)
    return -EINVAL;
  if ((f->flags & O_ACCMODE) == O_RDONLY || f->ino->kind != IK_TMPFS)
    return -EINVAL;  // compare do_sys_ftruncate(): not a regular file opened for writing
  if ((uint64_t)length > (1ULL << 43))
    return -EFBIG;
  return LEAVE(k, inode_truncate(k, f->ino, (uint64_t)length));
}

int sfd_fstat_size(struct kernel *k, int pid, int fd, uint64_t *size) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  *size = f->ino->size;
  return 0;
}

int sfd_dup(struct kernel *k, int pid, int fd) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  if (f->ino->kind == IK_BUILDER)
    return -EINVAL;  // the one handle to an embryo is never duplicated
  int nfd = fdt_alloc(&p->fds, 0, f, 0);
  if (nfd >= 0)
    f->refs++;
  return nfd;
}

// Make newfd refer to oldfd's file (closing what newfd held). compare Linux do_dup2().
static int do_dup3(struct kernel *k, struct proc *p, int oldfd, int newfd, int flags) {
  struct file *f = fdt_get(&p->fds, oldfd);
  if (!f || newfd < 0 || newfd >= FD_MAX)
    return -EBADF;
  if (f->ino->kind == IK_BUILDER)
    return -EINVAL;
  int err = fdt_grow(&p->fds, newfd + 1);
  if (err)
    return err;
  f->refs++;
  if (p->fds.fd[newfd])
    fdt_close(k, &p->fds, newfd);
  p->fds.fd[newfd] = f;
  p->fds.cloexec[newfd] = !!(flags & O_CLOEXEC);
  return newfd;
}

int sfd_dup3(struct kernel *k, int pid, int oldfd, int newfd, int flags) {
  struct proc *p;
  ENTER(k, pid, p);
  if (flags & ~O_CLOEXEC)
    return -EINVAL;
  if (oldfd == newfd)
    return fdt_get(&p->fds, oldfd) ? -EINVAL : -EBADF;
  return LEAVE(k, do_dup3(k, p, oldfd, newfd, flags));
}

// dup2(2): like dup3 without flags, and dup2(fd, fd) returns fd when it is open.
int sfd_dup2(struct kernel *k, int pid, int oldfd, int newfd) {
  struct proc *p;
  ENTER(k, pid, p);
  if (oldfd == newfd) {
    struct file *f = fdt_get(&p->fds, oldfd);
    return !f ? -EBADF : f->ino->kind == IK_BUILDER ? -EINVAL : newfd;
  }
  return LEAVE(k, do_dup3(k, p, oldfd, newfd, 0));
}

int sfd_unlink(struct kernel *k, int pid, const char *path) {
  struct proc *p;
  char norm[PATH_MAX];
  ENTER(k, pid, p);
  int err = path_normalise(p->cwd, path, norm, sizeof(norm));
  return LEAVE(k, err ? err : vfs_unlink(k, norm));
}

// chmod(2): tmpfs files only (the host is read-only: -EROFS); the owner or euid 0 (-EPERM).
int sfd_chmod(struct kernel *k, int pid, const char *path, unsigned mode) {
  struct proc *p;
  char norm[PATH_MAX];
  struct inode *ino;
  ENTER(k, pid, p);
  int err = path_normalise(p->cwd, path, norm, sizeof(norm));
  if (!err)
    err = vfs_lookup(k, norm, O_RDONLY, 0, &ino);
  if (err)
    return err;
  if (ino->kind != IK_TMPFS)
    return -EROFS;
  if (p->cred.euid != 0 && p->cred.euid != ino->uid)
    return -EPERM;
  ino->mode = (ino->mode & ~07777u) | (mode & 07777);
  return 0;
}

// Copy a descriptor table for fork: the same open file descriptions, one more reference each.
int fdt_dup_table(struct fdtable *dst, const struct fdtable *src) {
  int err = fdt_grow(dst, src->cap);
  if (err)
    return err;
  for (int fd = 0; fd < src->cap; fd++) {
    struct file *f = src->fd[fd];
    if (f && f->ino->kind == IK_BUILDER)
      f = NULL;  // builder fds are never inherited
    dst->fd[fd] = f;
    dst->cloexec[fd] = f ? src->cloexec[fd] : 0;
    if (f)
      f->refs++;
  }
  return 0;
}

// Close every close-on-exec descriptor. compare Linux do_close_on_exec().
void fdt_close_on_exec(struct kernel *k, struct fdtable *t) {
  for (int fd = 0; fd < t->cap; fd++)
    if (t->fd[fd] && t->cloexec[fd])
      fdt_close(k, t, fd);
}
