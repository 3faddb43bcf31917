// vma.c — virtual memory areas: a sorted array of non-overlapping [start, end) ranges.
// Lookup is a binary search (O(log n)) behind a one-entry cache; insert and remove move the
// tail with memmove, which for the <= 65530 areas Linux allows is cheaper than a tree.
// Split and merge follow Linux: __split_vma() and vma_merge() with is_mergeable_vma().
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "fs/fs.h"  // up: inode_get/inode_put: a file vma holds its inode, as vm_file holds get_file()

// Index of the first vma whose end is above va (the one containing va, or the next).
int vma_first_at_or_after(struct vma_list *l, uint64_t va) {
  uint32_t lo = 0, hi = l->n;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (l->v[mid].end <= va)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (int)lo;
}

// The vma containing va, or NULL. compare Linux find_vma() + the range check.
struct vma *vma_find(struct vma_list *l, uint64_t va) {
  if (l->cache < l->n && l->v[l->cache].start <= va && va < l->v[l->cache].end)
    return &l->v[l->cache];
  uint32_t i = (uint32_t)vma_first_at_or_after(l, va);
  if (i < l->n && l->v[i].start <= va) {
    l->cache = i;
    return &l->v[i];
  }
  return NULL;
}

// Make room for extra more entries. -ENOMEM past vm.max_map_count or out of host memory.
int vma_reserve(struct vma_list *l, uint32_t extra) {
  if (l->n + extra > MAX_MAP_COUNT)
    return -ENOMEM;
  return vma_grow(l, extra);
}

// Make room for extra more entries, whatever the limit (mmap checks its own: Linux lets
// it reach max_map_count + 1). -ENOMEM out of host memory.
int vma_grow(struct vma_list *l, uint32_t extra) {
  if (l->n + extra <= l->cap)
    return 0;
  uint32_t cap = l->cap ? l->cap * 2 : 16;
  while (cap < l->n + extra)
    cap *= 2;
  struct vma *v = realloc(l->v, cap * sizeof(*v));
  if (!v)
    return -ENOMEM;
  l->v = v;
  l->cap = cap;
  return 0;
}

// Insert a vma that overlaps nothing; returns its index or -ENOMEM.
int vma_insert(struct vma_list *l, const struct vma *v) {
  int err = vma_grow(l, 1);
  if (err)
    return err;
  int i = vma_first_at_or_after(l, v->start);
  memmove(&l->v[i + 1], &l->v[i], (l->n - (uint32_t)i) * sizeof(*v));
  l->v[i] = *v;
  l->n++;
  l->cache = (uint32_t)i;
  return i;
}

// Take a reference on v's file for a copy of v (mremap's new vma). compare copy_vma()'s get_file().
void vma_file_get(const struct vma *v) {
  if (v->ino)
    inode_get(v->ino);
}

// Remove entry i (its file reference must already be dropped by the caller).
void vma_remove(struct vma_list *l, int i) {
  memmove(&l->v[i], &l->v[i + 1], (l->n - (uint32_t)i - 1) * sizeof(l->v[0]));
  l->n--;
  l->cache = 0;
}

// Split vma i at page-aligned address at (start < at < end); the upper part becomes i + 1.
// compare Linux __split_vma(). -ENOMEM if the map count would exceed its limit.
int vma_split(struct kernel *k, struct vma_list *l, int i, uint64_t at) {
  (void)k;
  int err = vma_reserve(l, 1);
  if (err)
    return err;
  struct vma hi = l->v[i];
  hi.start = at;
  hi.pgoff += (at - l->v[i].start) >> PAGE_SHIFT;  // anonymous vmas too (their address)
  if (hi.ino)
    inode_get(hi.ino);
  l->v[i].end = at;
  memmove(&l->v[i + 2], &l->v[i + 1], (l->n - (uint32_t)i - 1) * sizeof(hi));
  l->v[i + 1] = hi;
  l->n++;
  return 0;
}

// Whether a and b may share one anon_vma: b follows a, same flags but for protection, same
// file at contiguous offsets. compare Linux anon_vma_compatible().
static int anon_vma_compatible(const struct vma *a, const struct vma *b) {
  uint32_t mask = ~(uint32_t)(VM_READ | VM_WRITE | VM_EXEC | VM_ANON_VMA | VM_ANON_FORKED |
                              VM_MAYBE_GUARD);
  return a->end == b->start && a->ino == b->ino && !((a->flags ^ b->flags) & mask) &&
         a->pgoff + ((a->end - a->start) >> PAGE_SHIFT) == b->pgoff;
}

// Give vma i of l an anon_vma before its first anonymous page: the next or previous vma's
// when compatible and not inherited, else a new one. compare Linux __anon_vma_prepare() and
// find_mergeable_anon_vma().
void vma_anon_prepare(struct kernel *k, struct vma_list *l, struct vma *v) {
  if (v->anon_vma)
    return;
  int i = (int)(v - l->v);
  const struct vma *nb = NULL;
  if (i >= 0 && i < (int)l->n) {
    if (i + 1 < (int)l->n && anon_vma_compatible(v, &l->v[i + 1]))
      nb = &l->v[i + 1];
    if ((!nb || !nb->anon_vma || (nb->flags & VM_ANON_FORKED)) && i > 0 &&
        anon_vma_compatible(&l->v[i - 1], v))
      nb = &l->v[i - 1];
  }
  if (nb && nb->anon_vma && !(nb->flags & VM_ANON_FORKED))
    v->anon_vma = nb->anon_vma;  // compare reusable_anon_vma()
  else
    v->anon_vma = ++k->next_anon_vma;
  v->flags |= VM_ANON_VMA;
}

// Whether b can extend a (adjacent, same flags and file, contiguous file offset, anon_vmas
// that allow it). compare Linux is_mergeable_vma(), can_vma_merge_after() and
// is_mergeable_anon_vma(): one side without an anon_vma takes the other's unless that one
// was inherited at fork. VM_MAYBE_GUARD is sticky: ignored here, kept by the merged vma.
int vma_can_merge(const struct vma *a, const struct vma *b) {
  uint32_t mask = ~(uint32_t)(VM_ANON_VMA | VM_ANON_FORKED | VM_MAYBE_GUARD);
  if (a->end != b->start || (a->flags & mask) != (b->flags & mask) || a->ino != b->ino)
    return 0;
  if (a->pgoff + ((a->end - a->start) >> PAGE_SHIFT) != b->pgoff)
    return 0;  // anonymous vmas too: their pgoff is where they were first mapped
  if (a->anon_vma && b->anon_vma)
    return a->anon_vma == b->anon_vma;
  const struct vma *has = a->anon_vma ? a : b->anon_vma ? b : NULL;
  return !has || !(has->flags & VM_ANON_FORKED);
}

// a absorbs b's anon_vma when it has none, and its sticky flags (compare VM_STICKY).
static void take_anon_vma(struct vma *a, const struct vma *b) {
  a->flags |= b->flags & VM_MAYBE_GUARD;
  if (!a->anon_vma) {
    a->anon_vma = b->anon_vma;
    a->flags |= b->flags & (VM_ANON_VMA | VM_ANON_FORKED);
  }
}

// Merge vma i with its neighbours where possible; returns the index of the merged vma.
int vma_try_merge(struct kernel *k, struct vma_list *l, int i) {
  if (i + 1 < (int)l->n && vma_can_merge(&l->v[i], &l->v[i + 1])) {
    l->v[i].end = l->v[i + 1].end;
    take_anon_vma(&l->v[i], &l->v[i + 1]);
    if (l->v[i + 1].ino)
      inode_put(k, l->v[i + 1].ino);
    vma_remove(l, i + 1);
  }
  if (i > 0 && vma_can_merge(&l->v[i - 1], &l->v[i])) {
    l->v[i - 1].end = l->v[i].end;
    take_anon_vma(&l->v[i - 1], &l->v[i]);
    if (l->v[i].ino)
      inode_put(k, l->v[i].ino);
    vma_remove(l, i);
    i--;
  }
  return i;
}

// 1 if no vma intersects [start, end).
int vma_range_free(struct vma_list *l, uint64_t start, uint64_t end) {
  int i = vma_first_at_or_after(l, start);
  return i == (int)l->n || l->v[i].start >= end;
}

// Drop every vma's file reference and the array.
void vma_list_fini(struct kernel *k, struct vma_list *l) {
  for (uint32_t i = 0; i < l->n; i++)
    if (l->v[i].ino)
      inode_put(k, l->v[i].ino);
  free(l->v);
  memset(l, 0, sizeof(*l));
}
