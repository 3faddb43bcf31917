// mm.c — address spaces and the memory system calls: mmap, munmap, mprotect, madvise, and
// the access paths (read, write, populate) that go through the fault path page by page.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mm/mm.h"
#include "fs/fs.h"  // up: fdt_get (mmap's fd, as ksys_mmap_pgoff's fget), inode refs, shmem
#include "kernel/kernel.h"  // up: ENTER, the sfd_* entry guard (Linux: current)

#define PROT_ALL (PROT_READ | PROT_WRITE | PROT_EXEC)
#ifndef PROT_SEM
#define PROT_SEM 0x8
#endif
#define MAP_TYPE_MASK 0x0f
#define STACK_GUARD_GAP (256 * PAGE_SIZE)
// compare Linux LEGACY_MAP_MASK: what MAP_SHARED_VALIDATE accepts for a non-DAX file
#define LEGACY_MAP_MASK (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE | \
                         MAP_EXECUTABLE | 0x4000000 /* MAP_UNINITIALIZED */ | MAP_GROWSDOWN |  \
                         MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | \
                         MAP_HUGETLB)
#define MAX_LFS_FILESIZE ((uint64_t)INT64_MAX)
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08        // a mapping type, like MAP_PRIVATE (Linux 6.11)
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102    // Linux 6.13
#define MADV_GUARD_REMOVE 103
#endif

// CommitLimit in pages: swap (none) + memory * vm.overcommit_ratio / 100.
// compare Linux vm_commit_limit().
uint64_t vm_commit_limit(struct kernel *k) {
  return (uint64_t)k->fr.nframes * k->overcommit_ratio / 100;
}

// Charge pages to Committed_AS for mm (NULL: the kernel's own, no user reserve), or -ENOMEM
// (charging nothing) as
// vm.overcommit_memory says: 0 refuses only a single charge larger than memory + swap, 1
// never refuses, 2 keeps the total under CommitLimit less the user reserve.
// compare Linux __vm_enough_memory().
int vm_enough_memory(struct kernel *k, struct mm *mm, uint64_t pages) {
  k->committed += pages;
  if (k->overcommit == 1 || (k->overcommit == 0 && pages <= k->fr.nframes))
    return 0;
  if (k->overcommit == 2) {
    uint64_t allowed = vm_commit_limit(k), total_vm = 0;
    uint64_t user_reserve = k->fr.nframes / 32 < (128ULL << 20) >> PAGE_SHIFT
                                ? k->fr.nframes / 32 : (128ULL << 20) >> PAGE_SHIFT;
    for (uint32_t i = 0; mm && i < mm->vmas.n; i++)
      total_vm += (mm->vmas.v[i].end - mm->vmas.v[i].start) >> PAGE_SHIFT;
    uint64_t reserve = total_vm / 32 < user_reserve ? total_vm / 32 : user_reserve;
    allowed = allowed > reserve ? allowed - reserve : 0;
    if (k->committed < allowed)
      return 0;
  }
  k->committed -= pages;
  return -ENOMEM;
}

// Give back a charge. compare Linux vm_unacct_memory().
void vm_unacct_memory(struct kernel *k, uint64_t pages) {
  k->committed -= pages;
}

// Pages of VM_ACCOUNT vmas inside [start, end).
static uint64_t accounted_pages(struct mm *mm, uint64_t start, uint64_t end) {
  struct vma_list *l = &mm->vmas;
  uint64_t n = 0;
  for (int i = vma_first_at_or_after(l, start); i < (int)l->n && l->v[i].start < end; i++) {
    const struct vma *v = &l->v[i];
    if (v->flags & VM_ACCOUNT)
      n += ((v->end < end ? v->end : end) - (v->start > start ? v->start : start)) >> PAGE_SHIFT;
  }
  return n;
}

// A new, empty address space. NULL with *err set when out of memory.
struct mm *mm_create(struct kernel *k, int *err) {
  struct mm *mm = calloc(1, sizeof(*mm));
  if (!mm) {
    *err = -ENOMEM;
    return NULL;
  }
  mm->k = k;
  mm->mmap_base = MMAP_BASE;
  if ((*err = pt_alloc(k, &mm->pgd))) {
    free(mm);
    return NULL;
  }
  mm->nr_tables = 1;
  return mm;
}

// Release every page, table and mapping. compare Linux exit_mmap().
void mm_destroy(struct mm *mm) {
  if (mm->mn_ops)
    mm->mn_ops->release(mm);  // compare mmu_notifier_release(): the CPU lets go first
  vm_unacct_memory(mm->k, accounted_pages(mm, 0, TASK_SIZE));
  pt_teardown(mm);
  vma_list_fini(mm->k, &mm->vmas);
  free(mm);
}

// Split vmas so that addr is a boundary (nothing to do where addr is unmapped or already one).
static int split_at(struct mm *mm, uint64_t addr) {
  struct vma *v = vma_find(&mm->vmas, addr);
  if (!v || v->start == addr)
    return 0;
  return vma_split(mm->k, &mm->vmas, (int)(v - mm->vmas.v), addr);
}

// Merge every mergeable pair touching [start, end). compare Linux vma_merge().
static void merge_range(struct mm *mm, uint64_t start, uint64_t end) {
  struct vma_list *l = &mm->vmas;
  int i = vma_first_at_or_after(l, start);
  if (i > 0)
    i--;
  while (i + 1 < (int)l->n && l->v[i].start <= end) {
    if (vma_can_merge(&l->v[i], &l->v[i + 1]))
      vma_try_merge(mm->k, l, i);
    else
      i++;
  }
}

// Whether a split at addr is needed (addr lies strictly inside a vma).
static int needs_split(struct mm *mm, uint64_t addr) {
  struct vma *v = vma_find(&mm->vmas, addr);
  return v && v->start != addr;
}

// Make start and end vma boundaries. Reserves room for the splits first, so it fails
// (-ENOMEM: vm.max_map_count) before changing anything. compare Linux do_vmi_align_munmap().
static int split_range(struct mm *mm, uint64_t start, uint64_t end) {
  uint32_t need = (uint32_t)needs_split(mm, start) + (uint32_t)needs_split(mm, end);
  int err = need ? vma_reserve(&mm->vmas, need) : 0;
  if (err)
    return err;
  if ((err = split_at(mm, start)))
    return err;
  return split_at(mm, end);
}

// Unmap [start, end): split, zap, drop the vmas, free emptied tables. compare do_munmap().
static int unmap_range(struct mm *mm, uint64_t start, uint64_t end) {
  int err = pt_unshare_range(mm, start, end, 1);
  if (err || (err = split_range(mm, start, end)))
    return err;
  if ((err = pt_zap_range(mm, start, end, ZAP_DROP_MARKERS)))
    return err;
  struct vma_list *l = &mm->vmas;
  int i = vma_first_at_or_after(l, start);
  while (i < (int)l->n && l->v[i].start < end) {
    if (l->v[i].flags & VM_ACCOUNT)
      vm_unacct_memory(mm->k, (l->v[i].end - l->v[i].start) >> PAGE_SHIFT);
    if (l->v[i].ino)
      inode_put(mm->k, l->v[i].ino);
    vma_remove(l, i);
  }
  pt_free_range(mm, start, end);
  return 0;
}

int mm_unmap_range(struct mm *mm, uint64_t start, uint64_t end) {
  return unmap_range(mm, start, end);
}

void mm_merge_range(struct mm *mm, uint64_t start, uint64_t end) { merge_range(mm, start, end); }

// The highest a <= top with a % align == off (align a power of two, or 0 for any), if a >= low.
static uint64_t align_down_to(uint64_t top, uint64_t low, uint64_t align, uint64_t off) {
  if (!align)
    return top;
  uint64_t a = ((top - off) & ~(align - 1)) + off;
  if (a > top)
    a -= align;
  return (a >= low && a <= top) ? a : 0;
}

// Highest free [a, a + len) inside [low, high) with a % align == off, or 0. A growsdown vma
// keeps a guard gap below it. compare Linux unmapped_area_topdown().
static uint64_t unmapped_area_topdown(struct vma_list *l, uint64_t len, uint64_t low,
                                      uint64_t high, uint64_t align, uint64_t off) {
  uint64_t end = high;
  for (int i = (int)l->n - 1; i >= 0 && end >= low + len; i--) {
    const struct vma *v = &l->v[i];
    if (v->start >= end)
      continue;
    if (v->end <= end && end - v->end >= len) {
      uint64_t a = align_down_to(end - len, v->end, align, off);
      if (a)
        return a;
    }
    uint64_t top = v->start;
    if (v->flags & VM_GROWSDOWN)
      top = top > STACK_GUARD_GAP ? top - STACK_GUARD_GAP : 0;
    if (top < end)
      end = top;
  }
  return (end >= low + len) ? align_down_to(end - len, low, align, off) : 0;
}

// Choose where a non-fixed mapping goes: the hint if free, else top-down below mmap_base,
// else anywhere. Without a usable hint, a mapping given an alignment goes at an address a
// with a % align == off: a shared file mapping of 2 MiB or more congruent to its file offset
// modulo 2 MiB when page tables are shared, so its chunks can share (as Linux aligns mappings
// that may use huge pages, and as shmem_get_unmapped_area() returns a free hint as it is).
// Returns 0 when nothing fits.
static uint64_t get_unmapped_area(struct mm *mm, uint64_t hint, uint64_t len, uint64_t align,
                                  uint64_t off) {
  hint = PAGE_ROUND_UP(hint);
  if (hint && hint < MMAP_MIN_ADDR)
    hint = MMAP_MIN_ADDR;  // compare round_hint_to_min()
  if (hint >= MMAP_MIN_ADDR && hint <= TASK_SIZE - len &&
      vma_range_free(&mm->vmas, hint, hint + len))
    return hint;
  uint64_t a = unmapped_area_topdown(&mm->vmas, len, MMAP_MIN_ADDR, mm->mmap_base, align, off);
  return a ? a : unmapped_area_topdown(&mm->vmas, len, MMAP_MIN_ADDR, TASK_SIZE, align, off);
}

uint64_t mm_get_unmapped_area(struct mm *mm, uint64_t hint, uint64_t len) {
  return get_unmapped_area(mm, hint, len, 0, 0);
}

// Check a file mapping against the open file f, in the order of the file switch of Linux
// do_mmap(). Sets *ino to the inode to map (NULL for private /dev/zero: plain anonymous
// memory) and *maywrite (VM_MAYWRITE).
static int mmap_file_check(struct file *f, uint64_t len, uint64_t pgoff, int prot, int flags,
                           struct inode **ino, int *maywrite) {
  enum inode_kind kind = f->ino->kind;
  int acc = f->flags & O_ACCMODE, type = flags & MAP_TYPE_MASK;
  // compare file_mmap_ok() and file_mmap_size_max(): character devices take any offset
  uint64_t max = (kind == IK_DEVZERO || kind == IK_DEVNULL) ? UINT64_MAX : MAX_LFS_FILESIZE;
  if (len > max || pgoff > (max - len) >> PAGE_SHIFT)
    return -EOVERFLOW;
  if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE && type != MAP_PRIVATE)
    return -EINVAL;
  if (type == MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK))
    return -EOPNOTSUPP;  // MAP_SYNC needs a DAX file; none here
  if (type != MAP_PRIVATE && (prot & PROT_WRITE) && acc != O_RDWR)
    return -EACCES;
  if (acc == O_WRONLY)
    return -EACCES;
  if (kind == IK_PIPE && (prot & PROT_EXEC))
    return -EPERM;  // compare path_noexec(): pipefs is SB_I_NOEXEC
  if (kind == IK_DIR || kind == IK_DEVNULL || kind == IK_PIPE || kind == IK_BUILDER ||
      kind == IK_PIDFD)
    return -ENODEV;  // handles are anon inodes without an mmap operation, like a pidfd
  if (flags & MAP_GROWSDOWN)
    return -EINVAL;
  *maywrite = type == MAP_PRIVATE || acc == O_RDWR;
  *ino = (kind == IK_DEVZERO) ? NULL : f->ino;
  return 0;
}

// Where the mapping goes: the fixed address after its checks, or a free area. compare the
// MAP_FIXED paths of Linux __get_unmapped_area() and the MAP_FIXED_NOREPLACE check.
static int mmap_place(struct mm *mm, uint64_t *addr, uint64_t len, int flags, int file,
                      uint64_t off) {
  if (!(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))) {
    int share = file && (flags & MAP_TYPE_MASK) != MAP_PRIVATE && len >= PMD_SIZE &&
                mm->k->share_pagetables;
    // compare thp_get_unmapped_area(): anonymous private memory of 2 MiB or more starts on a
    // 2 MiB boundary when huge pages are enabled, so it can have them
    int huge = !file && (flags & MAP_TYPE_MASK) == MAP_PRIVATE && len >= PMD_SIZE &&
               mm->k->thp != THP_NEVER;
    if (len > TASK_SIZE - MMAP_MIN_ADDR)
      return -ENOMEM;
    *addr = get_unmapped_area(mm, *addr, len, (share || huge) ? PMD_SIZE : 0,
                              share ? off & (PMD_SIZE - 1) : 0);
    return *addr ? 0 : -ENOMEM;
  }
  if (len > TASK_SIZE || *addr > TASK_SIZE - len)
    return -ENOMEM;
  if (*addr & (PAGE_SIZE - 1))
    return -EINVAL;
  if (*addr < MMAP_MIN_ADDR)
    return -EPERM;  // no CAP_SYS_RAWIO in the simulator
  if ((flags & MAP_FIXED_NOREPLACE) && !vma_range_free(&mm->vmas, *addr, *addr + len))
    return -EEXIST;
  return 0;
}

// Fault in [start, end) as MAP_POPULATE does; errors are ignored by mmap.
static int populate_range(struct mm *mm, uint64_t start, uint64_t end, int write,
                          int use_stamp, uint64_t stamp);

// Validate mmap's arguments in Linux's order (do_mmap) and describe the new vma in *v
// (without its file reference). f is the open file of a file mapping, NULL for anonymous.
static int mmap_check(struct proc *p, uint64_t *addr, uint64_t len, int prot, int flags,
                      struct file *f, uint64_t off, struct vma *v) {
  struct mm *mm = p->mm;
  int type = flags & MAP_TYPE_MASK, maywrite = 1, err;
  if (!len)
    return -EINVAL;
  uint64_t pages = PAGE_ROUND_UP(len) >> PAGE_SHIFT, pgoff = off >> PAGE_SHIFT;
  len = pages << PAGE_SHIFT;
  if (!len)
    return -ENOMEM;
  if (pgoff + pages < pgoff)
    return -EOVERFLOW;
  if (mm->vmas.n > MAX_MAP_COUNT)
    return -ENOMEM;  // compare do_mmap(): map_count > sysctl_max_map_count
  if ((err = mmap_place(mm, addr, len, flags, f != NULL, off)))
    return err;
  memset(v, 0, sizeof(*v));
  if (f) {
    if ((err = mmap_file_check(f, len, pgoff, prot, flags, &v->ino, &maywrite)))
      return err;
  } else if (type == MAP_DROPPABLE) {  // compare do_mmap(): no lock, stack or hugetlb
    if (flags & (MAP_LOCKED | MAP_HUGETLB | MAP_GROWSDOWN))
      return -EINVAL;
  } else if ((type != MAP_SHARED && type != MAP_PRIVATE) ||
             (type == MAP_SHARED && (flags & MAP_GROWSDOWN))) {
    return -EINVAL;
  }
  v->start = *addr;
  v->end = *addr + len;
  // compare do_mmap(): anonymous memory's pgoff is its address in pages (private /dev/zero
  // keeps the file offset), so that anonymous vmas merge only where contiguous, as after mremap
  v->pgoff = (v->ino || f) ? pgoff : (type == MAP_SHARED) ? 0 : *addr >> PAGE_SHIFT;
  int shared = type == MAP_SHARED || type == MAP_SHARED_VALIDATE;
  // compare do_mmap(): MAP_NORESERVE is honoured only when overcommit is allowed
  int noreserve = (flags & MAP_NORESERVE) && mm->k->overcommit != 2;
  v->flags = (uint32_t)(prot & PROT_ALL) | (shared ? VM_SHARED : 0) |
             (maywrite ? VM_MAYWRITE : 0) | ((flags & MAP_GROWSDOWN) ? VM_GROWSDOWN : 0) |
             (noreserve ? VM_NORESERVE : 0);
  if (type == MAP_DROPPABLE)  // never reserved, and too volatile to fork or dump
    v->flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP;
  if ((v->flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE)
    v->flags |= VM_ACCOUNT;  // compare accountable_mapping()
  return 0;
}

// The unnamed shmem inode behind a shared anonymous mapping, its size charged to commit
// unless the vma is VM_NORESERVE (then each page is, as it is allocated). -ENOMEM when the
// charge is refused or memory is out. compare Linux shmem_zero_setup() and shmem_acct_size().
static int shmem_zero_setup(struct mm *mm, struct vma *v) {
  uint64_t pages = (v->end - v->start) >> PAGE_SHIFT;
  int reserve = !(v->flags & VM_NORESERVE);
  int err = reserve ? vm_enough_memory(mm->k, mm, pages) : 0;
  if (err)
    return err;
  if (!(v->ino = inode_new_shmem(mm->k, v->end - v->start))) {
    if (reserve)
      vm_unacct_memory(mm->k, pages);
    return -ENOMEM;
  }
  v->ino->acct_pages = reserve ? pages : 0;
  v->ino->acct_blocks = !reserve;
  return 0;
}

// mmap(2) of open file f (NULL: anonymous) in p. Returns the address through *out.
// compare Linux do_mmap(); the fd and offset checks of the system call are the caller's.
int mm_mmap(struct proc *p, uint64_t addr, uint64_t len, int prot, int flags, struct file *f,
            uint64_t off, uint64_t *out) {
  struct mm *mm = p->mm;
  struct vma v;
  int err = mmap_check(p, &addr, len, prot, flags, f, off, &v);
  if (err || (err = vma_grow(&mm->vmas, 3)))  // host memory only: mmap_check did the limit
    return err;
  // compare __mmap_region(): charge what the accounted vmas it replaces did not have
  uint64_t pages = (v.end - v.start) >> PAGE_SHIFT, replaced = 0;
  if (v.flags & VM_ACCOUNT) {
    replaced = accounted_pages(mm, v.start, v.end);
    if ((err = vm_enough_memory(mm->k, mm, pages - replaced)))
      return err;
  }
  uint64_t charged = (v.flags & VM_ACCOUNT) ? pages - replaced : 0;
  if ((v.flags & VM_SHARED) && !v.ino) {  // MAP_SHARED|MAP_ANONYMOUS: shmem_zero_setup()
    if ((err = shmem_zero_setup(mm, &v)))
      return err;
  } else if (v.ino) {
    inode_get(v.ino);
    if ((v.flags & (VM_SHARED | VM_MAYWRITE)) == (VM_SHARED | VM_MAYWRITE))
      v.ino->mmap_writable = 1;  // Linux: mapping_map_writable()
  }
  err = unmap_range(mm, v.start, v.end);
  if (!err) {  // the replaced vmas' charge now belongs to the new vma
    mm->k->committed += replaced;
    charged += replaced;
  }
  if (err || (err = vma_insert(&mm->vmas, &v)) < 0) {
    vm_unacct_memory(mm->k, charged);
    if (v.ino)
      inode_put(mm->k, v.ino);
    return err;
  }
  merge_range(mm, v.start, v.end);
  if ((flags & MAP_POPULATE) && vma_allows(&v, 0))
    populate_range(mm, v.start, v.end, (v.flags & VM_WRITE) && !(v.flags & VM_SHARED), 0, 0);
  *out = v.start;
  return 0;
}

// mmap(2): the system call's own checks (offset, descriptor), then mm_mmap.
int sfd_mmap(struct kernel *k, int pid, uint64_t addr, uint64_t len, int prot, int flags,
             int fd, uint64_t off, uint64_t *out) {
  struct proc *p;
  struct file *f = NULL;
  ENTER(k, pid, p);
  if (off & (PAGE_SIZE - 1))
    return -EINVAL;
  if (!(flags & MAP_ANONYMOUS) && (!(f = fdt_get(&p->fds, fd)) || (f->flags & O_PATH)))
    return -EBADF;
  if (flags & MAP_HUGETLB) {  // compare ksys_mmap_pgoff(): no hugetlbfs files, no huge pages
    int size = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK, type = flags & MAP_TYPE_MASK;
    if (f || (size && size != 21 && size != 30))
      return -EINVAL;
    if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE && type != MAP_PRIVATE)
      return -EINVAL;  // do_mmap()'s file switch: the hugetlbfs file takes no other type
    return -ENOMEM;  // hugetlbfs_file_mmap(): the pool is empty (vm.nr_hugepages = 0)
  }
  return LEAVE(k, mm_mmap(p, addr, len, prot, flags, f, off, out));
}

// Validate a range argument: unaligned start is -EINVAL; a length or end that wraps is
// -ENOMEM (mprotect's answer; madvise says -EINVAL). Returns the end via *end.
static int range_check(uint64_t addr, uint64_t len, uint64_t *end) {
  if (addr & (PAGE_SIZE - 1))
    return -EINVAL;
  uint64_t l = PAGE_ROUND_UP(len);
  if ((len && !l) || addr + l < addr)
    return -ENOMEM;
  *end = addr + l;
  return 0;
}

// munmap(2) of mm. compare Linux do_vmi_munmap().
int mm_munmap(struct mm *mm, uint64_t addr, uint64_t len) {
  if ((addr & (PAGE_SIZE - 1)) || !len || addr > TASK_SIZE ||
      PAGE_ROUND_UP(len) > TASK_SIZE - addr || !PAGE_ROUND_UP(len))
    return -EINVAL;
  return unmap_range(mm, addr, addr + PAGE_ROUND_UP(len));
}

// mremap(2): mm/mremap.c's mm_mremap behind the entry guard.
int64_t sfd_mremap(struct kernel *k, int pid, uint64_t addr, uint64_t old_len, uint64_t new_len,
                   int flags, uint64_t new_addr) {
  struct proc *p;
  uint64_t out = 0;
  ENTER(k, pid, p);
  int err = mm_mremap(p->mm, addr, old_len, new_len, flags, new_addr, &out);
  return LEAVE(k, err ? (int64_t)err : (int64_t)out);
}

int sfd_munmap(struct kernel *k, int pid, uint64_t addr, uint64_t len) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, mm_munmap(p->mm, addr, len));
}

// Give every vma in [start, end) (already split there) new protection, and fix the ptes.
// Private memory that becomes writable is charged to commit first; -ENOMEM stops there.
// compare Linux mprotect_fixup() + change_protection().
static int apply_prot(struct mm *mm, uint64_t start, uint64_t end, int prot) {
  struct vma_list *l = &mm->vmas;
  for (int i = vma_first_at_or_after(l, start); i < (int)l->n && l->v[i].start < end; i++) {
    struct vma *v = &l->v[i];
    uint64_t pages = (v->end - v->start) >> PAGE_SHIFT;
    int clear_w = (v->flags & VM_WRITE) && !(prot & PROT_WRITE);
    int set_w = !(v->flags & VM_WRITE) && (prot & PROT_WRITE) && (v->flags & VM_SHARED);
    int nx_change = !!(v->flags & VM_EXEC) != !!(prot & PROT_EXEC);
    if ((prot & PROT_WRITE) &&
        !(v->flags & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE))) {
      if (vm_enough_memory(mm->k, mm, pages))
        return -ENOMEM;
      v->flags |= VM_ACCOUNT;  // gaining write charges
    } else if (!(prot & PROT_WRITE) && (v->flags & VM_ACCOUNT) && !v->ino &&
               !(v->flags & VM_SHARED) && !v->anon_vma) {
      v->flags &= ~VM_ACCOUNT;  // losing it uncharges untouched anonymous memory
      vm_unacct_memory(mm->k, pages);
    }
    v->flags = (v->flags & ~(uint32_t)PROT_ALL) | (uint32_t)prot;
    if (clear_w || set_w || nx_change)
      pt_protect_range(mm, v->start, v->end, clear_w, set_w, !(prot & PROT_EXEC));
  }
  return 0;
}

// Where mprotect to prot must stop, at or after start: the first hole (-ENOMEM) or vma it may
// not give prot (-EACCES: write without VM_MAYWRITE). Returns end and 0 when it may go all
// the way. compare the per-vma loop of Linux do_mprotect_pkey().
static uint64_t mprotect_stop(struct mm *mm, uint64_t start, uint64_t end, int prot, int *err) {
  struct vma_list *l = &mm->vmas;
  uint64_t at = start;
  *err = 0;
  for (int i = vma_first_at_or_after(l, start); at < end; i++) {
    if (i >= (int)l->n || l->v[i].start > at) {
      *err = -ENOMEM;
      return at;
    }
    if ((prot & PROT_WRITE) && !(l->v[i].flags & VM_MAYWRITE)) {
      *err = -EACCES;
      return at;
    }
    at = l->v[i].end;
  }
  return end;
}

// compare Linux do_mprotect_pkey(): PROT_SEM is accepted (x86), PROT_GROWSDOWN extends the
// start to the beginning of a grows-down vma, PROT_GROWSUP has no vma to apply to on x86.
// Like Linux, it goes vma by vma and stops at the first hole or refusal: the part before it
// keeps its new protection (and its splits), and the call fails.
int mm_mprotect(struct mm *mm, uint64_t addr, uint64_t len, int prot) {
  int grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP), err;
  prot &= ~grows;
  if (grows == (PROT_GROWSDOWN | PROT_GROWSUP) || (addr & (PAGE_SIZE - 1)))
    return -EINVAL;
  if (!len)
    return 0;
  uint64_t l = PAGE_ROUND_UP(len), end = addr + l;
  if (!l || end <= addr)
    return -ENOMEM;
  if (prot & ~(PROT_ALL | PROT_SEM))
    return -EINVAL;
  int i = vma_first_at_or_after(&mm->vmas, addr);
  struct vma *v = i < (int)mm->vmas.n && mm->vmas.v[i].start < end ? &mm->vmas.v[i] : NULL;
  if (!v)
    return -ENOMEM;
  if (grows & PROT_GROWSDOWN) {
    addr = v->start;
    if (!(v->flags & VM_GROWSDOWN))
      return -EINVAL;
  } else if (v->start > addr) {
    return -ENOMEM;
  } else if (grows & PROT_GROWSUP) {
    return -EINVAL;  // no VM_GROWSUP on x86
  }
  int fail;
  uint64_t stop = mprotect_stop(mm, addr, end, prot, &fail);
  if (stop > addr) {
    if ((err = pt_unshare_range(mm, addr, stop, 0)) || (err = split_range(mm, addr, stop)))
      return err;
    err = apply_prot(mm, addr, stop, prot & PROT_ALL);
    merge_range(mm, addr, stop);
    if (err)
      return err;
  }
  return fail;
}

int sfd_mprotect(struct kernel *k, int pid, uint64_t addr, uint64_t len, int prot) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, mm_mprotect(p->mm, addr, len, prot));
}

// The vma flag an madvise sets and clears, or 0 for advice that changes no flag.
static int madv_flags(int advice, uint32_t *set, uint32_t *clear) {
  *set = *clear = 0;
  switch (advice) {
  case MADV_DONTFORK: *set = VM_DONTFORK; return 1;
  case MADV_DOFORK: *clear = VM_DONTFORK; return 1;
  case MADV_WIPEONFORK: *set = VM_WIPEONFORK; return 1;
  case MADV_KEEPONFORK: *clear = VM_WIPEONFORK; return 1;
  case MADV_HUGEPAGE: *set = VM_HUGEPAGE; *clear = VM_NOHUGEPAGE; return 1;
  case MADV_NOHUGEPAGE: *set = VM_NOHUGEPAGE; *clear = VM_HUGEPAGE; return 1;
  case MADV_DONTDUMP: *set = VM_DONTDUMP; return 1;
  case MADV_DODUMP: *clear = VM_DONTDUMP; return 1;
  case MADV_MERGEABLE: *set = VM_MERGEABLE; return 1;  // compare ksm_madvise()
  case MADV_UNMERGEABLE: *clear = VM_MERGEABLE; return 1;
  default: return 0;
  }
}

static int madv_known(int advice) {
  switch (advice) {
  case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL: case MADV_WILLNEED:
  case MADV_DONTNEED: case MADV_FREE: case MADV_DONTFORK: case MADV_DOFORK:
  case MADV_WIPEONFORK: case MADV_KEEPONFORK: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE:
  case MADV_POPULATE_READ: case MADV_POPULATE_WRITE: case MADV_DONTDUMP: case MADV_DODUMP:
  case MADV_MERGEABLE: case MADV_UNMERGEABLE: case MADV_COLD: case MADV_PAGEOUT:
  case MADV_DONTNEED_LOCKED: case MADV_REMOVE: case MADV_GUARD_INSTALL:
  case MADV_GUARD_REMOVE:
    return 1;
  default:
    return 0;
  }
}

// What advice requires of one vma: 0, or the errno refusing it. compare the per-vma checks
// of Linux madvise_vma_behavior().
static int madv_vma_check(const struct vma *v, int advice) {
  if (advice == MADV_WIPEONFORK && (v->ino || (v->flags & VM_SHARED)))
    return -EINVAL;
  if (advice == MADV_FREE && (v->ino || (v->flags & VM_SHARED)))
    return -EINVAL;  // compare madvise_free_single_vma(): anonymous private only
  if ((advice == MADV_KEEPONFORK || advice == MADV_DODUMP) && (v->flags & VM_DROPPABLE))
    return -EINVAL;  // droppable memory always wipes on fork and is never dumped
  if (advice == MADV_REMOVE && !v->ino)
    return -EINVAL;  // compare madvise_remove(): a file is needed
  if (advice == MADV_REMOVE && (v->flags & (VM_SHARED | VM_MAYWRITE)) !=
                                   (VM_SHARED | VM_MAYWRITE))
    return -EACCES;  // compare vma_is_shared_maywrite()
  return 0;
}

// Where advice stops at or after start: the start of the first vma it refuses (*err set),
// else end. Holes are skipped and noted in *hole (the call then ends in -ENOMEM).
// compare Linux madvise_walk_vmas().
static uint64_t madvise_stop(struct mm *mm, uint64_t start, uint64_t end, int advice,
                             int *err, int *hole) {
  struct vma_list *l = &mm->vmas;
  uint64_t at = start;
  *err = *hole = 0;
  for (int i = vma_first_at_or_after(l, start); at < end; i++) {
    if (i >= (int)l->n || l->v[i].start >= end) {
      *hole = 1;
      break;
    }
    if (l->v[i].start > at)
      *hole = 1;
    if ((*err = madv_vma_check(&l->v[i], advice)))
      return l->v[i].start > start ? l->v[i].start : start;
    at = l->v[i].end;
  }
  return end;
}

// Set and clear vma flags over [start, end), splitting and merging.
static int change_vma_flags(struct mm *mm, uint64_t start, uint64_t end, uint32_t set,
                            uint32_t clear) {
  int err = split_range(mm, start, end);
  if (err)
    return err;
  struct vma_list *l = &mm->vmas;
  for (int i = vma_first_at_or_after(l, start); i < (int)l->n && l->v[i].start < end; i++)
    if (!((set & VM_MERGEABLE) && (l->v[i].flags & VM_SHARED)))  // KSM leaves shared alone
      l->v[i].flags = (l->v[i].flags | set) & ~clear;
  merge_range(mm, start, end);
  return 0;
}

static int populate_vmas(struct mm *mm, uint64_t start, uint64_t end, int write,
                         int use_stamp, uint64_t stamp);

// compare Linux madvise_remove(): punch a hole in the file behind [start, end) of v, as
// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) does; every mapper then reads zeroes.
static int madvise_remove(struct mm *mm, struct vma *v, uint64_t start, uint64_t end) {
  uint64_t first = v->pgoff + ((start - v->start) >> PAGE_SHIFT);
  return inode_punch_hole(mm->k, v->ino, first, first + ((end - start) >> PAGE_SHIFT));
}

// compare Linux madvise_guard_install(): zap [start, end) of v (markers already there stay)
// and put a guard marker in each pte. The vma is marked VM_MAYBE_GUARD first, so that fork
// copies its tables. -ENOMEM (a table) leaves the markers installed so far, as Linux does.
static int madvise_guard_install(struct mm *mm, struct vma *v, uint64_t start, uint64_t end) {
  v->flags |= VM_MAYBE_GUARD;
  int err = pt_zap_range(mm, start, end, 0);
  return err ? err : pt_guard_install(mm, start, end);
}

// compare Linux madvise_guard_remove(): clear the markers; VM_MAYBE_GUARD stays (sticky).
static int madvise_guard_remove(struct mm *mm, struct vma *v, uint64_t start, uint64_t end) {
  (void)v;
  return pt_guard_remove(mm, start, end);
}

// Apply a per-vma advice to every vma piece of [start, end) (holes skipped), stopping at the
// first error. compare the visit loop of Linux madvise_walk_vmas().
static int madvise_each_vma(struct mm *mm, uint64_t start, uint64_t end,
                            int (*fn)(struct mm *, struct vma *, uint64_t, uint64_t)) {
  struct vma_list *l = &mm->vmas;
  for (int i = vma_first_at_or_after(l, start); i < (int)l->n && l->v[i].start < end; i++) {
    struct vma *v = &l->v[i];  // these advices neither add nor remove vmas
    int err = fn(mm, v, v->start > start ? v->start : start, v->end < end ? v->end : end);
    if (err)
      return err;
  }
  return 0;
}

// The per-vma function of an advice that walks vmas without changing their flags, or NULL.
static int (*madv_vma_fn(int advice))(struct mm *, struct vma *, uint64_t, uint64_t) {
  switch (advice) {
  case MADV_REMOVE: return madvise_remove;
  case MADV_GUARD_INSTALL: return madvise_guard_install;
  case MADV_GUARD_REMOVE: return madvise_guard_remove;
  default: return NULL;
  }
}

// madvise(2). Like Linux it goes vma by vma: the vmas before one the advice refuses keep the
// advice (and their splits), holes are skipped and make the result -ENOMEM.
// compare Linux do_madvise() and madvise_walk_vmas().
static int do_madvise(struct mm *mm, uint64_t addr, uint64_t len, int advice) {
  uint32_t set, clear;
  int err = 0, fail, hole;
  if (!madv_known(advice) || (addr & (PAGE_SIZE - 1)))
    return -EINVAL;
  uint64_t l = PAGE_ROUND_UP(len), end = addr + l;
  if ((len && !l) || end < addr)
    return -EINVAL;
  if (addr == end)
    return 0;
  if (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE)
    return populate_vmas(mm, addr, end, advice == MADV_POPULATE_WRITE, 0, 0);
  uint64_t stop = madvise_stop(mm, addr, end, advice, &fail, &hole);
  if (stop > addr && madv_flags(advice, &set, &clear)) {
    if (!(err = pt_unshare_range(mm, addr, stop, 0)))
      err = change_vma_flags(mm, addr, stop, set, clear);
  } else if (stop > addr && (advice == MADV_DONTNEED || advice == MADV_FREE ||
                              advice == MADV_DONTNEED_LOCKED)) {
    err = pt_zap_range(mm, addr, stop, 0);  // guard markers stay
  } else if (stop > addr && madv_vma_fn(advice)) {
    err = madvise_each_vma(mm, addr, stop, madv_vma_fn(advice));
  }
  if (err || fail)
    return err ? err : fail;
  return hole ? -ENOMEM : 0;
}

int sfd_madvise(struct kernel *k, int pid, uint64_t addr, uint64_t len, int advice) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, do_madvise(p->mm, addr, len, advice));
}

// Whether any page of [addr, next) in the table behind *pmd needs a fault for the access.
static int range_needs_fault(struct kernel *k, pte_t pmd, uint64_t addr, uint64_t next,
                             int write) {
  if (!(pmd & PTE_P) || (write && !(pmd & PTE_W)))
    return 1;
  if (pmd_is_huge(pmd))
    return 0;
  pte_t *pte = &pt_table(k, PTE_PFN(pmd))[(addr >> PAGE_SHIFT) & 511];
  for (; addr < next; addr += PAGE_SIZE, pte++)
    if (!(*pte & PTE_P) || (write && !(*pte & PTE_W)))
      return 1;
  return 0;
}

// The huge-page part of populating [addr, next) (at most one 2 MiB chunk): fault a huge
// page in (or use or COW the leaf there) and stamp its pages. Returns 1 when the chunk is
// done, 0 to populate it with 4 KiB pages, or -ENOMEM.
static int populate_huge(struct mm *mm, struct vma *v, uint64_t addr, uint64_t next,
                         int write, int use_stamp, uint64_t stamp) {
  pfn_t pfn;
  int got = fault_huge(mm, v, addr, write, &pfn);
  if (got <= 0)
    return got;
  if (use_stamp) {
    pfn_t first = pfn;
    for (uint64_t a = addr; a < next; a += PAGE_SIZE)
      frame_set_stamp(&mm->k->fr, first + (pfn_t)((a - addr) >> PAGE_SHIFT), stamp);
  }
  return 1;
}

// Fault in every page of [addr, next) within one pte table of vma v, walking down once.
static int populate_table(struct mm *mm, struct vma *v, uint64_t addr, uint64_t next,
                          int write, int use_stamp, uint64_t stamp) {
  struct frames *fr = &mm->k->fr;
  pfn_t table, pmdt, pfn;
  int err = 0;
  pte_t *pmd = pt_walk_pmd(mm, addr, 0, &pmdt, NULL);
  if ((!use_stamp && pmd && !range_needs_fault(mm->k, *pmd, addr, next, write)))
    return 0;
  if ((err = populate_huge(mm, v, addr, next, write, use_stamp, stamp)))
    return err < 0 ? err : 0;
  if ((err = fault_table(mm, v, addr, &table)))
    return err;
  pte_t *pte = &pt_table(mm->k, table)[(addr >> PAGE_SHIFT) & 511];
  for (; addr < next; addr += PAGE_SIZE, pte++) {
    pte_t e = *pte;
    if ((e & PTE_P) && (!write || (e & PTE_W)))
      pfn = PTE_PFN(e);
    else if ((err = fault_pte(mm, v, table, pte, addr, write, &pfn)))
      return err;
    if (use_stamp)
      frame_set_stamp(fr, pfn, stamp);
  }
  return 0;
}

static int populate_range(struct mm *mm, uint64_t start, uint64_t end, int write,
                          int use_stamp, uint64_t stamp) {
  struct vma_list *l = &mm->vmas;
  for (int i = vma_first_at_or_after(l, start); i < (int)l->n && l->v[i].start < end; i++) {
    struct vma *v = &l->v[i];  // faults never add or remove vmas
    uint64_t addr = v->start > start ? v->start : start;
    uint64_t stop = v->end < end ? v->end : end;
    for (uint64_t next; addr < stop; addr = next) {
      next = level_end(addr, stop, 1);
      int err = populate_table(mm, v, addr, next, write, use_stamp, stamp);
      if (err)
        return err;
    }
  }
  return 0;
}

// MADV_POPULATE_READ/WRITE over [start, end), vma by vma: a hole is -ENOMEM, a vma without
// the right (VM_READ or VM_WRITE) -EINVAL, a page past the end of a file -EFAULT; pages
// faulted before the failure stay. compare Linux madvise_populate() and the
// FOLL_MADV_POPULATE checks of __get_user_pages().
static int populate_vmas(struct mm *mm, uint64_t start, uint64_t end, int write,
                         int use_stamp, uint64_t stamp) {
  struct vma_list *l = &mm->vmas;
  for (uint64_t at = start; at < end;) {
    struct vma *v = vma_find(l, at);
    if (!v)
      return -ENOMEM;
    if (!(v->flags & (write ? VM_WRITE : VM_READ)))
      return -EINVAL;
    uint64_t stop = v->end < end ? v->end : end;
    int err = populate_range(mm, at, stop, write, use_stamp, stamp);
    if (err)
      return err;
    at = stop;
  }
  return 0;
}

int sfd_populate(struct kernel *k, int pid, uint64_t addr, uint64_t len, int write,
                 int use_stamp, uint64_t stamp) {
  struct proc *p;
  uint64_t end;
  ENTER(k, pid, p);
  if (use_stamp && !write)
    return -EINVAL;
  int err = range_check(addr, len, &end);
  if (err)
    return -EINVAL;
  if (addr == end)
    return 0;
  return LEAVE(k, populate_vmas(p->mm, addr, end, write, use_stamp, stamp));
}

// The frame backing va for an access, faulting it in. -EFAULT outside a vma or its rights.
static int access_page(struct mm *mm, uint64_t va, int write, pfn_t *pfn) {
  struct vma *v = vma_find(&mm->vmas, va);
  if (!v || !vma_allows(v, write))
    return -EFAULT;
  pfn_t table;
  int writable;
  pte_t *pte = pt_lookup(mm, va, &table, &writable);
  if (pte && pte_is_guard(*pte))
    return -EFAULT;  // a guard page: SIGSEGV on Linux, without breaking a shared table
  if (pte && (*pte & PTE_P) && (!write || ((*pte & PTE_W) && writable))) {
    *pfn = PTE_PFN(*pte);  // a hit changes nothing: a shared table stays untouched
    return 0;
  }
  pte_t *huge = pte ? NULL : pt_lookup_huge(mm, va, &table);
  if (huge && (!write || (*huge & PTE_W))) {
    *pfn = PTE_PFN(*huge) + (pfn_t)((va >> PAGE_SHIFT) & (HPAGE_NR - 1));
    return 0;
  }
  return handle_fault(mm, v, va, write, pfn);
}

// Copy between the caller's buffer and [addr, addr + len) of mm, a page at a time through
// the fault path. compare Linux access_remote_vm(). Stops at the first failing page.
int mm_access(struct mm *mm, uint64_t addr, uint8_t *rbuf, const uint8_t *wbuf,
              uint64_t len) {
  struct frames *fr = &mm->k->fr;
  if (addr + len < addr || addr + len > TASK_SIZE)
    return -EFAULT;
  for (uint64_t done = 0; done < len;) {
    uint64_t va = addr + done, in = va & (PAGE_SIZE - 1);
    uint64_t chunk = PAGE_SIZE - in < len - done ? PAGE_SIZE - in : len - done;
    pfn_t pfn;
    int err = access_page(mm, va & PAGE_MASK, wbuf != NULL, &pfn);
    if (!err && wbuf)
      err = frame_write_bytes(fr, pfn, in, wbuf + done, chunk);
    if (err)
      return err;
    if (rbuf)
      frame_read_bytes(fr, pfn, in, rbuf + done, chunk);
    done += chunk;
  }
  return 0;
}

// A user access by the CPU (a TLB miss): fault va in exactly as mm_access does, then report
// the frame and what the pte allows now (write only if writable through every level, exec
// unless NX, fetch only from an executable vma). -EFAULT where the access is not allowed.
int mm_fault_translate(struct mm *mm, uint64_t va, int access, pfn_t *pfn, int *perms) {
  if (va >= TASK_SIZE)
    return -EFAULT;
  va &= PAGE_MASK;
  if (access == MM_FETCH) {
    struct vma *v = vma_find(&mm->vmas, va);
    if (!v || !(v->flags & VM_EXEC))
      return -EFAULT;
  }
  int err = access_page(mm, va, access == MM_WRITE, pfn);
  if (err)
    return err;
  pfn_t table;
  int writable;
  pte_t e, *pte = pt_lookup(mm, va, &table, &writable);
  if (pte && (*pte & PTE_P)) {
    e = *pte;
  } else {
    pte_t *huge = pt_lookup_huge(mm, va, &table);
    if (!huge)
      return -EFAULT;
    e = *huge;
    writable = 1;
  }
  struct vma *v = vma_find(&mm->vmas, va);
  *perms = MM_PERM_R;
  if ((e & PTE_W) && writable && (v->flags & VM_WRITE))
    *perms |= MM_PERM_W;
  if (!(e & PTE_NX))
    *perms |= MM_PERM_X;
  return 0;
}

// Touch every stride-th page of [addr, addr + len) for reading or writing, through the fault
// path, as a program's loads and stores would: one C call for a benchmark's access pattern.
// Returns the pages touched; -EFAULT at the first page the mappings do not allow.
int64_t sfd_touch(struct kernel *k, int pid, uint64_t addr, uint64_t len, uint64_t stride,
                  int write) {
  struct proc *p;
  ENTER(k, pid, p);
  if (!stride || (addr & (PAGE_SIZE - 1)) || addr + len < addr || addr + len > TASK_SIZE)
    return -EINVAL;
  uint64_t step, end = addr + len;
  if (__builtin_mul_overflow(stride, PAGE_SIZE, &step))
    step = end - addr;  // past the range: only the first page is touched
  int64_t n = 0;
  for (uint64_t va = addr; va < end; n++) {
    pfn_t pfn;
    int err = access_page(p->mm, va, write, &pfn);
    if (err)
      return LEAVE(k, err);
    if (__builtin_add_overflow(va, step, &va))
      break;
  }
  return LEAVE(k, n);
}

int sfd_mem_read(struct kernel *k, int pid, uint64_t addr, uint8_t *buf, uint64_t len) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, mm_access(p->mm, addr, buf, NULL, len));
}

int sfd_mem_write(struct kernel *k, int pid, uint64_t addr, const uint8_t *buf, uint64_t len) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, mm_access(p->mm, addr, NULL, buf, len));
}

// The pte mapping va (0 if none), without faulting. For tests and introspection.
int sfd_translate(struct kernel *k, int pid, uint64_t va, uint64_t *out) {
  struct proc *p;
  pfn_t table;
  int writable;
  ENTER_VIEW(k, pid, p);
  pte_t *pte = pt_lookup(p->mm, va & PAGE_MASK, &table, &writable);
  pte_t *huge = pte ? NULL : pt_lookup_huge(p->mm, va, &table);
  *out = pte ? *pte : 0;
  if (huge)  // the subpage, with the leaf's bits (PTE_PS says it is part of a huge page)
    *out = *huge + (((va >> PAGE_SHIFT) & (HPAGE_NR - 1)) << PAGE_SHIFT);
  return 0;
}

// Sum the rss counters of mm's last-level tables and count the shared ones: one step per
// table, never per page.
static void mm_table_stats(struct mm *mm, struct mmstats *out) {
  struct kernel *k = mm->k;
  pte_t *pgd = pt_table(k, mm->pgd);
  for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
    if (!(pgd[i] & PTE_P))
      continue;
    pte_t *pud = pt_table(k, PTE_PFN(pgd[i]));
    for (unsigned j = 0; j < PTRS_PER_TABLE; j++) {
      if (!(pud[j] & PTE_P))
        continue;
      pte_t *pmd = pt_table(k, PTE_PFN(pud[j]));
      for (unsigned m = 0; m < PTRS_PER_TABLE; m++) {
        if (!(pmd[m] & PTE_P))
          continue;
        if (pmd_is_huge(pmd[m])) {  // AnonHugePages
          out->rss_anon += HPAGE_NR;
          out->anon_huge += PMD_SIZE;
          continue;
        }
        pfn_t t = PTE_PFN(pmd[m]);
        struct ptpage *pg = pt_page(k, t);
        out->rss_anon += pg->rss[RSS_ANON];
        out->rss_file += pg->rss[RSS_FILE];
        out->rss_shmem += pg->rss[RSS_SHMEM];
        if (k->fr.f[t].ref > 1)
          out->shared_pagetable_bytes += PAGE_SIZE;
      }
    }
  }
}

// How many address spaces share one mapping of pfn through a table referenced by tref pmd
// entries: the page's own mappings (page-cache frames hold one more reference, the cache's),
// times the table's sharers when the table holds one reference for all of them.
static uint64_t pss_sharers(struct kernel *k, pfn_t pfn, uint32_t tref, int per_sharer) {
  uint64_t mc = frame_mapcount(k, pfn);
  if (k->fr.f[pfn].kind == FK_PAGECACHE && mc > 1)
    mc--;
  if (!per_sharer)
    mc *= tref;
  return mc ? mc : 1;
}

// Proportional set size in bytes << 12 (Linux's PSS_SHIFT precision): every page mapped,
// divided by the number of address spaces mapping it. One step per page.
static uint64_t mm_pss(struct mm *mm) {
  struct kernel *k = mm->k;
  uint64_t pss = 0;
  pfn_t pmdt;
  pte_t *pmd;
  for (uint64_t addr = 0, next; (pmd = pt_next_pmd(mm, &addr, TASK_SIZE, &pmdt)); addr = next) {
    next = level_end(addr, TASK_SIZE, 1);
    pfn_t t = PTE_PFN(*pmd);
    if (pmd_is_huge(*pmd)) {
      for (unsigned i = 0; i < HPAGE_NR; i++)
        pss += (PAGE_SIZE << 12) / frame_mapcount(k, t + i);
      continue;
    }
    uint32_t tref = k->fr.f[t].ref;
    int per_sharer = tref == 1 || (pt_share(k, t) == PT_COW && pt_eager(k, t));
    pte_t *e = pt_table(k, t);
    for (unsigned i = 0; i < PTRS_PER_TABLE; i++) {
      if (!pte_has_frame(e[i]) || PTE_PFN(e[i]) == k->fr.zero_pfn)
        continue;
      pss += (PAGE_SIZE << 12) / pss_sharers(k, PTE_PFN(e[i]), tref, per_sharer);
    }
  }
  return pss;
}

// PSS of a process, in bytes (rounded down).
int sfd_mm_pss(struct kernel *k, int pid, uint64_t *out) {
  struct proc *p;
  ENTER_VIEW(k, pid, p);
  *out = mm_pss(p->mm) >> 12;
  return 0;
}

int sfd_mmstats(struct kernel *k, int pid, struct mmstats *out) {
  struct proc *p;
  ENTER_VIEW(k, pid, p);
  struct mm *mm = p->mm;
  memset(out, 0, sizeof(*out));
  mm_table_stats(mm, out);
  out->pagetable_bytes = mm->nr_tables * PAGE_SIZE;
  out->vma_count = mm->vmas.n;
  for (uint32_t i = 0; i < mm->vmas.n; i++)
    out->total_vm += mm->vmas.v[i].end - mm->vmas.v[i].start;
  return 0;
}

// The name column of a maps line, or NULL. compare Linux show_map_vma().
static const char *vma_name(const struct mm *mm, const struct vma *v, char *buf, size_t cap) {
  if (v->ino && v->ino->kind == IK_SHMEM)
    return "/dev/zero (deleted)";
  if (v->ino) {
    snprintf(buf, cap, "%s%s", v->ino->path, v->ino->linked ? "" : " (deleted)");
    return buf;
  }
  if (mm->start_stack && v->start <= mm->start_stack && v->end >= mm->start_stack)
    return "[stack]";
  return NULL;
}

// One /proc/PID/maps line for v into buf (at most cap bytes); returns its length.
static int maps_line(const struct mm *mm, const struct vma *v, char *buf, size_t cap) {
  char name[4200];
  const char *nm = vma_name(mm, v, name, sizeof(name));
  uint64_t off = v->ino ? v->pgoff << PAGE_SHIFT : 0;
  unsigned maj = v->ino ? v->ino->dev_major : 0, min = v->ino ? v->ino->dev_minor : 0;
  unsigned long ino = v->ino ? (unsigned long)v->ino->ino : 0;
  char head[128];
  snprintf(head, sizeof(head), "%08lx-%08lx %c%c%c%c %08lx %02x:%02x %lu",
                   (unsigned long)v->start, (unsigned long)v->end,
                   (v->flags & VM_READ) ? 'r' : '-', (v->flags & VM_WRITE) ? 'w' : '-',
                   (v->flags & VM_EXEC) ? 'x' : '-', (v->flags & VM_SHARED) ? 's' : 'p',
                   (unsigned long)off, maj, min, ino);
  if (!nm)
    return snprintf(buf, cap, "%s\n", head);
  return snprintf(buf, cap, "%-72s %s\n", head, nm);
}

// Write the maps text into buf (NUL-terminated when it fits); returns the full length, so a
// caller whose buffer was too small can retry.
int64_t sfd_maps(struct kernel *k, int pid, char *buf, uint64_t cap) {
  struct proc *p;
  ENTER_VIEW(k, pid, p);
  uint64_t total = 0;
  char line[4400];
  for (uint32_t i = 0; i < p->mm->vmas.n; i++) {
    int n = maps_line(p->mm, &p->mm->vmas.v[i], line, sizeof(line));
    if (total + (uint64_t)n < cap)
      memcpy(buf + total, line, (size_t)n + 1);
    total += (uint64_t)n;
  }
  if (cap && total < cap)
    buf[total] = 0;
  return (int64_t)total;
}

// Unmap the pages at file index [first, end) from every mapping of ino; private COW copies
// go too only with even_cows (truncate: yes, a punched hole: no). Guard markers stay.
// compare Linux unmap_mapping_range(), walking processes instead of an i_mmap tree.
int inode_unmap_range(struct kernel *k, struct inode *ino, uint64_t first, uint64_t end,
                      int even_cows) {
  for (int pid = 1; pid < k->pid_max; pid++) {
    struct proc *p = k->procs[pid];
    if (!p || !p->mm)
      continue;
    for (uint32_t i = 0; i < p->mm->vmas.n; i++) {
      struct vma *v = &p->mm->vmas.v[i];
      uint64_t pages = (v->end - v->start) >> PAGE_SHIFT;
      if (v->ino != ino || v->pgoff + pages <= first || v->pgoff >= end)
        continue;
      uint64_t from = first > v->pgoff ? v->start + ((first - v->pgoff) << PAGE_SHIFT)
                                       : v->start;
      uint64_t to = end - v->pgoff < pages ? v->start + ((end - v->pgoff) << PAGE_SHIFT)
                                           : v->end;
      int keep = !even_cows && !(v->flags & VM_SHARED);
      int err = pt_zap_range(p->mm, from, to, keep ? ZAP_KEEP_ANON : 0);
      if (err)
        return err;
    }
  }
  return 0;
}
