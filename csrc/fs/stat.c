// stat.c — file attributes and the symbolic links of the host namespace (compare Linux
// fs/stat.c vfs_getattr() / cp_new_stat(), fs/namei.c vfs_readlink()).
//
// A host inode's attributes are the host's, taken when the path was first looked up (the
// VFS keeps host files as a snapshot for the kernel's life); a tmpfs inode keeps its own
// times (create, write, truncate). The VFS resolves host paths through the host's realpath(),
// so a symbolic link never becomes an inode of its own; lstat and readlink still see it: the
// host's link, looked at without following the last component, is what the namespace holds.
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"

static void ts_set(int64_t *dst, const struct timespec *ts) {
  dst[0] = ts->tv_sec;
  dst[1] = ts->tv_nsec;
}

// The attributes of a host inode, from the host's stat of its canonical path.
void host_attr_snapshot(struct inode *ino, const char *real, const struct stat *st) {
  struct statx sx;
  ino->nlink = st->st_nlink;
  ino->blocks = (uint64_t)st->st_blocks;
  ino->blksize = (uint32_t)st->st_blksize;
  ino->rdev_major = major(st->st_rdev);
  ino->rdev_minor = minor(st->st_rdev);
  ts_set(ino->atime, &st->st_atim);
  ts_set(ino->mtime, &st->st_mtim);
  ts_set(ino->ctime, &st->st_ctim);
  if (statx(AT_FDCWD, real, 0, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME)) {
    ino->btime[0] = sx.stx_btime.tv_sec;
    ino->btime[1] = sx.stx_btime.tv_nsec;
  }
}

// A tmpfs inode was created (all four times) or its content changed (mtime, ctime).
void inode_touch(struct inode *ino, int created) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts_set(ino->mtime, &ts);
  ts_set(ino->ctime, &ts);
  if (created) {
    ts_set(ino->atime, &ts);
    ts_set(ino->btime, &ts);
  }
}

// compare generic_fillattr().
void vfs_getattr(const struct inode *ino, struct kstat *st) {
  memset(st, 0, sizeof(*st));
  st->dev_major = ino->dev_major;
  st->dev_minor = ino->dev_minor;
  st->rdev_major = ino->rdev_major;
  st->rdev_minor = ino->rdev_minor;
  st->ino = ino->ino;
  st->mode = ino->mode;
  st->uid = ino->uid == NO_OWNER ? 0 : ino->uid;
  st->gid = ino->gid == NO_OWNER ? 0 : ino->gid;
  st->size = ino->size;
  st->nlink = ino->nlink ? ino->nlink : (ino->kind == IK_TMPFS && !ino->linked ? 0 : 1);
  st->blksize = ino->blksize ? ino->blksize : PAGE_SIZE;
  st->blocks = ino->kind == IK_HOST || ino->kind == IK_DIR
                   ? ino->blocks
                   : (ino->cache.count << PAGE_SHIFT) / 512;  // tmpfs: pages it holds
  memcpy(st->atime, ino->atime, sizeof(st->atime));
  memcpy(st->mtime, ino->mtime, sizeof(st->mtime));
  memcpy(st->ctime, ino->ctime, sizeof(st->ctime));
  memcpy(st->btime, ino->btime, sizeof(st->btime));
}

// Whether the normalised absolute path p names something of the host namespace (not tmpfs,
// not one of the two devices): only there can a symbolic link exist.
static int host_namespace(const char *p) {
  if (!strcmp(p, "/dev/null") || !strcmp(p, "/dev/zero") || !strcmp(p, "/tmp") ||
      !strcmp(p, "/dev/shm"))
    return 0;
  const char *slash = strrchr(p, '/');
  size_t n = (size_t)(slash - p);
  return !((n == 4 && !strncmp(p, "/tmp", 4)) || (n == 8 && !strncmp(p, "/dev/shm", 8)));
}

// lstat(2) of a normalised absolute path whose last component is a host symbolic link: its
// attributes, 0. 1: not a link (the caller looks the path up as stat does).
int vfs_lstat_link(struct kernel *k, const char *p, struct kstat *st) {
  struct stat hs;
  (void)k;
  if (!host_namespace(p) || lstat(p, &hs) < 0 || !S_ISLNK(hs.st_mode))
    return 1;
  memset(st, 0, sizeof(*st));
  st->dev_major = major(hs.st_dev);
  st->dev_minor = minor(hs.st_dev);
  st->ino = hs.st_ino;
  st->mode = hs.st_mode;
  st->uid = hs.st_uid;
  st->gid = hs.st_gid;
  st->size = (uint64_t)hs.st_size;
  st->nlink = hs.st_nlink;
  st->blksize = (uint32_t)hs.st_blksize;
  st->blocks = (uint64_t)hs.st_blocks;
  ts_set(st->atime, &hs.st_atim);
  ts_set(st->mtime, &hs.st_mtim);
  ts_set(st->ctime, &hs.st_ctim);
  return 0;
}

// readlink(2) of a normalised absolute path: the link's target (at most cap bytes, no NUL),
// its length; -EINVAL if it is not a link, the lookup's error if it does not exist.
int64_t vfs_readlink(struct kernel *k, const char *p, char *buf, uint64_t cap) {
  struct inode *ino;
  if (host_namespace(p)) {
    ssize_t n = readlink(p, buf, cap);
    if (n >= 0)
      return n;
    if (errno != EINVAL)
      return -errno;
  }
  int err = vfs_lookup(k, p, O_RDONLY, 0, &ino);
  return err ? err : -EINVAL;
}
