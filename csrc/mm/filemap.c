// filemap.c — the page cache (compare Linux mm/filemap.c): an inode's pages by page index,
// each holding one frame reference; reads and writes of file content go through it.
// The index is a sparse array (lib/xarray.c) of pfns by page index: host memory follows the
// pages present, however far into the file they lie.
// Calls up: host_read_page() (fs/vfs.c) fills a host file's page on a miss, as Linux calls the
// address space's read_folio.
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "fs/fs.h"  // up: host_read_page (read_folio)

// Drop every page-cache page at index >= from, in index order.
void pagecache_drop(struct kernel *k, struct inode *ino, uint64_t from) {
  uint64_t pfn;
  for (uint64_t i = from; xa_find(&ino->cache, &i, &pfn); i++) {
    xa_erase(&ino->cache, i, NULL);
    frame_put(k, (pfn_t)pfn);
    if (i == UINT64_MAX)
      break;
  }
}

// The page-cache frame for page idx of ino, read in (host) or zero-filled (tmpfs, shmem) on
// a miss. The cache keeps its own reference; the caller takes one per use.
int pagecache_get(struct kernel *k, struct inode *ino, uint64_t idx, pfn_t *out) {
  uint64_t hit;
  if (xa_load(&ino->cache, idx, &hit)) {
    *out = (pfn_t)hit;
    return 0;
  }
  pfn_t pfn;
  int err = frame_alloc(k, FK_PAGECACHE, &pfn);
  if (err)
    return err;
  if ((ino->kind == IK_HOST && (err = host_read_page(k, ino, idx, pfn))) ||
      (err = xa_store(&ino->cache, idx, pfn))) {
    frame_put(k, pfn);
    return err;
  }
  *out = pfn;
  return 0;
}

// Read up to n bytes at off (short at end of file). Returns bytes read.
int inode_read(struct kernel *k, struct inode *ino, uint64_t off, uint8_t *buf, uint64_t n) {
  if (off >= ino->size)
    return 0;
  if (n > ino->size - off)
    n = ino->size - off;
  if (n > INT32_MAX)
    n = INT32_MAX & PAGE_MASK;
  for (uint64_t done = 0; done < n;) {
    uint64_t pos = off + done, in = pos & (PAGE_SIZE - 1);
    uint64_t chunk = PAGE_SIZE - in < n - done ? PAGE_SIZE - in : n - done;
    pfn_t pfn;
    int err = pagecache_get(k, ino, pos >> PAGE_SHIFT, &pfn);
    if (err)
      return done ? (int)done : err;
    frame_read_bytes(&k->fr, pfn, in, buf + done, chunk);
    done += chunk;
  }
  return (int)n;
}

// Write n bytes at off into a tmpfs file, extending it. Returns bytes written.
int inode_write(struct kernel *k, struct inode *ino, uint64_t off, const uint8_t *buf,
                uint64_t n) {
  if (n > INT32_MAX)
    n = INT32_MAX & PAGE_MASK;
  if (off + n < off || off + n > (1ULL << 43))
    return -EFBIG;
  ino->version++;
  inode_touch(ino, 0);  // up: fs/stat.c keeps a tmpfs file's mtime and ctime
  uint64_t done = 0;
  while (done < n) {
    uint64_t pos = off + done, in = pos & (PAGE_SIZE - 1);
    uint64_t chunk = PAGE_SIZE - in < n - done ? PAGE_SIZE - in : n - done;
    pfn_t pfn;
    int err = pagecache_get(k, ino, pos >> PAGE_SHIFT, &pfn);
    if (!err)
      err = frame_write_bytes(&k->fr, pfn, in, buf + done, chunk);
    if (err) {
      if (!done)
        return err;
      break;
    }
    done += chunk;
  }
  if (off + done > ino->size)
    ino->size = off + done;
  return (int)done;
}
