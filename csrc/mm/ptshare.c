// ptshare.c — shared page tables for MAP_SHARED file mappings (Kernel(share_pagetables=True);
// compare Linux huge_pmd_share() for hugetlb and the mshare proposal). A file keeps a registry
// of last-level tables by 2 MiB chunk; a mapping that covers a whole chunk at an address
// congruent to its file offset attaches to the chunk's table instead of building its own, so a
// fault by one sharer fills it for all. Detaching is pgtable.c's (pt_unshare_range); a freed
// table leaves the registry through ptshare_forget().
#include <stdlib.h>

#include "mm/mm.h"

// The chunk index of va if vma v may use the file's shared table for it: a shared file
// mapping covering the whole 2 MiB chunk, at an address congruent to its file offset.
static int ptshare_chunk(const struct vma *v, uint64_t va, uint64_t *chunk) {
  uint64_t lo = va & ~(PMD_SIZE - 1);
  if (!v->ino || !(v->flags & VM_SHARED) || lo < v->start || lo + PMD_SIZE > v->end)
    return 0;
  uint64_t idx = v->pgoff + ((lo - v->start) >> PAGE_SHIFT);
  if (idx & (PTRS_PER_TABLE - 1))
    return 0;
  *chunk = idx / PTRS_PER_TABLE;
  return 1;
}

// The registry entry of a file chunk, growing the registry. NULL if the host is out of memory.
static struct ptshare_ent *ptshare_slot(struct inode *ino, uint64_t chunk) {
  if (chunk >= ino->ptshare_cap) {
    uint64_t cap = ino->ptshare_cap ? ino->ptshare_cap : 8;
    while (cap <= chunk)
      cap *= 2;
    struct ptshare_ent *r = realloc(ino->ptshare, cap * sizeof(*r));
    if (!r)
      return NULL;
    for (uint64_t i = ino->ptshare_cap; i < cap; i++)
      r[i].table = NO_PFN;
    ino->ptshare = r;
    ino->ptshare_cap = cap;
  }
  return &ino->ptshare[chunk];
}

// Fill an empty pmd entry of a shared file mapping with the file's table for the chunk:
// attach to the existing one when its protection matches, or create and register it.
// Leaves the entry empty when sharing does not apply (the caller builds a private table).
// compare Linux huge_pmd_share() and the mshare proposal.
int ptshare_attach(struct mm *mm, const struct vma *v, uint64_t va, pfn_t pmdt, pte_t *pmd) {
  struct kernel *k = mm->k;
  uint64_t chunk;
  uint32_t want = v->flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED);
  if (!k->share_pagetables || !ptshare_chunk(v, va, &chunk))
    return 0;
  struct ptshare_ent *e = ptshare_slot(v->ino, chunk);
  if (!e)
    return -ENOMEM;
  if (e->table != NO_PFN) {
    if (e->flags != want)
      return 0;
    frame_get(k, e->table);
    pt_set(k, pmdt, pmd, PTE_MK(e->table, PTE_P | PTE_W | PTE_U));
    mm->nr_tables++;
    k->st.tables_shared++;
    return 0;
  }
  int err = pt_fill_pmd(mm, pmdt, pmd);
  if (err)
    return err;
  struct ptpage *pg = pt_page(k, PTE_PFN(*pmd));
  pt_set_share(k, PTE_PFN(*pmd), PT_FILE, 0);
  pg->ino = v->ino;
  pg->chunk = chunk;
  e->table = PTE_PFN(*pmd);
  e->flags = want;
  return 0;
}

// Take a freed table out of its file's registry.
void ptshare_forget(struct inode *ino, uint64_t chunk, pfn_t table) {
  if (chunk < ino->ptshare_cap && ino->ptshare[chunk].table == table)
    ino->ptshare[chunk].table = NO_PFN;
}

// Fork and map_cow: attach the child dst to the file-shared tables the parent src uses in
// shared vma v (perhaps clipped to a range), only for 2 MiB chunks v wholly covers and dst has
// no table for yet; the rest dst refaults from the page cache. -ENOMEM if an upper-level
// table cannot be allocated.
int ptshare_fork_range(struct mm *dst, struct mm *src, const struct vma *v) {
  struct kernel *k = src->k;
  pfn_t src_pmdt, dst_pmdt;
  pte_t *src_pmd;
  uint64_t end = v->end;
  for (uint64_t addr = v->start, next; (src_pmd = pt_next_pmd(src, &addr, end, &src_pmdt));
       addr = next) {
    next = level_end(addr, end, 1);
    int err = 0;
    uint64_t lo = addr & ~(PMD_SIZE - 1);
    if (pt_share(k, PTE_PFN(*src_pmd)) != PT_FILE || lo < v->start || lo + PMD_SIZE > v->end)
      continue;
    pte_t *dst_pmd = pt_walk_pmd(dst, addr, 1, &dst_pmdt, &err);
    if (!dst_pmd)
      return err;
    if (*dst_pmd & PTE_P)
      continue;
    frame_get(k, PTE_PFN(*src_pmd));
    pt_set(k, dst_pmdt, dst_pmd, *src_pmd);
    dst->nr_tables++;
  }
  return 0;
}
