// spawnfd.h — the simulated kernel's types: constants, page-table entry bits and every
// structure more than one directory reads (Linux keeps these in include/linux/). Functions
// are declared by the header of the directory that defines them: mm/mm.h, fs/fs.h,
// kernel/kernel.h. Everything that can fail returns a negative errno; 0 or more is success.
#ifndef SPAWNFD_H
#define SPAWNFD_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"
#include "lib/lib.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define PTRS_PER_TABLE 512
#define PMD_SIZE (1ULL << 21)
#define TASK_SIZE 0x7ffffffff000ULL       // x86-64 4-level user address limit
#define MMAP_MIN_ADDR 0x10000ULL          // vm.mmap_min_addr
#define MMAP_BASE 0x7ffff7fff000ULL       // top-down mmap base without ASLR
#define STACK_TOP 0x7ffffffff000ULL
#define MAX_MAP_COUNT 65530               // vm.max_map_count
#define MAX_ORDER 18                      // largest buddy block: 2^18 frames = 1 GiB
#define RUN_ORDER 14                      // single frames are bumped out of 64 MiB runs
#define NO_PFN 0xffffffffU
#define KPANIC 1000                       // -KPANIC: the kernel panicked

#define PAGE_ALIGNED(x) (((x) & (PAGE_SIZE - 1)) == 0)
#define PAGE_ROUND_UP(x) (((x) + PAGE_SIZE - 1) & PAGE_MASK)

// ---- x86-64 page-table entry bits ----
#define PTE_P (1ULL << 0)    // present
#define PTE_W (1ULL << 1)    // writable
#define PTE_U (1ULL << 2)    // user
#define PTE_A (1ULL << 5)    // accessed
#define PTE_D (1ULL << 6)    // dirty
#define PTE_PS (1ULL << 7)   // huge (page size) at pmd/pud level
#define PTE_NX (1ULL << 63)  // no execute
#define PTE_GUARD (1ULL << 9)  // not present: a guard marker (MADV_GUARD_INSTALL), no frame
#define PTE_PFN_MASK 0x000ffffffffff000ULL
#define PTE_PFN(e) ((uint32_t)(((e) & PTE_PFN_MASK) >> PAGE_SHIFT))
#define PTE_MK(pfn, bits) ((((uint64_t)(pfn)) << PAGE_SHIFT) | (bits))
// compare Linux is_guard_pte_marker(): a non-present entry that faults (SIGSEGV, here EFAULT)
#define pte_is_guard(e) ((e) == PTE_GUARD)
#define pte_has_frame(e) (((e) & PTE_P) != 0)

typedef uint64_t pte_t;
typedef uint32_t pfn_t;

struct kernel;
struct inode;
struct proc;
struct dentry;

// ---- mm/frame.c: physical frames, buddy allocator, lazily materialised content ----
enum frame_kind { FK_FREE = 0, FK_ANON, FK_PAGECACHE, FK_PAGETABLE, FK_ZERO };
enum content_type { CT_ZERO = 0, CT_STAMP, CT_BUF };  // Invariant: a slot not CT_BUF reads zero
#define FF_BUDDY_HEAD 0x8000  // aux flag: head of a free buddy block; low bits: order

// One frame's metadata, 8 bytes. The array is reserved with MAP_NORESERVE and reads as
// zeroes where never touched, which is exactly a free, non-head frame. The 64-bit data word
// lives in a parallel array, touched only by frames that need it (stamps, buffers, tables,
// free-list heads), so populating plain memory costs the host 8 bytes a frame, not 16.
struct frame {
  uint32_t ref;       // users: ptes, the page cache, a parent table entry, the kernel
  uint8_t kind;       // enum frame_kind
  uint8_t ctype;      // enum content_type (data frames)
  uint16_t aux;       // page table: non-empty entries; free: FF_BUDDY_HEAD | order
};

struct frames {
  struct frame *f;            // metadata, indexed by pfn, nframes long
  uint64_t *data;             // per pfn: CT_STAMP stamp; table buffer; free links
  uint8_t *mem;               // content slots: frame pfn's CT_BUF bytes at mem + pfn * 4 KiB
                              // (MAP_NORESERVE; the CPU maps it as its physical memory)
  size_t map_bytes;           // bytes reserved for f
  size_t data_bytes;          // bytes reserved for data
  size_t mem_bytes;           // bytes reserved for mem (nframes * 4 KiB)
  uint32_t nframes;           // simulated memory / 4 KiB
  uint32_t used;              // frames not free
  uint32_t high;              // one past the highest pfn ever allocated
  uint32_t free_head[MAX_ORDER + 1];  // buddy free lists
  uint32_t run_next[2];        // free frames [run_next, run_end) handed out by bumping:
  uint32_t run_end[2];         // [0] data frames, [1] page tables (kept dense in data[])
  uint64_t free_count[MAX_ORDER + 1]; // blocks on each list
  uint64_t fail_after;        // fault injection: fail when allocations reach this (0: off)
  uint64_t allocs;            // allocations so far, for fault injection
  uint32_t zero_pfn;          // the shared zero page
  uint64_t buffers;           // frames whose content is a real 4 KiB buffer
  uint64_t code_gen;          // bumped when a frame the CPU may have translated code from
                              // (FF_CODE) changes content or is freed (arch/x86 flushes)
  uint64_t by_kind[5];        // frames in use per enum frame_kind
  uint64_t allocated, freed;  // since boot
};


// ---- mm/pgtable.c: 4-level tables, each a frame holding a struct ptpage ----
enum { PT_PRIVATE = 0, PT_COW, PT_FILE };  // how a last-level table is shared
enum { RSS_ANON = 0, RSS_FILE, RSS_SHMEM };

// A table frame's buffer: the entries, then (last level only) its accounting. How a table is
// shared lives in its frame's ctype byte (PT_SHARE_MASK | PT_EAGER), beside its refcount, so
// fork touches only dense frame metadata to share a table.
struct ptpage {
  pte_t e[PTRS_PER_TABLE];  // the entries
  uint16_t rss[3];          // present pages by rss counter (zero page excluded)
  uint16_t pad;             // (alignment)
  struct inode *ino;        // PT_FILE: the file whose registry lists this table
  uint64_t chunk;           // PT_FILE: its 2 MiB chunk index in that file
};
#define PT_SHARE_MASK 0x3   // PT_PRIVATE, PT_COW (shared at fork), PT_FILE (via its file)
#define PT_EAGER 0x4        // PT_COW: every sharer holds its own page references
#define pt_share(k, t) ((k)->fr.f[t].ctype & PT_SHARE_MASK)
#define pt_eager(k, t) (((k)->fr.f[t].ctype & PT_EAGER) != 0)
#define pt_set_share(k, t, share, eager) \
  ((k)->fr.f[t].ctype = (uint8_t)((share) | ((eager) ? PT_EAGER : 0)))

struct mm;
struct cpu_engine;
struct cpu;
struct vma;

// ---- mm/vma.c: virtual memory areas, a sorted array searched in O(log n) ----
#define VM_READ 0x1
#define VM_WRITE 0x2
#define VM_EXEC 0x4
#define VM_SHARED 0x8
#define VM_DONTFORK 0x10
#define VM_WIPEONFORK 0x20
#define VM_GROWSDOWN 0x40
#define VM_MAYWRITE 0x80
#define VM_ANON_VMA 0x100   // holds anonymous pages (Linux: vma->anon_vma is set)
#define VM_ACCOUNT 0x200    // private writable memory charged to commit (never uncharged)
#define VM_NORESERVE 0x400  // MAP_NORESERVE: not charged
#define VM_HUGEPAGE 0x800   // MADV_HUGEPAGE
#define VM_NOHUGEPAGE 0x1000  // MADV_NOHUGEPAGE
#define VM_DONTDUMP 0x4000    // MADV_DONTDUMP (smaps "dd")
#define VM_MERGEABLE 0x8000   // MADV_MERGEABLE on private memory (smaps "mg"; no KSM here)
#define VM_DROPPABLE 0x10000  // MAP_DROPPABLE (smaps "dp"): wipe on fork, never charged
#define VM_MAYBE_GUARD 0x20000  // has held guard markers (smaps "gu"): fork copies its ptes;
                                // sticky (never cleared, kept by split, merged as a union)
#define VM_ANON_FORKED 0x2000  // its anon_vma came with fork: Linux's anon_vma_chain is not
                               // singular, so it merges only with the same anon_vma

struct vma {
  uint64_t start, end;       // [start, end), page aligned; Invariant: start < end
  uint32_t flags;            // VM_* bits (prot in the low three)
  struct inode *ino;         // backing file, NULL for private anonymous memory
  uint64_t pgoff;            // file offset of start, in pages
  uint64_t anon_vma;         // identity of its anon_vma (Linux vma->anon_vma), 0 for none
};

struct vma_list {
  struct vma *v;            // sorted by start; Invariant: v[i].end <= v[i+1].start
  uint32_t n, cap;          // used and allocated entries
  uint32_t cache;           // index of the last lookup hit
};


// ---- fs/vfs.c and mm/filemap.c: inodes and their page cache ----
enum inode_kind {
  IK_HOST, IK_TMPFS, IK_SHMEM, IK_DEVNULL, IK_DEVZERO, IK_DIR, IK_PIPE,
  IK_BUILDER,                // a builder fd's inode: the one handle to an embryo
  IK_PIDFD                   // a wait handle's inode: wait and signal only
};

struct pipe {
  uint64_t *events;          // the kernel's pipe_events, bumped when a waiter may go on
  uint8_t *buf;              // 64 KiB ring
  uint64_t head, len;        // first unread byte, bytes unread
  uint32_t readers, writers; // open file descriptions of each end
};

struct inode {
  uint64_t ino;              // inode number shown in maps
  uint32_t dev_major;        // device numbers shown in maps
  uint32_t dev_minor;
  enum inode_kind kind;      // what backs it
  uint32_t mode;             // permission bits and type
  uint64_t size;             // file size in bytes
  char *path;                // absolute path (NULL for anonymous shmem)
  int host_fd;               // IK_HOST: read-only host descriptor, -1 until needed
  struct xarray cache;       // page cache: pfn by page index (count: pages present)
  uint32_t refs;             // open files + mappings + 1 while linked in the namespace
  int linked;                // still reachable by path (tmpfs: not unlinked)
  struct pipe *pipe;         // IK_PIPE: the buffer
  struct xarray ptshare;     // shared page tables by 2 MiB chunk (share_pagetables):
                             // table pfn | vma protection << 32
  struct inode *hnext;       // hash chain
  uint32_t uid, gid;         // owner (setuid/setgid executables take these)
  uint64_t version;          // content changes by write and truncate (statx change cookie)
  int mmap_writable;         // ever mapped shared and writable: content may change unseen
  uint64_t acct_pages;       // IK_SHMEM: pages charged to commit for its size (0: charged
                             // per page like tmpfs, MAP_NORESERVE); tmpfs and such shmem
                             // charge each cached page (compare Linux shmem_acct_size/_blocks)
  int acct_blocks;           // 1: each page-cache page is charged to commit (tmpfs, shmem
                             // without acct_pages)
  int target;                // IK_BUILDER, IK_PIDFD: the process it refers to
  uint64_t target_serial;    // ... and that process's serial (a reused pid is not it)
  uint32_t check_refs;       // check.c: references found by the recount
  // stat(2) attributes beyond the above (fs/stat.c): a host inode's as the host's statx gave
  // them at its first lookup (the snapshot); a tmpfs inode's kept by create, write, truncate
  uint64_t nlink, blocks;    // 0: derived (1 link, size in 512-byte blocks)
  uint32_t blksize;          // 0: PAGE_SIZE
  uint32_t rdev_major, rdev_minor;
  int64_t atime[2], mtime[2], ctime[2], btime[2];  // seconds, nanoseconds
};


// ---- fs/fdtable.c: open file descriptions and per-process descriptor tables ----
struct file {
  struct inode *ino;        // what it refers to
  int flags;                // O_ACCMODE | O_APPEND ...
  uint64_t pos;             // file offset, shared by dups
  uint32_t refs;            // descriptors pointing here
  uint32_t check_refs;      // check.c: descriptors found by the recount
};

struct fdtable {
  struct file **fd;         // fd -> open file description, NULL when free
  uint8_t *cloexec;         // close-on-exec flag per fd
  int cap;                  // entries allocated
};

#define FD_MAX 1024         // RLIMIT_NOFILE soft limit
#define NO_OWNER 0xffffffffU  // a tmpfs inode just created, before its opener owns it


// ---- mm/fault.c: the page-fault path ----
enum fault_kind {
  FAULT_ANON, FAULT_ZERO, FAULT_FILE, FAULT_SHARED, FAULT_COW, FAULT_WP_REUSE,
  FAULT_WP_SHARED, FAULT_NR
};

// ---- mm/fork.c: fork policies ----
enum { FORK_COPY = 0, FORK_COW_PT = 1, FORK_COW_PT_EAGER = 2 };

// ---- mm/mmap.c: address spaces ----
// What a CPU that caches translations of an address space registers on it (compare Linux's
// mmu_notifier): the memory manager calls invalidate wherever Linux flushes the TLB (a
// translation of [start, end) was removed, write-protected or pointed elsewhere) and release
// when the mm is torn down. The one upward call from mm/ to arch/, by function pointer.
struct mmu_notifier_ops {
  void (*invalidate)(struct mm *mm, uint64_t start, uint64_t end);
  void (*release)(struct mm *mm);
};

struct mm {
  struct kernel *k;         // owner
  pfn_t pgd;                // top-level table
  struct vma_list vmas;     // the mappings
  uint64_t nr_tables;       // page tables it references, shared ones included (pgd too)
  uint64_t mmap_base;       // top-down placement starts below this
  uint64_t start_stack;     // maps shows [stack] for the vma holding it (0: none)
  const struct mmu_notifier_ops *mn_ops;  // the CPU caching its translations (NULL: none)
  void *mn_data;            // ... and its state (arch/x86: struct cpu_engine)
};

struct proc;
struct cpu;
struct futex_q;

// ---- kernel/proc.c: processes ----
enum proc_state { PS_RUNNING = 0, PS_ZOMBIE, PS_EMBRYO };
struct cred {
  uint32_t uid, euid, suid;  // real, effective, saved user ids
  uint32_t gid, egid, sgid;  // the same for groups
};

// Signal dispositions as rt_sigaction(2) records them, and the blocked mask (compare
// Linux's sighand_struct and task->blocked). Signal n is action[n - 1]. Copied by fork;
// exec resets caught signals to SIG_DFL and keeps ignored ones and the mask.
struct k_sigaction {
  uint64_t handler, flags, restorer, mask;  // the x86-64 struct kernel_sigaction
};
#define SIG_NSIG 64
struct sighand {
  struct k_sigaction action[SIG_NSIG];
  uint64_t blocked;
};

struct proc {
  int pid;                  // process id
  int ppid;                 // parent's pid
  enum proc_state state;    // Invariant: a zombie has no mm and an empty fd table
  uint64_t serial;          // unique for the kernel's life (pids are reused)
  struct cred cred;         // credentials
  int wstatus;              // zombie: the wait status (exit code << 8, or the signal)
  struct mm *mm;            // address space
  struct fdtable fds;       // descriptor table
  uint64_t rip, rsp;        // the first thread's start registers (set by execve)
  struct cpu_counters cpu;  // its use of the CPU (arch/x86 counts; kept until reaped)
  struct cpu *thread;       // arch/x86: its first thread's CPU state, the others' linked
                            // after it (NULL: it never ran code)
  uint64_t exec_gen;        // execs so far: a thread started before the last one restarts
  int vfork_parent;         // vfork child: the suspended parent whose mm it borrows (0: none)
  int vfork_child;          // vfork parent: suspended until this child execs or exits
  int pgid, sid;            // process group and session (compare PIDTYPE_PGID, PIDTYPE_SID):
                            // inherited by fork, vfork and embryos, kept across exec; the
                            // session leader is the process whose sid is its pid
  int forknoexec;           // forked and not exec'd yet (Linux PF_FORKNOEXEC): a parent may
                            // still move it to another group
  struct sas {
    uint64_t sp, size;      // the first thread's alternate signal stack (compare task_struct
    uint32_t flags;         // sas_ss_sp, sas_ss_size, sas_ss_flags): kept by fork, cleared
  } sas;                    // by exec; another thread keeps its own (arch/x86 struct cpu)
  char cwd[4096];           // working directory
  struct sighand sig;       // signal dispositions and the blocked mask (rt_sigaction(2))
  int stop_sig;             // group stop: the signal that stopped it (0: not stopped); its
                            // threads do not run until SIGCONT (compare SIGNAL_STOP_STOPPED)
  int stop_report;          // a stop (its signal) a wait with WUNTRACED has not reported yet
  int cont_report;          // a continue a wait with WCONTINUED has not reported yet
  uint64_t sigpending;      // signals sent and not yet taken (never inherited by fork)
  struct {
    int code, pid, status;  // what the pending signal says (siginfo: si_code, si_pid, ...)
    int fault;              // ... or a CPU fault's: si_code and si_addr (arch/x86)
    uint64_t addr;
  } siginfo[SIG_NSIG];
};

#define NO_ID 0xffffffffU     // setresuid(-1): unchanged
// ---- fs/exec.c: the stack builder, shared with kernel/spawn.c ----
struct stack_aux {
  uint64_t phdr, phnum, base, entry;  // AT_PHDR, AT_PHNUM, AT_BASE, AT_ENTRY
};

// ---- mm/huge_memory.c: transparent huge pages for private anonymous memory ----
#define FF_THP_HEAD 0x4000  // aux flag of a data frame: the first frame of a huge page
#define FF_THP_TAIL 0x2000  // aux flag: one of its other 511 frames
#define FF_THP (FF_THP_HEAD | FF_THP_TAIL)
#define FF_CODE 0x1000      // aux flag of a data frame: mapped executable into the CPU's TLB
#define HPAGE_ORDER 9
#define HPAGE_NR 512U
enum { THP_NEVER = 0, THP_MADVISE, THP_ALWAYS };
enum { THP_COW_SPLIT = 0, THP_COW_COPY };
#define pmd_is_huge(e) (((e) & (PTE_P | PTE_PS)) == (PTE_P | PTE_PS))
// ---- kernel/main.c: the machine ----
struct kernel {
  struct frames fr;                  // physical memory
  struct kstats st;                  // deterministic counters
  struct proc **procs;               // pid -> process
  int pid_max, last_pid;             // pid allocation
  uint32_t *pid_users;               // per pid: processes using it as their pgid or sid (a
                                     // pid in use so is not handed out again, as Linux's
                                     // struct pid lives while a task refers to it)
  struct sig_out { int pid, sig; } *sigout;  // kill(2) of running code: the processes the
  uint32_t sigout_len, sigout_cap;   // trio layer must wake (sig 0) or end (sig), drained by
                                     // sfd_signal_outbox after the CPU stops with CPU_SIGNAL
  uint64_t next_serial;              // process serials
  uint64_t next_anon_vma;            // anon_vma identities handed out
  struct inode **itab;               // inode hash (by path)
  struct dentry **dcache;            // host path -> inode, for lookups after the first
  uint32_t itab_cap, inodes;         // buckets, inodes in the table
  struct inode *dev_null, *dev_zero; // the two devices
  uint64_t next_ino;                 // inode numbers for tmpfs/shmem
  int share_pagetables;              // big MAP_SHARED file mappings share last-level tables
  int thp, thp_cow;                  // THP_* mode, THP_COW_* policy
  int overcommit;                    // vm.overcommit_memory: 0 heuristic, 1 always, 2 never
  uint32_t overcommit_ratio;         // vm.overcommit_ratio (percent of memory, mode 2)
  uint64_t committed;                // pages charged to commit: Committed_AS
  uint32_t *thp_maps;                // per 2 MiB of memory: pmd leaves mapping that huge page
  struct ptpage *pt_pool;            // freed table buffers kept for reuse (linked through e[0])
  uint64_t pt_pooled;                // buffers in the pool
  struct cpu_engine *cpu;            // arch/x86: the machine's CPU (NULL: no code ran yet)
  void (*cpu_free)(struct cpu_engine *);  // ... released with the kernel, and a thread's
  void (*thread_free)(struct cpu *);      // threads' state with their process: p->thread
                                          // and every thread after it (by pointer: the
                                          // calls from kernel/ up to arch/, Linux
                                          // exit_thread())
  int fork_mode;                     // FORK_*: the policy of fork(2) from running code
  struct spawn_window window;        // arch/x86: fork-to-exec windows of running code, summed
  int syscall_pid;                   // arch/x86: the process whose thread is in a system
                                     // call now (0: none); ENTER lets it through a vfork
  struct cpu **tids;                 // tid -> a thread that is not its process's first
                                     // (arch/x86; its tid is taken from the pid space)
  struct futex_q *futex_queue;       // kernel/futex.c: threads in FUTEX_WAIT, oldest first
  struct futex_q *futex_woken;       // ... woken, not yet run again by the trio layer
  uint64_t pipe_events;              // reads, writes and closes of pipes so far: a waiter
                                     // parked on a pipe need not retry unless it moved
  int panicked;                      // set by kpanic; every later call fails
  char panic_msg[256];               // why
  // the system-call trace (arch/x86/syscall_64.c, sfd_trace_start): finished calls in order
  struct sfd_trace_rec *trace;       // trace_cap records, trace_len of them filled
  uint32_t trace_cap, trace_len;
  uint64_t trace_lost;               // calls not recorded: the buffer was full
};

void kpanic(struct kernel *k, const char *fmt, ...);


#endif
