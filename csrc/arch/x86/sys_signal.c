// sys_signal.c — signals for code on the CPU: dispositions (compare Linux kernel/signal.c
// do_sigaction()), kept per process (struct sighand in struct proc: fork copies them, exec
// resets caught signals), and each thread's blocked mask (sigprocmask(): the first
// thread's is p->sig.blocked, another's its own); delivery on the real x86-64 signal frame
// and rt_sigreturn (arch/x86/kernel/signal*.c), the alternate signal stack of each thread
// (sigaltstack, SA_ONSTACK); kill, tgkill and tkill. Sending is kernel/signal.c's.
#include <signal.h>
#include <string.h>

#include "arch/x86/syscalls.h"

#define SIGSET_SIZE 8
#define SIG_BIT(n) (1ULL << ((n) - 1))
#define UNBLOCKABLE (SIG_BIT(SIGKILL) | SIG_BIT(SIGSTOP))

// rt_sigaction(2): the new action in, the old one out (struct kernel_sigaction: handler,
// flags, restorer, mask). SIGKILL and SIGSTOP cannot be changed.
int64_t sys_rt_sigaction(struct cpu *c, struct proc *p, const uint64_t *a) {
  int sig = (int)a[0];
  struct k_sigaction act, old;
  if (a[3] != SIGSET_SIZE || sig < 1 || sig > SIG_NSIG)
    return -EINVAL;
  if (a[1]) {
    int err = copy_from_user(c, &act, a[1], sizeof(act));
    if (err)
      return err;
    if (sig == SIGKILL || sig == SIGSTOP)
      return -EINVAL;
    act.mask &= ~UNBLOCKABLE;
  }
  old = p->sig.action[sig - 1];
  if (a[1])
    p->sig.action[sig - 1] = act;
  return a[2] ? copy_to_user(c, a[2], &old, sizeof(old)) : 0;
}

// rt_sigprocmask(2): SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK; SIGKILL and SIGSTOP stay unblocked.
int64_t sys_rt_sigprocmask(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t set, old = *c->blocked;
  (void)p;
  if (a[3] != SIGSET_SIZE)
    return -EINVAL;
  if (a[1]) {
    int err = copy_from_user(c, &set, a[1], sizeof(set));
    if (err)
      return err;
    set &= ~UNBLOCKABLE;
    switch (a[0]) {
    case SIG_BLOCK: *c->blocked |= set; break;
    case SIG_UNBLOCK: *c->blocked &= ~set; break;
    case SIG_SETMASK: *c->blocked = set; break;
    default: return -EINVAL;
    }
  }
  return a[2] ? copy_to_user(c, a[2], &old, sizeof(old)) : 0;
}

// ---- delivery: the x86-64 signal frame (compare arch/x86/kernel/signal.c, signal_64.c) ----
#define SA_RESTORER_ 0x04000000
#define SA_ONSTACK_ 0x08000000
#define SA_RESTART_ 0x10000000
#define SA_NODEFER_ 0x40000000
#define SA_RESETHAND_ 0x80000000ULL
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4
#define FIX_EFLAGS 0x40dd5  // AC OF DF TF SF ZF AF PF CF RF, as Linux lets sigreturn restore
#define SIGCONTEXT_REGS 18  // r8-r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags

// struct rt_sigframe as user space sees it: the return address (sa_restorer), the ucontext,
// the siginfo; above it the FPU state in FXSAVE format (uc_mcontext.fpstate points at it).
struct ucontext_ {
  uint64_t uc_flags, uc_link;
  uint64_t ss_sp;
  int32_t ss_flags, pad;
  uint64_t ss_size;
  uint64_t regs[SIGCONTEXT_REGS];
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2, fpstate, reserved[8];
  uint64_t sigmask;
};
struct siginfo_ {
  int32_t signo, errno_, code, pad;
  union {
    struct {
      int32_t pid, uid, status, pad2;  // kill, SIGCHLD
    } k;
    uint64_t addr;                     // a fault's si_addr
  } u;
  uint8_t rest[128 - 32];
};
struct rt_sigframe_ {
  uint64_t pretcode;
  struct ucontext_ uc;
  struct siginfo_ info;
};

static const int sigcontext_ids[SIGCONTEXT_REGS] = {
    UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11, UC_X86_REG_R12,
    UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15, UC_X86_REG_RDI, UC_X86_REG_RSI,
    UC_X86_REG_RBP, UC_X86_REG_RBX, UC_X86_REG_RDX, UC_X86_REG_RAX, UC_X86_REG_RCX,
    UC_X86_REG_RSP, UC_X86_REG_RIP, UC_X86_REG_EFLAGS};
enum { R_RDI = 8, R_RSI = 9, R_RDX = 12, R_RAX = 13, R_RSP = 15, R_RIP = 16, R_EFLAGS = 17 };

static void regs_io(struct cpu *c, uint64_t *regs, int write) {
  void *ptrs[SIGCONTEXT_REGS];
  for (int i = 0; i < SIGCONTEXT_REGS; i++)
    ptrs[i] = &regs[i];
  if (write)
    uc_reg_write_batch(c->uc, sigcontext_ids, (void *const *)ptrs, SIGCONTEXT_REGS);
  else
    uc_reg_read_batch(c->uc, sigcontext_ids, ptrs, SIGCONTEXT_REGS);
}

// ---- the alternate signal stack (compare kernel/signal.c do_sigaltstack(), include/linux/
// sched/signal.h on_sig_stack(), sas_ss_flags()) ----
#define SS_AUTODISARM_ (1U << 31)
#define SS_FLAG_BITS_ SS_AUTODISARM_
#define MINSIGSTKSZ_ 2048  // the x86-64 uapi constant sigaltstack(2) checks against

struct stack_ {  // stack_t
  uint64_t ss_sp;
  int32_t ss_flags, pad;
  uint64_t ss_size;
};

// Whether sp is within the alternate stack s (it grows down: the top is inside).
// compare __on_sig_stack().
static int sas_contains(const struct sas *s, uint64_t sp) {
  return sp > s->sp && sp - s->sp <= s->size;
}

// compare on_sig_stack(): with SS_AUTODISARM a handler is never "on" it (it can nest anew).
static int on_sig_stack(const struct sas *s, uint64_t sp) {
  return !(s->flags & SS_AUTODISARM_) && sas_contains(s, sp);
}

// compare sas_ss_flags(): SS_DISABLE without one, SS_ONSTACK while sp is on it, else 0.
static int sas_ss_flags(const struct sas *s, uint64_t sp) {
  if (!s->size)
    return SS_DISABLE;
  return on_sig_stack(s, sp) ? SS_ONSTACK : 0;
}

// sigaltstack(2) at stack pointer sp: the old stack out (oss), the new one in (ss): -EPERM
// while on it, -EINVAL for an unknown mode, -ENOMEM below MINSIGSTKSZ; SS_DISABLE forgets
// it. compare do_sigaltstack().
static int do_sigaltstack(struct sas *s, const struct stack_ *ss, struct stack_ *oss,
                          uint64_t sp) {
  if (oss) {
    memset(oss, 0, sizeof(*oss));
    oss->ss_sp = s->sp;
    oss->ss_size = s->size;
    oss->ss_flags = (int32_t)((uint32_t)sas_ss_flags(s, sp) | (s->flags & SS_FLAG_BITS_));
  }
  if (!ss)
    return 0;
  uint64_t ss_sp = ss->ss_sp, ss_size = ss->ss_size;
  uint32_t ss_flags = (uint32_t)ss->ss_flags, mode = ss_flags & ~SS_FLAG_BITS_;
  if (on_sig_stack(s, sp))
    return -EPERM;
  if (mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0)
    return -EINVAL;
  if (s->sp == ss_sp && s->size == ss_size && s->flags == ss_flags)
    return 0;
  if (mode == SS_DISABLE) {
    ss_size = 0;
    ss_sp = 0;
  } else if (ss_size < MINSIGSTKSZ_) {
    return -ENOMEM;  // the frame has no xsave area here: no dynamic-size check beyond this
  }
  s->sp = ss_sp;
  s->size = ss_size;
  s->flags = ss_flags;
  return 0;
}

// sigaltstack(ss, old_ss) at the caller's stack pointer. compare SYSCALL_DEFINE2(sigaltstack).
int64_t sys_sigaltstack(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct stack_ ss, old;
  uint64_t sp;
  (void)p;
  if (a[0] && copy_from_user(c, &ss, a[0], sizeof(ss)))
    return -EFAULT;
  uc_reg_read(c->uc, UC_X86_REG_RSP, &sp);
  int err = do_sigaltstack(c->sas, a[0] ? &ss : NULL, a[1] ? &old : NULL, sp);
  if (!err && a[1] && copy_to_user(c, a[1], &old, sizeof(old)))
    err = -EFAULT;
  return err;
}

// The FPU and SSE state as FXSAVE lays it out (512 bytes, 16-byte aligned): what a handler
// finds at uc_mcontext.fpregs. compare struct fxregs_state, copy_fpstate_to_sigframe() on
// a CPU without XSAVE (no FP_XSTATE_MAGIC1 in sw_reserved: the legacy frame).
struct fxregs_ {
  uint16_t cwd, swd;
  uint8_t twd, pad0;
  uint16_t fop;
  uint64_t rip, rdp;
  uint32_t mxcsr, mxcsr_mask;
  uint8_t st[8][16];
  uint8_t xmm[16][16];
  uint8_t reserved[48], sw_reserved[48];
};
_Static_assert(sizeof(struct fxregs_) == 512, "FXSAVE area");

// Read (write 0) or load (write 1) the FPU and SSE registers of the CPU as an FXSAVE area.
// compare copy_fxregs_to_kernel() / restore_fpregs_from_user().
static void fxregs_io(struct cpu *c, struct fxregs_ *fx, int write) {
  uint64_t cwd = fx->cwd, swd = fx->swd, tag = 0, mxcsr = fx->mxcsr;
  if (!write) {
    memset(fx, 0, sizeof(*fx));
    uc_reg_read(c->uc, UC_X86_REG_FPCW, &cwd);
    uc_reg_read(c->uc, UC_X86_REG_FPSW, &swd);
    uc_reg_read(c->uc, UC_X86_REG_FPTAG, &tag);
    uc_reg_read(c->uc, UC_X86_REG_MXCSR, &mxcsr);
    fx->cwd = (uint16_t)cwd;
    fx->swd = (uint16_t)swd;
    for (int i = 0; i < 8; i++)  // the abridged tag: a bit per register that is not empty
      fx->twd |= (uint8_t)((((tag >> (2 * i)) & 3) != 3) << i);
    fx->mxcsr = (uint32_t)mxcsr;
    fx->mxcsr_mask = 0xffff;
    for (int i = 0; i < 8; i++)
      uc_reg_read(c->uc, UC_X86_REG_ST0 + i, fx->st[i]);
    for (int i = 0; i < 16; i++)
      uc_reg_read(c->uc, UC_X86_REG_XMM0 + i, fx->xmm[i]);
    return;
  }
  for (int i = 0; i < 8; i++)  // the full tag from the abridged one: valid or empty
    tag |= (uint64_t)((fx->twd >> i) & 1 ? 0 : 3) << (2 * i);
  mxcsr &= 0xffff;  // compare fpu__clear_user_states()'s check: reserved bits stay clear
  uc_reg_write(c->uc, UC_X86_REG_FPCW, &cwd);
  uc_reg_write(c->uc, UC_X86_REG_FPSW, &swd);
  uc_reg_write(c->uc, UC_X86_REG_FPTAG, &tag);
  uc_reg_write(c->uc, UC_X86_REG_MXCSR, &mxcsr);
  for (int i = 0; i < 8; i++)
    uc_reg_write(c->uc, UC_X86_REG_ST0 + i, fx->st[i]);
  for (int i = 0; i < 16; i++)
    uc_reg_write(c->uc, UC_X86_REG_XMM0 + i, fx->xmm[i]);
}

// Build the frame for sig below the user stack, or at the top of the alternate stack for an
// SA_ONSTACK handler not on it yet, and point the registers at the handler. -EFAULT if the
// stack cannot take it, or the frame would leave the alternate stack it is on.
// compare setup_rt_frame() / x64_setup_rt_frame(), get_sigframe().
static int setup_rt_frame(struct cpu *c, struct proc *p, int sig, const struct k_sigaction *act) {
  struct rt_sigframe_ f;
  memset(&f, 0, sizeof(f));
  struct sas *s = c->sas;
  regs_io(c, f.uc.regs, 0);
  int nested_alt = on_sig_stack(s, f.uc.regs[R_RSP]), entering_alt = 0;
  uint64_t sp = f.uc.regs[R_RSP] - 128;  // the red zone
  if ((act->flags & SA_ONSTACK_) && sas_ss_flags(s, sp) == 0) {
    sp = s->sp + s->size;
    entering_alt = 1;
  }
  uint64_t fpstate = (sp - sizeof(struct fxregs_)) & ~63ULL;  // compare fpu__alloc_mathframe()
  uint64_t frame = ((fpstate - sizeof(f)) & ~15ULL) - 8;
  if ((nested_alt || entering_alt) && !sas_contains(s, frame))
    return -EFAULT;  // it would overflow the alternate stack: SIGSEGV
  if (!(act->flags & SA_RESTORER_))
    return -EFAULT;  // x86-64 has no vDSO trampoline here: glibc always gives a restorer
  f.pretcode = act->restorer;
  f.uc.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
  f.uc.ss_sp = s->sp;  // compare unsafe_save_altstack(): as sigaltstack set it
  f.uc.ss_flags = (int32_t)s->flags;
  f.uc.ss_size = s->size;
  f.uc.cs = 0x33;
  f.uc.ss = 0x2b;
  f.uc.fpstate = fpstate;
  f.uc.oldmask = f.uc.sigmask = c->sigsuspended ? c->saved_mask : *c->blocked;
  f.info.signo = sig;
  f.info.code = p->siginfo[sig - 1].code;
  if (p->siginfo[sig - 1].fault) {  // compare force_sig_fault(): si_addr; the trap in mcontext
    f.info.u.addr = p->siginfo[sig - 1].addr;
    f.uc.trapno = c->fault_trapno;
    f.uc.err = c->fault_err;
    f.uc.cr2 = sig == SIGSEGV || sig == SIGBUS ? p->siginfo[sig - 1].addr : 0;
  } else {
    f.info.u.k.pid = p->siginfo[sig - 1].pid;
    f.info.u.k.status = p->siginfo[sig - 1].status;
  }
  if (c->sigdepth < CPU_SIGDEPTH) {  // the FPU and everything else, for rt_sigreturn
    if (!c->sigctx[c->sigdepth] && uc_context_alloc(c->uc, &c->sigctx[c->sigdepth]))
      return -ENOMEM;
    uc_context_save(c->uc, c->sigctx[c->sigdepth]);
  }
  c->sigdepth++;
  struct fxregs_ fx;
  fxregs_io(c, &fx, 0);
  int err = copy_to_user(c, fpstate, &fx, sizeof(fx));
  if (!err)
    err = copy_to_user(c, frame, &f, sizeof(f));
  if (err) {
    c->sigdepth--;
    return err;
  }
  uint64_t regs[SIGCONTEXT_REGS];
  memcpy(regs, f.uc.regs, sizeof(regs));
  regs[R_RDI] = (uint64_t)sig;
  regs[R_RSI] = frame + offsetof(struct rt_sigframe_, info);
  regs[R_RDX] = frame + offsetof(struct rt_sigframe_, uc);
  regs[R_RAX] = 0;
  regs[R_RSP] = frame;
  regs[R_RIP] = act->handler;
  regs[R_EFLAGS] &= ~(uint64_t)(0x400 | 0x100);  // DF, TF clear
  regs_io(c, regs, 1);
  *c->blocked |= act->mask | ((act->flags & SA_NODEFER_) ? 0 : SIG_BIT(sig));
  *c->blocked &= ~UNBLOCKABLE;
  if (act->flags & SA_RESETHAND_)
    p->sig.action[sig - 1].handler = 0;
  c->sigsuspended = 0;  // rt_sigreturn restores the mask from before it
  if (s->flags & SS_AUTODISARM_) {  // compare signal_delivered() -> sas_ss_reset()
    memset(s, 0, sizeof(*s));
    s->flags = SS_DISABLE;
  }
  return 0;
}

// A refused access the mapping allows, to a page of a file mapping past the end of the file:
// SIGBUS (BUS_ADRERR), not SIGSEGV. compare do_user_addr_fault() -> do_sigbus() for
// VM_FAULT_SIGBUS from filemap_fault().
void fault_classify(struct cpu *c) {
  if (c->status != SIGSEGV || !c->mm)
    return;
  struct vma *v = vma_find(&c->mm->vmas, c->fault_addr);
  if (!v || c->fault_addr < v->start || !v->ino ||
      (v->ino->kind != IK_HOST && v->ino->kind != IK_TMPFS))
    return;
  uint32_t need = c->fault_access == MM_WRITE ? VM_WRITE
                  : c->fault_access == MM_FETCH ? VM_EXEC : VM_READ;
  uint64_t off = (v->pgoff << PAGE_SHIFT) + (c->fault_addr - v->start);
  if ((v->flags & need) && off >= PAGE_ROUND_UP(v->ino->size))
    c->status = SIGBUS;
}

// The running thread faulted (c->status: the signal; c->fault_addr, c->fault_access): the
// signal goes to this thread with the siginfo Linux gives — SIGSEGV's si_code SEGV_MAPERR
// (no mapping) or SEGV_ACCERR (one that does not allow the access) and the address (known
// here to the page), SIGILL's ILL_ILLOPN and SIGFPE's FPE_INTDIV at the instruction,
// SIGTRAP's SI_KERNEL. Blocked or ignored, it is unblocked and its action reset to SIG_DFL
// first, so the default action ends the process. 1: its handler runs next; 0: it dies.
// compare force_sig_fault() -> force_sig_info_to_task(), do_user_addr_fault().
int signal_force_fault(struct cpu *c, struct proc *p) {
  int sig = c->status, code;
  struct k_sigaction *act = &p->sig.action[sig - 1];
  if ((*c->blocked & SIG_BIT(sig)) || act->handler == 1) {
    act->handler = 0;
    *c->blocked &= ~SIG_BIT(sig);
  }
  if (act->handler == 0)
    return 0;
  uint64_t addr = c->fault_addr;
  c->fault_trapno = 0;
  c->fault_err = 0;
  switch (sig) {
  case SIGSEGV:
  case SIGBUS: {  // a #PF; its error code: user, write, fetch, a present page
    struct vma *v = c->mm ? vma_find(&c->mm->vmas, addr) : NULL;
    int writable;
    pfn_t table;
    pte_t *pte = c->mm ? pt_lookup(c->mm, addr, &table, &writable) : NULL;
    int present = (pte && (*pte & PTE_P)) || (c->mm && pt_lookup_huge(c->mm, addr, &table));
    code = sig == SIGBUS ? 2 : (v && addr >= v->start) ? 2 : 1;  // BUS_ADRERR, SEGV_ACCERR,
    c->fault_trapno = 14;                                          // SEGV_MAPERR
    c->fault_err = 4 | (c->fault_access == MM_WRITE ? 2 : 0) |
                   (c->fault_access == MM_FETCH ? 16 : 0) | (present ? 1 : 0);
    break;
  }
  case SIGILL: code = 2; c->fault_trapno = 6; break;    // ILL_ILLOPN, #UD
  case SIGFPE: code = 1; c->fault_trapno = 0; break;    // FPE_INTDIV, #DE
  case SIGTRAP: code = 0x80; c->fault_trapno = 3; addr = 0; break;  // SI_KERNEL, #BP
  default: code = 0x80; break;
  }
  c->sigpending |= SIG_BIT(sig);
  p->siginfo[sig - 1].code = code;
  p->siginfo[sig - 1].pid = 0;
  p->siginfo[sig - 1].status = 0;
  p->siginfo[sig - 1].fault = 1;
  p->siginfo[sig - 1].addr = addr;
  return 1;
}

// The signals c may take now: its own first (tgkill), then the process's. compare
// dequeue_signal()'s order.
static uint64_t thread_signal_next(const struct cpu *c, const struct proc *p) {
  uint64_t own = c->sigpending & ~*c->blocked;
  return own ? own : p->sigpending & ~*c->blocked;
}

// Take the pending signals that are not blocked, lowest first: run the handler (its frame
// built), or the default action. 1 if the thread died (c->stop CPU_KILLED). compare
// arch_do_signal_or_restart() -> get_signal() -> handle_signal().
int signal_deliver(struct cpu *c, struct proc *p) {
  uint64_t ready;
  while ((ready = thread_signal_next(c, p))) {
    int sig = __builtin_ctzll(ready) + 1;
    if (c->sigpending & SIG_BIT(sig))
      c->sigpending &= ~SIG_BIT(sig);
    else
      p->sigpending &= ~SIG_BIT(sig);
    struct k_sigaction act = p->sig.action[sig - 1];
    if (act.handler == 1)
      continue;
    if (act.handler == 0) {
      if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT)
        continue;
      if (sig_stop_kind(sig)) {  // compare do_signal_stop(): the group stops
        if (sig != SIGSTOP && pgrp_orphaned(c->k, p->pgid))
          continue;  // an orphaned group does not stop for the terminal's signals
        p->stop_sig = p->stop_report = sig;
        p->cont_report = 0;
        signal_notify_parent_stop(c->k, p, CLD_STOPPED, sig);
        c->stop = CPU_STOPPED;
        c->status = 1;  // a new stop: the trio layer wakes the parent
        return 1;
      }
      c->stop = CPU_KILLED;
      c->status = sig;
      return 1;
    }
    if (setup_rt_frame(c, p, sig, &act)) {  // compare force_sigsegv()
      c->stop = CPU_KILLED;
      c->status = SIGSEGV;
      return 1;
    }
    return 0;  // one frame at a time: the next signal nests on top of it at the next check
  }
  if (c->sigsuspended) {  // no handler ran: compare restore_saved_sigmask()
    *c->blocked = c->saved_mask;
    c->sigsuspended = 0;
  }
  return 0;
}

// pause(2) and rt_sigsuspend(2) (the mask replaced until a signal comes): the thread waits
// (CPU_WAIT: a child's exit runs the call again, and it waits again) until a signal is to
// be taken, then returns -EINTR through signal_interrupt_call or at once when one is
// pending already; the handler's frame saves the mask from before rt_sigsuspend.
// compare sys_pause(), sigsuspend() (-ERESTARTNOHAND: a handler runs, so EINTR).
int64_t sys_pause(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)a;
  (void)p;
  if (thread_signal_pending(c))
    return -EINTR;
  c->stop = CPU_WAIT;
  return 0;
}

int64_t sys_rt_sigsuspend(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t set;
  if (!c->sigsuspended) {  // the first run, not one after a wait
    if (a[1] != SIGSET_SIZE)
      return -EINVAL;
    int err = copy_from_user(c, &set, a[0], sizeof(set));
    if (err)
      return err;
    c->saved_mask = *c->blocked;
    c->sigsuspended = 1;
    *c->blocked = set & ~UNBLOCKABLE;
  }
  return sys_pause(c, p, a);
}

// A call parked in a wait (read, wait4, nanosleep, poll) meets a signal to take: it returns
// -EINTR, or with SA_RESTART runs again after the handler when it is a call Linux restarts.
// compare handle_signal()'s -ERESTARTSYS cases.
void signal_interrupt_call(struct cpu *c, struct proc *p) {
  int sig = __builtin_ctzll(thread_signal_next(c, p)) + 1;
  const struct k_sigaction *act = &p->sig.action[sig - 1];
  int restartable = c->pnr == 0 || c->pnr == 1 || c->pnr == 19 || c->pnr == 20 ||
                    c->pnr == 17 || c->pnr == 61 ||  // read write readv writev pread64 wait4
                    (c->pnr == 202 && !c->pargs[3]);  // futex wait without a timeout
  if (act->handler == 0)  // no handler runs (a stop): every parked call goes on after it,
    restartable = 1;      // as Linux restarts -ERESTART* when no handler is set up
  uint64_t rax = (uint64_t)-EINTR, rip;
  futex_unqueue(c->k, &c->fq);  // compare futex_wait(): -ERESTARTSYS, off the queue
  c->pending = 0;
  c->slept = c->timed_out = 0;
  if ((act->handler == 0 || (act->flags & SA_RESTART_)) && act->handler != 1 && restartable) {
    rax = c->pnr;  // the syscall instruction runs again after the handler
    uc_reg_read(c->uc, UC_X86_REG_RIP, &rip);
    rip -= 2;
    uc_reg_write(c->uc, UC_X86_REG_RIP, &rip);
  }
  uc_reg_write(c->uc, UC_X86_REG_RAX, &rax);
}

// rt_sigreturn(2): back from a handler. The registers and the blocked mask come from the
// ucontext on the user stack (the handler may have changed them); the rest of the CPU from
// what the kernel kept at delivery. The registers are loaded when the syscall instruction is
// over (c->reload). compare SYSCALL_DEFINE0(rt_sigreturn) -> restore_sigcontext().
int64_t sys_rt_sigreturn(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct ucontext_ uc;
  uint64_t sp;
  (void)a;
  (void)p;
  uc_reg_read(c->uc, UC_X86_REG_RSP, &sp);
  if (copy_from_user(c, &uc, sp, sizeof(uc))) {
    c->stop = CPU_KILLED;  // compare signal_fault(): SIGSEGV
    c->status = SIGSEGV;
    return 0;
  }
  if (c->sigdepth > 0 && --c->sigdepth < CPU_SIGDEPTH)
    c->sigret_ctx = c->sigctx[c->sigdepth];
  else
    c->sigret_ctx = NULL;
  uint64_t eflags = 0;
  uc_reg_read(c->uc, UC_X86_REG_EFLAGS, &eflags);
  uc.regs[R_EFLAGS] = (eflags & ~(uint64_t)FIX_EFLAGS) | (uc.regs[R_EFLAGS] & FIX_EFLAGS);
  struct stack_ ss = {.ss_sp = uc.ss_sp, .ss_flags = uc.ss_flags, .ss_size = uc.ss_size};
  do_sigaltstack(c->sas, &ss, NULL, sp);  // compare restore_altstack(): errors ignored
  memcpy(c->reload_regs, uc.regs, sizeof(c->reload_regs));
  c->reload_fp = uc.fpstate && !copy_from_user(c, &c->reload_fx, uc.fpstate,
                                               sizeof(c->reload_fx));
  c->reload = 1;
  c->resched = 1;  // syscall_dispatch stops the CPU: the registers load before it goes on
  *c->blocked = uc.sigmask & ~UNBLOCKABLE;
  return (int64_t)uc.regs[R_RAX];
}

// Load what rt_sigreturn asked for, now that the syscall instruction is over.
void signal_reload(struct cpu *c) {
  if (!c->reload)
    return;
  c->reload = 0;
  if (c->sigret_ctx)
    uc_context_restore(c->uc, c->sigret_ctx);
  regs_io(c, c->reload_regs, 1);
  if (c->reload_fp)  // the FPU state from the frame, as the handler may have changed it
    fxregs_io(c, (struct fxregs_ *)c->reload_fx, 1);
}

// kill(2): to a process, the caller's group (0), a group (< -1) or everyone but init and
// the caller (-1), by the kernel's signal_kill. The sender's own signal is taken on the way
// back to user mode (its default action ends it here), or by another of its threads when
// this one blocks it; the others that need the trio layer (wake one to take a queued
// signal, or end it) are in the kernel's outbox, and the CPU stops with CPU_SIGNAL for it to
// drain them. compare kill_something_info(), complete_signal().
static int64_t do_kill(struct cpu *c, struct proc *p, int pid, int sig) {
  int self;
  int r = signal_kill(c->k, p, pid, sig, &self);
  if (self == SIGQ_QUEUED && (*c->blocked & SIG_BIT(sig)) && !cpu_thread_alone(c) &&
      signal_wake_later(c->k, p->pid, 0))
    return -ENOMEM;  // compare: the signal stays pending, no thread was woken for it
  if (self == SIGQ_TERM) {
    c->stop = CPU_KILLED;  // the outbox is drained on this stop too
    c->status = sig;
  } else if (c->k->sigout_len) {
    c->stop = CPU_SIGNAL;
  }
  return r;
}

int64_t sys_kill(struct cpu *c, struct proc *p, const uint64_t *a) {
  return do_kill(c, p, (int)a[0], (int)a[1]);
}

// The thread tid and its process (of process tgid; 0: any): a first thread by its pid
// (NULL when that process never ran code), another by its tid. NULL *pp: none.
struct cpu *thread_find(struct kernel *k, int tgid, int tid, struct proc **pp) {
  struct proc *q = proc_get(k, tid);
  struct cpu *t = NULL;
  *pp = NULL;
  if (q) {
    t = q->thread;
  } else if (tid < k->pid_max && k->tids[tid] && k->tids[tid]->p->state == PS_RUNNING) {
    t = k->tids[tid];
    q = t->p;
  }
  if (!q || (tgid && q->pid != tgid) || (t && t->dead))
    return NULL;
  *pp = q;
  return t;
}

// tgkill(2), tkill(2): a signal for one thread. A thread of this process gets it on its own
// pending set (SI_TKILL); a default action that terminates ends the whole process, as
// Linux. A thread of another process: sent to that process (the trio layer wakes it).
// compare do_send_specific().
static int64_t do_tkill(struct cpu *c, struct proc *p, int tgid, int tid, int sig) {
  struct proc *q;
  struct cpu *t = thread_find(c->k, tgid, tid, &q);
  if (!q)
    return -ESRCH;
  if (sig < 0 || sig > SIG_NSIG)
    return -EINVAL;
  if (q != p || !t)
    return do_kill(c, p, q->pid, sig);
  if (!sig)
    return 0;
  const struct k_sigaction *act = &p->sig.action[sig - 1];
  int blocked = (*t->blocked & SIG_BIT(sig)) != 0;
  if (act->handler == 1 || (act->handler == 0 && !blocked && sig != SIGKILL &&
                            (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH ||
                             sig == SIGCONT)))
    return 0;  // ignored (compare sig_ignored())
  if (sig == SIGKILL || (act->handler == 0 && !blocked)) {  // the process dies
    if (t == c) {
      c->stop = CPU_KILLED;
      c->status = sig;
      return 0;
    }
    if (signal_wake_later(c->k, p->pid, sig))
      return -ENOMEM;
    c->stop = CPU_SIGNAL;
    return 0;
  }
  if (t != c && signal_wake_later(c->k, p->pid, 0))  // wake it if it waits
    return -ENOMEM;
  t->sigpending |= SIG_BIT(sig);
  p->siginfo[sig - 1].code = -6;  // SI_TKILL
  p->siginfo[sig - 1].pid = p->pid;
  p->siginfo[sig - 1].status = 0;
  p->siginfo[sig - 1].fault = 0;
  if (t != c)
    c->stop = CPU_SIGNAL;
  return 0;
}

int64_t sys_tgkill(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int)a[0] <= 0 || (int)a[1] <= 0)
    return -EINVAL;
  return do_tkill(c, p, (int)a[0], (int)a[1], (int)a[2]);
}

int64_t sys_tkill(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int)a[0] <= 0)
    return -EINVAL;
  return do_tkill(c, p, 0, (int)a[0], (int)a[1]);
}

// Whether tid has a signal to take now (a thread not on the CPU yet: its process's, not
// blocked): the trio layer wakes it from a wait.
int sfd_signal_pending(struct kernel *k, int tid) {
  struct proc *q;
  struct cpu *t = k->panicked ? NULL : thread_find(k, 0, tid, &q);
  if (k->panicked || !q)
    return 0;
  return t ? thread_signal_pending(t) : signal_pending(q);
}
