// mm/mm.h — what the memory manager exports: frames, page tables, VMAs, the fault path,
// address spaces (mmap, munmap, mprotect, access), fork's copy_page_range and COW page tables,
// shared page tables, transparent huge pages. The types live in spawnfd.h.
// mm/ is the bottom layer: it calls nothing above it except what csrc/README.md names.
#ifndef SPAWNFD_MM_H
#define SPAWNFD_MM_H

#include "spawnfd.h"

// ---- frame.c: physical frames, buddy allocator, lazily materialised content ----
int frames_init(struct frames *fr, uint64_t mem_bytes);
void frames_fini(struct frames *fr);
int frame_alloc(struct kernel *k, enum frame_kind kind, pfn_t *out);
int frame_alloc_order(struct kernel *k, unsigned order, enum frame_kind kind, pfn_t *out);
void frame_put(struct kernel *k, pfn_t pfn);
void frame_get(struct kernel *k, pfn_t pfn);
void frame_release_content(struct frames *fr, pfn_t p);
int frame_copy_content(struct frames *fr, pfn_t dst, pfn_t src);
void frame_read_bytes(const struct frames *fr, pfn_t p, uint64_t off, uint8_t *buf, uint64_t n);
int frame_write_bytes(struct frames *fr, pfn_t p, uint64_t off, const uint8_t *buf, uint64_t n);
void frame_set_stamp(struct frames *fr, pfn_t p, uint64_t stamp);
uint8_t *frame_materialise(struct frames *fr, pfn_t p);
uint8_t *frame_slot(const struct frames *fr, pfn_t p);

// ---- pgtable.c: 4-level tables, each a frame holding a struct ptpage ----
uint64_t level_end(uint64_t addr, uint64_t end, int level);
struct ptpage *pt_page(struct kernel *k, pfn_t pfn);
pte_t *pt_table(struct kernel *k, pfn_t pfn);
int pt_alloc(struct kernel *k, pfn_t *out);
void pt_buffer_release(struct kernel *k, void *buf);
void pt_pool_fini(struct kernel *k);
void pt_free(struct kernel *k, pfn_t pfn);
void pt_set(struct kernel *k, pfn_t table, pte_t *slot, pte_t e);
void pt_clear(struct kernel *k, pfn_t table, pte_t *slot);
void pt_rss_add(struct kernel *k, pfn_t table, const struct vma *v, pfn_t pfn, int delta);
pte_t *pt_walk_pmd(struct mm *mm, uint64_t va, int alloc, pfn_t *pmd_table, int *err);
int pt_fill_pmd(struct mm *mm, pfn_t pmd_table, pte_t *pmd);
pte_t *pt_next_pmd(struct mm *mm, uint64_t *addr, uint64_t end, pfn_t *pmd_table);
pte_t *pt_lookup(struct mm *mm, uint64_t va, pfn_t *table, int *writable);
pte_t *pt_lookup_huge(struct mm *mm, uint64_t va, pfn_t *pmd_table);
int pt_break_cow(struct mm *mm, pte_t *pmd);
void pt_drop_shared(struct mm *mm, pfn_t pmd_table, pte_t *pmd);
enum { UNSHARE_KEEP = 0, UNSHARE_DROP = 1, UNSHARE_DROP_UNMARKED = 2 };
int pt_unshare_range(struct mm *mm, uint64_t start, uint64_t end, int drop);
#define ZAP_DROP_MARKERS 1  // munmap, exit: guard markers go too
#define ZAP_KEEP_ANON 2     // a hole punched in a file: private COW copies stay
int pt_zap_range(struct mm *mm, uint64_t start, uint64_t end, int flags);
void pt_free_range(struct mm *mm, uint64_t start, uint64_t end);
void pt_teardown(struct mm *mm);
void pt_protect_range(struct mm *mm, uint64_t start, uint64_t end, int clear_w, int set_w, int nx);
int pt_guard_install(struct mm *mm, uint64_t start, uint64_t end);
int pt_guard_remove(struct mm *mm, uint64_t start, uint64_t end);

// ---- vma.c: virtual memory areas, a sorted array searched in O(log n) ----
struct vma *vma_find(struct vma_list *l, uint64_t va);
int vma_first_at_or_after(struct vma_list *l, uint64_t va);
int vma_insert(struct vma_list *l, const struct vma *v);
void vma_remove(struct vma_list *l, int i);
void vma_file_get(const struct vma *v);
int vma_split(struct kernel *k, struct vma_list *l, int i, uint64_t at);
int vma_try_merge(struct kernel *k, struct vma_list *l, int i);
int vma_can_merge(const struct vma *a, const struct vma *b);
void vma_anon_prepare(struct kernel *k, struct vma_list *l, struct vma *v);
int vma_range_free(struct vma_list *l, uint64_t start, uint64_t end);
void vma_list_fini(struct kernel *k, struct vma_list *l);
int vma_reserve(struct vma_list *l, uint32_t extra);
int vma_grow(struct vma_list *l, uint32_t extra);
uint64_t vm_commit_limit(struct kernel *k);
int vm_enough_memory(struct kernel *k, struct mm *mm, uint64_t pages);
void vm_unacct_memory(struct kernel *k, uint64_t pages);

// ---- fault.c: the page-fault path ----
int vma_allows(const struct vma *v, int write);
int handle_fault(struct mm *mm, struct vma *v, uint64_t va, int write, pfn_t *out);
int fault_huge(struct mm *mm, struct vma *v, uint64_t va, int write, pfn_t *out);
int fault_table(struct mm *mm, struct vma *v, uint64_t va, pfn_t *table);
int fault_pte(struct mm *mm, struct vma *v, pfn_t table, pte_t *pte, uint64_t va,
              int write, pfn_t *out);

// ---- fork.c: fork policies (copy_page_range, COW page tables) ----
struct mm *mm_dup(struct mm *src, int mode, int *err);
int mm_map_cow(struct mm *dst, struct mm *src, uint64_t start, uint64_t end);

// ---- ptshare.c: shared page tables for MAP_SHARED file mappings ----
int ptshare_attach(struct mm *mm, const struct vma *v, uint64_t va, pfn_t pmdt, pte_t *pmd);
void ptshare_forget(struct inode *ino, uint64_t chunk, pfn_t table);
int ptshare_fork_range(struct mm *dst, struct mm *src, const struct vma *v);

// ---- the TLB-flush notifier (compare Linux mmu_notifier_invalidate_range()) ----
static inline void mm_flush_tlb(struct mm *mm, uint64_t start, uint64_t end) {
  if (mm->mn_ops)
    mm->mn_ops->invalidate(mm, start, end);
}

// ---- mmap.c: address spaces ----
struct mm *mm_create(struct kernel *k, int *err);
int mm_mmap(struct proc *p, uint64_t addr, uint64_t len, int prot, int flags, struct file *f,
            uint64_t off, uint64_t *out);
int mm_munmap(struct mm *mm, uint64_t addr, uint64_t len);
int mm_mprotect(struct mm *mm, uint64_t addr, uint64_t len, int prot);
int mm_access(struct mm *mm, uint64_t addr, uint8_t *rbuf, const uint8_t *wbuf, uint64_t len);
enum { MM_READ = 0, MM_WRITE = 1, MM_FETCH = 2 };
#define MM_PERM_R 1
#define MM_PERM_W 2
#define MM_PERM_X 4
int mm_fault_translate(struct mm *mm, uint64_t va, int access, pfn_t *pfn, int *perms);
void mm_destroy(struct mm *mm);
int mm_unmap_range(struct mm *mm, uint64_t start, uint64_t end);
void mm_merge_range(struct mm *mm, uint64_t start, uint64_t end);
uint64_t mm_get_unmapped_area(struct mm *mm, uint64_t hint, uint64_t len);

// ---- mremap.c: mremap(2) ----
int mm_mremap(struct mm *mm, uint64_t addr, uint64_t old_len, uint64_t new_len, int flags,
              uint64_t new_addr, uint64_t *out);
int inode_unmap_range(struct kernel *k, struct inode *ino, uint64_t first, uint64_t end,
                      int even_cows);

// ---- filemap.c: the page cache ----
int pagecache_get(struct kernel *k, struct mm *mm, struct inode *ino, uint64_t idx,
                  pfn_t *out);
void pagecache_drop(struct kernel *k, struct inode *ino, uint64_t from, uint64_t end);
int inode_read(struct kernel *k, struct inode *ino, uint64_t off, uint8_t *buf, uint64_t n);
int inode_write(struct kernel *k, struct mm *mm, struct inode *ino, uint64_t off,
                const uint8_t *buf, uint64_t n);

// ---- huge_memory.c: transparent huge pages for private anonymous memory ----
int thp_init(struct kernel *k);
uint32_t frame_mapcount(struct kernel *k, pfn_t pfn);
int thp_eligible(struct kernel *k, const struct vma *v, uint64_t va);
int thp_fault(struct mm *mm, struct vma *v, pfn_t pmdt, pte_t *pmd, uint64_t va, pfn_t *out);
int thp_wp_fault(struct mm *mm, struct vma *v, pfn_t pmdt, pte_t *pmd, uint64_t va,
                 pfn_t *out);
int thp_split_pmd(struct mm *mm, pfn_t pmdt, pte_t *pmd);
void thp_zap_pmd(struct mm *mm, pfn_t pmdt, pte_t *pmd);
void thp_put(struct kernel *k, pfn_t head);

#endif
