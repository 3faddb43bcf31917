// cpu.c — the CPU: one Unicorn x86-64 engine per machine, in virtual-TLB mode, shared by
// every process that runs code.
//
// The simulated frames are Unicorn's physical memory, mapped once: the flat content region
// of mm/frame.c (frame pfn at physical address pfn * 4 KiB). Unicorn asks for a translation
// on every TLB miss; the fill hook walks the loaded process's own page tables through the
// kernel's fault path (mm_fault_translate: demand fault, COW break, breaking a COW-shared
// table, THP split, shared-table attach), materialises the frame's content into its slot
// and answers with the frame and what the pte allows now. Translated code is cached by
// physical address, so the ld.so and libc every process maps from the page cache are
// translated once. The memory manager flushes the TLB through the mmu notifier wherever
// Linux flushes; a frame that held code and changes or is freed flushes translated code.
// System calls trap to syscall_64.c.
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/arch.h"

#define X86_EXCP_DE 0   // divide error
#define X86_EXCP_BP 3   // int3
#define X86_EXCP_UD 6   // invalid opcode
#define X86_EXCP_GP 13  // general protection
#define X86_EXCP_PF 14  // page fault

static void cpu_thread_free(struct cpu *c);
static void thread_release(struct cpu *c);

// Forget every cached translation of a virtual address: the TLB, Unicorn's jump cache
// (flushed with it) and the instruction counts remembered by virtual address.
static void engine_flush_tlb(struct cpu_engine *e) {
  uc_ctl_flush_tlb(e->uc);
  e->icache_gen++;
}

// compare Linux flush_tlb_mm_range(): the whole TLB goes, if this address space is the one
// loaded (another's is flushed when it is switched to). A change the fill hook itself makes
// (its own COW break) needs none: Unicorn replaces that entry.
static void cpu_invalidate(struct mm *mm, uint64_t start, uint64_t end) {
  struct cpu_engine *e = mm->mn_data;
  (void)start;
  (void)end;
  if (e->in_fill || e->loaded_mm != mm)
    return;
  engine_flush_tlb(e);
  e->k->st.tlb_flushes++;
  if (e->cur && e->cur->mm == mm)
    e->cur->cnt->tlb_flushes++;
}

// compare Linux mmu_notifier_release(): the mm is going away (exit, exec); if the TLB holds
// its translations they go now, before its frames can be reused.
static void cpu_release(struct mm *mm) {
  struct cpu_engine *e = mm->mn_data;
  mm->mn_ops = NULL;
  mm->mn_data = NULL;
  if (e->loaded_mm == mm) {
    engine_flush_tlb(e);
    e->loaded_mm = NULL;
  }
}

static const struct mmu_notifier_ops cpu_mn_ops = {
    .invalidate = cpu_invalidate,
    .release = cpu_release,
};

// The TLB-fill hook: a user access to vaddr missed. compare Linux do_user_addr_fault(),
// then the hardware's walk of the tables the fault left. false: a page fault (SIGSEGV).
// A frame reachable by an instruction fetch is marked FF_CODE: its translations must go
// when it changes (mm/frame.c bumps code_gen).
static bool cpu_tlb_fill(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *ent,
                         void *data) {
  struct cpu_engine *e = data;
  struct cpu *c = e->cur;
  struct kernel *k = e->k;
  int access = type == UC_MEM_WRITE ? MM_WRITE : type == UC_MEM_FETCH ? MM_FETCH : MM_READ;
  pfn_t pfn;
  int perms;
  (void)uc;
  k->st.tlb_fills++;
  c->cnt->tlb_fills++;
  e->in_fill = 1;
  int err = mm_fault_translate(c->mm, vaddr, access, &pfn, &perms);
  e->in_fill = 0;
  if (err) {  // the exception Unicorn raises next ends the run: SIGSEGV at the first one
    if (!c->faulted) {  // the first refused access is the fault (page 0 included)
      c->faulted = 1;
      c->fault_addr = vaddr;
      c->fault_access = access;
    }
    return false;
  }
  if (pfn != k->fr.zero_pfn) {
    if (k->fr.f[pfn].ctype != CT_BUF)
      frame_materialise(&k->fr, pfn);  // the CPU reads and writes the slot itself
    if (perms & MM_PERM_X)
      k->fr.f[pfn].aux |= FF_CODE;
  }
  ent->paddr = (uint64_t)pfn << PAGE_SHIFT;
  ent->perms = ((perms & MM_PERM_R) ? UC_PROT_READ : 0) |
               ((perms & MM_PERM_W) ? UC_PROT_WRITE : 0) |
               ((perms & MM_PERM_X) ? UC_PROT_EXEC : 0);
  return true;
}

// The syscall instruction. compare Linux entry_SYSCALL_64 -> do_syscall_64().
static void cpu_syscall(uc_engine *uc, void *data) {
  struct cpu_engine *e = data;
  (void)uc;
  syscall_dispatch(e->cur);
}

// An invalid instruction: SIGILL at its address. compare Linux exc_invalid_op().
static bool cpu_invalid_insn(uc_engine *uc, void *data) {
  struct cpu *c = ((struct cpu_engine *)data)->cur;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  c->stop = CPU_KILLED;
  c->status = SIGILL;
  c->fault_addr = rip;
  c->faulted = 1;
  return false;
}

// A CPU exception a hook sees: the signal Linux's trap handlers would send. compare do_trap(),
// exc_page_fault(), exc_invalid_op().
static void cpu_interrupt(uc_engine *uc, uint32_t intno, void *data) {
  struct cpu *c = ((struct cpu_engine *)data)->cur;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  c->stop = CPU_KILLED;
  switch (intno) {
  case X86_EXCP_PF:
    c->status = SIGSEGV;
    break;
  case X86_EXCP_UD:
    c->status = SIGILL;
    c->fault_addr = rip;
    c->faulted = 1;
    break;
  case X86_EXCP_DE:
    c->status = SIGFPE;
    c->fault_addr = rip;
    c->faulted = 1;
    break;
  case X86_EXCP_BP:
    c->status = SIGTRAP;
    c->fault_addr = rip;
    c->faulted = 1;
    break;
  default:
    c->status = SIGSEGV;
    c->fault_addr = rip;
    c->faulted = 1;
  }
  uc_emu_stop(uc);
}

// The instructions in the translated block at addr: a direct-mapped cache (Fibonacci
// hashing of the address) in front of Unicorn's own table (uc_ctl_request_cache finds the
// block being entered). 64 Ki slots: python's start-up enters ~400 k blocks a run that
// missed a 4 Ki-slot cache, nine in ten by conflict.
static uint32_t cpu_block_icount(struct cpu_engine *e, uint64_t addr) {
  struct icount_slot *s = &e->icache[(addr * 0x9e3779b97f4a7c15ULL) >> (64 - CPU_ICACHE_BITS)];
  if (s->addr == addr && s->gen == e->icache_gen)
    return s->icount;
  uc_tb tb;
  if (uc_ctl_request_cache(e->uc, addr, &tb) != UC_ERR_OK)
    return 1;
  s->addr = addr;
  s->gen = e->icache_gen;
  s->icount = tb.icount ? tb.icount : 1;
  return s->icount;
}

// A block is entered: count its instructions; end the slice before one that would pass
// the budget (it runs first on the next slice), or before stale translated code runs.
static void cpu_count(uc_engine *uc, uint64_t addr, uint32_t size, void *data) {
  struct cpu_engine *e = data;
  struct cpu *c = e->cur;
  (void)size;
  if (e->code_gen != e->k->fr.code_gen && c->stop == CPU_RUNNING) {
    c->stop = CPU_SLICE;  // not counted: the block runs after the flush
    e->stale_stop = 1;
    uc_emu_stop(uc);
    return;
  }
  uint32_t n = cpu_block_icount(e, addr);
  if (c->insns && c->insns + n > c->budget && c->stop == CPU_RUNNING) {
    c->stop = CPU_SLICE;
    uc_emu_stop(uc);
    return;
  }
  c->insns += n;
  c->faulted = 0;  // a refused access before this block (the CPU's attempt to deliver the
                   // last fault through an IDT it does not have) was not this block's fault
}

static void engine_free(struct cpu_engine *e) {
  if (e->boot)
    uc_context_free(e->boot);
  uc_close(e->uc);
  free(e);
}

// The machine's CPU, created on first use: the frames mapped once as physical memory, the
// hooks installed, the registers of a reset CPU kept as every new thread's start.
static int engine_get(struct kernel *k, struct cpu_engine **out) {
  struct cpu_engine *e = k->cpu;
  uc_hook h;
  if (e) {
    *out = e;
    return 0;
  }
  if (!(e = calloc(1, sizeof(*e))))
    return -ENOMEM;
  e->k = k;
  e->code_gen = k->fr.code_gen;
  if (uc_open(UC_ARCH_X86, UC_MODE_64, &e->uc) != UC_ERR_OK) {
    free(e);
    return -ENOMEM;
  }
  if (uc_ctl_tlb_mode(e->uc, UC_TLB_VIRTUAL) != UC_ERR_OK ||
      uc_mem_map_ptr(e->uc, 0, k->fr.mem_bytes, UC_PROT_ALL, k->fr.mem) != UC_ERR_OK ||
      uc_hook_add(e->uc, &h, UC_HOOK_TLB_FILL, (void *)cpu_tlb_fill, e, 1, 0) != UC_ERR_OK ||
      uc_hook_add(e->uc, &h, UC_HOOK_INSN, (void *)cpu_syscall, e, 1, 0,
                  UC_X86_INS_SYSCALL) != UC_ERR_OK ||
      uc_hook_add(e->uc, &h, UC_HOOK_INTR, (void *)cpu_interrupt, e, 1, 0) != UC_ERR_OK ||
      uc_hook_add(e->uc, &h, UC_HOOK_INSN_INVALID, (void *)cpu_invalid_insn, e, 1, 0) !=
          UC_ERR_OK ||
      uc_hook_add(e->uc, &h, UC_HOOK_BLOCK, (void *)cpu_count, e, 1, 0) != UC_ERR_OK ||
      uc_context_alloc(e->uc, &e->boot) != UC_ERR_OK ||
      uc_context_save(e->uc, e->boot) != UC_ERR_OK) {
    engine_free(e);
    return -EINVAL;
  }
  k->cpu = e;
  k->cpu_free = engine_free;
  k->thread_free = cpu_thread_free;
  *out = e;
  return 0;
}

// Start c over at its process's start registers (a new thread, or its process exec'd): a
// reset CPU with rip, rsp and rflags set; the program break and any parked call forgotten.
static int cpu_thread_restart(struct cpu_engine *e, struct cpu *c) {
  uint64_t rip = c->p->rip, rsp = c->p->rsp, rflags = 0x202;
  // The FPU as Linux starts a program (compare fpstate_init_user()): x87 control word 0x37f
  // (all exceptions masked, double extended precision), every register empty, MXCSR 0x1f80.
  // Unicorn's reset leaves zeroes there (single precision, SSE exceptions unmasked).
  uint64_t fpcw = 0x37f, fptag = 0xffff, mxcsr = 0x1f80;
  if (uc_context_restore(e->uc, e->boot) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_RIP, &rip) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_RSP, &rsp) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_EFLAGS, &rflags) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_FPCW, &fpcw) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_FPTAG, &fptag) != UC_ERR_OK ||
      uc_reg_write(e->uc, UC_X86_REG_MXCSR, &mxcsr) != UC_ERR_OK)
    return -EINVAL;
  c->exec_gen = c->p->exec_gen;
  c->restart = 0;
  c->brk_start = c->brk = 0;
  c->pending = 0;
  c->clear_child_tid = 0;
  c->sigdepth = 0;  // exec: no handler frame survives
  c->reload = 0;
  return 0;
}

// Load c's registers into the CPU, saving those of the thread that ran before, and its
// address space into the TLB. compare Linux __switch_to() and switch_mm_irqs_off() (another
// mm: flush the TLB and take its flush notifications).
static int cpu_switch_to(struct cpu_engine *e, struct cpu *c) {
  int restart = c->restart || c->exec_gen != c->p->exec_gen;
  c->mm = c->p->mm;
  if (e->cur != c || restart) {
    if (e->cur && e->cur != c) {
      if (uc_context_save(e->uc, e->cur->ctx) != UC_ERR_OK)
        return -EINVAL;
      e->k->st.cpu_switches++;
      c->cnt->cpu_switches++;
    }
    e->cur = NULL;
    if (restart ? cpu_thread_restart(e, c) : uc_context_restore(e->uc, c->ctx) != UC_ERR_OK)
      return -EINVAL;
    e->cur = c;
  }
  if (e->loaded_mm != c->mm) {
    engine_flush_tlb(e);
    e->loaded_mm = c->mm;
    c->mm->mn_ops = &cpu_mn_ops;
    c->mm->mn_data = e;
  }
  return 0;
}

// A thread state for p, to start at its registers on its first run. -ENOMEM.
static struct cpu *cpu_thread_new(struct cpu_engine *e, struct proc *p) {
  struct cpu *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  if (uc_context_alloc(e->uc, &c->ctx) != UC_ERR_OK) {
    free(c);
    return NULL;
  }
  c->k = e->k;
  c->e = e;
  c->uc = e->uc;
  c->p = p;
  c->mm = p->mm;
  c->pid = c->tid = c->fq.tid = p->pid;
  c->blocked = &p->sig.blocked;
  c->sas = &p->sas;
  c->cnt = &p->cpu;
  c->exec_gen = p->exec_gen;
  c->restart = 1;
  c->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)p->serial << 17);
  c->trace = getenv("SPAWNFD_STRACE") != NULL;
  return c;
}

// One thread's state goes: off the futex queues, its tid free again, its registers.
static void thread_release(struct cpu *c) {
  struct kernel *k = c->k;
  if (c->e->cur == c)
    c->e->cur = NULL;
  futex_forget(k, &c->fq);
  if (c->tid != c->pid && k->tids[c->tid] == c)
    k->tids[c->tid] = NULL;
  for (int i = 0; i < CPU_SIGDEPTH; i++)
    if (c->sigctx[i])
      uc_context_free(c->sigctx[i]);
  uc_context_free(c->ctx);
  free(c);
}

// The process owning c (its first thread) exits or is reaped (kernel/proc.c, through
// k->thread_free): c and every thread after it. compare Linux exit_thread() in each.
static void cpu_thread_free(struct cpu *c) {
  while (c) {
    struct cpu *next = c->tnext;
    futex_exit_robust(c);  // its mm is still there (proc_exit frees it after the threads)
    thread_release(c);
    c = next;
  }
}

// A thread that is not the first leaves its process's list and goes. compare
// release_task() -> __exit_signal() for a non-leader.
static void thread_unlink(struct cpu *c) {
  for (struct cpu **pp = &c->p->thread; *pp; pp = &(*pp)->tnext)
    if (*pp == c) {
      *pp = c->tnext;
      break;
    }
  thread_release(c);
}

// A thread just cloned goes again (a tid store faulted): unlinked, its tid free.
void cpu_thread_unclone(struct cpu *c) { thread_unlink(c); }

// Whether c is its process's only thread still running (an exited first thread does not
// count): its exit(2) ends the process.
int cpu_thread_alone(const struct cpu *c) {
  for (const struct cpu *t = c->p->thread; t; t = t->tnext)
    if (t != c && !t->dead)
      return 0;
  return 1;
}

// execve from c: every other thread of the process goes, and c becomes its first thread
// (its tid is the pid from now on, its mask the process's; the program break is the
// process's). compare Linux de_thread().
void cpu_de_thread(struct cpu *c) {
  struct proc *p = c->p;
  struct cpu *t = p->thread, *next;
  if (t && t != c) {
    c->brk_start = t->brk_start;
    c->brk = t->brk;
  }
  for (; t; t = next) {
    next = t->tnext;
    if (t != c)
      thread_release(t);  // its mm is gone already: its robust list with it
  }
  if (c->tid != c->pid) {
    c->k->tids[c->tid] = NULL;
    c->tid = c->fq.tid = c->pid;
    p->sig.blocked = c->own_blocked;
    c->blocked = &p->sig.blocked;
    c->sas = &p->sas;
  }
  c->tnext = NULL;
  c->dead = 0;
  p->thread = c;
}

// Whether c has a signal to take now: the process's or its own, not blocked by it.
int thread_signal_pending(const struct cpu *c) {
  return ((c->p->sigpending | c->sigpending) & ~*c->blocked) != 0;
}

// The registers of a new thread: the running thread's, past the syscall instruction with
// rax 0, on the given stack (0: the same rsp) and FS base (set_tls). compare copy_thread().
static int thread_regs_copy(struct cpu_engine *e, struct cpu *c, uint64_t stack, uint64_t tls,
                            int set_tls) {
  uint64_t rip, zero = 0;
  if (uc_context_save(e->uc, c->ctx) != UC_ERR_OK ||
      uc_context_reg_read(c->ctx, UC_X86_REG_RIP, &rip) != UC_ERR_OK)
    return -EINVAL;
  rip += 2;  // the hook runs with rip at the syscall instruction (2 bytes)
  if (uc_context_reg_write(c->ctx, UC_X86_REG_RIP, &rip) != UC_ERR_OK ||
      uc_context_reg_write(c->ctx, UC_X86_REG_RAX, &zero) != UC_ERR_OK ||
      (stack && uc_context_reg_write(c->ctx, UC_X86_REG_RSP, &stack) != UC_ERR_OK) ||
      (set_tls && uc_context_reg_write(c->ctx, UC_X86_REG_FS_BASE, &tls) != UC_ERR_OK))
    return -EINVAL;
  return 0;
}

// fork, vfork, clone from the running thread parent: the child process's thread continues
// from the same registers past the syscall instruction, with rax 0, on the given stack (0:
// the parent's rsp) and FS base (set_tls). compare Linux copy_thread().
int cpu_thread_copy(struct cpu *parent, struct proc *child, uint64_t stack, uint64_t tls,
                    int set_tls) {
  struct cpu_engine *e = parent->e;
  struct cpu *c = cpu_thread_new(e, child);
  if (!c)
    return -ENOMEM;
  c->restart = 0;
  c->brk_start = parent->p->thread->brk_start;  // the process's break (its first thread's)
  c->brk = parent->p->thread->brk;
  if (thread_regs_copy(e, c, stack, tls, set_tls)) {
    thread_release(c);
    return -EINVAL;
  }
  child->thread = c;
  return 0;
}

// clone(CLONE_THREAD): a new thread of the running thread's process over the same address
// space, descriptors and signal handlers, from the caller's registers (as cpu_thread_copy)
// with the caller's blocked mask, linked last among the process's threads, its tid from the
// pid space. compare copy_process() with CLONE_THREAD.
int cpu_thread_clone(struct cpu *parent, uint64_t stack, uint64_t tls, int set_tls,
                     struct cpu **out) {
  struct kernel *k = parent->k;
  int tid = tid_alloc(k);
  if (tid < 0)
    return tid;
  struct cpu *c = cpu_thread_new(parent->e, parent->p);
  if (!c)
    return -ENOMEM;
  c->restart = 0;
  c->tid = c->fq.tid = tid;
  c->own_blocked = *parent->blocked;
  c->blocked = &c->own_blocked;
  c->own_sas.flags = SS_DISABLE;  // compare copy_process(): CLONE_VM without CLONE_VFORK
  c->sas = &c->own_sas;
  c->rng ^= (uint64_t)tid << 32;
  if (thread_regs_copy(parent->e, c, stack, tls, set_tls)) {
    thread_release(c);
    return -EINVAL;
  }
  k->tids[tid] = c;
  struct cpu **pp = &parent->p->thread;
  while (*pp)
    pp = &(*pp)->tnext;
  *pp = c;
  *out = c;
  return 0;
}

// The counters a fork-to-exec window starts from or ends at: the machine's, and in
// instructions those of the thread running now (the forking parent), with its current
// slice's (its counters have them only when the slice ends).
void spawn_window_mark(struct kernel *k, const struct cpu *running, struct spawn_window *w) {
  memset(w, 0, sizeof(*w));
  w->ptes_copied = k->st.ptes_copied;
  w->tables_shared = k->st.tables_shared;
  w->tables_copied = k->st.tables_copied;
  w->tables_allocated = k->st.tables_allocated;
  w->pages_copied = k->st.pages_copied;
  w->frames_allocated = k->fr.allocated;
  memcpy(w->faults, k->st.faults, sizeof(w->faults));
  w->instructions = running ? running->cnt->instructions + running->insns : 0;
}

// child was just forked: its window opened at mark, taken before the fork (which it counts).
void spawn_window_open(struct cpu *child, const struct spawn_window *mark) {
  child->window = *mark;
  child->window.child_instructions = child->cnt->instructions;
  child->in_window = 1;
}

// The child c, running now, exec'd (or exits): what its window saw is added to the kernel's.
// Instructions are the parent's and the child's only (not a third process's that ran in
// between), so a window's figures do not depend on how the others were scheduled.
void spawn_window_close(struct cpu *c, int by_exit) {
  struct spawn_window now, *w = &c->k->window, *s = &c->window;
  struct proc *parent = proc_get_any(c->k, c->p->ppid);
  if (!c->in_window)
    return;
  c->in_window = 0;
  spawn_window_mark(c->k, NULL, &now);
  now.instructions = parent && parent->thread ? parent->cpu.instructions : s->instructions;
  w->windows++;
  w->exits += !!by_exit;
  w->ptes_copied += now.ptes_copied - s->ptes_copied;
  w->tables_shared += now.tables_shared - s->tables_shared;
  w->tables_copied += now.tables_copied - s->tables_copied;
  w->tables_allocated += now.tables_allocated - s->tables_allocated;
  w->pages_copied += now.pages_copied - s->pages_copied;
  w->frames_allocated += now.frames_allocated - s->frames_allocated;
  for (int i = 0; i < 8; i++)
    w->faults[i] += now.faults[i] - s->faults[i];
  uint64_t child = c->cnt->instructions + c->insns - s->child_instructions;
  w->instructions += now.instructions - s->instructions + child;
  w->child_instructions += child;
}

int sfd_spawn_window(struct kernel *k, struct spawn_window *out) {
  if (k->panicked)
    return -KPANIC;
  *out = k->window;
  return 0;
}

// The thread tid and its process: a process's first thread by its pid (NULL: it has not run
// code yet), another by its tid. -ESRCH: no such thread, or it exited; -EAGAIN: it waits
// for its vfork child. compare find_task_by_vpid().
static int thread_get(struct kernel *k, int tid, struct proc **pp, struct cpu **cp) {
  struct proc *p = proc_get(k, tid);
  struct cpu *c;
  if (p) {
    c = p->thread;
  } else if (tid > 0 && tid < k->pid_max && k->tids[tid] &&
             k->tids[tid]->p->state == PS_RUNNING) {
    c = k->tids[tid];
    p = c->p;
  } else {
    return -ESRCH;
  }
  if (c && c->dead)
    return -ESRCH;
  if (p->vfork_child && (!c || c->vforked == p->vfork_child))
    return -EAGAIN;
  *pp = p;
  *cp = c;
  return 0;
}

// tid's poll, select or futex wait waited as long as its timeout allows: the call returns
// (0, or -ETIMEDOUT for a futex) when it runs again (the trio layer keeps the time).
int sfd_cpu_timeout(struct kernel *k, int tid) {
  struct proc *p;
  struct cpu *c;
  int err = k->panicked ? -KPANIC : thread_get(k, tid, &p, &c);
  if (err)
    return err;
  if (!c)
    return -EINVAL;
  c->timed_out = 1;
  return 0;
}

// The thread stopped on a CPU fault (a refused access, an invalid instruction, a divide
// error, int3): its signal goes to its handler if it has one (signal_force_fault), and the
// run goes on there; 0: the default action ends the process. compare the trap handlers'
// force_sig_fault() (arch/x86/kernel/traps.c, mm/fault.c).
static int fault_to_handler(struct cpu *c, struct proc *p) {
  if (!c->faulted)
    return 0;
  fault_classify(c);  // a page past the end of a mapped file: SIGBUS
  if (!signal_force_fault(c, p))
    return 0;
  c->stop = CPU_RUNNING;
  c->faulted = 0;
  return 1;
}

// Drop translated code made from frames that changed since (FF_CODE, mm/frame.c).
// compare tb_invalidate_phys_range(): this version drops all of it.
static void engine_sync_code(struct cpu_engine *e) {
  if (e->code_gen == e->k->fr.code_gen)
    return;
  e->code_gen = e->k->fr.code_gen;
  uc_ctl_flush_tb(e->uc);
  e->icache_gen++;
  e->k->st.tb_flushes++;
}

// Run thread tid (a pid: its first thread) for at most max_insns instructions: until it exits, is killed by a CPU
// exception, blocks in a system call (out->fd: the descriptor), or the slice is over. A
// blocked system call is retried first on the next run. compare Linux's return to user
// mode loop (exit_to_user_mode_loop()) driven by the trio layer as the scheduler.
int sfd_cpu_run(struct kernel *k, int tid, uint64_t max_insns, struct sfd_cpu_exit *out) {
  struct proc *p;
  struct cpu *c;
  int err = 0;
  if (k->panicked)
    return -KPANIC;
  if ((err = thread_get(k, tid, &p, &c)))
    return err;
  memset(out, 0, sizeof(*out));
  if (!max_insns)
    return LEAVE(k, -EINVAL);
  struct cpu_engine *e;
  if ((err = engine_get(k, &e)))
    return LEAVE(k, err);
  if (!c && !(c = p->thread = cpu_thread_new(e, p)))
    return LEAVE(k, -ENOMEM);
  if (p->stop_sig) {  // a stopped process's threads do not run (compare do_signal_stop())
    out->reason = CPU_STOPPED;
    return 0;
  }
  if ((err = cpu_switch_to(e, c)))
    return LEAVE(k, err);
  uint64_t rip;
  c->stop = CPU_RUNNING;
  c->fault_addr = 0;
  c->faulted = 0;
  c->insns = 0;
  c->budget = max_insns;
  if (c->pending) {  // compare -ERESTARTSYS: the call that blocked runs again
    c->pending = 0;
    c->resuming = 1;
    syscall_resume(c);
    c->resuming = 0;
    if (c->pending && thread_signal_pending(c)) {  // still waiting, and a signal came: EINTR
      c->stop = CPU_RUNNING;
      signal_interrupt_call(c, p);
    } else if (c->stop != CPU_RUNNING) {
      goto out;
    }
  }
  for (;;) {
    signal_reload(c);  // back from a handler
    if (thread_signal_pending(c) && signal_deliver(c, p))
      break;  // a default action ended it
    engine_sync_code(e);
    uc_reg_read(e->uc, UC_X86_REG_RIP, &rip);
    uc_err ue = uc_emu_start(e->uc, rip, ~0ULL, 0, 0);
    if (c->resched) {  // stopped by a system call to take a signal or load registers
      c->resched = 0;
      if (c->stop == CPU_RUNNING)
        continue;
    }
    if (c->stop == CPU_KILLED && fault_to_handler(c, p))
      continue;
    if (e->stale_stop) {  // stopped only to drop stale code: go on
      e->stale_stop = 0;
      c->stop = CPU_RUNNING;
      continue;
    }
    if (c->stop != CPU_RUNNING)
      break;
    if (ue == UC_ERR_OK)
      continue;
    // An exception no hook took: a page fault the fill hook refused (Unicorn reports
    // UC_ERR_EXCEPTION), or another trap.
    c->stop = CPU_KILLED;
    c->status = ue == UC_ERR_INSN_INVALID ? SIGILL : SIGSEGV;
    if (!c->faulted)
      c->fault_addr = rip;
    c->faulted = 1;
    if (fault_to_handler(c, p))
      continue;
    break;
  }
out:
  k->st.cpu_instructions += c->insns;
  c->cnt->instructions += c->insns;
  out->reason = c->stop;
  out->status = c->status;
  int waits = c->stop == CPU_POLL || c->stop == CPU_FUTEX;
  out->fd = waits ? c->poll_again : c->block_fd;
  out->addr = c->stop == CPU_KILLED                  ? c->fault_addr
              : c->stop == CPU_SLEEP || waits        ? c->sleep_ns
                                                     : 0;
  out->insns = c->insns;
  out->woken = k->futex_woken != NULL;
  if (c->stop == CPU_THREAD_EXITED) {  // compare release_task(): a first thread lingers
    if (c->tid == c->pid)
      c->dead = 1;
    else
      thread_unlink(c);
  }
  return LEAVE(k, 0);
}
