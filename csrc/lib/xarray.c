// xarray.c — a sparse array of 64-bit values by 64-bit index, as Linux's xarray keeps the page
// cache: a radix tree of 64-way nodes. The head node covers indices below 64 << head->shift;
// storing a higher index adds levels on top, erasing the last entries of a node frees it and
// drops levels the tree no longer needs. Lookup, store and erase are O(height), height at most
// 11 (64-bit indices); host memory is a node per 64 slots in use, at worst per entry present.
#include <errno.h>
#include <stdlib.h>

#include "lib/lib.h"

#define XA_MAX_HEIGHT 11  // ceil(64 / XA_CHUNK_SHIFT)

// Whether node n covers index idx (its slots reach 64 << shift indices from 0).
static int xa_covers(const struct xa_node *n, uint64_t idx) {
  return n->shift + XA_CHUNK_SHIFT >= 64 || !(idx >> (n->shift + XA_CHUNK_SHIFT));
}

// The slot of idx in node n.
static unsigned xa_offset(const struct xa_node *n, uint64_t idx) {
  return (unsigned)(idx >> n->shift) & (XA_CHUNK_SIZE - 1);
}

// A new empty node of the given shift, or NULL if the host is out of memory.
static struct xa_node *xa_node_new(unsigned shift) {
  struct xa_node *n = calloc(1, sizeof(*n));
  if (n)
    n->shift = shift;
  return n;
}

// Drop levels on top that only hold slot 0, and an empty head.
static void xa_shrink(struct xarray *xa) {
  struct xa_node *n = xa->head;
  while (n && n->shift && n->present == 1) {
    xa->head = n->slot[0].node;
    free(n);
    n = xa->head;
  }
  if (n && !n->present) {
    free(n);
    xa->head = NULL;
  }
}

// Free the empty nodes on a path from the head down (path[0] is the head), bottom up.
static void xa_prune(struct xarray *xa, struct xa_node **path, unsigned *off, int depth) {
  for (int d = depth - 1; d > 0 && !path[d]->present; d--) {
    free(path[d]);
    path[d - 1]->present &= ~(1ULL << off[d - 1]);
  }
  xa_shrink(xa);
}

// The value at idx into *val: 1 if present, 0 if not.
int xa_load(const struct xarray *xa, uint64_t idx, uint64_t *val) {
  const struct xa_node *n = xa->head;
  if (!n || !xa_covers(n, idx))
    return 0;
  for (;;) {
    unsigned o = xa_offset(n, idx);
    if (!(n->present >> o & 1))
      return 0;
    if (!n->shift) {
      *val = n->slot[o].val;
      return 1;
    }
    n = n->slot[o].node;
  }
}

// Set the value at idx (replacing one present). -ENOMEM if the host is out of memory; the
// array is then as it was.
int xa_store(struct xarray *xa, uint64_t idx, uint64_t val) {
  if (!xa->head) {
    unsigned shift = 0;
    while (shift + XA_CHUNK_SHIFT < 64 && idx >> (shift + XA_CHUNK_SHIFT))
      shift += XA_CHUNK_SHIFT;
    if (!(xa->head = xa_node_new(shift)))
      return -ENOMEM;
  }
  while (!xa_covers(xa->head, idx)) {
    struct xa_node *top = xa_node_new(xa->head->shift + XA_CHUNK_SHIFT);
    if (!top) {
      xa_shrink(xa);
      return -ENOMEM;
    }
    top->slot[0].node = xa->head;
    top->present = 1;
    xa->head = top;
  }
  struct xa_node *path[XA_MAX_HEIGHT];
  unsigned off[XA_MAX_HEIGHT];
  struct xa_node *n = xa->head;
  int depth = 0;
  for (;;) {
    unsigned o = xa_offset(n, idx);
    path[depth] = n;
    off[depth++] = o;
    if (!n->shift) {
      if (!(n->present >> o & 1))
        xa->count++;
      n->present |= 1ULL << o;
      n->slot[o].val = val;
      return 0;
    }
    if (!(n->present >> o & 1)) {
      struct xa_node *c = xa_node_new(n->shift - XA_CHUNK_SHIFT);
      if (!c) {
        xa_prune(xa, path, off, depth);
        return -ENOMEM;
      }
      n->slot[o].node = c;
      n->present |= 1ULL << o;
    }
    n = n->slot[o].node;
  }
}

// Remove the value at idx, its old value into *old (may be NULL): 1 if it was present.
// Nodes left empty are freed.
int xa_erase(struct xarray *xa, uint64_t idx, uint64_t *old) {
  struct xa_node *path[XA_MAX_HEIGHT];
  unsigned off[XA_MAX_HEIGHT];
  struct xa_node *n = xa->head;
  int depth = 0;
  if (!n || !xa_covers(n, idx))
    return 0;
  for (;;) {
    unsigned o = xa_offset(n, idx);
    if (!(n->present >> o & 1))
      return 0;
    path[depth] = n;
    off[depth++] = o;
    if (!n->shift)
      break;
    n = n->slot[o].node;
  }
  if (old)
    *old = n->slot[off[depth - 1]].val;
  n->present &= ~(1ULL << off[depth - 1]);
  xa->count--;
  xa_prune(xa, path, off, depth);
  return 1;
}

// The first present index >= *idx in node n, whose index 0 is base.
static int xa_node_find(const struct xa_node *n, uint64_t base, uint64_t *idx, uint64_t *val) {
  unsigned o = *idx > base ? (unsigned)((*idx - base) >> n->shift) : 0;
  for (; o < XA_CHUNK_SIZE; o++) {
    if (!(n->present >> o & 1))
      continue;
    uint64_t at = base + ((uint64_t)o << n->shift);
    if (!n->shift) {
      *idx = at;
      *val = n->slot[o].val;
      return 1;
    }
    if (xa_node_find(n->slot[o].node, at, idx, val))
      return 1;
  }
  return 0;
}

// The first present entry at an index >= *idx: its index into *idx and value into *val,
// 1 if found, 0 if none (then *idx is unchanged). Iterate with ++idx after each hit.
int xa_find(const struct xarray *xa, uint64_t *idx, uint64_t *val) {
  const struct xa_node *n = xa->head;
  if (!n || !xa_covers(n, *idx))
    return 0;
  return xa_node_find(n, 0, idx, val);
}

// Free node n and every node below it.
static void xa_node_free(struct xa_node *n) {
  if (n->shift)
    for (unsigned o = 0; o < XA_CHUNK_SIZE; o++)
      if (n->present >> o & 1)
        xa_node_free(n->slot[o].node);
  free(n);
}

// Free every node; the array is empty after.
void xa_destroy(struct xarray *xa) {
  if (xa->head)
    xa_node_free(xa->head);
  xa->head = NULL;
  xa->count = 0;
}

// Count the nodes below n (n included).
static uint64_t xa_node_count(const struct xa_node *n) {
  uint64_t c = 1;
  if (n->shift)
    for (unsigned o = 0; o < XA_CHUNK_SIZE; o++)
      if (n->present >> o & 1)
        c += xa_node_count(n->slot[o].node);
  return c;
}

// The nodes the array holds (host memory is this times sizeof(struct xa_node)).
uint64_t xa_nodes(const struct xarray *xa) { return xa->head ? xa_node_count(xa->head) : 0; }
