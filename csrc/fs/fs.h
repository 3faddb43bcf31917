// fs/fs.h — what the file layer exports: the VFS (host files, tmpfs, devices), open file
// descriptions and descriptor tables, pipes, and execve's stack builder. Calls go down to mm/.
#ifndef SPAWNFD_FS_H
#define SPAWNFD_FS_H

#include <sys/stat.h>

#include "mm/mm.h"

// A directory entry for a listing: name (len bytes, no NUL), inode number, d_type. Nonzero:
// it did not fit, the walk stops before it.
typedef int (*filldir_t)(void *ctx, const char *name, size_t len, uint64_t ino, unsigned type);

// ---- vfs.c: inodes, path lookup, host files read lazily, tmpfs, devices ----
int vfs_init(struct kernel *k);
void vfs_fini(struct kernel *k);
int vfs_lookup(struct kernel *k, const char *path, int flags, unsigned mode, struct inode **out);
int vfs_unlink(struct kernel *k, const char *path);
int vfs_rename(struct kernel *k, const char *from, const char *to);
int tmpfs_readdir(struct kernel *k, struct file *f, filldir_t fill, void *ctx);
int path_normalise(const char *cwd, const char *path, char *out, size_t cap);
struct inode *inode_new_shmem(struct kernel *k, uint64_t size);
void inode_get(struct inode *ino);
void inode_put(struct kernel *k, struct inode *ino);
void inode_put_new(struct kernel *k, struct inode *ino);
int inode_truncate(struct kernel *k, struct inode *ino, uint64_t size);
int inode_punch_hole(struct kernel *k, struct inode *ino, uint64_t first, uint64_t end);
int host_read_page(struct kernel *k, struct inode *ino, uint64_t idx, pfn_t pfn);

// ---- stat.c: attributes, symbolic links of the host namespace ----
struct kstat {
  uint32_t dev_major, dev_minor, rdev_major, rdev_minor;
  uint64_t ino, nlink, size, blocks;
  uint32_t mode, uid, gid, blksize;
  int64_t atime[2], mtime[2], ctime[2], btime[2];  // seconds, nanoseconds (btime 0: unknown)
};
void host_attr_snapshot(struct inode *ino, const char *real, const struct stat *st);
void inode_touch(struct inode *ino, int created);
void vfs_getattr(const struct inode *ino, struct kstat *st);
int vfs_lstat_link(struct kernel *k, const char *path, struct kstat *st);
int64_t vfs_readlink(struct kernel *k, const char *path, char *buf, uint64_t cap);

// ---- readdir.c: directory listings ----
int vfs_readdir(struct kernel *k, struct file *f, filldir_t fill, void *ctx);

// ---- fdtable.c: open file descriptions and per-process descriptor tables ----
int file_open(struct kernel *k, struct proc *p, const char *path, int flags, unsigned mode,
              struct file **out);
int fdt_alloc(struct fdtable *t, int lowest, struct file *f, int cloexec);
struct file *fdt_get(struct fdtable *t, int fd);
int fdt_close(struct kernel *k, struct fdtable *t, int fd);
void fdt_fini(struct kernel *k, struct fdtable *t);
void file_put(struct kernel *k, struct file *f);
int fdt_dup_table(struct fdtable *dst, const struct fdtable *src);
void fdt_close_on_exec(struct kernel *k, struct fdtable *t);

// ---- pipe.c: pipes ----
void pipe_free(struct pipe *pp);
void pipe_release(struct file *f);
unsigned pipe_poll(const struct file *f);
int64_t pipe_read(struct pipe *pp, uint8_t *buf, uint64_t n);
int64_t pipe_write(struct pipe *pp, const uint8_t *buf, uint64_t n);

// ---- exec.c: execve as binfmt_elf; the stack builder is shared with kernel/spawn.c ----
int exec_build_stack(struct proc *p, const char *execfn, const char *strings, uint64_t len,
                     int argc, int envc, uint64_t seed, const struct stack_aux *aux,
                     uint64_t *sp);

// ---- exec.c: argument limits (execve(2) from running code copies within them) ----
#define MAX_ARG_STRLEN (32 * PAGE_SIZE)     // one argument or environment string
#define ARG_LIMIT (8ULL << 20) / 4          // _STK_LIM / 4: all strings and pointers

#endif
