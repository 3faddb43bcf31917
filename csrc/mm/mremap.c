// mremap.c — mremap(2): shrink in place, grow in place, or move a mapping with its page-table
// entries. compare Linux mm/mremap.c (6.18): check_mremap_params(), check_prep_vma(),
// mremap_at() (shrink, expand_vma()), mremap_to(), remap_move() (a pure move may span several
// vmas, Linux 6.17), move_vma(), copy_vma_and_data(), move_page_tables().
//
// A move never copies a page: each pte (or a whole pte table, or a huge pmd leaf, when the old
// and new addresses are 2 MiB apart by a multiple of 2 MiB) changes slots, so frames keep their
// identity, refcounts and COW state. Everything that can fail (a COW-shared table broken, a huge
// page split, destination tables allocated, the commit charge) happens before any vma or entry
// changes, so an -ENOMEM leaves the mapping as it was.
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"

#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static inline unsigned pte_index(uint64_t va) { return (unsigned)(va >> PAGE_SHIFT) & 511; }

// One mremap request, as Linux's struct vma_remap_struct.
struct remap {
  struct mm *mm;
  uint64_t addr, old_len, new_len, new_addr;
  int flags;
};

// compare vrm_overlaps(): [addr, addr + old_len) and [new_addr, new_addr + new_len) meet.
static int remap_overlaps(const struct remap *r) {
  return r->addr + r->old_len > r->new_addr && r->new_addr + r->new_len > r->addr;
}

static int implies_new_addr(const struct remap *r) {
  return !!(r->flags & (MREMAP_FIXED | MREMAP_DONTUNMAP));
}

// compare check_mremap_params(): the checks that need no vma, in Linux's order.
static int check_params(const struct remap *r) {
  if (r->flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP))
    return -EINVAL;
  if (r->addr & (PAGE_SIZE - 1))
    return -EINVAL;
  if (!r->new_len || r->new_len > TASK_SIZE)
    return -EINVAL;
  if (!implies_new_addr(r))
    return 0;
  if (r->new_addr > TASK_SIZE - r->new_len || (r->new_addr & (PAGE_SIZE - 1)))
    return -EINVAL;
  if (!(r->flags & MREMAP_MAYMOVE))
    return -EINVAL;
  if ((r->flags & MREMAP_DONTUNMAP) && r->old_len != r->new_len)
    return -EINVAL;
  if (remap_overlaps(r))
    return -EINVAL;
  return 0;
}

// ---- moving page-table entries ----

// Whether the 2 MiB extent at old can move as one pmd entry (a pte table or a huge leaf) into
// the pmd slot dst (NULL: its upper tables are missing). compare move_normal_pmd() and
// move_huge_pmd(): both addresses 2 MiB aligned, the slot empty (or an empty private table).
static int whole_pmd_move(struct kernel *k, const pte_t *src, const pte_t *dst, uint64_t extent) {
  if (extent != PMD_SIZE || !src || !(*src & PTE_P))
    return 0;
  if (!dst || !(*dst & PTE_P))
    return 1;
  return !pmd_is_huge(*dst) && pt_share(k, PTE_PFN(*dst)) == PT_PRIVATE &&
         k->fr.f[PTE_PFN(*dst)].aux == 0;
}

// The extent of the step at offset off: up to the next pmd boundary of both addresses.
static uint64_t step_extent(uint64_t old, uint64_t new, uint64_t left) {
  uint64_t a = PMD_SIZE - (old & (PMD_SIZE - 1)), b = PMD_SIZE - (new & (PMD_SIZE - 1));
  uint64_t e = a < b ? a : b;
  return e < left ? e : left;
}

// Make everything the move of [old, old + len) to new needs, changing nothing visible: the
// source's shared tables unshared (a file's table detached, a COW table broken) and its huge
// pages split where they cannot move whole; a private table (or the upper tables for a whole
// pmd) at every destination step. -ENOMEM when an allocation fails; the caller then frees the
// destination's empty tables.
static int prepare_tables(struct mm *mm, uint64_t old, uint64_t len, uint64_t new) {
  struct kernel *k = mm->k;
  int err = pt_unshare_range(mm, old, old + len, UNSHARE_KEEP);
  if (err)
    return err;
  for (uint64_t off = 0, extent; off < len; off += extent) {
    extent = step_extent(old + off, new + off, len - off);
    pfn_t spmdt, dpmdt;
    pte_t *src = pt_walk_pmd(mm, old + off, 0, &spmdt, NULL);
    if (!src || !(*src & PTE_P))
      continue;  // nothing mapped here: nothing to move
    pte_t *dst = pt_walk_pmd(mm, new + off, 0, &dpmdt, NULL);
    if (whole_pmd_move(k, src, dst, extent)) {
      if (!dst && !pt_walk_pmd(mm, new + off, 1, &dpmdt, &err))
        return err;
      continue;
    }
    if (pmd_is_huge(*src) && (err = thp_split_pmd(mm, spmdt, src)))
      return err;
    if (!(dst = pt_walk_pmd(mm, new + off, 1, &dpmdt, &err)))
      return err;
    if (*dst & PTE_P && pmd_is_huge(*dst))
      err = thp_split_pmd(mm, dpmdt, dst);  // never in a free range; kept for safety
    else if ((*dst & PTE_P) && pt_share(k, PTE_PFN(*dst)) == PT_FILE)
      pt_drop_shared(mm, dpmdt, dst);
    else if ((*dst & PTE_P) && pt_share(k, PTE_PFN(*dst)) == PT_COW)
      err = pt_break_cow(mm, dst);
    if (!err && !(*dst & PTE_P))
      err = pt_fill_pmd(mm, dpmdt, dst);
    if (err)
      return err;
  }
  return 0;
}

// Move the entries of [old, old + len) to new (prepared by prepare_tables): pmd entries whole
// where they can go whole, else pte by pte with their rss. Guard markers move too. Cannot fail.
// compare move_page_tables() and move_ptes().
static void move_tables(struct mm *mm, const struct vma *v, uint64_t old, uint64_t len,
                        uint64_t new) {
  struct kernel *k = mm->k;
  for (uint64_t off = 0, extent; off < len; off += extent) {
    extent = step_extent(old + off, new + off, len - off);
    pfn_t spmdt, dpmdt;
    pte_t *src = pt_walk_pmd(mm, old + off, 0, &spmdt, NULL);
    if (!src || !(*src & PTE_P))
      continue;
    pte_t *dst = pt_walk_pmd(mm, new + off, 0, &dpmdt, NULL);
    if (whole_pmd_move(k, src, dst, extent)) {
      if (!dst) {
        kpanic(k, "mremap: no pmd table at %#lx", (unsigned long)(new + off));
        return;
      }
      if (*dst & PTE_P) {  // an empty private table left there: give it back
        pfn_t t = PTE_PFN(*dst);
        pt_clear(k, dpmdt, dst);
        mm->nr_tables--;
        pt_free(k, t);
      }
      pte_t e = *src;
      pt_clear(k, spmdt, src);
      pt_set(k, dpmdt, dst, e);
      continue;
    }
    if (!dst || !(*dst & PTE_P) || pmd_is_huge(*dst) || pmd_is_huge(*src)) {
      kpanic(k, "mremap: destination %#lx not prepared", (unsigned long)(new + off));
      return;
    }
    pfn_t st = PTE_PFN(*src), dt = PTE_PFN(*dst);
    pte_t *sp = &pt_table(k, st)[pte_index(old + off)];
    pte_t *dp = &pt_table(k, dt)[pte_index(new + off)];
    for (uint64_t n = extent >> PAGE_SHIFT; n; n--, sp++, dp++) {
      pte_t e = *sp;
      if (!e)
        continue;
      pt_clear(k, st, sp);
      pt_set(k, dt, dp, e);
      if (pte_has_frame(e)) {
        pt_rss_add(k, st, v, PTE_PFN(e), -1);
        pt_rss_add(k, dt, v, PTE_PFN(e), 1);
      }
    }
  }
}

// ---- the vma side ----

// compare move_vma(): move [addr, addr + old_len) of vma i to a new vma [new_addr, new_addr +
// new_len) (free), moving its entries; the old range is unmapped, or with MREMAP_DONTUNMAP left
// mapped and empty. The commit charge: the growth (all of new_len with DONTUNMAP).
static int move_vma(struct remap *r, int i) {
  struct mm *mm = r->mm;
  struct kernel *k = mm->k;
  struct vma_list *l = &mm->vmas;
  if (l->n >= MAX_MAP_COUNT - 3)
    return -ENOMEM;
  struct vma nv = l->v[i];
  int dontunmap = !!(r->flags & MREMAP_DONTUNMAP);
  uint64_t charged = 0;
  if (nv.flags & VM_ACCOUNT) {
    charged = dontunmap ? r->new_len >> PAGE_SHIFT
              : r->new_len > r->old_len ? (r->new_len - r->old_len) >> PAGE_SHIFT : 0;
    if (charged && vm_enough_memory(k, mm, charged))
      return -ENOMEM;
  }
  int err = prepare_tables(mm, r->addr, r->old_len, r->new_addr);
  if (!err)
    err = vma_grow(l, 3);  // the new vma and the source's two splits: host memory only
  if (err) {
    pt_free_range(mm, r->new_addr, r->new_addr + r->new_len);
    vm_unacct_memory(k, charged);
    return err;
  }
  // compare copy_vma(): an anonymous vma that never faulted is mapped afresh (pgoff from its
  // new address, so it merges there); otherwise it keeps its pgoff and anon_vma
  struct vma *v = &l->v[i];
  nv.start = r->new_addr;
  nv.end = r->new_addr + r->new_len;
  if (!nv.ino && !nv.anon_vma)
    nv.pgoff = r->new_addr >> PAGE_SHIFT;
  else
    nv.pgoff = v->pgoff + ((r->addr - v->start) >> PAGE_SHIFT);
  vma_file_get(&nv);
  int ni = vma_insert(l, &nv);  // cannot fail: room was made
  if (ni < 0) {
    kpanic(k, "mremap: vma_insert failed");
    return ni;
  }
  move_tables(mm, &l->v[ni], r->addr, r->old_len, r->new_addr);
  mm_flush_tlb(mm, r->addr, r->addr + r->old_len);  // compare flush_tlb_range() of move_ptes()
  if (dontunmap) {
    // compare dontunmap_complete(): the old vma stays, empty, without VM_ACCOUNT; a whole one
    // lets go of its anon_vma. Linux keeps its charge (never given back); here it goes with
    // the flag, so Committed_AS stays the sum of the accounted vmas.
    v = vma_find(l, r->addr);
    if (v->flags & VM_ACCOUNT)
      vm_unacct_memory(k, (v->end - v->start) >> PAGE_SHIFT);
    v->flags &= ~(uint32_t)VM_ACCOUNT;
    if (v->start == r->addr && v->end == r->addr + r->old_len) {
      v->anon_vma = 0;
      v->flags &= ~(uint32_t)(VM_ANON_VMA | VM_ANON_FORKED);
    }
  } else if (r->old_len) {
    // compare unmap_source_vma(): the moved part's charge now belongs to the new vma
    if (nv.flags & VM_ACCOUNT)
      k->committed += r->old_len >> PAGE_SHIFT;
    if ((err = mm_unmap_range(mm, r->addr, r->addr + r->old_len))) {
      kpanic(k, "mremap: unmapping the source failed (%d)", err);
      return err;
    }
  }
  mm_merge_range(mm, r->new_addr, r->new_addr + r->new_len);
  return 0;
}

// compare check_prep_vma(): the checks that need the vma at addr (index *vi), for a call that
// maps something new (growth or a move).
static int check_vma(struct remap *r, int *vi) {
  struct vma *v = vma_find(&r->mm->vmas, r->addr);
  if (!v)
    return -EFAULT;
  *vi = (int)(v - r->mm->vmas.v);
  if (!implies_new_addr(r) && r->new_len <= r->old_len)
    return 0;  // shrink or no change: nothing new is mapped
  if (!r->old_len && !(v->flags & VM_SHARED))
    return -EINVAL;  // duplicating a private mapping makes no sense
  if (r->old_len > v->end - r->addr)
    return -EFAULT;  // across a vma boundary
  if (r->new_len == r->old_len)
    return 0;
  uint64_t pgoff = v->pgoff + ((r->addr - v->start) >> PAGE_SHIFT);
  if (pgoff + (r->new_len >> PAGE_SHIFT) < pgoff)
    return -EINVAL;
  return 0;
}

// Grow vma i at its end by delta bytes when the range after it is free, merging with the next
// vma when they become compatible. 1 if done, 0 if not possible, -ENOMEM if the charge fails.
// compare vrm_can_expand_in_place() and expand_vma_in_place().
static int expand_in_place(struct remap *r, int i) {
  struct mm *mm = r->mm;
  struct vma_list *l = &mm->vmas;
  struct vma *v = &l->v[i];
  uint64_t delta = r->new_len - r->old_len, end;
  if (r->addr + r->old_len != v->end || __builtin_add_overflow(v->end, delta, &end) ||
      end > TASK_SIZE || !vma_range_free(l, v->end, end))
    return 0;
  if ((v->flags & VM_ACCOUNT) && vm_enough_memory(mm->k, mm, delta >> PAGE_SHIFT))
    return -ENOMEM;
  v->end = end;
  if (i + 1 < (int)l->n && vma_can_merge(v, &l->v[i + 1]))
    vma_try_merge(mm->k, l, i);
  return 1;
}

// compare shrink_vma(): unmap [addr + new_len, addr + old_len), whatever is there.
static int shrink(struct remap *r) {
  uint64_t start = r->addr + r->new_len, end;
  if (__builtin_add_overflow(r->addr, r->old_len, &end) || end > TASK_SIZE)
    return -EINVAL;  // what munmap says of such a range
  return mm_unmap_range(r->mm, start, end);
}

// compare vrm_set_new_addr(): the fixed address, or a free area near the hint.
static int set_new_addr(struct remap *r, uint64_t hint) {
  if (r->flags & MREMAP_FIXED)
    return 0;
  uint64_t a = mm_get_unmapped_area(r->mm, hint, r->new_len);
  if (!a)
    return -ENOMEM;
  r->new_addr = a;
  return 0;
}

// compare mremap_to(): unmap the destination (MREMAP_FIXED), shrink, then move.
static int remap_to(struct remap *r, int *vi) {
  struct mm *mm = r->mm;
  if (r->flags & MREMAP_FIXED) {
    if (mm->vmas.n + 2 >= MAX_MAP_COUNT - 3)
      return -ENOMEM;
    int err = mm_unmap_range(mm, r->new_addr, r->new_addr + r->new_len);
    if (err)
      return err;
    struct vma *v = vma_find(&mm->vmas, r->addr);  // the unmap may have moved it
    if (!v)
      return -EFAULT;
    *vi = (int)(v - mm->vmas.v);
  }
  if (r->new_len < r->old_len) {
    int err = shrink(r);
    if (err)
      return err;
    r->old_len = r->new_len;
    struct vma *v = vma_find(&mm->vmas, r->addr);
    if (!v)
      return -EFAULT;
    *vi = (int)(v - mm->vmas.v);
  }
  int err = set_new_addr(r, r->new_addr);
  return err ? err : move_vma(r, *vi);
}

// compare remap_move(): a pure move (MREMAP_FIXED, old_len == new_len) takes every vma of the
// old range along, each to the same offset in the new one; gaps stay gaps, but the range must
// start in a vma. Returns the new address through *out.
static int remap_move(struct remap *r, uint64_t *out) {
  struct mm *mm = r->mm;
  uint64_t start = r->addr, end = r->addr + r->old_len, target = r->new_addr;
  int seen = 0;
  for (uint64_t at = start; at < end;) {
    int i = vma_first_at_or_after(&mm->vmas, at);
    if (i >= (int)mm->vmas.n || mm->vmas.v[i].start >= end)
      break;
    const struct vma *v = &mm->vmas.v[i];
    if (!seen && v->start > start)
      return -EFAULT;  // no gap allowed at the start
    uint64_t a = v->start > at ? v->start : at, b = v->end < end ? v->end : end;
    struct remap piece = {.mm = mm, .addr = a, .old_len = b - a, .new_len = b - a,
                          .new_addr = target + (a - start), .flags = r->flags};
    int vi, err = check_vma(&piece, &vi);
    if (!err)
      err = remap_to(&piece, &vi);
    if (err)
      return err;
    seen = 1;
    at = b;
  }
  if (!seen)
    return -EFAULT;
  *out = target;
  return 0;
}

// mremap(2) of mm: the new address through *out. compare do_mremap().
int mm_mremap(struct mm *mm, uint64_t addr, uint64_t old_len, uint64_t new_len, int flags,
              uint64_t new_addr, uint64_t *out) {
  // compare PAGE_ALIGN(): a length within a page of 2^64 becomes 0
  struct remap r = {.mm = mm, .addr = addr, .old_len = PAGE_ROUND_UP(old_len),
                    .new_len = PAGE_ROUND_UP(new_len), .new_addr = new_addr, .flags = flags};
  int vi, err = check_params(&r);
  if (err)
    return err;
  if ((r.flags & MREMAP_FIXED) && r.old_len == r.new_len)
    return remap_move(&r, out);
  if ((err = check_vma(&r, &vi)))
    return err;
  if (implies_new_addr(&r)) {
    if ((err = remap_to(&r, &vi)))
      return err;
    *out = r.new_addr;
    return 0;
  }
  *out = addr;
  if (r.new_len == r.old_len)
    return 0;
  if (r.new_len < r.old_len)
    return shrink(&r);
  if ((err = expand_in_place(&r, vi)))
    return err < 0 ? err : 0;
  if (!(r.flags & MREMAP_MAYMOVE))
    return -ENOMEM;
  if ((err = set_new_addr(&r, addr)) || (err = move_vma(&r, vi)))
    return err;
  *out = r.new_addr;
  return 0;
}
