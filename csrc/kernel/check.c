// check.c — recompute the kernel's truth from scratch and compare it with what the kernel
// keeps incrementally: every frame's refcount (from page tables, page caches and the zero
// page), every table's entry count and share count, every mm's rss and table count, the
// buddy free lists, inode and open-file references, and the vma invariants.
// The first mismatch is reported as "check: <what>"; the kernel is then marked panicked.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel.h"

struct recount {
  struct kernel *k;
  uint32_t *ref;          // expected refcount per pfn (< fr.high)
  uint32_t *thp;          // pmd leaves found per huge page (by pfn >> HPAGE_ORDER)
  uint64_t kinds[5];      // distinct frames found per kind
  uint64_t committed;     // pages of VM_ACCOUNT vmas: Committed_AS
  char *msg;              // first mismatch
  size_t cap;
  int bad;
};

static int fail(struct recount *r, const char *fmt, ...) {
  if (r->bad)
    return -KPANIC;
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(r->msg, r->cap, "check: ");
  vsnprintf(r->msg + n, r->cap > (size_t)n ? r->cap - (size_t)n : 0, fmt, ap);
  va_end(ap);
  r->bad = 1;
  return -KPANIC;
}

// Count one reference to pfn, which must be an allocated frame of an expected kind.
static int ref_frame(struct recount *r, pfn_t pfn, const char *from) {
  struct kernel *k = r->k;
  if (pfn >= k->fr.high || k->fr.f[pfn].kind == FK_FREE)
    return fail(r, "%s references free or unallocated pfn %u", from, pfn);
  if (r->ref[pfn]++ == 0)
    r->kinds[k->fr.f[pfn].kind]++;
  return 0;
}

struct mm_count {
  uint64_t tables;        // tables reached from this mm
  uint32_t rss[3];        // pages counted in the current last-level table
};

// Check one present pte of mm at va: inside a vma that allows its bits; count the frame
// reference when this visit of the table holds one (see pgtable.c on sharing).
static int check_pte(struct recount *r, struct proc *p, uint64_t va, pte_t e,
                     struct mm_count *c, int count_ref) {
  struct kernel *k = r->k;
  struct vma *v = vma_find(&p->mm->vmas, va);
  pfn_t pfn = PTE_PFN(e);
  if (!v)
    return fail(r, "pid %d: pte at %#lx outside any vma", p->pid, (unsigned long)va);
  if ((e & PTE_W) && !(v->flags & VM_WRITE))
    return fail(r, "pid %d: writable pte at %#lx in a read-only vma", p->pid, (unsigned long)va);
  if (pfn == k->fr.zero_pfn)
    return (e & PTE_W) ? fail(r, "pid %d: zero page writable at %#lx", p->pid,
                              (unsigned long)va) : 0;
  if (pfn >= k->fr.high || k->fr.f[pfn].kind == FK_FREE)
    return fail(r, "pid %d: pte at %#lx maps free pfn %u", p->pid, (unsigned long)va, pfn);
  uint8_t kind = k->fr.f[pfn].kind;
  if (kind == FK_ANON)
    c->rss[RSS_ANON]++;
  else if (kind != FK_PAGECACHE)
    return fail(r, "pid %d: pte at %#lx maps a frame of kind %u", p->pid, (unsigned long)va,
                kind);
  else if (v->ino && (v->ino->kind == IK_SHMEM || v->ino->kind == IK_TMPFS))
    c->rss[RSS_SHMEM]++;
  else
    c->rss[RSS_FILE]++;
  if (kind == FK_ANON && (v->flags & VM_SHARED))
    return fail(r, "pid %d: anonymous frame in shared vma at %#lx", p->pid, (unsigned long)va);
  return count_ref ? ref_frame(r, pfn, "pte") : 0;
}

// A guard marker lies in a vma marked VM_MAYBE_GUARD, in a table of this mm's own or one
// COW-shared at fork (never a file's shared table: markers belong to one address space).
static int check_guard(struct recount *r, struct proc *p, pfn_t t, uint64_t va) {
  struct vma *v = vma_find(&p->mm->vmas, va);
  if (!v || !(v->flags & VM_MAYBE_GUARD))
    return fail(r, "pid %d: guard marker at %#lx outside a VM_MAYBE_GUARD vma", p->pid,
                (unsigned long)va);
  if (pt_share(r->k, t) == PT_FILE)
    return fail(r, "pid %d: guard marker at %#lx in a file-shared table", p->pid,
                (unsigned long)va);
  return 0;
}

// How a last-level table is shared must agree with its refcount and the pmd entry.
static int check_sharing(struct recount *r, struct proc *p, pfn_t t, pte_t pmd) {
  struct kernel *k = r->k;
  struct ptpage *pg = pt_page(k, t);
  int share = pt_share(k, t);
  if (share == PT_PRIVATE && k->fr.f[t].ref != 1)
    return fail(r, "pid %d: private table pfn %u has refcount %u", p->pid, t, k->fr.f[t].ref);
  if (share == PT_PRIVATE && !(pmd & PTE_W))
    return fail(r, "pid %d: private table pfn %u under a read-only pmd", p->pid, t);
  if (share == PT_COW && (pmd & PTE_W))
    return fail(r, "pid %d: COW-shared table pfn %u under a writable pmd", p->pid, t);
  uint64_t ent;
  if (share == PT_FILE &&
      (!xa_load(&pg->ino->ptshare, pg->chunk, &ent) || (pfn_t)ent != t))
    return fail(r, "pid %d: file-shared table pfn %u missing from its registry", p->pid, t);
  return 0;
}

// Walk one last-level table reached from p's pmd entry pmd covering base.
static int walk_pte_table(struct recount *r, struct proc *p, pfn_t t, pte_t pmd, uint64_t base,
                          struct mm_count *c) {
  struct kernel *k = r->k;
  struct ptpage *pg = pt_page(k, t);
  int first = r->ref[t] == 1;  // the pmd entry that led here was just counted
  int count_ref = first || (pt_share(k, t) == PT_COW && pt_eager(k, t));
  unsigned used = 0;
  int err = check_sharing(r, p, t, pmd);
  memset(c->rss, 0, sizeof(c->rss));
  for (unsigned i = 0; i < PTRS_PER_TABLE && !err; i++) {
    pte_t e = pg->e[i];
    if (!e)
      continue;
    used++;
    uint64_t va = base + ((uint64_t)i << PAGE_SHIFT);
    if (pte_is_guard(e))
      err = check_guard(r, p, t, va);
    else if (!(e & PTE_P))
      return fail(r, "pid %d: non-present non-empty pte at %#lx", p->pid, (unsigned long)va);
    else
      err = check_pte(r, p, va, e, c, count_ref);
  }
  if (err)
    return err;
  if (used != k->fr.f[t].aux)
    return fail(r, "pid %d: table pfn %u has %u entries, counted %u", p->pid, t,
                k->fr.f[t].aux, used);
  for (int i = 0; i < 3; i++)
    if (c->rss[i] != pg->rss[i])
      return fail(r, "pid %d: table pfn %u rss[%d] is %u, counted %u", p->pid, t, i,
                  pg->rss[i], c->rss[i]);
  return 0;
}

// A pmd leaf: an aligned huge page of anonymous frames inside one private anonymous vma
// covering its 2 MiB; its pmd mapping is counted for the thp_maps comparison.
static int check_huge(struct recount *r, struct proc *p, uint64_t va, pte_t e) {
  struct kernel *k = r->k;
  pfn_t head = PTE_PFN(e);
  struct vma *v = vma_find(&p->mm->vmas, va);
  if (!v || v->start > va || v->end < va + PMD_SIZE || v->ino || (v->flags & VM_SHARED))
    return fail(r, "pid %d: huge page at %#lx not inside one private anonymous vma", p->pid,
                (unsigned long)va);
  if ((e & PTE_W) && !(v->flags & VM_WRITE))
    return fail(r, "pid %d: writable huge page at %#lx in a read-only vma", p->pid,
                (unsigned long)va);
  if ((head & (HPAGE_NR - 1)) || head + HPAGE_NR > k->fr.high ||
      k->fr.f[head].kind != FK_ANON || !(k->fr.f[head].aux & FF_THP_HEAD))
    return fail(r, "pid %d: pmd leaf at %#lx maps pfn %u, not a huge page's head", p->pid,
                (unsigned long)va, head);
  r->thp[head >> HPAGE_ORDER]++;
  return 0;
}

// Walk one upper-level table (level 3..1) of p's tree covering addresses from base.
static int walk_table(struct recount *r, struct proc *p, pfn_t t, int level, uint64_t base,
                      struct mm_count *c) {
  struct kernel *k = r->k;
  if (k->fr.f[t].kind != FK_PAGETABLE)
    return fail(r, "pid %d: table pfn %u has kind %u", p->pid, t, k->fr.f[t].kind);
  c->tables++;
  pte_t *tab = pt_table(k, t);
  unsigned used = 0;
  int err = 0;
  for (unsigned i = 0; i < PTRS_PER_TABLE && !err; i++) {
    pte_t e = tab[i];
    if (!e)
      continue;
    used++;
    uint64_t va = base + ((uint64_t)i << (PAGE_SHIFT + 9 * level));
    pfn_t child = PTE_PFN(e);
    if (!(e & PTE_P))
      return fail(r, "pid %d: non-present non-empty entry at %#lx", p->pid, (unsigned long)va);
    if (level == 1 && pmd_is_huge(e)) {
      err = check_huge(r, p, va, e);
      continue;
    }
    if ((e & PTE_PS))
      return fail(r, "pid %d: huge entry at %#lx above the pmd level", p->pid, (unsigned long)va);
    if ((err = ref_frame(r, child, "table entry")))
      return err;
    if (k->fr.f[child].kind != FK_PAGETABLE)
      return fail(r, "pid %d: entry at %#lx points at pfn %u of kind %u", p->pid,
                  (unsigned long)va, child, k->fr.f[child].kind);
    if (level > 1) {
      err = walk_table(r, p, child, level - 1, va, c);
    } else {
      c->tables++;
      err = walk_pte_table(r, p, child, e, va, c);
    }
  }
  if (!err && used != k->fr.f[t].aux)
    return fail(r, "pid %d: table pfn %u has %u entries, counted %u", p->pid, t,
                k->fr.f[t].aux, used);
  return err;
}

// The vma array is sorted, aligned, non-empty, non-overlapping and inside user space.
static int check_vmas(struct recount *r, struct proc *p) {
  struct vma_list *l = &p->mm->vmas;
  for (uint32_t i = 0; i < l->n; i++) {
    struct vma *v = &l->v[i];
    if (!PAGE_ALIGNED(v->start) || !PAGE_ALIGNED(v->end) || v->start >= v->end ||
        v->end > TASK_SIZE || (i && l->v[i - 1].end > v->start))
      return fail(r, "pid %d: bad vma %u [%#lx, %#lx)", p->pid, i, (unsigned long)v->start,
                  (unsigned long)v->end);
    if (v->ino)
      v->ino->check_refs++;
    if (v->flags & VM_ACCOUNT)
      r->committed += (v->end - v->start) >> PAGE_SHIFT;
  }
  return 0;
}

static int check_mm(struct recount *r, struct proc *p) {
  struct mm_count c = {0};
  if (p->state == PS_ZOMBIE)
    return (p->mm || p->fds.cap) ? fail(r, "zombie %d still holds memory or files", p->pid) : 0;
  if (p->vfork_parent) {  // runs in its parent's mm, which the parent's walk counts
    struct proc *parent = proc_get_any(r->k, p->vfork_parent);
    if (!parent || parent->mm != p->mm || parent->vfork_child != p->pid)
      return fail(r, "vfork child %d does not share its suspended parent's mm", p->pid);
    for (int fd = 0; fd < p->fds.cap; fd++)
      if (p->fds.fd[fd])
        p->fds.fd[fd]->check_refs++;
    return 0;
  }
  int err = check_vmas(r, p);
  if (!err)
    err = ref_frame(r, p->mm->pgd, "mm");
  if (!err)
    err = walk_table(r, p, p->mm->pgd, 3, 0, &c);
  if (err)
    return err;
  struct mm *mm = p->mm;
  if (c.tables != mm->nr_tables)
    return fail(r, "pid %d: %lu page tables, counted %lu", p->pid,
                (unsigned long)mm->nr_tables, (unsigned long)c.tables);
  for (int fd = 0; fd < p->fds.cap; fd++)
    if (p->fds.fd[fd])
      p->fds.fd[fd]->check_refs++;
  return 0;
}

// Count an inode's page cache once (check_refs is used as the visited mark by the caller).
static int check_pagecache(struct recount *r, struct inode *ino) {
  uint64_t n = 0, pfn;
  for (uint64_t i = 0; xa_find(&ino->cache, &i, &pfn); i++) {
    n++;
    if (pfn >= r->k->fr.nframes || r->k->fr.f[pfn].kind != FK_PAGECACHE)
      return fail(r, "inode %lu page %lu is not a page-cache frame", (unsigned long)ino->ino,
                  (unsigned long)i);
    int err = ref_frame(r, (pfn_t)pfn, "page cache");
    if (err)
      return err;
    if (i == UINT64_MAX)
      break;
  }
  if (n != ino->cache.count)
    return fail(r, "inode %lu caches %lu pages, counted %lu", (unsigned long)ino->ino,
                (unsigned long)ino->cache.count, (unsigned long)n);
  return 0;
}

// Visit every inode reachable from the namespace, vmas and files exactly once.
typedef int (*inode_fn)(struct recount *r, struct inode *ino);

static int for_each_inode(struct recount *r, inode_fn fn) {
  struct kernel *k = r->k;
  int err = 0;
  for (uint32_t b = 0; b < 4096 && !err; b++)
    for (struct inode *i = k->itab[b]; i && !err; i = i->hnext)
      err = fn(r, i);
  for (int pid = 1; pid < k->pid_max && !err; pid++) {
    struct proc *p = k->procs[pid];
    if (!p || !p->mm)
      continue;
    for (uint32_t i = 0; i < p->mm->vmas.n && !err; i++)
      if (p->mm->vmas.v[i].ino && !p->mm->vmas.v[i].ino->linked)
        err = fn(r, p->mm->vmas.v[i].ino);
    for (int fd = 0; fd < p->fds.cap && !err; fd++)
      if (p->fds.fd[fd] && !p->fds.fd[fd]->ino->linked)
        err = fn(r, p->fds.fd[fd]->ino);
  }
  return err;
}

static int inode_mark(struct recount *r, struct inode *ino) {
  (void)r;
  ino->check_refs = 0x80000000u;  // visited, nothing counted yet
  return 0;
}

static int inode_cache_once(struct recount *r, struct inode *ino) {
  if (ino->check_refs & 0x40000000u)
    return 0;
  ino->check_refs |= 0x40000000u;
  // compare shmem_acct_size() and shmem_acct_blocks(): shmem's share of Committed_AS
  r->committed += ino->acct_pages + (ino->acct_blocks ? ino->cache.count : 0);
  return check_pagecache(r, ino);
}

static int inode_compare(struct recount *r, struct inode *ino) {
  uint32_t counted = (ino->check_refs & 0x3fffffffu) + (uint32_t)(ino->linked ? 1 : 0);
  if (ino == r->k->dev_null || ino == r->k->dev_zero)
    counted++;  // the kernel's own reference
  if (!(ino->check_refs & 0x20000000u) && counted != ino->refs)
    return fail(r, "inode %lu (%s) has %u references, counted %u", (unsigned long)ino->ino,
                ino->path ? ino->path : "shmem", ino->refs, counted);
  ino->check_refs |= 0x20000000u;
  return 0;
}

// Files: refs equal the descriptors pointing at them; each file references its inode once.
static int check_files(struct recount *r) {
  struct kernel *k = r->k;
  for (int pid = 1; pid < k->pid_max; pid++) {
    struct proc *p = k->procs[pid];
    for (int fd = 0; p && fd < p->fds.cap; fd++) {
      struct file *f = p->fds.fd[fd];
      if (!f || !f->check_refs)
        continue;
      if (f->check_refs != f->refs)
        return fail(r, "pid %d fd %d: file has %u references, counted %u", pid, fd, f->refs,
                    f->check_refs);
      f->check_refs = 0;
      f->ino->check_refs++;
    }
  }
  return 0;
}

// Walk the buddy free lists: heads are free, aligned, of the right order; the total adds up.
static int check_buddy(struct recount *r) {
  struct frames *fr = &r->k->fr;
  uint64_t free_frames = 0;
  for (unsigned o = 0; o <= MAX_ORDER; o++) {
    uint64_t n = 0;
    for (pfn_t p = fr->free_head[o]; p != NO_PFN; p = (pfn_t)(fr->data[p] >> 32)) {
      if (p >= fr->nframes || (p & ((1U << o) - 1)) || fr->f[p].kind != FK_FREE ||
          fr->f[p].aux != (FF_BUDDY_HEAD | o) || ++n > fr->free_count[o])
        return fail(r, "buddy list of order %u is corrupt at pfn %u", o, p);
      if (p < fr->high && r->ref[p])
        return fail(r, "pfn %u is both free and in use", p);
    }
    if (n != fr->free_count[o])
      return fail(r, "buddy list of order %u holds %lu blocks, counted %lu", o,
                  (unsigned long)fr->free_count[o], (unsigned long)n);
    free_frames += n << o;
  }
  for (int run = 0; run < 2; run++) {
    for (pfn_t p = fr->run_next[run]; p < fr->run_end[run]; p++)
      if (fr->f[p].kind != FK_FREE || (p < fr->high && r->ref[p]))
        return fail(r, "pfn %u of allocation run %d is in use", p, run);
    free_frames += fr->run_end[run] - fr->run_next[run];
  }
  if (free_frames + fr->used != fr->nframes)
    return fail(r, "%lu free + %u used frames != %u", (unsigned long)free_frames, fr->used,
                fr->nframes);
  return 0;
}

// Every counted frame's refcount and the per-kind totals agree with the recount.
static int check_refs(struct recount *r) {
  struct frames *fr = &r->k->fr;
  uint64_t distinct = 0;
  for (pfn_t p = 0; p < fr->high; p++) {
    const struct frame *f = &fr->f[p];
    int thp = f->kind == FK_ANON && (f->aux & FF_THP);
    if (!r->ref[p] && !thp)
      continue;
    distinct++;
    if (!r->ref[p])
      r->kinds[FK_ANON]++;  // a subpage only pmd leaves map
    if (f->ref != r->ref[p])
      return fail(r, "pfn %u (kind %u) has refcount %u, counted %u", p, f->kind, f->ref,
                  r->ref[p]);
    if (thp && (f->aux & FF_THP_HEAD)) {
      if ((p & (HPAGE_NR - 1)) || p + HPAGE_NR > fr->high)
        return fail(r, "huge page head pfn %u is misaligned", p);
      for (unsigned i = 1; i < HPAGE_NR; i++)
        if (fr->f[p + i].kind != FK_ANON || (fr->f[p + i].aux & FF_THP) != FF_THP_TAIL)
          return fail(r, "huge page %u: frame %u is not its tail", p, p + i);
    } else if (thp && (!(f->aux & FF_THP_TAIL) || !(fr->f[p & ~(HPAGE_NR - 1)].aux & FF_THP_HEAD))) {
      return fail(r, "pfn %u is a huge page tail without a head", p);
    }
  }
  for (uint32_t i = 0; i <= (fr->nframes >> HPAGE_ORDER); i++)
    if (r->k->thp_maps[i] != r->thp[i])
      return fail(r, "huge page %u has %u pmd mappings, counted %u", i << HPAGE_ORDER,
                  r->k->thp_maps[i], r->thp[i]);
  if (distinct != fr->used)
    return fail(r, "%u frames in use, %lu reachable (leak)", fr->used, (unsigned long)distinct);
  for (int kind = 1; kind < 5; kind++)
    if (r->kinds[kind] != fr->by_kind[kind])
      return fail(r, "%lu frames of kind %d, counted %lu", (unsigned long)fr->by_kind[kind],
                  kind, (unsigned long)r->kinds[kind]);
  return 0;
}

// The fd model: every embryo is held by exactly one builder fd, in its parent's table; a
// builder fd is never held by anyone else, and never lives in an embryo.
static int check_embryos(struct recount *r) {
  struct kernel *k = r->k;
  uint8_t *held = calloc((size_t)k->pid_max, 1);
  if (!held)
    return -ENOMEM;
  int err = 0;
  for (int pid = 1; pid < k->pid_max && !err; pid++) {
    struct proc *p = k->procs[pid];
    for (int fd = 0; p && fd < p->fds.cap && !err; fd++) {
      struct file *f = p->fds.fd[fd];
      if (!f || f->ino->kind != IK_BUILDER)
        continue;
      struct proc *e = proc_by_handle(k, f->ino);
      if (f->refs != 1 || p->state == PS_EMBRYO)
        err = fail(r, "pid %d fd %d: a builder fd shared or held by an embryo", pid, fd);
      else if (e && e->state == PS_EMBRYO && (e->ppid != pid || held[e->pid]++))
        err = fail(r, "embryo %d held by pid %d, not once by its parent", e->pid, pid);
    }
  }
  for (int pid = 1; pid < k->pid_max && !err; pid++)
    if (k->procs[pid] && k->procs[pid]->state == PS_EMBRYO && !held[pid])
      err = fail(r, "embryo %d has no builder fd", pid);
  free(held);
  return err;
}

// Threads: a tid is a process's or a thread's, never both; every futex waiter, queued or
// woken, is a thread that still exists (a thread that goes takes its futex_q with it).
static int check_threads(struct recount *r) {
  struct kernel *k = r->k;
  for (int t = 1; t < k->pid_max; t++)
    if (k->tids[t] && k->procs[t])
      return fail(r, "tid %d is both a process and a thread", t);
  for (int pass = 0; pass < 2; pass++)
    for (struct futex_q *q = pass ? k->futex_woken : k->futex_queue; q;
         q = pass ? q->wnext : q->next) {
      int live = q->tid > 0 && q->tid < k->pid_max &&
                 (k->tids[q->tid] || (k->procs[q->tid] && k->procs[q->tid]->thread));
      if (!live)
        return fail(r, "futex %s of tid %d, which does not exist", pass ? "wake" : "waiter",
                    q->tid);
      if (!pass && (!q->queued || q->woken))
        return fail(r, "futex waiter of tid %d is on the queue, marked %s", q->tid,
                    q->woken ? "woken" : "not queued");
    }
  return 0;
}

// Process groups and sessions: each pid's users (processes whose group or session it names)
// recounted; every member of a group in one session, the group's; a session leader leads
// its own group. And no kill(2) is left half done (the signal outbox is empty).
static int check_groups(struct recount *r) {
  struct kernel *k = r->k;
  uint32_t *users = calloc((size_t)k->pid_max, sizeof(*users));
  int *sid_of = calloc((size_t)k->pid_max, sizeof(*sid_of));
  int err = 0;
  if (!users || !sid_of) {
    free(users);
    free(sid_of);
    return -ENOMEM;
  }
  for (int pid = 1; pid < k->pid_max && !err; pid++) {
    struct proc *p = k->procs[pid];
    if (!p)
      continue;
    if (p->pgid <= 0 || p->pgid >= k->pid_max || p->sid <= 0 || p->sid >= k->pid_max)
      err = fail(r, "pid %d: group %d session %d out of range", pid, p->pgid, p->sid);
    else if (sid_of[p->pgid] && sid_of[p->pgid] != p->sid)
      err = fail(r, "group %d spans sessions %d and %d", p->pgid, sid_of[p->pgid], p->sid);
    else if (p->sid == pid && p->pgid != pid)
      err = fail(r, "session leader %d is in group %d", pid, p->pgid);
    if (err)
      break;
    sid_of[p->pgid] = p->sid;
    users[p->pgid]++;
    users[p->sid]++;
  }
  if (!err && k->sigout_len)  // the trio layer drains it as soon as the CPU stops
    err = fail(r, "kill(2) left %u processes to wake or end", k->sigout_len);
  for (int pid = 1; pid < k->pid_max && !err; pid++)
    if (users[pid] != k->pid_users[pid])
      err = fail(r, "pid %d named by %u groups and sessions, counted %u", pid,
                 k->pid_users[pid], users[pid]);
  free(users);
  free(sid_of);
  return err;
}

int check_kernel(struct kernel *k, char *msg, size_t cap) {
  struct recount r = {.k = k, .msg = msg, .cap = cap};
  msg[0] = 0;
  r.ref = calloc(k->fr.high ? k->fr.high : 1, sizeof(uint32_t));
  r.thp = calloc((k->fr.nframes >> HPAGE_ORDER) + 1, sizeof(uint32_t));
  if (!r.ref || !r.thp) {
    free(r.ref);
    free(r.thp);
    return -ENOMEM;
  }
  int err = ref_frame(&r, k->fr.zero_pfn, "kernel");
  if (!err)
    err = for_each_inode(&r, inode_mark);
  for (int pid = 1; pid < k->pid_max && !err; pid++)
    if (k->procs[pid])
      err = check_mm(&r, k->procs[pid]);
  if (!err)
    err = check_files(&r);
  if (!err)
    err = check_embryos(&r);
  if (!err)
    err = check_groups(&r);
  if (!err)
    err = for_each_inode(&r, inode_cache_once);
  if (!err && r.committed != k->committed)
    err = fail(&r, "committed %lu pages, counted %lu", (unsigned long)k->committed,
               (unsigned long)r.committed);
  if (!err)
    err = for_each_inode(&r, inode_compare);
  if (!err)
    err = check_refs(&r);
  if (!err)
    err = check_buddy(&r);
  if (!err)
    err = check_threads(&r);
  free(r.ref);
  free(r.thp);
  return err;
}
