// readdir.c — directory listings (compare Linux fs/readdir.c iterate_dir()). A directory
// file's offset counts the entries already returned. A host directory lists what the host's
// has (read-only: the listing is the host's, in the host's order); /tmp and /dev/shm list
// their tmpfs files (the host's files there are not part of the simulated namespace).
#include <dirent.h>
#include <string.h>

#include "fs/fs.h"

int vfs_readdir(struct kernel *k, struct file *f, filldir_t fill, void *ctx) {
  struct inode *ino = f->ino;
  if (ino->kind != IK_DIR)
    return -ENOTDIR;
  if (!strcmp(ino->path, "/tmp"))
    return tmpfs_readdir(k, f, fill, ctx);
  DIR *d = opendir(ino->path);
  if (!d)
    return -errno;
  uint64_t i = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d))) {
    if (i++ < f->pos)
      continue;
    if (fill(ctx, e->d_name, strlen(e->d_name), e->d_ino, e->d_type))
      break;
    f->pos++;
  }
  closedir(d);
  return 0;
}
