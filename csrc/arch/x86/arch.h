// arch/x86/arch.h — what the architecture layer exports: the machine's CPU (Unicorn in
// virtual-TLB mode over the simulated frames), a thread state per process that runs code,
// and the x86-64 system-call table. It is the top layer: it calls kernel/, fs/ and mm/; mm/
// reaches it only through the mmu notifier the CPU registers on an mm it loads (struct
// mmu_notifier_ops in spawnfd.h), kernel/ through k->thread_free and k->cpu_free.
#ifndef SPAWNFD_ARCH_H
#define SPAWNFD_ARCH_H

#include <unicorn/unicorn.h>

#include "kernel/kernel.h"

// Why a slice of sfd_cpu_run stopped (struct sfd_cpu_exit.reason, api.h).
// CPU_SLEEP: in nanosleep, sleep_ns to go (the trio clock). CPU_FORKED / CPU_VFORKED: a
// child (status: its pid) is ready to run; a vfork parent waits for its exec or exit.
// CPU_EXECED: a new program is in place (it may be a stand-in). CPU_WAIT: in wait4 until a
// child changes state. CPU_POLL: in poll/select until a pipe moves or sleep_ns pass (fd 1:
// the same call waits again). CPU_SIGNAL: kill(2) reached other processes: the kernel's
// outbox (sfd_signal_outbox) says which to wake or end.
// CPU_CLONED: a new thread of this process (status: its tid) is ready to run. CPU_FUTEX: in
// FUTEX_WAIT until a wake (sfd_futex_woken names it) or sleep_ns pass (fd 1: the same
// wait again). CPU_THREAD_EXITED: this thread is gone (exit(2)), its process lives on in
// its other threads. CPU_EXITED from any thread: the whole process exits (exit_group, or
// the last thread's exit). CPU_LAUNCHED: close(2) of a builder fd launched an embryo
// (status: its pid; its first thread starts). CPU_STOPPED: the process is stopped (a stop
// signal; status 1: it stopped just now, its parent is to be woken) until SIGCONT.
enum cpu_stop { CPU_RUNNING = 0, CPU_SLICE, CPU_EXITED, CPU_KILLED, CPU_BLOCKED,
                CPU_SLEEP, CPU_FORKED, CPU_VFORKED, CPU_EXECED, CPU_WAIT, CPU_POLL,
                CPU_SIGNAL, CPU_CLONED, CPU_FUTEX, CPU_THREAD_EXITED, CPU_LAUNCHED,
                CPU_STOPPED };

#define CPU_SIGDEPTH 8  // nested handlers whose full CPU state is kept for rt_sigreturn
#define CPU_ICACHE_BITS 16
#define CPU_ICACHE (1 << CPU_ICACHE_BITS)  // translated blocks whose instruction count is kept

struct icount_slot {
  uint64_t addr;             // a block's first instruction (virtual)
  uint32_t icount;           // its instructions
  uint32_t gen;              // valid while it equals the engine's icache_gen
};

// The machine's one CPU: a Unicorn engine created on first use and shared by every process
// that runs code, so code translated once (ld.so, libc: page-cache frames every process maps)
// serves them all. A process's registers are loaded into it on a switch (compare Linux
// __switch_to() and switch_mm(): the TLB is flushed when the address space changes).
struct cpu_engine {
  struct kernel *k;
  uc_engine *uc;
  uc_context *boot;          // the registers of a CPU just reset: a new thread's start
  struct cpu *cur;           // the thread whose registers are loaded (NULL: none)
  struct mm *loaded_mm;      // the address space the TLB holds (compare cpu_tlbstate)
  uint64_t code_gen;         // k->fr.code_gen the translated code is valid for
  uint32_t icache_gen;       // bumped whenever a virtual address may name other code
  int in_fill;               // inside the TLB-fill hook (its own fault needs no flush)
  int stale_stop;            // the run stopped only because translated code went stale
  struct icount_slot icache[CPU_ICACHE];  // instructions per translated block
};

// One thread's CPU state, kept with its process (p->thread: the first thread, the others
// linked through tnext): its saved registers while another thread runs (compare Linux
// thread_struct), the slice being run, and the state of its system calls.
struct cpu {
  struct kernel *k;
  struct cpu_engine *e;      // the CPU it runs on
  uc_engine *uc;             // e->uc, for the system-call layer's register access
  uc_context *ctx;           // its registers while not loaded
  struct proc *p;            // its process
  struct mm *mm;             // p->mm, read when a run starts (a vfork child borrows one)
  int pid;                   // p->pid
  int tid;                   // its thread id (the first thread's: the pid)
  struct cpu *tnext;         // the process's next thread
  int dead;                  // the first thread exited (exit(2)) while others run on
  int vforked;               // the vfork child this thread waits for (0: none)
  uint64_t *blocked;         // its blocked mask: p->sig.blocked for the first thread,
  uint64_t own_blocked;      // ... this for the others (compare task->blocked)
  uint64_t sigpending;       // signals sent to this thread alone (tgkill)
  struct sas *sas;           // its alternate signal stack: p->sas for the first thread,
  struct sas own_sas;        // ... this for the others (a new thread has none)
  struct futex_q fq;         // its FUTEX_WAIT (kernel/futex.c)
  uint64_t futex_uaddr;      // ... the address it waits on
  uint64_t robust_list;      // set_robust_list's head (0: none); walked when it dies
  uint64_t exec_gen;         // p->exec_gen its registers belong to (else: restart at p->rip)
  int restart;               // not started yet: the first run starts at p->rip, p->rsp
  uint64_t clear_child_tid;  // CLONE_CHILD_CLEARTID / set_tid_address (recorded)
  int in_window;             // forked, not yet exec'd: window holds the counters at fork
  int sigdepth;              // handlers running (frames on the user stack)
  uc_context *sigctx[CPU_SIGDEPTH];  // the CPU state at each delivery, for rt_sigreturn
  uc_context *sigret_ctx;    // ... the one rt_sigreturn restores (NULL: beyond the depth)
  int reload;                // rt_sigreturn: load reload_regs when the syscall is over
  int sigsuspended;          // in rt_sigsuspend: the handler's frame saves saved_mask
  uint64_t saved_mask;       // ... the mask before it (compare current->saved_sigmask)
  int resched;               // a system call stopped the CPU to come back to the run loop
  uint64_t reload_regs[18];
  int reload_fp;             // ... and the FPU state from the frame (an FXSAVE area)
  _Alignas(16) uint8_t reload_fx[512];
  struct spawn_window window;
  struct cpu_counters *cnt;  // ... and its counters (struct proc outlives its mm)
  uint64_t budget;           // instructions allowed in this slice
  uint64_t insns;            // instructions executed in this slice
  int stop;                  // enum cpu_stop, set by a hook
  int status;                // CPU_EXITED: exit code; CPU_KILLED: signal
  int block_fd;              // CPU_BLOCKED: the descriptor it waits on
  uint64_t fault_addr;       // CPU_KILLED: the faulting address
  int faulted;               // ... set by a refused TLB fill (else: the instruction's)
  int fault_access;          // ... the access the fill refused (MM_READ, MM_WRITE, MM_FETCH)
  uint64_t fault_trapno, fault_err;  // the fault being delivered (the frame's mcontext)
  int pending;               // a blocked system call, retried when the run resumes
  uint64_t pnr, pargs[6];    // ... its number and arguments
  uint64_t brk_start, brk;   // the program break (0: not yet placed)
  uint64_t rng;              // getrandom's generator state (deterministic per process)
  int trace;                 // SPAWNFD_STRACE set: print each system call on stderr
  uint64_t sleep_ns;         // CPU_SLEEP: how long the runtime sleeps before resuming
  int slept;                 // the parked sleep is over: the resumed call returns
  int timed_out;             // a poll's wait ran out (sfd_cpu_timeout): it returns 0
  int resuming;              // the call running now was parked before
  int poll_again;            // CPU_POLL: it is the same call waiting again (out->fd)
};

// ---- sys_signal.c: delivery ----
int signal_deliver(struct cpu *c, struct proc *p);
int signal_force_fault(struct cpu *c, struct proc *p);
void fault_classify(struct cpu *c);
void signal_interrupt_call(struct cpu *c, struct proc *p);
void signal_reload(struct cpu *c);

// ---- cpu.c: the CPU ----
int cpu_thread_copy(struct cpu *parent, struct proc *child, uint64_t stack, uint64_t tls,
                    int set_tls);
int cpu_thread_clone(struct cpu *parent, uint64_t stack, uint64_t tls, int set_tls,
                     struct cpu **out);
int cpu_thread_alone(const struct cpu *c);
void cpu_de_thread(struct cpu *c);
void cpu_thread_unclone(struct cpu *c);
int thread_signal_pending(const struct cpu *c);

// ---- sys_futex.c ----
int futex_key_of(struct cpu *c, uint64_t uaddr, int private_, struct futex_key *key);
void futex_exit_robust(struct cpu *c);
struct cpu *thread_find(struct kernel *k, int tgid, int tid, struct proc **pp);
void spawn_window_mark(struct kernel *k, const struct cpu *running, struct spawn_window *w);
void spawn_window_open(struct cpu *child, const struct spawn_window *mark);
void spawn_window_close(struct cpu *c, int by_exit);

// ---- syscall_64.c: the system-call table ----
void syscall_dispatch(struct cpu *c);
void syscall_resume(struct cpu *c);

#endif
