// api.h — the C surface Python sees, mirrored declaration for declaration in spawnfd.cdef.
// Handles are opaque; processes are named by pid so a stale Python object gets ESRCH, never
// a dangling pointer. Every int/int64_t return is >= 0 on success or a negative errno.
#ifndef SPAWNFD_API_H
#define SPAWNFD_API_H

#include <stddef.h>
#include <stdint.h>

struct kernel;

// Deterministic counters: incremented where the event happens, never derived afterwards.
struct kstats {
  uint64_t frames_total;       // simulated memory in frames
  uint64_t frames_used;        // frames not free (all kinds)
  uint64_t anon_frames;        // frames of kind anon
  uint64_t pagecache_frames;   // frames of kind page cache
  uint64_t pagetable_frames;   // frames holding page tables
  uint64_t frames_allocated;   // allocations since boot
  uint64_t frames_freed;       // frees since boot
  uint64_t tables_allocated;   // page tables allocated since boot
  uint64_t tables_freed;       // page tables freed since boot
  uint64_t ptes_copied;        // entries copied by fork
  uint64_t tables_shared;      // last-level tables shared instead of copied
  uint64_t tables_copied;      // shared tables copied on break
  uint64_t tables_reused;      // shared tables reused in place on break
  uint64_t pages_copied;       // 4 KiB pages copied by COW faults
  uint64_t zero_page_maps;     // read faults that mapped the shared zero page
  uint64_t buffers;            // frames whose content is a real 4 KiB buffer
  uint64_t thp_fault_alloc;    // huge pages allocated by faults
  uint64_t thp_fault_fallback; // eligible faults that found no free order-9 block
  uint64_t thp_split_pmd;      // pmd leaves split into page tables
  uint64_t thp_copied;         // huge pages copied whole on a write (thp_cow "copy-huge")
  uint64_t committed_as;       // Committed_AS: bytes charged to commit (VM_ACCOUNT vmas)
  uint64_t commit_limit;       // CommitLimit: swap (none) + memory * overcommit_ratio / 100
  uint64_t faults[8];          // by kind: anon, zero, file, shared, cow, wp_reuse, wp_shared
  uint64_t cpu_instructions;   // x86-64 instructions executed by CPUs (arch/x86)
  uint64_t syscalls;           // system calls made by real code
  uint64_t syscalls_unknown;   // ... of which had no entry in the table (-ENOSYS)
  uint64_t tlb_fills;          // CPU TLB misses resolved through the page tables
  uint64_t tlb_flushes;        // CPU TLB flushes by the mmu notifier
  uint64_t tb_flushes;         // translated-code flushes (a frame that held code changed)
  uint64_t cpu_switches;       // threads loaded into the CPU in place of another
  uint64_t syscalls_by_nr[512];  // system calls by x86-64 number
};
#define SFD_NR_SYSCALLS 512

// What happened between a fork (or vfork, clone) of running code and the child's exec or
// exit: every copy the fork policy made, and every instruction any CPU ran, in those windows.
// Summed over the windows closed so far (sfd_spawn_window).
struct spawn_window {
  uint64_t windows;            // windows closed: the child exec'd (or exited first)
  uint64_t exits;              // ... of which by the child's exit, not an exec
  uint64_t ptes_copied;        // entries copied by fork
  uint64_t tables_shared;      // last-level tables shared instead of copied
  uint64_t tables_copied;      // shared tables copied on break
  uint64_t tables_allocated;   // page tables allocated (the fork's copies included)
  uint64_t pages_copied;       // pages copied by COW faults (parent's and child's)
  uint64_t frames_allocated;   // frames allocated (tables and pages)
  uint64_t faults[8];          // faults by kind, as in struct kstats
  uint64_t instructions;       // instructions the parent and the child ran
  uint64_t child_instructions; // ... of which by the child
};

// One process's use of the CPU, summed over its execs (compare the per-task counters behind
// /proc/PID/stat and perf's per-task events).
struct cpu_counters {
  uint64_t instructions;       // x86-64 instructions it executed
  uint64_t syscalls;           // system calls it made
  uint64_t syscalls_unknown;   // ... of which had no entry in the table (-ENOSYS)
  uint64_t tlb_fills;          // TLB misses of its accesses, served by its page tables
  uint64_t tlb_flushes;        // flushes its address space's changes caused
  uint64_t cpu_switches;       // times it was loaded into the CPU in place of another
};

struct mmstats {
  uint64_t rss_anon;           // resident anonymous pages (MM_ANONPAGES)
  uint64_t rss_file;           // resident file pages (MM_FILEPAGES)
  uint64_t rss_shmem;          // resident shared-memory pages (MM_SHMEMPAGES)
  uint64_t pagetable_bytes;    // page tables this mm uses (pgd included, shared ones too)
  uint64_t shared_pagetable_bytes;  // of which shared with other mms (refcount > 1)
  uint64_t vma_count;          // mappings
  uint64_t total_vm;           // mapped bytes
  uint64_t anon_huge;          // AnonHugePages: bytes mapped by pmd leaves
};

int sfd_kernel_new(uint64_t mem_bytes, struct kernel **out);
void sfd_kernel_free(struct kernel *k);
const char *sfd_panic_message(struct kernel *k);
int sfd_kstats(struct kernel *k, struct kstats *out);
int sfd_check(struct kernel *k, char *msg, size_t cap);
int sfd_fail_alloc_after(struct kernel *k, uint64_t n);
int sfd_set_share_pagetables(struct kernel *k, int on);
int sfd_set_fork_mode(struct kernel *k, int mode);
int sfd_set_thp(struct kernel *k, int mode, int cow);
int sfd_set_overcommit(struct kernel *k, int mode, uint32_t ratio);

int sfd_fork(struct kernel *k, int pid, int mode, int *child_pid);
int sfd_vfork(struct kernel *k, int pid, int *child_pid);
int sfd_exit(struct kernel *k, int pid, int code);
int sfd_kill_exit(struct kernel *k, int pid, int sig);
int sfd_fd_ident(struct kernel *k, int pid, int fd, uint64_t *ident, int *is_pipe);
uint64_t sfd_pipe_events(struct kernel *k);
int sfd_chdir(struct kernel *k, int pid, const char *path);
int sfd_ppid(struct kernel *k, int pid);
int sfd_wait(struct kernel *k, int pid, int child, int nohang, int *wstatus);
int sfd_execve(struct kernel *k, int pid, const char *path, const char *strings, uint64_t len,
               int argc, int envc, uint64_t seed, uint64_t *rip, uint64_t *rsp);
int sfd_regs(struct kernel *k, int pid, uint64_t *rip, uint64_t *rsp);
int sfd_getcred(struct kernel *k, int pid, uint32_t *ids);
int sfd_setcred(struct kernel *k, int pid, const uint32_t *ids);
int sfd_chmod(struct kernel *k, int pid, const char *path, unsigned mode);

// The fd model (spawn.c): out = {builder fd, wait handle, child pid}. bfd is the caller's
// builder fd; fds passed to builder calls are the caller's.
int sfd_process_create(struct kernel *k, int pid, int flags, int *out);
int sfd_spawn_mmap(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len, int prot,
                   int flags, int fd, uint64_t off, uint64_t *out);
int sfd_spawn_munmap(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len);
// One step of sfd_spawn_mmapv: what a user-space ELF loader does to an embryo, batched.
enum { SFD_MAPV_MMAP = 0, SFD_MAPV_MUNMAP = 1, SFD_MAPV_ZERO = 2 };
enum { SFD_MAPV_ABS = 0, SFD_MAPV_REL = 1, SFD_MAPV_BIAS = 2 };
#define SFD_MAPV_MAX 4096   // steps in one call (3 per PT_LOAD, 1170 PT_LOADs at most)
struct sfd_mapv {
  uint64_t addr;   // ABS: the address; REL: added to the bias; BIAS: the mmap's link address
  uint64_t len;    // bytes
  uint64_t off;    // MMAP of a file: its offset
  int32_t op;      // SFD_MAPV_MMAP, _MUNMAP or _ZERO (write zero bytes: padzero)
  int32_t rel;     // SFD_MAPV_ABS, _REL or _BIAS (the first step only: the kernel picks the
                   // address and the bias becomes result - addr)
  int32_t prot;    // MMAP: PROT_*
  int32_t flags;   // MMAP: MAP_*
  int32_t fd;      // MMAP of a file: a descriptor of the caller
  int32_t pad;     // (zero)
  uint64_t out;    // MMAP: the address mapped (written back)
};
int sfd_spawn_mmapv(struct kernel *k, int pid, int bfd, struct sfd_mapv *v, uint32_t n,
                    uint64_t *bias, uint32_t *failed);
int sfd_spawn_mprotect(struct kernel *k, int pid, int bfd, uint64_t addr, uint64_t len,
                       int prot);
int sfd_spawn_access(struct kernel *k, int pid, int bfd, uint64_t addr, uint8_t *rbuf,
                     const uint8_t *wbuf, uint64_t len);
int sfd_spawn_install_fd(struct kernel *k, int pid, int bfd, int src, int dst, int flags);
int sfd_spawn_open(struct kernel *k, int pid, int bfd, const char *path, int flags,
                   unsigned mode, int dst);
int sfd_spawn_chdir(struct kernel *k, int pid, int bfd, const char *path);
int sfd_spawn_set_creds(struct kernel *k, int pid, int bfd, const uint32_t *ids);
int sfd_spawn_set_regs(struct kernel *k, int pid, int bfd, uint64_t rip, uint64_t rsp);
int sfd_spawn_setup_stack(struct kernel *k, int pid, int bfd, const char *execfn,
                          const char *strings, uint64_t len, int argc, int envc,
                          uint64_t seed, const uint64_t *aux, uint64_t start, uint64_t *rsp);
int sfd_spawn_map_cow(struct kernel *k, int pid, int bfd, int src, uint64_t addr,
                      uint64_t len);
int sfd_handle_target(struct kernel *k, int pid, int fd, int *target, int *state);
int sfd_close_handle(struct kernel *k, int pid, int fd, int target);

int sfd_mmap(struct kernel *k, int pid, uint64_t addr, uint64_t len, int prot, int flags,
             int fd, uint64_t off, uint64_t *out);
int sfd_munmap(struct kernel *k, int pid, uint64_t addr, uint64_t len);
// mremap(2): the new address, or a negative errno
int64_t sfd_mremap(struct kernel *k, int pid, uint64_t addr, uint64_t old_len, uint64_t new_len,
                   int flags, uint64_t new_addr);
int sfd_mprotect(struct kernel *k, int pid, uint64_t addr, uint64_t len, int prot);
int sfd_madvise(struct kernel *k, int pid, uint64_t addr, uint64_t len, int advice);
int sfd_populate(struct kernel *k, int pid, uint64_t addr, uint64_t len, int write,
                 int use_stamp, uint64_t stamp);
int sfd_mem_read(struct kernel *k, int pid, uint64_t addr, uint8_t *buf, uint64_t len);
int sfd_mem_write(struct kernel *k, int pid, uint64_t addr, const uint8_t *buf, uint64_t len);
int64_t sfd_touch(struct kernel *k, int pid, uint64_t addr, uint64_t len, uint64_t stride,
                  int write);
int64_t sfd_maps(struct kernel *k, int pid, char *buf, uint64_t cap);
int sfd_mmstats(struct kernel *k, int pid, struct mmstats *out);
int sfd_cpu_counters(struct kernel *k, int pid, struct cpu_counters *out);
int sfd_mm_pss(struct kernel *k, int pid, uint64_t *out);
int sfd_translate(struct kernel *k, int pid, uint64_t va, uint64_t *pte);
int sfd_frame_info(struct kernel *k, uint64_t pfn, uint32_t *ref, uint32_t *kind);

int sfd_open(struct kernel *k, int pid, const char *path, int flags, unsigned mode);
int sfd_close(struct kernel *k, int pid, int fd);
int64_t sfd_read(struct kernel *k, int pid, int fd, uint8_t *buf, uint64_t n);
int64_t sfd_write(struct kernel *k, int pid, int fd, const uint8_t *buf, uint64_t n);
int64_t sfd_pread(struct kernel *k, int pid, int fd, uint8_t *buf, uint64_t n, uint64_t off);
int64_t sfd_lseek(struct kernel *k, int pid, int fd, int64_t off, int whence);
int sfd_ftruncate(struct kernel *k, int pid, int fd, int64_t length);
int sfd_dup(struct kernel *k, int pid, int fd);
int sfd_dup2(struct kernel *k, int pid, int oldfd, int newfd);
int sfd_dup3(struct kernel *k, int pid, int oldfd, int newfd, int flags);
int sfd_unlink(struct kernel *k, int pid, const char *path);
int sfd_pipe2(struct kernel *k, int pid, int flags, int *fds);
int sfd_pipe_avail(struct kernel *k, int pid, int fd, uint64_t *avail, int *peers);
int sfd_fstat_size(struct kernel *k, int pid, int fd, uint64_t *size);
int sfd_fstat(struct kernel *k, int pid, int fd, uint64_t *out);
int sfd_close_range(struct kernel *k, int pid, unsigned first, unsigned last);

// The CPU (arch/x86/cpu.c): run thread tid (a pid: the process's first thread) on real
// x86-64 code for at most max_insns instructions. reason: enum cpu_stop (arch/x86/arch.h):
// 1 slice over, 2 exited (status: code), 3 killed (status: signal, addr: faulting
// address), 4 blocked in a system call on descriptor fd, 5 asleep in nanosleep(2) for addr
// nanoseconds (the caller sleeps, then runs it again to return), ... 12 a thread cloned
// (status: its tid), 13 in FUTEX_WAIT (addr: its timeout), 14 this thread exited alone.
struct sfd_cpu_exit {
  int32_t reason;
  int32_t status;
  int32_t fd;
  int32_t woken;  // threads were woken from FUTEX_WAIT: sfd_futex_woken() names them
  uint64_t addr;
  uint64_t insns;
};
int sfd_cpu_run(struct kernel *k, int tid, uint64_t max_insns, struct sfd_cpu_exit *out);
int sfd_cpu_timeout(struct kernel *k, int tid);
int sfd_futex_woken(struct kernel *k, int *tids, int max);
int sfd_signal_send(struct kernel *k, int sender, int pid, int sig);
int sfd_signal_pending(struct kernel *k, int pid);
int sfd_signal_outbox(struct kernel *k, int *pids, int *sigs, int n);
int sfd_spawn_window(struct kernel *k, struct spawn_window *out);

// The system-call trace (arch/x86/syscall_64.c): every call a CPU finishes, in order, as
// (pid, number, result, arguments). A call that blocks is recorded once, when it returns.
struct sfd_trace_rec {
  int32_t pid;
  int32_t nr;
  int64_t ret;
  uint64_t args[6];
};
// Start recording (the buffer holds cap calls; later ones are counted as lost) or, cap 0,
// stop and drop the buffer. Restarting drops what was recorded.
int sfd_trace_start(struct kernel *k, uint32_t cap);
// Move up to n recorded calls, oldest first, to out: the number moved. *lost: calls dropped
// so far because the buffer was full.
int sfd_trace_read(struct kernel *k, struct sfd_trace_rec *out, uint32_t n, uint64_t *lost);

#endif
