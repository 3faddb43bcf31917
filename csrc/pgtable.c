// pgtable.c — x86-64 4-level page tables. Every table is a frame of kind FK_PAGETABLE whose
// buffer holds 512 64-bit entries; the frame's refcount is its share count and its aux field
// counts the non-empty entries, so a table that empties on munmap is found and freed at once.
//
// Levels: 3 = pgd, 2 = pud, 1 = pmd, 0 = pte table. The walkers mirror Linux mm/memory.c:
// one function per level with the addr/next/end skeleton.
#include <stdlib.h>

#include "spawnfd.h"

static inline unsigned pt_index(uint64_t va, int level) {
  return (unsigned)(va >> (PAGE_SHIFT + 9 * level)) & 511;
}

// End of the level-sized block containing addr, clamped to end (Linux pXd_addr_end()).
static inline uint64_t level_end(uint64_t addr, uint64_t end, int level) {
  uint64_t size = 1ULL << (PAGE_SHIFT + 9 * level);
  uint64_t next = (addr + size) & ~(size - 1);
  return (next - 1 < end - 1) ? next : end;
}

// The entries of a table frame.
pte_t *pt_table(struct kernel *k, pfn_t pfn) { return (pte_t *)(uintptr_t)k->fr.data[pfn]; }

// Allocate an empty table frame. -ENOMEM when simulated (or host) memory is exhausted.
int pt_alloc(struct kernel *k, pfn_t *out) {
  int err = frame_alloc(k, FK_PAGETABLE, out);
  if (err)
    return err;
  void *b = calloc(PTRS_PER_TABLE, sizeof(pte_t));
  if (!b) {
    frame_put(k, *out);
    return -ENOMEM;
  }
  k->fr.data[*out] = (uint64_t)(uintptr_t)b;
  k->st.tables_allocated++;
  return 0;
}

// Drop a reference on a table frame; the last reference frees it.
void pt_free(struct kernel *k, pfn_t pfn) {
  if (k->fr.f[pfn].ref == 1)
    k->st.tables_freed++;
  frame_put(k, pfn);
}

// Store an entry, keeping the table's count of non-empty entries.
void pt_set(struct kernel *k, pfn_t table, pte_t *slot, pte_t e) {
  struct frame *t = &k->fr.f[table];
  t->aux = (uint16_t)(t->aux + (e != 0) - (*slot != 0));
  *slot = e;
}

// Empty an entry.
void pt_clear(struct kernel *k, pfn_t table, pte_t *slot) { pt_set(k, table, slot, 0); }

// Walk to the last-level entry for va. With alloc, missing tables are allocated (counted in
// mm->nr_tables) and *err is set to -ENOMEM on failure; without, NULL means "not mapped".
// *table receives the pte table holding the returned slot.
pte_t *pt_walk(struct mm *mm, uint64_t va, int alloc, pfn_t *table, int *err) {
  struct kernel *k = mm->k;
  pfn_t t = mm->pgd;
  for (int level = 3; level > 0; level--) {
    pte_t *slot = &pt_table(k, t)[pt_index(va, level)];
    if (!(*slot & PTE_P)) {
      pfn_t n;
      if (!alloc)
        return NULL;
      int e = pt_alloc(k, &n);
      if (e) {
        *err = e;
        return NULL;
      }
      mm->nr_tables++;
      pt_set(k, t, slot, PTE_MK(n, PTE_P | PTE_W | PTE_U));
    }
    t = PTE_PFN(*slot);
  }
  *table = t;
  return &pt_table(k, t)[pt_index(va, 0)];
}

// ---- zap: remove the mappings of [addr, end) within one vma ----

// compare Linux zap_pte_range()
static void zap_pte_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end) {
  struct kernel *k = mm->k;
  pte_t *pte = &pt_table(k, table)[pt_index(addr, 0)];
  for (; addr < end; addr += PAGE_SIZE, pte++) {
    if (!(*pte & PTE_P))
      continue;
    pfn_t pfn = PTE_PFN(*pte);
    pt_clear(k, table, pte);
    if (pfn == k->fr.zero_pfn)
      continue;
    mm_rss_add(mm, v, pfn, -1);
    frame_put(k, pfn);
  }
}

// compare Linux zap_pmd_range()
static void zap_pmd_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end) {
  pte_t *pmd = &pt_table(mm->k, table)[pt_index(addr, 1)];
  for (uint64_t next; addr < end; addr = next, pmd++) {
    next = level_end(addr, end, 1);
    if (*pmd & PTE_P)
      zap_pte_range(mm, v, PTE_PFN(*pmd), addr, next);
  }
}

// compare Linux zap_pud_range()
static void zap_pud_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end) {
  pte_t *pud = &pt_table(mm->k, table)[pt_index(addr, 2)];
  for (uint64_t next; addr < end; addr = next, pud++) {
    next = level_end(addr, end, 2);
    if (*pud & PTE_P)
      zap_pmd_range(mm, v, PTE_PFN(*pud), addr, next);
  }
}

// Unmap every page of [start, end) ∩ each vma, dropping frame references and rss.
// Tables stay; pt_free_range frees those left empty. compare Linux unmap_page_range()
void pt_zap_range(struct mm *mm, uint64_t start, uint64_t end) {
  for (int i = vma_first_at_or_after(&mm->vmas, start); i < (int)mm->vmas.n; i++) {
    const struct vma *v = &mm->vmas.v[i];
    if (v->start >= end)
      break;
    uint64_t addr = v->start > start ? v->start : start;
    uint64_t stop = v->end < end ? v->end : end;
    pte_t *pgd = &pt_table(mm->k, mm->pgd)[pt_index(addr, 3)];
    for (uint64_t next; addr < stop; addr = next, pgd++) {
      next = level_end(addr, stop, 3);
      if (*pgd & PTE_P)
        zap_pud_range(mm, v, PTE_PFN(*pgd), addr, next);
    }
  }
}

// ---- free: release tables of [addr, end) that are empty ----

// Free the empty tables below table (at level) within [addr, end); entries of level 0
// tables are data pages and are never freed here.
static void free_level(struct mm *mm, pfn_t table, int level, uint64_t addr, uint64_t end) {
  struct kernel *k = mm->k;
  pte_t *e = &pt_table(k, table)[pt_index(addr, level)];
  for (uint64_t next; addr < end; addr = next, e++) {
    next = level_end(addr, end, level);
    if (!(*e & PTE_P))
      continue;
    pfn_t child = PTE_PFN(*e);
    if (level > 1)
      free_level(mm, child, level - 1, addr, next);
    if (k->fr.f[child].aux == 0) {
      pt_clear(k, table, e);
      mm->nr_tables--;
      pt_free(k, child);
    }
  }
}

// Free every table in [start, end) that holds no entries. compare Linux free_pgtables()
void pt_free_range(struct mm *mm, uint64_t start, uint64_t end) {
  if (start < end)
    free_level(mm, mm->pgd, 3, start, end);
}

// Tear an address space's tables down: zap everything, free all tables and the pgd.
void pt_teardown(struct mm *mm) {
  pt_zap_range(mm, 0, TASK_SIZE);
  pt_free_range(mm, 0, 1ULL << 47);
  if (mm->k->fr.f[mm->pgd].aux)
    kpanic(mm->k, "pt_teardown: pgd still has %u entries", mm->k->fr.f[mm->pgd].aux);
  pt_free(mm->k, mm->pgd);
  mm->nr_tables--;
}

// ---- protect: change permission bits of the ptes in [addr, end) ----

// compare Linux change_pte_range(): clear or set W, set or clear NX.
static void protect_pte_range(struct kernel *k, pfn_t table, uint64_t addr, uint64_t end,
                              int clear_w, int set_w, int nx) {
  pte_t *pte = &pt_table(k, table)[pt_index(addr, 0)];
  for (; addr < end; addr += PAGE_SIZE, pte++) {
    if (!(*pte & PTE_P))
      continue;
    pte_t e = *pte;
    if (clear_w)
      e &= ~PTE_W;
    if (set_w && PTE_PFN(e) != k->fr.zero_pfn)
      e |= PTE_W;
    e = nx ? (e | PTE_NX) : (e & ~PTE_NX);
    *pte = e;
  }
}

// Apply protection changes to every present pte of [start, end). No table is allocated.
void pt_protect_range(struct mm *mm, uint64_t start, uint64_t end, int clear_w, int set_w,
                      int nx) {
  struct kernel *k = mm->k;
  for (uint64_t addr = start, next; addr < end; addr = next) {
    next = level_end(addr, end, 1);
    pfn_t table;
    if (pt_walk(mm, addr, 0, &table, NULL))
      protect_pte_range(k, table, addr, next, clear_w, set_w, nx);
  }
}
