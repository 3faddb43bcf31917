// huge.c — transparent huge pages for private anonymous memory.
//
// A fault in a 2 MiB-aligned range lying wholly inside one eligible vma (Kernel(thp=
// "always"), or "madvise" and MADV_HUGEPAGE; never MADV_NOHUGEPAGE) maps a 2 MiB page with a
// single pmd leaf entry (PTE_PS), when the buddy allocator has 512 contiguous, aligned
// frames (an order-9 block); otherwise the fault falls back to 4 KiB pages.
//
// A huge page is 512 ordinary frames flagged FF_THP_HEAD / FF_THP_TAIL (each keeps its own
// content, so nothing moves when it is split). References:
//   thp_maps[head >> 9]  pmd leaf entries mapping the whole huge page (fork raises it by one:
//                        a pmd leaf is copied in one step per 2 MiB)
//   frame ref            pte entries mapping that 4 KiB subpage (after a pmd was split)
// A subpage's map count is the sum of both; the 512 frames stay allocated while any pmd
// maps them, and when the last pmd mapping goes the huge page dissolves into 512 ordinary
// frames (those no pte maps are freed). compare Linux folio mapcounts and deferred split.
//
// Splitting a pmd (munmap, mprotect or madvise over part of it, or a COW fault under the
// "split" policy) replaces the leaf by a page table whose 512 entries map the subpages with
// the leaf's bits. A write fault on a write-protected leaf reuses it when this mm is its only
// user; otherwise Kernel(thp_cow=) decides: "split" splits and copies the one 4 KiB page
// written (a page table and a frame), "copy-huge" copies all 2 MiB into a new huge page.
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"

// Allocate the map-count array (one word per 2 MiB of simulated memory, untouched until
// used). -ENOMEM if the host is out of memory.
int thp_init(struct kernel *k) {
  k->thp_maps = calloc((k->fr.nframes >> HPAGE_ORDER) + 1, sizeof(*k->thp_maps));
  return k->thp_maps ? 0 : -ENOMEM;
}

// The head frame of the huge page a frame belongs to.
static inline pfn_t thp_head(pfn_t pfn) { return pfn & ~(pfn_t)(HPAGE_NR - 1); }

// How many mappings a data frame has: its pte references, plus the pmd leaf mappings of the
// huge page it belongs to. This is what copy-on-write compares with 1.
uint32_t frame_mapcount(struct kernel *k, pfn_t pfn) {
  const struct frame *f = &k->fr.f[pfn];
  if (f->kind == FK_ANON && (f->aux & FF_THP))
    return f->ref + k->thp_maps[thp_head(pfn) >> HPAGE_ORDER];
  return f->ref;
}

// Whether the 2 MiB chunk of va may be a huge page in vma v.
int thp_eligible(struct kernel *k, const struct vma *v, uint64_t va) {
  uint64_t lo = va & ~(PMD_SIZE - 1);
  if (k->thp == THP_NEVER || v->ino || (v->flags & (VM_SHARED | VM_NOHUGEPAGE)))
    return 0;
  if (k->thp == THP_MADVISE && !(v->flags & VM_HUGEPAGE))
    return 0;
  return lo >= v->start && lo + PMD_SIZE <= v->end;
}

// A new huge page (512 zeroed anonymous frames, one pmd mapping counted). -ENOMEM when no
// aligned order-9 block is free.
static int thp_alloc(struct kernel *k, pfn_t *head) {
  int err = frame_alloc_order(k, HPAGE_ORDER, FK_ANON, head);
  if (err)
    return err;
  struct frame *f = &k->fr.f[*head];
  for (unsigned i = 0; i < HPAGE_NR; i++) {
    f[i].ref = 0;
    f[i].kind = FK_ANON;
    f[i].ctype = CT_ZERO;
    f[i].aux = i ? FF_THP_TAIL : FF_THP_HEAD;
  }
  k->thp_maps[*head >> HPAGE_ORDER] = 1;
  return 0;
}

// The bits of a pmd leaf for vma v.
static pte_t thp_bits(const struct vma *v, int writable) {
  pte_t e = PTE_P | PTE_U | PTE_A | PTE_PS;
  if (writable)
    e |= PTE_W | PTE_D;
  if (!(v->flags & VM_EXEC))
    e |= PTE_NX;
  return e;
}

// Drop one pmd mapping of the huge page at head; the last one dissolves it into ordinary
// frames, freeing those no pte maps.
void thp_put(struct kernel *k, pfn_t head) {
  uint32_t *maps = &k->thp_maps[head >> HPAGE_ORDER];
  if (*maps == 0) {
    kpanic(k, "thp_put: huge page %u is not mapped", head);
    return;
  }
  if (--*maps)
    return;
  struct frame *f = &k->fr.f[head];
  for (unsigned i = 0; i < HPAGE_NR; i++) {
    f[i].aux &= FF_CODE;  // an ordinary frame now; translated code stays tracked
    if (f[i].ref == 0) {  // no pte maps it: free it as the single frame it now is
      f[i].ref = 1;
      frame_put(k, head + i);
    }
  }
}

// Fault in a huge page for an empty pmd entry of vma v. Returns 1 when the leaf was mapped
// (*out: the subpage of va), 0 when the chunk is not eligible or no block is free (the
// caller falls back to 4 KiB pages), or -ENOMEM.
int thp_fault(struct mm *mm, struct vma *v, pfn_t pmdt, pte_t *pmd, uint64_t va, pfn_t *out) {
  struct kernel *k = mm->k;
  pfn_t head;
  if (*pmd || !thp_eligible(k, v, va))
    return 0;
  if (thp_alloc(k, &head)) {
    k->st.thp_fault_fallback++;
    return 0;
  }
  pt_set(k, pmdt, pmd, PTE_MK(head, thp_bits(v, !!(v->flags & VM_WRITE))));
  vma_anon_prepare(k, &mm->vmas, v);
  k->st.thp_fault_alloc++;
  k->st.faults[FAULT_ANON]++;
  *out = head + (pfn_t)((va >> PAGE_SHIFT) & (HPAGE_NR - 1));
  return 1;
}

// Replace the pmd leaf at *pmd by a page table mapping the same 512 subpages with the same
// bits. compare Linux __split_huge_pmd_locked(). -ENOMEM if no table can be allocated.
int thp_split_pmd(struct mm *mm, pfn_t pmdt, pte_t *pmd) {
  struct kernel *k = mm->k;
  pte_t leaf = *pmd;
  pfn_t head = PTE_PFN(leaf), t;
  int err = pt_alloc(k, &t);
  if (err)
    return err;
  struct ptpage *pg = pt_page(k, t);
  pte_t bits = leaf & ~(PTE_PFN_MASK | PTE_PS);
  for (unsigned i = 0; i < HPAGE_NR; i++) {
    pg->e[i] = PTE_MK(head + i, bits);
    k->fr.f[head + i].ref++;
  }
  k->fr.f[t].aux = HPAGE_NR;
  pg->rss[RSS_ANON] = HPAGE_NR;
  mm->nr_tables++;
  pt_set(k, pmdt, pmd, PTE_MK(t, PTE_P | PTE_W | PTE_U));
  mm_flush_tlb(mm, 0, TASK_SIZE);
  k->st.thp_split_pmd++;
  thp_put(k, head);  // the ptes hold the references now
  return 0;
}

// Unmap a whole pmd leaf.
void thp_zap_pmd(struct mm *mm, pfn_t pmdt, pte_t *pmd) {
  pfn_t head = PTE_PFN(*pmd);
  pt_clear(mm->k, pmdt, pmd);
  thp_put(mm->k, head);
}

// Copy the huge page under a write-protected leaf into a new one for this mm ("copy-huge").
// Returns 1 when done, 0 when no block is free (the caller splits instead), or -ENOMEM.
static int thp_copy(struct mm *mm, struct vma *v, pfn_t pmdt, pte_t *pmd) {
  struct kernel *k = mm->k;
  pfn_t old = PTE_PFN(*pmd), n;
  if (thp_alloc(k, &n))
    return 0;
  for (unsigned i = 0; i < HPAGE_NR; i++) {
    int err = frame_copy_content(&k->fr, n + i, old + i);
    if (err) {
      thp_put(k, n);
      return err;
    }
  }
  pt_set(k, pmdt, pmd, PTE_MK(n, thp_bits(v, 1)));
  mm_flush_tlb(mm, 0, TASK_SIZE);
  thp_put(k, old);
  k->st.thp_copied++;
  k->st.pages_copied += HPAGE_NR;
  k->st.faults[FAULT_COW]++;
  return 1;
}

// A write to a write-protected pmd leaf. The sole user (one pmd mapping, no pte mapping of
// any subpage) gets it writable in place; otherwise the kernel's thp_cow policy decides.
// Returns 1 when the leaf is now writable (*out: the subpage of va), 0 after a split (the
// caller continues on the new page table), or -ENOMEM.
int thp_wp_fault(struct mm *mm, struct vma *v, pfn_t pmdt, pte_t *pmd, uint64_t va,
                 pfn_t *out) {
  struct kernel *k = mm->k;
  pfn_t head = PTE_PFN(*pmd);
  int err;
  int sole = k->thp_maps[head >> HPAGE_ORDER] == 1;
  for (unsigned i = 0; sole && i < HPAGE_NR; i++)
    sole = k->fr.f[head + i].ref == 0;
  if (sole) {
    *pmd |= PTE_W | PTE_D | PTE_A;
    k->st.faults[FAULT_WP_REUSE]++;
  } else if (k->thp_cow == THP_COW_COPY && (err = thp_copy(mm, v, pmdt, pmd)) != 0) {
    if (err < 0)
      return err;
  } else {
    return (err = thp_split_pmd(mm, pmdt, pmd)) ? err : 0;
  }
  *out = PTE_PFN(*pmd) + (pfn_t)((va >> PAGE_SHIFT) & (HPAGE_NR - 1));
  return 1;
}

int sfd_set_thp(struct kernel *k, int mode, int cow) {
  if (mode < THP_NEVER || mode > THP_ALWAYS || cow < THP_COW_SPLIT || cow > THP_COW_COPY)
    return -EINVAL;
  k->thp = mode;
  k->thp_cow = cow;
  return 0;
}
