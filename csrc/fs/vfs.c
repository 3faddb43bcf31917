// vfs.c — the VFS: inodes, path lookup, the dentry cache.
//   host files:  visible read-only under their own (canonical) paths, read lazily page by page
//   tmpfs:       writable files in /tmp and /dev/shm, content only in the page cache
//   shmem:       unnamed inodes behind MAP_SHARED|MAP_ANONYMOUS ("/dev/zero (deleted)")
//   /dev/null, /dev/zero
// An inode's pages live in its page cache (mm/filemap.c). Host inodes stay cached for the
// kernel's life, as Linux keeps page cache warm.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs/fs.h"

#define ITAB_BUCKETS 4096

static void dcache_fini(struct kernel *k);
#define TMPFS_DEV_MINOR 0x20

static uint32_t path_hash(const char *s) {
  uint32_t h = 5381;
  while (*s)
    h = h * 33 + (uint8_t)*s++;
  return h & (ITAB_BUCKETS - 1);
}

static struct inode *itab_find(struct kernel *k, const char *path) {
  for (struct inode *i = k->itab[path_hash(path)]; i; i = i->hnext)
    if (strcmp(i->path, path) == 0)
      return i;
  return NULL;
}

static void itab_add(struct kernel *k, struct inode *ino) {
  uint32_t h = path_hash(ino->path);
  ino->hnext = k->itab[h];
  k->itab[h] = ino;
  k->inodes++;
}

static void itab_del(struct kernel *k, struct inode *ino) {
  struct inode **pp = &k->itab[path_hash(ino->path)];
  while (*pp != ino)
    pp = &(*pp)->hnext;
  *pp = ino->hnext;
  k->inodes--;
}

// A new inode (refs 1) of the given kind, or NULL if the host is out of memory.
static struct inode *inode_alloc(struct kernel *k, enum inode_kind kind, const char *path) {
  struct inode *ino = calloc(1, sizeof(*ino));
  if (!ino)
    return NULL;
  ino->kind = kind;
  ino->host_fd = -1;
  ino->refs = 1;
  ino->ino = ++k->next_ino;
  if (path && !(ino->path = strdup(path))) {
    free(ino);
    return NULL;
  }
  return ino;
}

static void inode_free(struct kernel *k, struct inode *ino) {
  pagecache_drop(k, ino, 0, UINT64_MAX);
  vm_unacct_memory(k, ino->acct_pages);  // compare shmem_evict_inode(): shmem_unacct_size()
  if (ino->host_fd >= 0)
    close(ino->host_fd);
  xa_destroy(&ino->cache);
  xa_destroy(&ino->ptshare);
  pipe_free(ino->pipe);
  free(ino->path);
  free(ino);
}

void inode_get(struct inode *ino) { ino->refs++; }

// Drop a reference; an unlinked inode is freed with its page cache on the last one.
void inode_put(struct kernel *k, struct inode *ino) {
  if (ino->refs == 0) {
    kpanic(k, "inode_put: inode %lu has no reference", (unsigned long)ino->ino);
    return;
  }
  if (--ino->refs == 0)
    inode_free(k, ino);
}

// Free an inode that never got a reference (an error path of its creator).
void inode_put_new(struct kernel *k, struct inode *ino) { inode_free(k, ino); }

// The unnamed inode behind a shared anonymous mapping of size bytes (refs 1: the caller's).
struct inode *inode_new_shmem(struct kernel *k, uint64_t size) {
  struct inode *ino = inode_alloc(k, IK_SHMEM, NULL);
  if (ino) {
    ino->size = size;
    ino->mode = S_IFREG | 0600;
    ino->dev_minor = 1;
  }
  return ino;
}

int vfs_init(struct kernel *k) {
  k->itab = calloc(ITAB_BUCKETS, sizeof(*k->itab));
  if (!k->itab)
    return -ENOMEM;
  k->dev_null = inode_alloc(k, IK_DEVNULL, "/dev/null");
  k->dev_zero = inode_alloc(k, IK_DEVZERO, "/dev/zero");
  if (!k->dev_null || !k->dev_zero)
    return -ENOMEM;
  k->dev_null->mode = k->dev_zero->mode = S_IFCHR | 0666;
  k->dev_null->dev_minor = k->dev_zero->dev_minor = 5;
  itab_add(k, k->dev_null);
  itab_add(k, k->dev_zero);
  return 0;
}

// Free every inode still in the namespace (processes are gone by now).
void vfs_fini(struct kernel *k) {
  dcache_fini(k);
  if (!k->itab)
    return;
  for (uint32_t b = 0; b < ITAB_BUCKETS; b++) {
    struct inode *i = k->itab[b];
    while (i) {
      struct inode *next = i->hnext;
      inode_free(k, i);
      i = next;
    }
  }
  free(k->itab);
  k->itab = NULL;
}

// Join cwd and path and collapse ".", ".." and repeated slashes into out.
// -ENOENT for an empty path, -ENAMETOOLONG past PATH_MAX or a component past NAME_MAX.
int path_normalise(const char *cwd, const char *path, char *out, size_t cap) {
  char tmp[2 * PATH_MAX];
  if (!path[0])
    return -ENOENT;
  if (strlen(path) >= PATH_MAX || strlen(cwd) >= PATH_MAX)
    return -ENAMETOOLONG;
  snprintf(tmp, sizeof(tmp), "%s/%s", path[0] == '/' ? "" : cwd, path);
  size_t n = 0;
  for (char *save, *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (!strcmp(c, "."))
      continue;
    if (!strcmp(c, "..")) {
      while (n > 0 && out[--n] != '/')
        ;
      continue;
    }
    size_t len = strlen(c);
    if (len > NAME_MAX || n + len + 2 > cap)
      return -ENAMETOOLONG;  // compare the d_name.len check of simple_lookup()
    out[n++] = '/';
    memcpy(out + n, c, len);
    n += len;
  }
  if (n == 0)
    out[n++] = '/';
  out[n] = 0;
  return 0;
}

static int is_tmpfs_dir(const char *p) { return !strcmp(p, "/tmp") || !strcmp(p, "/dev/shm"); }

// The tmpfs directory that holds path, if path is directly inside one.
static int in_tmpfs(const char *p) {
  const char *slash = strrchr(p, '/');
  if (!slash || slash == p)
    return 0;
  char dir[PATH_MAX];
  size_t n = (size_t)(slash - p);
  memcpy(dir, p, n);
  dir[n] = 0;
  return is_tmpfs_dir(dir);
}

static int wants_write(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

// Look up (or with O_CREAT create) a tmpfs file.
static int tmpfs_lookup(struct kernel *k, const char *p, int flags, unsigned mode,
                        struct inode **out) {
  struct inode *ino = itab_find(k, p);
  if (ino && (flags & O_CREAT) && (flags & O_EXCL))
    return -EEXIST;
  if (!ino) {
    if (!(flags & O_CREAT))
      return -ENOENT;
    if (!(ino = inode_alloc(k, IK_TMPFS, p)))
      return -ENOMEM;
    ino->mode = S_IFREG | (mode & 07777);
    ino->acct_blocks = 1;            // compare shmem_mknod(): VM_NORESERVE, charged per page
    ino->uid = ino->gid = NO_OWNER;  // the opener takes ownership
    ino->dev_minor = TMPFS_DEV_MINOR;
    ino->linked = 1;
    inode_touch(ino, 1);
    itab_add(k, ino);
  }
  *out = ino;
  return 0;
}

// The errno open(O_CREAT) of a missing host path gives: the parent's lookup error, or EROFS
// (the host is mounted read-only in the simulator).
static int host_create_error(const char *p) {
  char parent[PATH_MAX], real[PATH_MAX];
  struct stat st;
  snprintf(parent, sizeof(parent), "%s", p);
  char *slash = strrchr(parent, '/');
  if (slash == parent)
    slash[1] = 0;
  else if (slash)
    *slash = 0;
  if (!realpath(parent, real) || stat(real, &st) < 0)
    return -errno;
  return S_ISDIR(st.st_mode) ? -EROFS : -ENOTDIR;
}

// The dentry cache: host paths as asked for (symlinks unresolved) -> their inode. Host files
// are a read-only snapshot for the kernel's life, so a path resolves once; this saves the
// realpath() and stat() host calls on every later open (ld.so opens libc on every exec).
struct dentry {
  char *path;               // the normalised path as looked up
  struct inode *ino;        // what it resolved to (an inode of the table: never freed early)
  struct dentry *next;      // hash chain
};

static struct inode *dcache_find(struct kernel *k, const char *p) {
  if (!k->dcache)
    return NULL;
  for (struct dentry *d = k->dcache[path_hash(p)]; d; d = d->next)
    if (strcmp(d->path, p) == 0)
      return d->ino;
  return NULL;
}

static void dcache_add(struct kernel *k, const char *p, struct inode *ino) {
  if (!k->dcache && !(k->dcache = calloc(ITAB_BUCKETS, sizeof(*k->dcache))))
    return;  // a cache: without memory, lookups just stay slow
  struct dentry *d = malloc(sizeof(*d));
  if (!d || !(d->path = strdup(p))) {
    free(d);
    return;
  }
  uint32_t h = path_hash(p);
  d->ino = ino;
  d->next = k->dcache[h];
  k->dcache[h] = d;
}

static void dcache_fini(struct kernel *k) {
  for (uint32_t b = 0; k->dcache && b < ITAB_BUCKETS; b++) {
    for (struct dentry *d = k->dcache[b], *next; d; d = next) {
      next = d->next;
      free(d->path);
      free(d);
    }
  }
  free(k->dcache);
  k->dcache = NULL;
}

// The open(2) checks on a host inode: the host is mounted read-only.
static int host_open_check(const struct inode *ino, int flags) {
  if ((flags & O_CREAT) && (flags & O_EXCL))
    return -EEXIST;
  if (ino->kind == IK_DIR && wants_write(flags))
    return -EISDIR;
  return wants_write(flags) ? -EROFS : 0;
}

// Find or make the inode for a host path (resolved to its canonical path, like /proc maps).
static int host_lookup(struct kernel *k, const char *p, int flags, struct inode **out) {
  char real[PATH_MAX];
  struct stat st;
  struct inode *cached = dcache_find(k, p);
  if (cached) {
    *out = cached;
    return host_open_check(cached, flags);
  }
  if (!realpath(p, real) || stat(real, &st) < 0)
    return (errno == ENOENT && (flags & O_CREAT)) ? host_create_error(p) : -errno;
  if ((flags & O_CREAT) && (flags & O_EXCL))
    return -EEXIST;
  if (S_ISDIR(st.st_mode) && wants_write(flags))
    return -EISDIR;
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
    return -ENXIO;
  if (wants_write(flags))
    return -EROFS;
  struct inode *ino = itab_find(k, real);
  if (!ino) {
    if (!(ino = inode_alloc(k, S_ISDIR(st.st_mode) ? IK_DIR : IK_HOST, real)))
      return -ENOMEM;
    ino->ino = (uint64_t)st.st_ino;
    ino->dev_major = major(st.st_dev);
    ino->dev_minor = minor(st.st_dev);
    ino->mode = st.st_mode;
    ino->uid = st.st_uid;
    ino->gid = st.st_gid;
    ino->size = (uint64_t)st.st_size;
    ino->linked = 1;
    host_attr_snapshot(ino, real, &st);
    itab_add(k, ino);
  }
  dcache_add(k, p, ino);
  *out = ino;
  return 0;
}

// Resolve a normalised absolute path to an inode, honouring O_CREAT/O_EXCL/O_DIRECTORY.
// The inode is returned without a new reference (the caller takes one).
int vfs_lookup(struct kernel *k, const char *p, int flags, unsigned mode, struct inode **out) {
  int err;
  if (is_tmpfs_dir(p)) {
    if (wants_write(flags))
      return -EISDIR;
    err = host_lookup(k, "/tmp", O_RDONLY, out);
  } else if (in_tmpfs(p)) {
    err = tmpfs_lookup(k, p, flags, mode, out);
  } else if (!strcmp(p, "/dev/null") || !strcmp(p, "/dev/zero")) {
    *out = p[5] == 'n' ? k->dev_null : k->dev_zero;
    err = 0;
  } else {
    err = host_lookup(k, p, flags, out);
  }
  if (!err && (flags & O_DIRECTORY) && (*out)->kind != IK_DIR)
    return -ENOTDIR;
  return err;
}

// Remove a tmpfs name; the inode lives on while files or mappings still use it.
int vfs_unlink(struct kernel *k, const char *p) {
  struct inode *ino;
  if (!in_tmpfs(p)) {
    int err = vfs_lookup(k, p, O_RDONLY, 0, &ino);
    if (err)
      return err;
    return ino->kind == IK_DIR ? -EISDIR : -EROFS;
  }
  if (!(ino = itab_find(k, p)))
    return -ENOENT;
  itab_del(k, ino);
  ino->linked = 0;
  inode_put(k, ino);
  return 0;
}

// rename(2) within tmpfs: to is replaced (its inode lives on while used). The host is
// read-only (-EROFS); a move between tmpfs and the host crosses file systems (-EXDEV).
int vfs_rename(struct kernel *k, const char *from, const char *to) {
  struct inode *ino, *old;
  int err;
  if (!in_tmpfs(from) || !in_tmpfs(to)) {
    if ((err = vfs_lookup(k, from, O_RDONLY, 0, &ino)))
      return err;
    return in_tmpfs(from) || in_tmpfs(to) ? -EXDEV : -EROFS;
  }
  if (!(ino = itab_find(k, from)))
    return -ENOENT;
  if (!strcmp(from, to))
    return 0;
  char *path = strdup(to);
  if (!path)
    return -ENOMEM;
  if ((old = itab_find(k, to))) {
    itab_del(k, old);
    old->linked = 0;
    inode_put(k, old);
  }
  itab_del(k, ino);
  free(ino->path);
  ino->path = path;
  itab_add(k, ino);
  ino->ctime[0] = ino->mtime[0];  // compare simple_rename_timestamp(): ctime changes
  ino->ctime[1] = ino->mtime[1];
  return 0;
}

// The entries of /tmp from position f->pos: ".", "..", then its files in hash order (stable
// while nothing is created or removed).
int tmpfs_readdir(struct kernel *k, struct file *f, filldir_t fill, void *ctx) {
  uint64_t i = 0;
  if (f->pos == 0) {
    if (fill(ctx, ".", 1, f->ino->ino, DT_DIR))
      return 0;
    f->pos++;
  }
  if (f->pos == 1) {
    if (fill(ctx, "..", 2, 2, DT_DIR))
      return 0;
    f->pos++;
  }
  for (uint32_t b = 0; b < ITAB_BUCKETS; b++) {
    for (struct inode *ino = k->itab[b]; ino; ino = ino->hnext) {
      if (ino->kind != IK_TMPFS || strncmp(ino->path, "/tmp/", 5) || strchr(ino->path + 5, '/'))
        continue;
      if (i++ < f->pos - 2)
        continue;
      const char *name = ino->path + 5;
      if (fill(ctx, name, strlen(name), ino->ino, DT_REG))
        return 0;
      f->pos++;
    }
  }
  return 0;
}

// Read page idx of a host file into a fresh frame's content (the page cache's read_folio for
// host files). -EIO if the host file cannot be read.
int host_read_page(struct kernel *k, struct inode *ino, uint64_t idx, pfn_t pfn) {
  uint8_t buf[PAGE_SIZE];
  if (ino->host_fd < 0 && (ino->host_fd = open(ino->path, O_RDONLY | O_CLOEXEC)) < 0)
    return -EIO;
  ssize_t n = pread(ino->host_fd, buf, PAGE_SIZE, (off_t)(idx << PAGE_SHIFT));
  if (n < 0)
    return -EIO;
  memset(buf + n, 0, PAGE_SIZE - (size_t)n);
  for (size_t i = 0; i < PAGE_SIZE; i += 8) {
    uint64_t w;
    memcpy(&w, buf + i, 8);
    if (w)
      return frame_write_bytes(&k->fr, pfn, 0, buf, PAGE_SIZE);
  }
  return 0;  // an all-zero page stays CT_ZERO
}

// Punch a hole over pages [first, end) of a tmpfs or shmem file: unmap them from every
// mapping (private COW copies stay), drop them from the page cache (their charge goes back);
// the size is kept. compare Linux shmem_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
// -EOPNOTSUPP for a file that cannot punch holes (compare vfs_fallocate()).
int inode_punch_hole(struct kernel *k, struct inode *ino, uint64_t first, uint64_t end) {
  if (ino->kind != IK_TMPFS && ino->kind != IK_SHMEM)
    return -EOPNOTSUPP;
  int err = inode_unmap_range(k, ino, first, end, 0);
  if (err)
    return err;
  pagecache_drop(k, ino, first, end);
  ino->version++;
  return 0;
}

// Set a tmpfs file's size. Shrinking unmaps and drops the pages past the end and zeroes the
// tail of the last page, as Linux truncate_pagecache() does.
int inode_truncate(struct kernel *k, struct inode *ino, uint64_t size) {
  if (ino->kind != IK_TMPFS)
    return ino->kind == IK_HOST ? -EROFS : -EINVAL;
  ino->version++;
  inode_touch(ino, 0);
  if (size < ino->size) {
    uint64_t keep = PAGE_ROUND_UP(size) >> PAGE_SHIFT;
    int err = inode_unmap_range(k, ino, keep, UINT64_MAX, 1);
    if (err)
      return err;
    pagecache_drop(k, ino, keep, UINT64_MAX);
    uint64_t last;
    if ((size & (PAGE_SIZE - 1)) && xa_load(&ino->cache, keep - 1, &last)) {
      uint8_t zero[PAGE_SIZE] = {0};
      uint64_t off = size & (PAGE_SIZE - 1);
      if (frame_write_bytes(&k->fr, (pfn_t)last, off, zero, PAGE_SIZE - off))
        return -ENOMEM;
    }
  }
  ino->size = size;
  return 0;
}
