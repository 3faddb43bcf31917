// filemap.c — the page cache (compare Linux mm/filemap.c): an inode's pages by page index,
// each holding one frame reference; reads and writes of file content go through it.
// The index is an array of pfns by page index, NO_PFN where a page is absent.
// Calls up: host_read_page() (fs/vfs.c) fills a host file's page on a miss, as Linux calls the
// address space's read_folio.
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "fs/fs.h"  // up: host_read_page (read_folio)

// Drop every page-cache page at index >= from.
void pagecache_drop(struct kernel *k, struct inode *ino, uint64_t from) {
  for (uint64_t i = from; i < ino->cache_cap; i++) {
    if (ino->cache[i] != NO_PFN) {
      frame_put(k, ino->cache[i]);
      ino->cache[i] = NO_PFN;
      ino->cached--;
    }
  }
}

// Grow the page-cache index to hold idx. -ENOMEM if the host is out of memory.
static int pagecache_reserve(struct inode *ino, uint64_t idx) {
  if (idx < ino->cache_cap)
    return 0;
  uint64_t cap = ino->cache_cap ? ino->cache_cap : 16;
  while (cap <= idx)
    cap *= 2;
  uint32_t *c = realloc(ino->cache, cap * sizeof(*c));
  if (!c)
    return -ENOMEM;
  for (uint64_t i = ino->cache_cap; i < cap; i++)
    c[i] = NO_PFN;
  ino->cache = c;
  ino->cache_cap = cap;
  return 0;
}

// The page-cache frame for page idx of ino, read in (host) or zero-filled (tmpfs, shmem) on
// a miss. The cache keeps its own reference; the caller takes one per use.
int pagecache_get(struct kernel *k, struct inode *ino, uint64_t idx, pfn_t *out) {
  if (idx < ino->cache_cap && ino->cache[idx] != NO_PFN) {
    *out = ino->cache[idx];
    return 0;
  }
  int err = pagecache_reserve(ino, idx);
  if (err)
    return err;
  pfn_t pfn;
  if ((err = frame_alloc(k, FK_PAGECACHE, &pfn)))
    return err;
  if (ino->kind == IK_HOST && (err = host_read_page(k, ino, idx, pfn))) {
    frame_put(k, pfn);
    return err;
  }
  ino->cache[idx] = pfn;
  ino->cached++;
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
