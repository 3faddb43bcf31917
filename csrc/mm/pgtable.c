// pgtable.c — x86-64 4-level page tables. Every table is a frame of kind FK_PAGETABLE whose
// data word points at a struct ptpage: 512 64-bit entries plus, for last-level tables, the
// resident-page counters and how the table is shared. The frame's refcount is its share
// count (pmd entries pointing at it) and its aux field counts non-empty entries, so a table
// that empties on munmap is found and freed at once.
//
// Levels: 3 = pgd, 2 = pud, 1 = pmd, 0 = pte table. The walkers mirror Linux mm/memory.c:
// one function per level with the addr/next/end skeleton.
//
// Sharing of last-level tables (a pte table referenced by several pmd entries):
//   PT_COW   shared at fork (cow-pt). The pmd entries are write-protected; any change to the
//            table first breaks the share: the sole owner reuses it, others copy it.
//   PT_FILE  attached through a file's chunk registry (share_pagetables). Faults fill it for
//            every sharer; munmap/mprotect/madvise detach the caller first.
// Frame references from a table's entries are held once per table, except for PT_COW tables
// shared eagerly (cow-pt-eager), whose entries hold one reference per sharer.
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"

static inline unsigned pt_index(uint64_t va, int level) {
  return (unsigned)(va >> (PAGE_SHIFT + 9 * level)) & 511;
}

// End of the level-sized block containing addr, clamped to end (Linux pXd_addr_end()).
uint64_t level_end(uint64_t addr, uint64_t end, int level) {
  uint64_t size = 1ULL << (PAGE_SHIFT + 9 * level);
  uint64_t next = (addr + size) & ~(size - 1);
  return (next - 1 < end - 1) ? next : end;
}

// The table page (entries + header) of a table frame.
struct ptpage *pt_page(struct kernel *k, pfn_t pfn) {
  return (struct ptpage *)(uintptr_t)k->fr.data[pfn];
}

// The entries of a table frame.
pte_t *pt_table(struct kernel *k, pfn_t pfn) { return pt_page(k, pfn)->e; }

// A zeroed table buffer: a recycled one (host memory stays warm, the heap is not trimmed
// and refaulted on every fork/exit cycle), else a fresh one. NULL if the host is out.
static struct ptpage *pt_buffer_get(struct kernel *k) {
  struct ptpage *pg = k->pt_pool;
  if (!pg)
    return calloc(1, sizeof(struct ptpage));
  k->pt_pool = *(struct ptpage **)pg;
  k->pt_pooled--;
  memset(pg, 0, sizeof(*pg));
  return pg;
}

// Keep a freed table buffer for reuse.
void pt_buffer_release(struct kernel *k, void *buf) {
  *(struct ptpage **)buf = k->pt_pool;
  k->pt_pool = buf;
  k->pt_pooled++;
}

// Free the recycled buffers (kernel teardown).
void pt_pool_fini(struct kernel *k) {
  while (k->pt_pool) {
    struct ptpage *next = *(struct ptpage **)k->pt_pool;
    free(k->pt_pool);
    k->pt_pool = next;
  }
  k->pt_pooled = 0;
}

// Allocate an empty, private table frame. -ENOMEM when simulated (or host) memory is out.
int pt_alloc(struct kernel *k, pfn_t *out) {
  int err = frame_alloc(k, FK_PAGETABLE, out);
  if (err)
    return err;
  void *b = pt_buffer_get(k);
  if (!b) {
    frame_put(k, *out);
    return -ENOMEM;
  }
  k->fr.data[*out] = (uint64_t)(uintptr_t)b;
  k->st.tables_allocated++;
  return 0;
}

// Drop a reference on a table frame; the last reference frees it (and takes a file-shared
// table out of its file's registry).
void pt_free(struct kernel *k, pfn_t pfn) {
  if (k->fr.f[pfn].ref == 1) {
    struct ptpage *pg = pt_page(k, pfn);
    if (pt_share(k, pfn) == PT_FILE)
      ptshare_forget(pg->ino, pg->chunk, pfn);
    k->st.tables_freed++;
  }
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

// The rss counter a page of pfn mapped by v belongs to. compare Linux mm_counter().
static int rss_kind(struct kernel *k, const struct vma *v, pfn_t pfn) {
  if (k->fr.f[pfn].kind == FK_ANON)
    return RSS_ANON;
  if (v->ino && (v->ino->kind == IK_SHMEM || v->ino->kind == IK_TMPFS))
    return RSS_SHMEM;
  return RSS_FILE;
}

// Account one page of pfn mapped by v in table (delta +1 or -1); the zero page is not rss.
void pt_rss_add(struct kernel *k, pfn_t table, const struct vma *v, pfn_t pfn, int delta) {
  if (pfn != k->fr.zero_pfn)
    pt_page(k, table)->rss[rss_kind(k, v, pfn)] += (uint16_t)delta;
}

// Walk to the pmd entry for va. With alloc, missing pud/pmd tables are allocated (counted in
// mm->nr_tables) and *err is set to -ENOMEM on failure; without, NULL means "not mapped".
pte_t *pt_walk_pmd(struct mm *mm, uint64_t va, int alloc, pfn_t *pmd_table, int *err) {
  struct kernel *k = mm->k;
  pfn_t t = mm->pgd;
  for (int level = 3; level > 1; level--) {
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
  *pmd_table = t;
  return &pt_table(k, t)[pt_index(va, 1)];
}

// Give an empty pmd entry a new private pte table. -ENOMEM when out of memory.
int pt_fill_pmd(struct mm *mm, pfn_t pmd_table, pte_t *pmd) {
  pfn_t n;
  int err = pt_alloc(mm->k, &n);
  if (err)
    return err;
  mm->nr_tables++;
  pt_set(mm->k, pmd_table, pmd, PTE_MK(n, PTE_P | PTE_W | PTE_U));
  return 0;
}

// The next present pmd entry of mm in [*addr, end), skipping absent upper levels in one step
// each; *addr is moved to the address it covers and *pmd_table to its table. NULL at the end.
pte_t *pt_next_pmd(struct mm *mm, uint64_t *addr, uint64_t end, pfn_t *pmd_table) {
  struct kernel *k = mm->k;
  while (*addr < end) {
    pte_t pgd = pt_table(k, mm->pgd)[pt_index(*addr, 3)];
    if (!(pgd & PTE_P)) {
      *addr = level_end(*addr, end, 3);
      continue;
    }
    pte_t pud = pt_table(k, PTE_PFN(pgd))[pt_index(*addr, 2)];
    if (!(pud & PTE_P)) {
      *addr = level_end(*addr, end, 2);
      continue;
    }
    pte_t *pmd = &pt_table(k, PTE_PFN(pud))[pt_index(*addr, 1)];
    if (*pmd & PTE_P) {
      *pmd_table = PTE_PFN(pud);
      return pmd;
    }
    *addr = level_end(*addr, end, 1);
  }
  return NULL;
}

// Walk to the last-level entry for va, for reading: NULL if not mapped. *table receives the
// pte table; *writable whether every level above allows writes (a COW-shared table does not).
pte_t *pt_lookup(struct mm *mm, uint64_t va, pfn_t *table, int *writable) {
  pfn_t pmdt;
  pte_t *pmd = pt_walk_pmd(mm, va, 0, &pmdt, NULL);
  if (!pmd || !(*pmd & PTE_P) || pmd_is_huge(*pmd))
    return NULL;  // a huge page is no pte (see pt_lookup_huge)
  *table = PTE_PFN(*pmd);
  *writable = !!(*pmd & PTE_W);
  return &pt_table(mm->k, *table)[pt_index(va, 0)];
}

// The pmd leaf mapping va, or NULL when va is not in a huge page.
pte_t *pt_lookup_huge(struct mm *mm, uint64_t va, pfn_t *pmd_table) {
  pte_t *pmd = pt_walk_pmd(mm, va, 0, pmd_table, NULL);
  return (pmd && pmd_is_huge(*pmd)) ? pmd : NULL;
}

// ---- sharing: break, drop ----

// Copy a COW-shared table for mm: every entry, write-protected in both copies (compare
// copy_pte_range() for a COW mapping); page references are raised unless the share was eager
// (they were raised at fork). The pmd entry then points at the private copy.
static int pt_copy_shared(struct mm *mm, pte_t *pmd, pfn_t t) {
  struct kernel *k = mm->k;
  pfn_t n;
  int err = pt_alloc(k, &n);
  if (err)
    return err;
  struct ptpage *src = pt_page(k, t), *dst = pt_page(k, n);
  int eager = pt_eager(k, t);
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
    pte_t e = src->e[i];
    if (!e)
      continue;
    if (!eager && pte_has_frame(e) && PTE_PFN(e) != k->fr.zero_pfn)
      frame_get(k, PTE_PFN(e));  // a guard marker is copied as it is
    src->e[i] = e & ~PTE_W;
    dst->e[i] = e & ~PTE_W;
  }
  k->st.ptes_copied += k->fr.f[t].aux;
  k->fr.f[n].aux = k->fr.f[t].aux;
  memcpy(dst->rss, src->rss, sizeof(dst->rss));
  *pmd = PTE_MK(n, PTE_P | PTE_W | PTE_U);
  frame_put(k, t);  // the other sharers keep it
  k->st.tables_copied++;
  return 0;
}

// Break the COW share of the table at *pmd before mm changes it. compare the RFC's
// break_cow_pte(): the sole owner reuses the table in place, anyone else copies it.
int pt_break_cow(struct mm *mm, pte_t *pmd) {
  struct kernel *k = mm->k;
  pfn_t t = PTE_PFN(*pmd);
  mm_flush_tlb(mm, 0, TASK_SIZE);
  if (k->fr.f[t].ref > 1)
    return pt_copy_shared(mm, pmd, t);
  pt_set_share(k, t, PT_PRIVATE, 0);
  *pmd |= PTE_W;
  k->st.tables_reused++;
  return 0;
}

// compare Linux zap_pte_range(): unmap [addr, end) of one vma within a private table. Guard
// markers go only with ZAP_DROP_MARKERS (munmap, exit: compare ZAP_FLAG_DROP_MARKER);
// ZAP_KEEP_ANON leaves anonymous pages (compare should_zap_folio() without even_cows).
static void zap_pte_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end, int flags) {
  struct kernel *k = mm->k;
  pte_t *pte = &pt_table(k, table)[pt_index(addr, 0)];
  for (; addr < end; addr += PAGE_SIZE, pte++) {
    if (pte_is_guard(*pte) && (flags & ZAP_DROP_MARKERS))
      pt_clear(k, table, pte);
    if (!(*pte & PTE_P))
      continue;
    pfn_t pfn = PTE_PFN(*pte);
    if ((flags & ZAP_KEEP_ANON) && k->fr.f[pfn].kind == FK_ANON)
      continue;
    pt_clear(k, table, pte);
    if (pfn == k->fr.zero_pfn)
      continue;
    pt_rss_add(k, table, v, pfn, -1);
    frame_put(k, pfn);
  }
}

// Empty a table that is about to be freed: drop every page reference its entries hold.
static void pt_release_entries(struct kernel *k, pfn_t t) {
  struct ptpage *pg = pt_page(k, t);
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
    pte_t e = pg->e[i];
    if (!e)
      continue;
    pg->e[i] = 0;
    if (pte_has_frame(e) && PTE_PFN(e) != k->fr.zero_pfn)
      frame_put(k, PTE_PFN(e));
  }
  k->fr.f[t].aux = 0;
  memset(pg->rss, 0, sizeof(pg->rss));
}

// Detach mm from the shared table at *pmd (exit, munmap of the whole chunk, or any change to
// a file-shared chunk): drop the pmd entry and the table reference. An eager COW share also
// drops the page references this sharer held; the last sharer releases everything.
void pt_drop_shared(struct mm *mm, pfn_t pmd_table, pte_t *pmd) {
  struct kernel *k = mm->k;
  pfn_t t = PTE_PFN(*pmd);
  struct ptpage *pg = pt_page(k, t);
  if (k->fr.f[t].ref == 1) {
    pt_release_entries(k, t);
  } else if (pt_share(k, t) == PT_COW && pt_eager(k, t)) {
    for (unsigned i = 0; i < PTRS_PER_TABLE; i++)
      if (pte_has_frame(pg->e[i]) && PTE_PFN(pg->e[i]) != k->fr.zero_pfn)
        frame_put(k, PTE_PFN(pg->e[i]));
  }
  pt_clear(k, pmd_table, pmd);
  mm->nr_tables--;
  pt_free(k, t);
}

// Whether a last-level table holds a guard marker.
static int pt_has_guard(struct kernel *k, pfn_t t) {
  const pte_t *e = pt_table(k, t);
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++)
    if (pte_is_guard(e[i]))
      return 1;
  return 0;
}

// Make every last-level table of [start, end) private to mm before it changes them: file-
// shared tables are detached; COW-shared tables are dropped when drop is set and the chunk
// lies wholly inside the range (munmap, exit; UNSHARE_DROP_UNMARKED: only a table without
// guard markers, which a zap must keep), otherwise broken. A huge page only partly in
// the range is split into a table; one wholly inside is unmapped when drop is set, else left
// for the caller (mprotect changes the leaf). -ENOMEM if a copy or split fails.
int pt_unshare_range(struct mm *mm, uint64_t start, uint64_t end, int drop) {
  struct kernel *k = mm->k;
  pfn_t pmdt;
  pte_t *pmd;
  mm_flush_tlb(mm, start, end);  // zap, protect and detach all come here first
  for (uint64_t addr = start, next; (pmd = pt_next_pmd(mm, &addr, end, &pmdt)); addr = next) {
    next = level_end(addr, end, 1);
    int whole = !(addr & (PMD_SIZE - 1)) && next - addr == PMD_SIZE;
    if (pmd_is_huge(*pmd)) {  // a huge page: unmapped whole, or split when only part changes
      int err = 0;
      if (!whole)
        err = thp_split_pmd(mm, pmdt, pmd);
      else if (drop)
        thp_zap_pmd(mm, pmdt, pmd);
      if (err)
        return err;
      continue;
    }
    int share = pt_share(k, PTE_PFN(*pmd));
    int dropping = share == PT_COW && drop && whole &&
                   !(drop == UNSHARE_DROP_UNMARKED && pt_has_guard(k, PTE_PFN(*pmd)));
    if (share == PT_FILE || dropping) {
      pt_drop_shared(mm, pmdt, pmd);
    } else if (share == PT_COW) {
      int err = pt_break_cow(mm, pmd);
      if (err)
        return err;
    }
  }
  return 0;
}

// compare Linux zap_pmd_range(). Tables shared with others were unshared by the caller.
static void zap_pmd_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end, int flags) {
  pte_t *pmd = &pt_table(mm->k, table)[pt_index(addr, 1)];
  for (uint64_t next; addr < end; addr = next, pmd++) {
    next = level_end(addr, end, 1);
    if (pmd_is_huge(*pmd) && !(flags & ZAP_KEEP_ANON))  // a huge page is anonymous
      kpanic(mm->k, "zap_pmd_range: huge pmd at %#lx not unshared", (unsigned long)addr);
    else if ((*pmd & PTE_P) && !pmd_is_huge(*pmd))
      zap_pte_range(mm, v, PTE_PFN(*pmd), addr, next, flags);
  }
}

// compare Linux zap_pud_range()
static void zap_pud_range(struct mm *mm, const struct vma *v, pfn_t table, uint64_t addr,
                          uint64_t end, int flags) {
  pte_t *pud = &pt_table(mm->k, table)[pt_index(addr, 2)];
  for (uint64_t next; addr < end; addr = next, pud++) {
    next = level_end(addr, end, 2);
    if (*pud & PTE_P)
      zap_pmd_range(mm, v, PTE_PFN(*pud), addr, next, flags);
  }
}

// Unmap every page of [start, end) ∩ each vma, dropping frame references and rss. Shared
// tables are detached, dropped or broken first. Tables stay; pt_free_range frees the empty
// ones. flags: ZAP_DROP_MARKERS, ZAP_KEEP_ANON (see zap_pte_range). compare Linux
// unmap_page_range(). -ENOMEM only if breaking a share needs a copy.
int pt_zap_range(struct mm *mm, uint64_t start, uint64_t end, int flags) {
  int drop = (flags & ZAP_DROP_MARKERS) ? UNSHARE_DROP
             : (flags & ZAP_KEEP_ANON) ? UNSHARE_KEEP : UNSHARE_DROP_UNMARKED;
  int err = pt_unshare_range(mm, start, end, drop);
  if (err)
    return err;
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
        zap_pud_range(mm, v, PTE_PFN(*pgd), addr, next, flags);
    }
  }
  return 0;
}

// ---- free: release tables of [addr, end) that are empty ----

// Free the empty tables below table (at level) within [addr, end); entries of level 0
// tables are data pages and are never freed here.
static void free_level(struct mm *mm, pfn_t table, int level, uint64_t addr, uint64_t end) {
  struct kernel *k = mm->k;
  pte_t *e = &pt_table(k, table)[pt_index(addr, level)];
  for (uint64_t next; addr < end; addr = next, e++) {
    next = level_end(addr, end, level);
    if (!(*e & PTE_P) || (level == 1 && pmd_is_huge(*e)))
      continue;  // a huge page is no table
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

// Tear an address space's tables down: leave every shared table, zap everything, free all
// tables and the pgd. Dropping a share never fails, so neither does teardown.
void pt_teardown(struct mm *mm) {
  if (pt_zap_range(mm, 0, TASK_SIZE, ZAP_DROP_MARKERS))
    kpanic(mm->k, "pt_teardown: unshare failed");
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

// Apply protection changes to every present pte of [start, end) (private tables: the caller
// unshared the range). No table is allocated.
void pt_protect_range(struct mm *mm, uint64_t start, uint64_t end, int clear_w, int set_w,
                      int nx) {
  struct kernel *k = mm->k;
  pfn_t pmdt;
  pte_t *pmd;
  mm_flush_tlb(mm, start, end);  // compare flush_tlb_range() after change_protection()
  for (uint64_t addr = start, next; (pmd = pt_next_pmd(mm, &addr, end, &pmdt)); addr = next) {
    next = level_end(addr, end, 1);
    if (pmd_is_huge(*pmd)) {  // wholly inside: the caller split the partial ones
      pte_t e = *pmd;
      e = clear_w ? (e & ~PTE_W) : e;
      *pmd = nx ? (e | PTE_NX) : (e & ~PTE_NX);
      continue;
    }
    protect_pte_range(k, PTE_PFN(*pmd), addr, next, clear_w, set_w, nx);
  }
}

// ---- guard markers (MADV_GUARD_INSTALL / MADV_GUARD_REMOVE) ----

// The private last-level table for va, for changing markers: allocated when missing (never
// the file's shared one: markers are this mm's own), a huge page split, a COW-shared table
// broken. -ENOMEM when a table cannot be had.
static int guard_table(struct mm *mm, uint64_t va, pfn_t *table) {
  int err = 0;
  pfn_t pmdt;
  pte_t *pmd = pt_walk_pmd(mm, va, 1, &pmdt, &err);
  if (!pmd)
    return err;
  if (!(*pmd & PTE_P))
    err = pt_fill_pmd(mm, pmdt, pmd);
  else if (pmd_is_huge(*pmd))
    err = thp_split_pmd(mm, pmdt, pmd);
  else if (pt_share(mm->k, PTE_PFN(*pmd)) == PT_COW)
    err = pt_break_cow(mm, pmd);
  if (!err)
    *table = PTE_PFN(*pmd);
  return err;
}

// compare Linux guard_install_pte_entry(): a marker in every empty pte of [start, end), which
// the caller zapped. -ENOMEM (a table) leaves the markers placed so far.
int pt_guard_install(struct mm *mm, uint64_t start, uint64_t end) {
  struct kernel *k = mm->k;
  for (uint64_t addr = start, next; addr < end; addr = next) {
    next = level_end(addr, end, 1);
    pfn_t table = 0;
    int err = guard_table(mm, addr, &table);
    if (err)
      return err;
    pte_t *pte = &pt_table(k, table)[pt_index(addr, 0)];
    for (uint64_t a = addr; a < next; a += PAGE_SIZE, pte++)
      if (!*pte)
        pt_set(k, table, pte, PTE_GUARD);
  }
  return 0;
}

// Whether [addr, end) of a last-level table holds a guard marker.
static int range_has_guard(struct kernel *k, pfn_t t, uint64_t addr, uint64_t end) {
  const pte_t *pte = &pt_table(k, t)[pt_index(addr, 0)];
  for (; addr < end; addr += PAGE_SIZE, pte++)
    if (pte_is_guard(*pte))
      return 1;
  return 0;
}

// compare Linux guard_remove_pte_entry(): clear every marker of [start, end), breaking a
// COW-shared table that holds one first. Emptied tables stay until munmap, as after
// MADV_DONTNEED. -ENOMEM if a break needs a copy and memory is out.
int pt_guard_remove(struct mm *mm, uint64_t start, uint64_t end) {
  struct kernel *k = mm->k;
  pfn_t pmdt;
  pte_t *pmd;
  for (uint64_t addr = start, next; (pmd = pt_next_pmd(mm, &addr, end, &pmdt)); addr = next) {
    next = level_end(addr, end, 1);
    if (pmd_is_huge(*pmd) || !range_has_guard(k, PTE_PFN(*pmd), addr, next))
      continue;
    if (pt_share(k, PTE_PFN(*pmd)) == PT_COW) {
      int err = pt_break_cow(mm, pmd);
      if (err)
        return err;
    }
    pfn_t t = PTE_PFN(*pmd);
    pte_t *pte = &pt_table(k, t)[pt_index(addr, 0)];
    for (uint64_t a = addr; a < next; a += PAGE_SIZE, pte++)
      if (pte_is_guard(*pte))
        pt_clear(k, t, pte);
  }
  return 0;
}
