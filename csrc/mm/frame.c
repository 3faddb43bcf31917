// frame.c — physical memory: frame metadata, a buddy allocator, and frame content.
//
// Metadata is one 8-byte struct frame per 4 KiB frame plus a 64-bit data word in a parallel
// array, both reserved with MAP_NORESERVE: the host backs only the pages that are touched,
// so a terabyte of simulated memory costs nothing until used. Untouched metadata reads as
// zero, which is a free frame that is not the head of a buddy block.
//
// Content is materialised lazily: CT_ZERO (all zero), CT_STAMP (a 64-bit value repeated,
// what populate writes) or CT_BUF (real bytes, once written). Real bytes live in the frame's
// own 4 KiB slot of one flat MAP_NORESERVE region (mem + pfn * 4 KiB), which the CPU
// (arch/x86) maps as its physical memory. A slot whose content is dropped keeps its stale
// bytes (no system call per freed frame: the allocator hands recently freed frames out
// first, so their host pages are reused); only a CT_BUF slot is meaningful, and a slot is
// cleared when it becomes CT_BUF from CT_ZERO. The host thus holds at most the peak of
// frames that ever had real bytes at once.
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"

static inline uint32_t link_next(const struct frames *fr, pfn_t p) {
  return (uint32_t)(fr->data[p] >> 32);
}
static inline uint32_t link_prev(const struct frames *fr, pfn_t p) { return (uint32_t)fr->data[p]; }

static inline void link_set(struct frames *fr, pfn_t p, uint32_t next, uint32_t prev) {
  fr->data[p] = ((uint64_t)next << 32) | prev;
}

// Push the free block at p of the given order on its list (LIFO).
static void free_list_push(struct frames *fr, unsigned order, pfn_t p) {
  struct frame *f = &fr->f[p];
  uint32_t head = fr->free_head[order];
  f->kind = FK_FREE;
  f->ref = 0;
  f->aux = (uint16_t)(FF_BUDDY_HEAD | order);
  link_set(fr, p, head, NO_PFN);
  if (head != NO_PFN)
    link_set(fr, head, link_next(fr, head), p);
  fr->free_head[order] = p;
  fr->free_count[order]++;
}

// Unlink the free block at p from the list of its order.
static void free_list_del(struct frames *fr, unsigned order, pfn_t p) {
  uint32_t next = link_next(fr, p), prev = link_prev(fr, p);
  if (prev != NO_PFN)
    link_set(fr, prev, next, link_prev(fr, prev));
  else
    fr->free_head[order] = next;
  if (next != NO_PFN)
    link_set(fr, next, link_next(fr, next), prev);
  fr->f[p].aux = 0;
  fr->data[p] = 0;
  fr->free_count[order]--;
}

// Reserve metadata for mem_bytes of simulated memory and put it all on the free lists.
// Returns -EINVAL for a size that is not a positive multiple of 4 KiB or above 16 TiB,
// -ENOMEM if the host refuses the reservation.
int frames_init(struct frames *fr, uint64_t mem_bytes) {
  memset(fr, 0, sizeof(*fr));
  if (mem_bytes < 64 * PAGE_SIZE || !PAGE_ALIGNED(mem_bytes) || mem_bytes > (1ULL << 44))
    return -EINVAL;
  fr->nframes = (uint32_t)(mem_bytes >> PAGE_SHIFT);
  fr->map_bytes = (size_t)fr->nframes * sizeof(struct frame);
  fr->data_bytes = (size_t)fr->nframes * sizeof(uint64_t);
  void *m = mmap(NULL, fr->map_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED)
    return -ENOMEM;
  fr->f = m;
  m = mmap(NULL, fr->data_bytes, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    munmap(fr->f, fr->map_bytes);
    fr->f = NULL;
    return -ENOMEM;
  }
  fr->data = m;
  fr->mem_bytes = (size_t)fr->nframes * PAGE_SIZE;
  m = mmap(NULL, fr->mem_bytes, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    munmap(fr->f, fr->map_bytes);
    munmap(fr->data, fr->data_bytes);
    fr->f = NULL;
    return -ENOMEM;
  }
  fr->mem = m;
  for (unsigned o = 0; o <= MAX_ORDER; o++)
    fr->free_head[o] = NO_PFN;
  // Carve [0, nframes) into maximal aligned blocks; push the highest first so that
  // allocation starts at the bottom of memory.
  pfn_t starts[64 + 4096];
  unsigned orders[64 + 4096], n = 0;
  for (uint64_t p = 0; p < fr->nframes;) {
    unsigned o = MAX_ORDER;
    while ((p & ((1ULL << o) - 1)) || p + (1ULL << o) > fr->nframes)
      o--;
    if (n == sizeof(starts) / sizeof(starts[0])) {
      free_list_push(fr, o, (pfn_t)p);  // more blocks than the buffer: push directly
    } else {
      starts[n] = (pfn_t)p;
      orders[n++] = o;
    }
    p += 1ULL << o;
  }
  while (n--)
    free_list_push(fr, orders[n], starts[n]);
  return 0;
}

// Release every page-table buffer, then the content slots and the metadata.
void frames_fini(struct frames *fr) {
  if (!fr->f)
    return;
  for (uint32_t p = 0; p < fr->high; p++) {
    struct frame *f = &fr->f[p];
    if (f->kind == FK_PAGETABLE && fr->data[p])
      free((void *)(uintptr_t)fr->data[p]);
  }
  munmap(fr->mem, fr->mem_bytes);
  munmap(fr->f, fr->map_bytes);
  munmap(fr->data, fr->data_bytes);
  fr->f = NULL;
}

// Take a free block of at least the given order off the lists, splitting it down to
// exactly that order (compare Linux __rmqueue_smallest()). NO_PFN if none is large enough.
static pfn_t buddy_take(struct frames *fr, unsigned order) {
  unsigned o = order;
  while (o <= MAX_ORDER && fr->free_head[o] == NO_PFN)
    o++;
  if (o > MAX_ORDER)
    return NO_PFN;
  pfn_t p = fr->free_head[o];
  free_list_del(fr, o, p);
  while (o > order) {  // split, keeping the lower half
    o--;
    free_list_push(fr, o, p + (1U << o));
  }
  return p;
}

// Give the unused rest of a run back to the free lists as aligned blocks.
static void run_release(struct frames *fr, int r) {
  while (fr->run_next[r] < fr->run_end[r]) {
    pfn_t p = fr->run_next[r];
    unsigned o = 0;
    while (o < RUN_ORDER && !(p & (1U << o)) && p + (2U << o) <= fr->run_end[r])
      o++;
    free_list_push(fr, o, p);
    fr->run_next[r] = p + (1U << o);
  }
}

// Whether either run still holds frames.
static int runs_hold_frames(const struct frames *fr) {
  return fr->run_next[0] < fr->run_end[0] || fr->run_next[1] < fr->run_end[1];
}

// One frame: a recently freed one first, else the next of run r, else a new run carved from
// the buddy lists. Sequential allocation touches only struct frame; page tables have their
// own run so that their data words (buffer pointers) sit together.
static pfn_t single_take(struct frames *fr, int r) {
  if (fr->free_head[0] != NO_PFN) {
    pfn_t p = fr->free_head[0];
    free_list_del(fr, 0, p);
    return p;
  }
  if (fr->run_next[r] == fr->run_end[r]) {
    unsigned o = RUN_ORDER;
    pfn_t p = buddy_take(fr, o);
    while (p == NO_PFN && o > 0)
      p = buddy_take(fr, --o);
    if (p == NO_PFN)
      return NO_PFN;
    fr->run_next[r] = p;
    fr->run_end[r] = p + (1U << o);
  }
  return fr->run_next[r]++;
}

// Allocate 2^order contiguous, aligned frames of the given kind, refcount 1, content zero.
// Returns -ENOMEM when no block is large enough or fault injection says so.
int frame_alloc_order(struct kernel *k, unsigned order, enum frame_kind kind, pfn_t *out) {
  struct frames *fr = &k->fr;
  if (fr->fail_after && ++fr->allocs >= fr->fail_after) {
    fr->fail_after = 0;
    return -ENOMEM;
  }
  pfn_t p = order ? buddy_take(fr, order) : single_take(fr, kind == FK_PAGETABLE);
  if (p == NO_PFN && runs_hold_frames(fr)) {  // the other run, or a larger block, has some
    run_release(fr, 0);
    run_release(fr, 1);
    p = order ? buddy_take(fr, order) : single_take(fr, kind == FK_PAGETABLE);
  }
  if (p == NO_PFN)
    return -ENOMEM;
  struct frame *f = &fr->f[p];
  f->ref = 1;
  f->kind = (uint8_t)kind;
  f->ctype = CT_ZERO;
  f->aux = 0;
  // data[p] is already 0: free_list_del cleared the head's links, and a free non-head frame
  // never has data (Invariant), so plain allocations leave the data array untouched.
  fr->used += 1U << order;
  fr->by_kind[kind] += 1U << order;
  fr->allocated += 1U << order;
  if (p + (1U << order) > fr->high)
    fr->high = p + (1U << order);
  *out = p;
  return 0;
}

// Allocate one frame; see frame_alloc_order.
int frame_alloc(struct kernel *k, enum frame_kind kind, pfn_t *out) {
  return frame_alloc_order(k, 0, kind, out);
}

// Return a single frame to the buddy allocator, merging with free buddies.
static void frame_free(struct frames *fr, pfn_t p) {
  unsigned order = 0;
  while (order < MAX_ORDER) {
    pfn_t buddy = p ^ (1U << order);
    if (buddy >= fr->nframes)
      break;
    struct frame *b = &fr->f[buddy];
    if (b->kind != FK_FREE || b->aux != (FF_BUDDY_HEAD | order))
      break;
    free_list_del(fr, order, buddy);
    p &= ~(1U << order);
    order++;
  }
  free_list_push(fr, order, p);
}

// Take one more reference on a frame.
void frame_get(struct kernel *k, pfn_t pfn) { k->fr.f[pfn].ref++; }

// Drop a reference; the last one releases the content and frees the frame.
void frame_put(struct kernel *k, pfn_t pfn) {
  struct frames *fr = &k->fr;
  struct frame *f = &fr->f[pfn];
  if (f->ref == 0 || f->kind == FK_FREE) {
    kpanic(k, "frame_put: pfn %u has no reference", pfn);
    return;
  }
  if (--f->ref)
    return;
  if (f->kind == FK_ANON && (f->aux & FF_THP))
    return;  // a subpage of a huge page that pmd leaves still map (huge.c)
  if (f->kind == FK_PAGETABLE) {
    pt_buffer_release(k, (void *)(uintptr_t)fr->data[pfn]);
    fr->data[pfn] = 0;
  } else {
    frame_release_content(fr, pfn);
  }
  fr->used--;
  fr->by_kind[f->kind]--;
  fr->freed++;
  f->kind = FK_FREE;
  f->ctype = 0;
  f->aux = 0;
  frame_free(fr, pfn);
}

// The CPU may have translated code from frame p: its content is about to change or go, so
// the translations must go too (arch/x86 compares code_gen before the next instruction).
// compare Linux's tb invalidation on a write to a page QEMU watches for code.
static void frame_code_changes(struct frames *fr, pfn_t p) {
  if (fr->f[p].aux & FF_CODE) {
    fr->f[p].aux &= (uint16_t)~FF_CODE;
    fr->code_gen++;
  }
}

// The frame's content slot in the flat region.
uint8_t *frame_slot(const struct frames *fr, pfn_t p) { return fr->mem + (size_t)p * PAGE_SIZE; }

// Drop the content of a data frame; it reads as zeroes afterwards (its slot keeps stale
// bytes until the frame is materialised again, which clears it).
void frame_release_content(struct frames *fr, pfn_t p) {
  struct frame *f = &fr->f[p];
  frame_code_changes(fr, p);
  if (f->ctype == CT_BUF)
    fr->buffers--;
  if (f->ctype != CT_ZERO)
    fr->data[p] = 0;
  f->ctype = CT_ZERO;
}

// Make the content real bytes in the frame's slot (keeping its value) and return the slot.
// A CT_ZERO slot is cleared, a stamp is written out. Never NULL.
uint8_t *frame_materialise(struct frames *fr, pfn_t p) {
  uint8_t *b = frame_slot(fr, p);
  if (fr->f[p].ctype == CT_BUF)
    return b;
  if (fr->f[p].ctype == CT_STAMP)
    frame_read_bytes(fr, p, 0, b, PAGE_SIZE);
  else
    memset(b, 0, PAGE_SIZE);  // the slot may hold an earlier user's bytes
  fr->f[p].ctype = CT_BUF;
  fr->data[p] = 0;
  fr->buffers++;
  return b;
}

// Fill the page with a 64-bit value repeated (little-endian); 0 means all-zero content.
void frame_set_stamp(struct frames *fr, pfn_t p, uint64_t stamp) {
  frame_release_content(fr, p);
  if (stamp) {
    fr->f[p].ctype = CT_STAMP;
    fr->data[p] = stamp;
  }
}

// Copy src's content into dst (dst's old content is released). -ENOMEM if the host is out.
int frame_copy_content(struct frames *fr, pfn_t dst, pfn_t src) {
  if (fr->f[src].ctype != CT_BUF) {
    frame_release_content(fr, dst);
    fr->f[dst].ctype = fr->f[src].ctype;
    if (fr->f[src].ctype != CT_ZERO)
      fr->data[dst] = fr->data[src];
    return 0;
  }
  uint8_t *b = frame_materialise(fr, dst);
  if (!b)
    return -ENOMEM;
  frame_code_changes(fr, dst);
  memcpy(b, frame_slot(fr, src), PAGE_SIZE);
  return 0;
}

// Copy n bytes at offset off of the frame's content into buf (off + n <= PAGE_SIZE).
void frame_read_bytes(const struct frames *fr, pfn_t p, uint64_t off, uint8_t *buf,
                      uint64_t n) {
  uint8_t ctype = fr->f[p].ctype;
  if (ctype == CT_BUF) {
    memcpy(buf, frame_slot(fr, p) + off, n);
  } else if (ctype == CT_ZERO) {
    memset(buf, 0, n);
  } else {
    uint8_t pat[16];
    for (int i = 0; i < 8; i++)
      pat[i] = pat[i + 8] = (uint8_t)(fr->data[p] >> (8 * i));
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
      memcpy(buf + i, pat + ((off + i) & 7), 8);
    for (; i < n; i++)
      buf[i] = pat[(off + i) & 7];
  }
}

// Write n bytes at offset off into the frame, materialising it. -ENOMEM if the host is out.
int frame_write_bytes(struct frames *fr, pfn_t p, uint64_t off, const uint8_t *buf, uint64_t n) {
  uint8_t *b = frame_materialise(fr, p);
  if (!b)
    return -ENOMEM;
  frame_code_changes(fr, p);
  memcpy(b + off, buf, n);
  return 0;
}
