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
  uint64_t ent;
  if (xa_load(&v->ino->ptshare, chunk, &ent)) {
    pfn_t table = (pfn_t)ent;
    if ((uint32_t)(ent >> 32) != want)
      return 0;
    frame_get(k, table);
    pt_set(k, pmdt, pmd, PTE_MK(table, PTE_P | PTE_W | PTE_U));
    mm->nr_tables++;
    k->st.tables_shared++;
    return 0;
  }
  int err = pt_fill_pmd(mm, pmdt, pmd);
  if (err)
    return err;
  pfn_t table = PTE_PFN(*pmd);
  if (xa_store(&v->ino->ptshare, chunk, table | (uint64_t)want << 32))
    return 0;  // no room in the registry: the table stays this mm's own
  struct ptpage *pg = pt_page(k, table);
  pt_set_share(k, table, PT_FILE, 0);
  pg->ino = v->ino;
  pg->chunk = chunk;
  return 0;
}

// Take a freed table out of its file's registry.
void ptshare_forget(struct inode *ino, uint64_t chunk, pfn_t table) {
  uint64_t ent;
  if (xa_load(&ino->ptshare, chunk, &ent) && (pfn_t)ent == table)
    xa_erase(&ino->ptshare, chunk, NULL);
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
