// fault.c — the page-fault path. Every access (read, write, populate, the kernel's own
// copy-out) that finds no usable pte comes here. compare Linux handle_pte_fault():
//   pte empty, anonymous vma      -> do_anonymous_page: read maps the zero page, write allocates
//   pte empty, file vma           -> do_read_fault / do_cow_fault / do_shared_fault
//   pte present, write to !W pte  -> do_wp_page
#include "mm/mm.h"

// Whether the vma's protection allows the access (x86: any of r/w/x implies readable).
int vma_allows(const struct vma *v, int write) {
  return write ? !!(v->flags & VM_WRITE) : !!(v->flags & (VM_READ | VM_WRITE | VM_EXEC));
}

// The pte bits a mapping of this vma gets.
static inline pte_t vma_pte_bits(const struct vma *v, int writable) {
  pte_t e = PTE_P | PTE_U | PTE_A;
  if (writable)
    e |= PTE_W | PTE_D;
  if (!(v->flags & VM_EXEC))
    e |= PTE_NX;
  return e;
}

// Map pfn at the empty slot pte, accounting rss in the table.
static void map_page(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte, pfn_t pfn,
                     int writable) {
  pt_set(mm->k, table, pte, PTE_MK(pfn, vma_pte_bits(v, writable)));
  pt_rss_add(mm->k, table, v, pfn, 1);
  if (mm->k->fr.f[pfn].kind == FK_ANON)
    vma_anon_prepare(mm->k, &mm->vmas, v);  // compare anon_vma_prepare(): fork copies it
}

// compare Linux do_anonymous_page(): a read maps the shared zero page read-only, a write
// allocates a zeroed frame.
static int do_anonymous_page(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte,
                             int write, pfn_t *out) {
  struct kernel *k = mm->k;
  if (!write) {
    pt_set(k, table, pte, PTE_MK(k->fr.zero_pfn, vma_pte_bits(v, 0)));
    k->st.zero_page_maps++;
    k->st.faults[FAULT_ZERO]++;
    *out = k->fr.zero_pfn;
    return 0;
  }
  int err = frame_alloc(k, FK_ANON, out);
  if (err)
    return err;
  map_page(mm, v, table, pte, *out, 1);
  k->st.faults[FAULT_ANON]++;
  return 0;
}

// Allocate an anonymous copy of src for a COW break. -ENOMEM when out of memory.
static int copy_page(struct kernel *k, pfn_t src, pfn_t *out) {
  int err = frame_alloc(k, FK_ANON, out);
  if (err)
    return err;
  if ((err = frame_copy_content(&k->fr, *out, src))) {
    frame_put(k, *out);
    return err;
  }
  k->st.pages_copied++;
  k->st.faults[FAULT_COW]++;
  return 0;
}

// compare Linux do_read_fault()/do_cow_fault()/do_shared_fault(): map the page-cache page,
// or for a private write a private copy of it. Past end of file: -EFAULT (SIGBUS).
static int do_file_fault(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte,
                         uint64_t va, int write, pfn_t *out) {
  struct kernel *k = mm->k;
  uint64_t idx = v->pgoff + ((va - v->start) >> PAGE_SHIFT);
  if (idx >= PAGE_ROUND_UP(v->ino->size) >> PAGE_SHIFT)
    return -EFAULT;
  pfn_t pc;
  int err = pagecache_get(k, mm, v->ino, idx, &pc);
  if (err)
    return err;
  if (v->flags & VM_SHARED) {
    frame_get(k, pc);
    map_page(mm, v, table, pte, pc, !!(v->flags & VM_WRITE));
    k->st.faults[FAULT_SHARED]++;
    *out = pc;
    return 0;
  }
  if (!write) {
    frame_get(k, pc);
    map_page(mm, v, table, pte, pc, 0);
    k->st.faults[FAULT_FILE]++;
    *out = pc;
    return 0;
  }
  if ((err = copy_page(k, pc, out)))
    return err;
  map_page(mm, v, table, pte, *out, 1);
  return 0;
}

// compare Linux do_wp_page(), in its order: a shared mapping just becomes writable; the
// zero page is replaced by a fresh frame; an anonymous page with no other user is reused in
// place; anything else is copied.
static int do_wp_page(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte, pfn_t *out) {
  struct kernel *k = mm->k;
  pfn_t old = PTE_PFN(*pte);
  struct frame *f = &k->fr.f[old];
  if (v->flags & VM_SHARED) {
    *pte |= PTE_W | PTE_D | PTE_A;
    k->st.faults[FAULT_WP_SHARED]++;
    *out = old;
    return 0;
  }
  if (old != k->fr.zero_pfn && f->kind == FK_ANON && frame_mapcount(k, old) == 1) {
    *pte |= PTE_W | PTE_D | PTE_A;
    k->st.faults[FAULT_WP_REUSE]++;
    *out = old;
    return 0;
  }
  pfn_t n;
  int err;
  if (old == k->fr.zero_pfn) {
    if ((err = frame_alloc(k, FK_ANON, &n)))
      return err;
    k->st.faults[FAULT_ANON]++;
  } else if ((err = copy_page(k, old, &n))) {
    return err;
  }
  pt_clear(k, table, pte);
  if (old != k->fr.zero_pfn) {
    pt_rss_add(k, table, v, old, -1);
    frame_put(k, old);
  }
  map_page(mm, v, table, pte, n, 1);
  mm_flush_tlb(mm, 0, TASK_SIZE);  // the old frame may be cached: flush_tlb_page()
  *out = n;
  return 0;
}

// Resolve an access to va through the pte slot of its (private or file-shared) table. On
// success *out is the frame now mapped there, writable if write. compare handle_pte_fault().
int fault_pte(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte, uint64_t va,
              int write, pfn_t *out) {
  if (pte_is_guard(*pte))
    return -EFAULT;  // compare handle_pte_marker(): VM_FAULT_SIGSEGV
  if (!(*pte & PTE_P)) {
    if (!v->ino)
      return do_anonymous_page(mm, v, table, pte, write, out);
    return do_file_fault(mm, v, table, pte, va, write, out);
  }
  if (write && !(*pte & PTE_W))
    return do_wp_page(mm, v, table, pte, out);
  *pte |= PTE_A | (write ? PTE_D : 0);
  *out = PTE_PFN(*pte);
  return 0;
}

// The last-level table for va, ready to be changed by a fault: an empty pmd entry gets a
// table (the file's shared one where share_pagetables allows), a COW-shared table is broken
// first. compare Linux __handle_mm_fault() down to the pmd, plus the RFC's break_cow_pte().
int fault_table(struct mm *mm, struct vma *v, uint64_t va, pfn_t *table) {
  int err = 0;
  pfn_t pmdt;
  pte_t *pmd = pt_walk_pmd(mm, va, 1, &pmdt, &err);
  if (!pmd)
    return err;
  if (!(*pmd & PTE_P)) {
    if (!(err = ptshare_attach(mm, v, va, pmdt, pmd)) && !(*pmd & PTE_P))
      err = pt_fill_pmd(mm, pmdt, pmd);
  } else if (pmd_is_huge(*pmd)) {  // a caller that needs 4 KiB entries here
    err = thp_split_pmd(mm, pmdt, pmd);
  } else if (pt_share(mm->k, PTE_PFN(*pmd)) == PT_COW) {
    err = pt_break_cow(mm, pmd);
  }
  if (!err)
    *table = PTE_PFN(*pmd);
  return err;
}

// The huge-page part of a fault: an empty pmd of an eligible chunk gets a huge page, a
// present leaf is used, a write to a write-protected one goes to thp_wp_fault. Returns 1
// when resolved (*out set), 0 to continue with 4 KiB pages, or -ENOMEM.
int fault_huge(struct mm *mm, struct vma *v, uint64_t va, int write, pfn_t *out) {
  int err = 0;
  pfn_t pmdt;
  if (mm->k->thp == THP_NEVER && !pt_lookup_huge(mm, va, &pmdt))
    return 0;  // no huge pages here: the ordinary path walks once
  pte_t *pmd = pt_walk_pmd(mm, va, 1, &pmdt, &err);
  if (!pmd)
    return err;
  if (!*pmd)
    return thp_fault(mm, v, pmdt, pmd, va, out);
  if (!pmd_is_huge(*pmd))
    return 0;
  if (write && !(*pmd & PTE_W))
    return thp_wp_fault(mm, v, pmdt, pmd, va, out);
  *pmd |= PTE_A | (write ? PTE_D : 0);
  *out = PTE_PFN(*pmd) + (pfn_t)((va >> PAGE_SHIFT) & (HPAGE_NR - 1));
  return 1;
}

// Fault va in for an access the vma allows.
int handle_fault(struct mm *mm, struct vma *v, uint64_t va, int write, pfn_t *out) {
  pfn_t table;
  int err = fault_huge(mm, v, va, write, out);
  if (err)
    return err < 0 ? err : 0;
  err = fault_table(mm, v, va, &table);
  if (err)
    return err;
  pte_t *pte = &pt_table(mm->k, table)[(va >> PAGE_SHIFT) & 511];
  return fault_pte(mm, v, table, pte, va, write, out);
}
