// sys_fs.c — the file-system calls beyond open/read/write (compare Linux fs/stat.c,
// fs/readdir.c, fs/namei.c, fs/xattr.c, fs/statfs.c, mm/fadvise.c): attributes, directory
// listings, symbolic links, removing and renaming names, extended attributes.
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>

#include "arch/x86/syscalls.h"

#define GETDENTS_MAX (1ULL << 20)  // bytes one getdents64 fills at most
#define XATTR_NAME_MAX_ 255
#define XATTR_SIZE_MAX_ 65536
#define TMPFS_MAGIC_ 0x01021994
#define STATX_BASIC_STATS_ 0x7ffU
#define STATX_BTIME_ 0x800U
#define STATX_RESERVED_ 0x80000000U
#define RENAME_NOREPLACE_ 1

// The normalised absolute path a *at() call names, in a PATH_MAX buffer the caller frees.
// An empty path is left empty (AT_EMPTY_PATH decides).
static int64_t path_at(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, char **out) {
  char *rel = malloc(PATH_MAX), *norm = malloc(PATH_MAX);
  int64_t r = -ENOMEM;
  if (rel && norm && !(r = user_path_at(c, p, dirfd, upath, rel))) {
    if (!rel[0])
      norm[0] = 0;
    else
      r = path_normalise(p->cwd, rel, norm, PATH_MAX);
  }
  free(rel);
  if (r) {
    free(norm);
    return r;
  }
  *out = norm;
  return 0;
}

// The attributes *at() names: flags AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH (dirfd itself, the
// cwd with AT_FDCWD). compare vfs_statx().
static int64_t stat_at(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, int flags,
                       struct kstat *st) {
  char *path;
  struct inode *ino;
  int64_t r = path_at(c, p, dirfd, upath, &path);
  if (r)
    return r;
  if (!path[0]) {
    struct file *f = NULL;
    if (!(flags & AT_EMPTY_PATH_))
      r = -ENOENT;
    else if (dirfd == AT_FDCWD_)
      r = (r = vfs_lookup(c->k, p->cwd, O_RDONLY, 0, &ino)) ? r : (vfs_getattr(ino, st), 0);
    else if (!(f = fdt_get(&p->fds, dirfd)))
      r = -EBADF;
    else
      vfs_getattr(f->ino, st);
  } else if (!(flags & AT_SYMLINK_NOFOLLOW_) || vfs_lstat_link(c->k, path, st)) {
    if (!(r = vfs_lookup(c->k, path, O_RDONLY, 0, &ino)))
      vfs_getattr(ino, st);
  }
  free(path);
  return r;
}

// struct stat of x86-64. compare cp_new_stat().
static int stat_to_user(struct cpu *c, const struct kstat *k, uint64_t buf) {
  uint64_t st[18] = {0};
  st[0] = ((uint64_t)(k->dev_major & 0xfff) << 8) | (k->dev_minor & 0xff) |
          ((uint64_t)(k->dev_minor & ~0xffU) << 12);  // new_encode_dev()
  st[1] = k->ino;
  st[2] = k->nlink;
  st[3] = k->mode | ((uint64_t)k->uid << 32);
  st[4] = k->gid;
  st[5] = ((uint64_t)(k->rdev_major & 0xfff) << 8) | (k->rdev_minor & 0xff);
  st[6] = k->size;
  st[7] = k->blksize;
  st[8] = k->blocks;
  for (int i = 0; i < 3; i++) {
    const int64_t *t = i == 0 ? k->atime : i == 1 ? k->mtime : k->ctime;
    st[9 + 2 * i] = (uint64_t)t[0];
    st[10 + 2 * i] = (uint64_t)t[1];
  }
  return copy_to_user(c, buf, st, sizeof(st));
}

static int64_t do_stat(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, int flags,
                       uint64_t buf) {
  struct kstat st;
  if (flags & ~(AT_SYMLINK_NOFOLLOW_ | AT_EMPTY_PATH_ | AT_NO_AUTOMOUNT_))
    return -EINVAL;
  int64_t r = stat_at(c, p, dirfd, upath, flags, &st);
  return r ? r : stat_to_user(c, &st, buf);
}

int64_t sys_stat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_stat(c, p, AT_FDCWD_, a[0], 0, a[1]);
}

int64_t sys_lstat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_stat(c, p, AT_FDCWD_, a[0], AT_SYMLINK_NOFOLLOW_, a[1]);
}

int64_t sys_newfstatat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_stat(c, p, (int)a[0], a[1], (int)a[3], a[2]);
}

int64_t sys_fstat(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct kstat st;
  struct file *f = fdt_get(&p->fds, (int)a[0]);
  if (!f)
    return -EBADF;
  vfs_getattr(f->ino, &st);
  return stat_to_user(c, &st, a[1]);
}

// statx(2): all basic fields are known (and the birth time where the host or tmpfs had one).
int64_t sys_statx(struct cpu *c, struct proc *p, const uint64_t *a) {
  int flags = (int)a[2];
  uint32_t mask = (uint32_t)a[3];
  struct kstat st;
  uint8_t b[256] = {0};
  if (flags & ~(AT_SYMLINK_NOFOLLOW_ | AT_EMPTY_PATH_ | AT_NO_AUTOMOUNT_ | AT_STATX_SYNC_TYPE_) ||
      (flags & AT_STATX_SYNC_TYPE_) == AT_STATX_SYNC_TYPE_ || (mask & STATX_RESERVED_))
    return -EINVAL;
  int64_t r = stat_at(c, p, (int)a[0], a[1], flags, &st);
  if (r)
    return r;
  uint32_t m = STATX_BASIC_STATS_ | (st.btime[0] || st.btime[1] ? STATX_BTIME_ : 0);
  uint32_t u32[] = {m, st.blksize};
  memcpy(b, u32, 8);
  uint32_t ids[] = {(uint32_t)st.nlink, st.uid, st.gid};
  memcpy(b + 0x10, ids, 12);
  uint16_t mode = (uint16_t)st.mode;
  memcpy(b + 0x1c, &mode, 2);
  uint64_t u64[] = {st.ino, st.size, st.blocks};
  memcpy(b + 0x20, u64, 24);
  const int64_t *ts[4] = {st.atime, st.btime, st.ctime, st.mtime};
  for (int i = 0; i < 4; i++) {
    int64_t sec = ts[i][0];
    uint32_t nsec = (uint32_t)ts[i][1];
    memcpy(b + 0x40 + 16 * i, &sec, 8);
    memcpy(b + 0x48 + 16 * i, &nsec, 4);
  }
  uint32_t dev[] = {st.rdev_major, st.rdev_minor, st.dev_major, st.dev_minor};
  memcpy(b + 0x80, dev, 16);
  return copy_to_user(c, a[4], b, sizeof(b));
}

// getdents64(2): linux_dirent64 records, 8-byte aligned, as many as fit. compare
// filldir64().
struct dirent_buf {
  uint8_t *b;
  uint64_t cap, used;
  int full;  // an entry did not fit
};

static int filldir64(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type) {
  struct dirent_buf *d = ctx;
  uint64_t reclen = (19 + len + 1 + 7) & ~7ULL;
  if (reclen > d->cap - d->used) {
    d->full = 1;
    return 1;
  }
  uint8_t *e = d->b + d->used;
  int64_t off = 0;  // d_off: filled by the caller (the position after the entry)
  uint16_t rl = (uint16_t)reclen;
  memset(e, 0, reclen);
  memcpy(e, &ino, 8);
  memcpy(e + 8, &off, 8);
  memcpy(e + 16, &rl, 2);
  e[18] = (uint8_t)type;
  memcpy(e + 19, name, len);
  d->used += reclen;
  return 0;
}

int64_t sys_getdents64(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct file *f = fdt_get(&p->fds, (int)a[0]);
  uint64_t count = (uint32_t)a[2];
  struct dirent_buf d = {0};
  if (!f)
    return -EBADF;
  if (f->ino->kind != IK_DIR)
    return -ENOTDIR;
  d.cap = count < GETDENTS_MAX ? count : GETDENTS_MAX;
  int64_t r = user_range_ok(c, a[1], d.cap, 1);  // compare access_ok() before filling
  if (r)
    return r;
  if (!(d.b = malloc(d.cap ? d.cap : 1)))
    return -ENOMEM;
  uint64_t pos0 = f->pos;
  r = vfs_readdir(c->k, f, filldir64, &d);
  if (!r) {
    // d_off of each record: the position after it
    int64_t pos = (int64_t)pos0;
    for (uint64_t o = 0; o < d.used;) {
      uint16_t rl;
      memcpy(&rl, d.b + o + 16, 2);
      pos++;
      memcpy(d.b + o + 8, &pos, 8);
      o += rl;
    }
    if (!d.used)
      r = d.full ? -EINVAL : 0;  // -EINVAL: the next entry does not fit in count bytes
    else if ((r = copy_to_user(c, a[1], d.b, d.used)) == 0)
      r = (int64_t)d.used;
  }
  free(d.b);
  return r;
}

// readlink(2): /proc/self/exe (and /proc/<own pid>/exe) is the file the program was mapped
// from: the lowest file mapping of the address space (exec and the builder map the program
// below its libraries; in the `ld.so prog` form, until ld.so maps the program, ld.so itself,
// as Linux's mm->exe_file says). Nothing else of /proc exists here: -ENOENT.
static int64_t proc_exe(struct proc *p, char *buf, uint64_t cap) {
  for (uint32_t i = 0; i < p->mm->vmas.n; i++) {
    const struct vma *v = &p->mm->vmas.v[i];
    if (v->ino && v->ino->path && v->ino->kind == IK_HOST) {
      uint64_t n = strlen(v->ino->path);
      n = n < cap ? n : cap;
      memcpy(buf, v->ino->path, n);
      return (int64_t)n;
    }
  }
  return -ENOENT;
}

static int64_t do_readlink(struct cpu *c, struct proc *p, int dirfd, uint64_t upath,
                           uint64_t ubuf, int64_t size) {
  char *path, *buf, self[32];
  if (size <= 0)
    return -EINVAL;
  int64_t r = path_at(c, p, dirfd, upath, &path);
  if (r)
    return r;
  uint64_t cap = (uint64_t)size < PATH_MAX ? (uint64_t)size : PATH_MAX;
  if (!(buf = malloc(cap))) {
    free(path);
    return -ENOMEM;
  }
  snprintf(self, sizeof(self), "/proc/%d/exe", p->pid);
  if (!path[0])
    r = -ENOENT;
  else if (!strcmp(path, "/proc/self/exe") || !strcmp(path, "/proc/thread-self/exe") ||
           !strcmp(path, self))
    r = proc_exe(p, buf, cap);
  else if (!strncmp(path, "/proc/", 6) || !strcmp(path, "/proc"))
    r = strcmp(path, "/proc") ? -ENOENT : -EINVAL;
  else
    r = vfs_readlink(c->k, path, buf, cap);
  if (r > 0) {
    int err = copy_to_user(c, ubuf, buf, (uint64_t)r);
    if (err)
      r = err;
  }
  free(buf);
  free(path);
  return r;
}

int64_t sys_readlink(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_readlink(c, p, AT_FDCWD_, a[0], a[1], (int64_t)(int)a[2]);
}

int64_t sys_readlinkat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_readlink(c, p, (int)a[0], a[1], a[2], (int64_t)(int)a[3]);
}

// unlink(2)/rmdir(2) through the VFS: tmpfs names go; the host is read-only. tmpfs has no
// directories of its own here: /tmp and /dev/shm are mount points (-EBUSY).
static int64_t do_unlink(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, int dir) {
  char *path;
  struct inode *ino;
  int64_t r = path_at(c, p, dirfd, upath, &path);
  if (r)
    return r;
  if (!path[0]) {
    r = -ENOENT;
  } else if (!dir) {
    r = vfs_unlink(c->k, path);
  } else if (!(r = vfs_lookup(c->k, path, O_RDONLY, 0, &ino))) {
    if (ino->kind != IK_DIR)
      r = -ENOTDIR;
    else if (!strcmp(path, "/") || !strcmp(path, "/tmp") || !strcmp(path, "/dev/shm"))
      r = -EBUSY;
    else
      r = -EROFS;
  }
  free(path);
  return r;
}

int64_t sys_unlink(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_unlink(c, p, AT_FDCWD_, a[0], 0);
}

int64_t sys_rmdir(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_unlink(c, p, AT_FDCWD_, a[0], 1);
}

int64_t sys_unlinkat(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int)a[2] & ~AT_REMOVEDIR_)
    return -EINVAL;
  return do_unlink(c, p, (int)a[0], a[1], ((int)a[2] & AT_REMOVEDIR_) != 0);
}

// mkdir(2): an existing name is -EEXIST; the host is read-only (-EROFS); tmpfs here is flat
// (files directly in /tmp and /dev/shm only): -EPERM there.
static int64_t do_mkdir(struct cpu *c, struct proc *p, int dirfd, uint64_t upath) {
  char *path;
  struct inode *ino;
  int64_t r = path_at(c, p, dirfd, upath, &path);
  if (r)
    return r;
  if (!path[0]) {
    r = -ENOENT;
  } else if (!(r = vfs_lookup(c->k, path, O_RDONLY, 0, &ino))) {
    r = -EEXIST;
  } else if (r == -ENOENT) {
    char *slash = strrchr(path, '/');
    *slash = 0;
    const char *parent = slash == path ? "/" : path;
    if (!(r = vfs_lookup(c->k, parent, O_RDONLY, 0, &ino)))
      r = ino->kind != IK_DIR                                        ? -ENOTDIR
          : !strcmp(parent, "/tmp") || !strcmp(parent, "/dev/shm") ? -EPERM
                                                                     : -EROFS;
  }
  free(path);
  return r;
}

int64_t sys_mkdir(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_mkdir(c, p, AT_FDCWD_, a[0]);
}

int64_t sys_mkdirat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_mkdir(c, p, (int)a[0], a[1]);
}

static int64_t do_rename(struct cpu *c, struct proc *p, int ofd, uint64_t oldp, int nfd,
                         uint64_t newp, unsigned flags) {
  char *from = NULL, *to = NULL;
  struct inode *ino;
  if (flags & ~RENAME_NOREPLACE_)
    return -EINVAL;
  int64_t r = path_at(c, p, ofd, oldp, &from);
  if (!r && !(r = path_at(c, p, nfd, newp, &to))) {
    if (!from[0] || !to[0])
      r = -ENOENT;
    else if ((flags & RENAME_NOREPLACE_) && !vfs_lookup(c->k, to, O_RDONLY, 0, &ino) &&
             !vfs_lookup(c->k, from, O_RDONLY, 0, &ino))
      r = -EEXIST;
    else
      r = vfs_rename(c->k, from, to);
  }
  free(from);
  free(to);
  return r;
}

int64_t sys_rename(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_rename(c, p, AT_FDCWD_, a[0], AT_FDCWD_, a[1], 0);
}

int64_t sys_renameat(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_rename(c, p, (int)a[0], a[1], (int)a[2], a[3], 0);
}

int64_t sys_renameat2(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_rename(c, p, (int)a[0], a[1], (int)a[2], a[3], (unsigned)a[4]);
}

// getxattr(2) family: a host file's extended attributes are the host's (read through the
// host's own call on its path); tmpfs files and the devices have none (-ENODATA); pipes and
// the kernel's handles do not support them (-EOPNOTSUPP). compare fs/xattr.c getxattr().
static int64_t xattr_get(struct cpu *c, const struct inode *ino, const char *hostpath,
                         int nofollow, uint64_t uname, uint64_t uval, uint64_t size) {
  char name[XATTR_NAME_MAX_ + 1];
  int64_t r = strncpy_from_user(c, name, uname, sizeof(name));
  if (r)
    return r == -ENAMETOOLONG ? -ERANGE : r;
  if (!name[0])
    return -ERANGE;
  if (size > XATTR_SIZE_MAX_)
    size = XATTR_SIZE_MAX_;
  if (ino && ino->kind != IK_HOST && ino->kind != IK_DIR)
    return ino->kind == IK_TMPFS || ino->kind == IK_DEVNULL || ino->kind == IK_DEVZERO
               ? -ENODATA : -EOPNOTSUPP;
  char *v = malloc(size ? size : 1);
  if (!v)
    return -ENOMEM;
  ssize_t n = nofollow ? lgetxattr(hostpath, name, size ? v : NULL, size)
                       : getxattr(hostpath, name, size ? v : NULL, size);
  r = n < 0 ? -errno : n;
  if (n > 0 && size && (r = copy_to_user(c, uval, v, (uint64_t)n)) == 0)
    r = n;
  free(v);
  return r;
}

static int64_t do_getxattr(struct cpu *c, struct proc *p, const uint64_t *a, int nofollow) {
  char *path;
  struct inode *ino = NULL;
  struct kstat st;
  int64_t r = path_at(c, p, AT_FDCWD_, a[0], &path);
  if (r)
    return r;
  if (!path[0])
    r = -ENOENT;
  else if (nofollow && !vfs_lstat_link(c->k, path, &st))
    r = xattr_get(c, NULL, path, 1, a[1], a[2], a[3]);  // the link itself, on the host
  else if (!(r = vfs_lookup(c->k, path, O_RDONLY, 0, &ino)))
    r = xattr_get(c, ino, ino->path, 0, a[1], a[2], a[3]);
  free(path);
  return r;
}

int64_t sys_getxattr(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_getxattr(c, p, a, 0);
}

int64_t sys_lgetxattr(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_getxattr(c, p, a, 1);
}

int64_t sys_fgetxattr(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct file *f = fdt_get(&p->fds, (int)a[0]);
  if (!f)
    return -EBADF;
  return xattr_get(c, f->ino, f->ino->path, 0, a[1], a[2], a[3]);
}

// statfs(2): a host file's file system as the host reports it (read-only: ST_RDONLY added);
// tmpfs: the simulated memory.
static int64_t statfs_inode(struct cpu *c, const struct inode *ino, uint64_t buf) {
  struct statfs s;
  memset(&s, 0, sizeof(s));
  if ((ino->kind == IK_HOST || ino->kind == IK_DIR) && strcmp(ino->path, "/tmp")) {
    if (statfs(ino->path, &s) < 0)
      return -errno;
    s.f_flags |= 1;  // ST_RDONLY
  } else {
    s.f_type = TMPFS_MAGIC_;
    s.f_bsize = s.f_frsize = PAGE_SIZE;
    s.f_blocks = c->k->fr.nframes;
    s.f_bfree = s.f_bavail = c->k->fr.nframes - c->k->fr.used;
    s.f_namelen = NAME_MAX;
  }
  return copy_to_user(c, buf, &s, sizeof(s));
}

int64_t sys_statfs(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path;
  struct inode *ino;
  int64_t r = path_at(c, p, AT_FDCWD_, a[0], &path);
  if (r)
    return r;
  if (!path[0])
    r = -ENOENT;
  else if (!(r = vfs_lookup(c->k, path, O_RDONLY, 0, &ino)))
    r = statfs_inode(c, ino, a[1]);
  free(path);
  return r;
}

int64_t sys_fstatfs(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct file *f = fdt_get(&p->fds, (int)a[0]);
  return f ? statfs_inode(c, f->ino, a[1]) : -EBADF;
}

// fadvise64(2): advice is accepted and changes nothing (the page cache keeps everything).
int64_t sys_fadvise64(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  struct file *f = fdt_get(&p->fds, (int)a[0]);
  if (!f)
    return -EBADF;
  if (f->ino->kind == IK_PIPE)
    return -ESPIPE;
  if (a[3] > 5 || (int64_t)a[2] < 0)  // POSIX_FADV_NORMAL .. POSIX_FADV_NOREUSE
    return -EINVAL;
  return 0;
}
