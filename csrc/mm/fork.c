// fork.c — duplicating an address space under three policies (shared page tables for
// MAP_SHARED file mappings are mm/ptshare.c's).
//
//   FORK_COPY        classic fork, compare Linux dup_mmap() + copy_page_range(): every pte of
//                    a vma that needs copying is copied, COW pages write-protected on both
//                    sides and their refcounts raised.
//   FORK_COW_PT      copy-on-write page tables (the 2022 RFC, On-demand-fork): upper levels
//                    are copied, each last-level table of private COW memory is shared (its
//                    refcount raised, both pmd entries write-protected); page refcounts are
//                    untouched ("deferred").
//   FORK_COW_PT_EAGER  the same, raising every page's refcount at fork (later RFC versions).
//
// A table spanned by several vmas is shared once, when every vma over its 2 MiB can be
// shared, or not at all (then its ptes are copied vma by vma).
#include <stdlib.h>
#include <string.h>

#include "mm/mm.h"
#include "fs/fs.h"  // up: inode_get: the child's file vmas hold their inodes (get_file())

// A private mapping that may become writable: its pages are copied on write.
// compare Linux is_cow_mapping().
static int vma_is_cow(const struct vma *v) {
  return !(v->flags & VM_SHARED) && (v->flags & VM_MAYWRITE);
}

// Whether fork must copy the vma's ptes, or the child can refault them lazily.
// compare Linux vma_needs_copy() (VM_COPY_ON_FORK): vmas that hold anonymous pages or may
// hold guard markers; dup_mmap() copies nothing of a wipe-on-fork vma.
static int vma_needs_copy(const struct vma *v) {
  return (v->flags & (VM_ANON_VMA | VM_MAYBE_GUARD)) && !(v->flags & VM_WIPEONFORK);
}

// Whether the 2 MiB chunk at addr may be shared at fork: every vma over it is private memory
// that fork copies, and the table is not a file-shared one.
static int pt_is_shareable(struct mm *mm, uint64_t addr) {
  uint64_t lo = addr & ~(PMD_SIZE - 1), hi = lo + PMD_SIZE;
  struct vma_list *l = &mm->vmas;
  for (int i = vma_first_at_or_after(l, lo); i < (int)l->n && l->v[i].start < hi; i++) {
    const struct vma *v = &l->v[i];
    if ((v->flags & (VM_SHARED | VM_DONTFORK)) || !vma_needs_copy(v))
      return 0;
  }
  return 1;
}

// compare Linux copy_pte_range() + copy_present_pte(): copy the ptes of [addr, end) of vma v
// into the child's table (empty there: vmas do not overlap), write-protecting COW pages on
// both sides and taking a reference per copied page. Counts are summed once per table.
static void copy_pte_range(struct kernel *k, const struct vma *v, pfn_t dst_t, pfn_t src_t,
                           uint64_t addr, uint64_t end) {
  pte_t *src = &pt_table(k, src_t)[(addr >> PAGE_SHIFT) & 511];
  pte_t *dst = &pt_table(k, dst_t)[(addr >> PAGE_SHIFT) & 511];
  struct frame *frames = k->fr.f;
  const pfn_t zero = k->fr.zero_pfn;
  const pte_t wp = vma_is_cow(v) ? PTE_W : 0;
  uint32_t n = 0, anon = 0, other = 0;
  for (; addr < end; addr += PAGE_SIZE, src++, dst++) {
    pte_t e = *src;
    if (pte_is_guard(e)) {  // compare copy_nonpresent_pte(): guard markers are copied
      *dst = e;
      n++;
      continue;
    }
    if (!(e & PTE_P))
      continue;
    pfn_t pfn = PTE_PFN(e);
    if (pfn != zero) {
      struct frame *f = &frames[pfn];
      f->ref++;
      if (f->kind == FK_ANON)
        anon++;
      else
        other++;
    }
    if (e & wp)
      *src = e &= ~wp;
    *dst = e & ~PTE_A;
    n++;
  }
  struct ptpage *pg = pt_page(k, dst_t);
  int file_kind = v->ino && (v->ino->kind == IK_SHMEM || v->ino->kind == IK_TMPFS) ? RSS_SHMEM
                                                                                   : RSS_FILE;
  frames[dst_t].aux = (uint16_t)(frames[dst_t].aux + n);
  pg->rss[RSS_ANON] = (uint16_t)(pg->rss[RSS_ANON] + anon);
  pg->rss[file_kind] = (uint16_t)(pg->rss[file_kind] + other);
  k->st.ptes_copied += n;
}

// Share the parent's table at *src_pmd with the child's empty *dst_pmd: raise its refcount,
// write-protect both pmd entries; eager raises every page's refcount too.
static void share_table(struct mm *dst_mm, pfn_t dst_pmdt, pte_t *dst_pmd, pte_t *src_pmd,
                        int eager) {
  struct kernel *k = dst_mm->k;
  pfn_t t = PTE_PFN(*src_pmd);
  if (eager) {
    pte_t *e = pt_table(k, t);
    for (unsigned i = 0; i < PTRS_PER_TABLE; i++)
      if (pte_has_frame(e[i]) && PTE_PFN(e[i]) != k->fr.zero_pfn)
        frame_get(k, PTE_PFN(e[i]));
  }
  pt_set_share(k, t, PT_COW, eager);
  frame_get(k, t);
  *src_pmd &= ~PTE_W;
  pt_set(k, dst_pmdt, dst_pmd, PTE_MK(t, PTE_P | PTE_U));
  dst_mm->nr_tables++;
  k->st.tables_shared++;
}

// Whether the table at *src_pmd can be shared under this fork's accounting: one only this
// mm uses, or one already COW-shared with the same accounting.
static int table_accepts_share(struct kernel *k, pte_t *src_pmd, int eager) {
  pfn_t t = PTE_PFN(*src_pmd);  // a table nobody else uses is as good as private
  return k->fr.f[t].ref == 1 || (pt_share(k, t) == PT_COW && pt_eager(k, t) == eager);
}

struct fork_ctx {
  struct mm *dst, *src;     // child and parent
  const struct vma *v;      // the parent's vma being copied (clipped to [lo, hi))
  int mode;                 // FORK_*
  uint64_t lo, hi;          // the range being copied: only chunks wholly inside are shared
};

// Whether the chunk at addr may be shared: when vma v covers it alone, v decides; otherwise
// every vma over it must agree (pt_is_shareable).
static int chunk_is_shareable(struct fork_ctx *c, uint64_t addr) {
  uint64_t lo = addr & ~(PMD_SIZE - 1);
  const struct vma *v = c->v;
  if (lo < c->lo || lo + PMD_SIZE > c->hi)
    return 0;
  if (v->start <= lo && lo + PMD_SIZE <= v->end)
    return !(v->flags & (VM_SHARED | VM_DONTFORK)) && vma_needs_copy(v);
  return pt_is_shareable(c->src, addr);
}

// One pmd entry of the fork: share the parent's table, or copy the vma's ptes from it.
static int copy_one_pmd(struct fork_ctx *c, pfn_t dst_pmdt, pte_t *dst_pmd, pte_t *src_pmd,
                        uint64_t addr, uint64_t next) {
  struct kernel *k = c->src->k;
  int err, eager = c->mode == FORK_COW_PT_EAGER;
  if (*dst_pmd & PTE_P) {  // an earlier vma over this chunk decided: shared, or copied
    if (PTE_PFN(*dst_pmd) == PTE_PFN(*src_pmd))
      return 0;
  } else if (c->mode != FORK_COPY && chunk_is_shareable(c, addr) &&
             table_accepts_share(k, src_pmd, eager)) {
    share_table(c->dst, dst_pmdt, dst_pmd, src_pmd, eager);
    return 0;
  }
  if (pt_share(k, PTE_PFN(*src_pmd)) == PT_COW && (err = pt_break_cow(c->src, src_pmd)))
    return err;  // copying ptes write-protects the parent's: its table must be its own
  if (!(*dst_pmd & PTE_P) && (err = pt_fill_pmd(c->dst, dst_pmdt, dst_pmd)))
    return err;
  copy_pte_range(k, c->v, PTE_PFN(*dst_pmd), PTE_PFN(*src_pmd), addr, next);
  return 0;
}

// compare Linux copy_huge_pmd(): a pmd leaf is copied as one entry, write-protected on both
// sides for a COW mapping, its huge page gaining a pmd mapping (one step per 2 MiB).
static void copy_huge_pmd(struct fork_ctx *c, pfn_t dst_pmdt, pte_t *dst_pmd, pte_t *src_pmd) {
  struct kernel *k = c->src->k;
  if (vma_is_cow(c->v))
    *src_pmd &= ~PTE_W;
  k->thp_maps[PTE_PFN(*src_pmd) >> HPAGE_ORDER]++;
  pt_set(k, dst_pmdt, dst_pmd, *src_pmd & ~PTE_A);
  k->st.ptes_copied++;
}

// compare Linux copy_pmd_range(): the pmd entries of [addr, end) within one pmd table.
static int copy_pmd_range(struct fork_ctx *c, pfn_t dst_pmdt, pfn_t src_pmdt, uint64_t addr,
                          uint64_t end) {
  struct kernel *k = c->src->k;
  unsigned i = (unsigned)(addr >> 21) & 511;
  pte_t *src = &pt_table(k, src_pmdt)[i], *dst = &pt_table(k, dst_pmdt)[i];
  for (uint64_t next; addr < end; addr = next, src++, dst++) {
    next = level_end(addr, end, 1);
    if (!(*src & PTE_P))
      continue;
    if (pmd_is_huge(*src)) {
      int whole = !(addr & (PMD_SIZE - 1)) && next - addr == PMD_SIZE;
      if (whole) {
        copy_huge_pmd(c, dst_pmdt, dst, src);
        continue;
      }
      int err = thp_split_pmd(c->src, src_pmdt, src);  // map_cow of part of it
      if (err)
        return err;
    }
    int err = copy_one_pmd(c, dst_pmdt, dst, src, addr, next);
    if (err)
      return err;
  }
  return 0;
}

// compare Linux copy_pud_range() and above: one walk per 1 GiB of the vma, then its pmds.
static int copy_upper_range(struct fork_ctx *c, uint64_t addr, uint64_t end) {
  for (uint64_t next; addr < end; addr = next) {
    next = level_end(addr, end, 2);
    pfn_t src_pmdt, dst_pmdt;
    int err = 0;
    if (!pt_walk_pmd(c->src, addr, 0, &src_pmdt, NULL))
      continue;
    if (!pt_walk_pmd(c->dst, addr, 1, &dst_pmdt, &err))
      return err;
    if ((err = copy_pmd_range(c, dst_pmdt, src_pmdt, addr, next)))
      return err;
  }
  return 0;
}

// Copy one vma's page tables into the child. compare Linux copy_page_range().
static int copy_page_range(struct fork_ctx *c) {
  int err = (c->v->flags & VM_SHARED) ? ptshare_fork_range(c->dst, c->src, c->v) : 0;
  if (err || !vma_needs_copy(c->v))
    return 0;  // refaulted lazily by the child
  return copy_upper_range(c, c->v->start, c->v->end);
}

// Give the child its copy of vma v (a file reference; WIPEONFORK memory starts empty).
static int dup_vma(struct mm *dst, const struct vma *v) {
  struct vma n = *v;
  if (n.flags & VM_WIPEONFORK) {
    n.flags &= ~(uint32_t)(VM_ANON_VMA | VM_ANON_FORKED);
    n.anon_vma = 0;
  } else if (n.anon_vma) {  // compare anon_vma_fork(): a new anon_vma chained to the parent's
    n.anon_vma = ++dst->k->next_anon_vma;
    n.flags |= VM_ANON_FORKED;
  }
  uint64_t pages = (n.flags & VM_ACCOUNT) ? (n.end - n.start) >> PAGE_SHIFT : 0;
  int err = pages ? vm_enough_memory(dst->k, dst, pages) : 0;  // compare dup_mmap()'s charge
  if (err)
    return err;
  if ((err = vma_insert(&dst->vmas, &n)) < 0) {
    vm_unacct_memory(dst->k, pages);
    return err;
  }
  if (n.ino)
    inode_get(n.ino);
  return 0;
}

// A copy of src under the given policy. On failure (-ENOMEM) everything the child got is
// released and the parent keeps its memory (some of its ptes may be left write-protected, as
// after a failed Linux fork; the next write reuses the page). compare Linux dup_mmap().
struct mm *mm_dup(struct mm *src, int mode, int *err) {
  struct mm *dst = mm_create(src->k, err);
  if (!dst)
    return NULL;
  dst->mmap_base = src->mmap_base;
  dst->start_stack = src->start_stack;
  if ((*err = vma_grow(&dst->vmas, src->vmas.n)))  // dup_mmap() checks no limit
    goto fail;
  for (uint32_t i = 0; i < src->vmas.n; i++) {
    const struct vma *v = &src->vmas.v[i];
    if (v->flags & VM_DONTFORK)
      continue;
    struct fork_ctx c = {.dst = dst, .src = src, .v = v, .mode = mode, .lo = 0,
                         .hi = TASK_SIZE};
    if ((*err = dup_vma(dst, v)) || (*err = copy_page_range(&c)))
      goto fail;
  }
  mm_flush_tlb(src, 0, TASK_SIZE);  // the parent's ptes were write-protected: flush_tlb_mm()
  return dst;
fail:
  mm_flush_tlb(src, 0, TASK_SIZE);
  mm_destroy(dst);
  return NULL;
}

// Map [start, end) of src into dst at the same addresses (free there) as a cow-pt fork maps
// it: private memory copy-on-write with whole 2 MiB chunks sharing src's last-level table,
// shared mappings shared, DONTFORK left out. On failure dst's range is unmapped again.
// The fd model's zygote: a template's memory for the price of a few tables, without fork.
int mm_map_cow(struct mm *dst, struct mm *src, uint64_t start, uint64_t end) {
  struct vma_list *l = &src->vmas;
  int err = 0;
  for (int i = vma_first_at_or_after(l, start); !err && i < (int)l->n; i++) {
    struct vma cv = l->v[i];
    if (cv.start >= end)
      break;
    if (cv.flags & VM_DONTFORK)
      continue;
    if (cv.end > end)
      cv.end = end;
    if (cv.start < start) {
      cv.pgoff += (start - cv.start) >> PAGE_SHIFT;
      cv.start = start;
    }
    struct fork_ctx c = {.dst = dst, .src = src, .v = &cv, .mode = FORK_COW_PT, .lo = start,
                         .hi = end};
    if (!(err = dup_vma(dst, &cv)))
      err = copy_page_range(&c);
  }
  mm_flush_tlb(src, start, end);  // src's ptes or tables were write-protected
  if (err)
    mm_munmap(dst, start, end - start);
  return err;
}
