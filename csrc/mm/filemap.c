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

// Drop every page-cache page at index [from, end), in index order, giving back the commit
// charge of an inode charged per page. compare Linux truncate_inode_pages_range() and
// shmem_unacct_blocks().
void pagecache_drop(struct kernel *k, struct inode *ino, uint64_t from, uint64_t end) {
  uint64_t pfn;
  for (uint64_t i = from; i < end && xa_find(&ino->cache, &i, &pfn) && i < end; i++) {
    xa_erase(&ino->cache, i, NULL);
    frame_put(k, (pfn_t)pfn);
    if (ino->acct_blocks)
      vm_unacct_memory(k, 1);
    if (i == UINT64_MAX)
      break;
  }
}

// The page-cache frame for page idx of ino, read in (host) or zero-filled (tmpfs, shmem) on
// a miss, charged to commit for mm when the inode is charged per page (-ENOSPC if refused,
// compare shmem_inode_acct_blocks()). The cache keeps its own reference; the caller takes
// one per use.
int pagecache_get(struct kernel *k, struct mm *mm, struct inode *ino, uint64_t idx,
                  pfn_t *out) {
  uint64_t hit;
  if (xa_load(&ino->cache, idx, &hit)) {
    *out = (pfn_t)hit;
    return 0;
  }
  if (ino->acct_blocks && vm_enough_memory(k, mm, 1))
    return -ENOSPC;
  pfn_t pfn;
  int err = frame_alloc(k, FK_PAGECACHE, &pfn);
  if (!err && ((ino->kind == IK_HOST && (err = host_read_page(k, ino, idx, pfn))) ||
               (err = xa_store(&ino->cache, idx, pfn))))
    frame_put(k, pfn);
  if (err && ino->acct_blocks)
    vm_unacct_memory(k, 1);
  if (!err)
    *out = pfn;
  return err;
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
    uint64_t pfn;
    if (ino->kind != IK_HOST && !xa_load(&ino->cache, pos >> PAGE_SHIFT, &pfn)) {
      memset(buf + done, 0, chunk);  // a hole reads as zeroes, allocating nothing (SGP_READ)
      done += chunk;
      continue;
    }
    pfn_t got;
    int err = pagecache_get(k, NULL, ino, pos >> PAGE_SHIFT, &got);
    if (err)
      return done ? (int)done : err;
    frame_read_bytes(&k->fr, got, in, buf + done, chunk);
    done += chunk;
  }
  return (int)n;
}

// Write n bytes at off into a tmpfs file for the writer's mm (its commit charge), extending
// it. Returns bytes written.
int inode_write(struct kernel *k, struct mm *mm, struct inode *ino, uint64_t off,
                const uint8_t *buf, uint64_t n) {
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
    int err = pagecache_get(k, mm, ino, pos >> PAGE_SHIFT, &pfn);
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
