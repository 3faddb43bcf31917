// lib/lib.h — library code every layer may use (compare Linux lib/): the sparse index.
// lib/ is the bottom layer: it includes nothing of the kernel's.
#ifndef SPAWNFD_LIB_H
#define SPAWNFD_LIB_H

#include <stdint.h>

// ---- xarray.c: a sparse array of 64-bit values by 64-bit index (compare Linux lib/xarray.c):
// a radix tree of 64-way nodes whose height follows the highest index present; host memory
// follows the entries present, and empty nodes are freed at once.
#define XA_CHUNK_SHIFT 6
#define XA_CHUNK_SIZE (1U << XA_CHUNK_SHIFT)

struct xa_node {
  uint64_t present;  // bit i: slot i holds a value (leaf) or a node (interior)
  unsigned shift;    // index bits below this node's slots: 0 for a leaf
  union {
    struct xa_node *node;
    uint64_t val;
  } slot[XA_CHUNK_SIZE];
};

struct xarray {
  struct xa_node *head;  // NULL when empty
  uint64_t count;        // values present
};

int xa_load(const struct xarray *xa, uint64_t idx, uint64_t *val);
int xa_store(struct xarray *xa, uint64_t idx, uint64_t val);
int xa_erase(struct xarray *xa, uint64_t idx, uint64_t *old);
int xa_find(const struct xarray *xa, uint64_t *idx, uint64_t *val);
void xa_destroy(struct xarray *xa);
uint64_t xa_nodes(const struct xarray *xa);

#endif
