// sys_signal.c — signals for code on the CPU: dispositions and the blocked mask (compare
// Linux kernel/signal.c do_sigaction(), sigprocmask()), kept per process (struct sighand in
// struct proc: fork copies them, exec resets caught signals); delivery on the real x86-64
// signal frame and rt_sigreturn (arch/x86/kernel/signal*.c), the alternate signal stack
// (sigaltstack, SA_ONSTACK); kill and tgkill. Sending is kernel/signal.c's.
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
  uint64_t set, old = p->sig.blocked;
  if (a[3] != SIGSET_SIZE)
    return -EINVAL;
  if (a[1]) {
    int err = copy_from_user(c, &set, a[1], sizeof(set));
    if (err)
      return err;
    set &= ~UNBLOCKABLE;
    switch (a[0]) {
    case SIG_BLOCK: p->sig.blocked |= set; break;
    case SIG_UNBLOCK: p->sig.blocked &= ~set; break;
    case SIG_SETMASK: p->sig.blocked = set; break;
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
// the siginfo. The FPU state is kept by the kernel (fpstate NULL in the frame).
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
  int32_t pid, uid, status, pad2;
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

// Whether sp is within p's alternate stack (it grows down: the top is inside).
// compare __on_sig_stack().
static int sas_contains(const struct proc *p, uint64_t sp) {
  return sp > p->sas.sp && sp - p->sas.sp <= p->sas.size;
}

// compare on_sig_stack(): with SS_AUTODISARM a handler is never "on" it (it can nest anew).
static int on_sig_stack(const struct proc *p, uint64_t sp) {
  return !(p->sas.flags & SS_AUTODISARM_) && sas_contains(p, sp);
}

// compare sas_ss_flags(): SS_DISABLE without one, SS_ONSTACK while sp is on it, else 0.
static int sas_ss_flags(const struct proc *p, uint64_t sp) {
  if (!p->sas.size)
    return SS_DISABLE;
  return on_sig_stack(p, sp) ? SS_ONSTACK : 0;
}

// sigaltstack(2) at stack pointer sp: the old stack out (oss), the new one in (ss): -EPERM
// while on it, -EINVAL for an unknown mode, -ENOMEM below MINSIGSTKSZ; SS_DISABLE forgets
// it. compare do_sigaltstack().
static int do_sigaltstack(struct proc *p, const struct stack_ *ss, struct stack_ *oss,
                          uint64_t sp) {
  if (oss) {
    memset(oss, 0, sizeof(*oss));
    oss->ss_sp = p->sas.sp;
    oss->ss_size = p->sas.size;
    oss->ss_flags = (int32_t)((uint32_t)sas_ss_flags(p, sp) | (p->sas.flags & SS_FLAG_BITS_));
  }
  if (!ss)
    return 0;
  uint64_t ss_sp = ss->ss_sp, ss_size = ss->ss_size;
  uint32_t ss_flags = (uint32_t)ss->ss_flags, mode = ss_flags & ~SS_FLAG_BITS_;
  if (on_sig_stack(p, sp))
    return -EPERM;
  if (mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0)
    return -EINVAL;
  if (p->sas.sp == ss_sp && p->sas.size == ss_size && p->sas.flags == ss_flags)
    return 0;
  if (mode == SS_DISABLE) {
    ss_size = 0;
    ss_sp = 0;
  } else if (ss_size < MINSIGSTKSZ_) {
    return -ENOMEM;  // the frame has no xsave area here: no dynamic-size check beyond this
  }
  p->sas.sp = ss_sp;
  p->sas.size = ss_size;
  p->sas.flags = ss_flags;
  return 0;
}

// sigaltstack(ss, old_ss) at the caller's stack pointer. compare SYSCALL_DEFINE2(sigaltstack).
int64_t sys_sigaltstack(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct stack_ ss, old;
  uint64_t sp;
  if (a[0] && copy_from_user(c, &ss, a[0], sizeof(ss)))
    return -EFAULT;
  uc_reg_read(c->uc, UC_X86_REG_RSP, &sp);
  int err = do_sigaltstack(p, a[0] ? &ss : NULL, a[1] ? &old : NULL, sp);
  if (!err && a[1] && copy_to_user(c, a[1], &old, sizeof(old)))
    err = -EFAULT;
  return err;
}

// Build the frame for sig below the user stack, or at the top of the alternate stack for an
// SA_ONSTACK handler not on it yet, and point the registers at the handler. -EFAULT if the
// stack cannot take it, or the frame would leave the alternate stack it is on.
// compare setup_rt_frame() / x64_setup_rt_frame(), get_sigframe().
static int setup_rt_frame(struct cpu *c, struct proc *p, int sig, const struct k_sigaction *act) {
  struct rt_sigframe_ f;
  memset(&f, 0, sizeof(f));
  regs_io(c, f.uc.regs, 0);
  int nested_alt = on_sig_stack(p, f.uc.regs[R_RSP]), entering_alt = 0;
  uint64_t sp = f.uc.regs[R_RSP] - 128;  // the red zone
  if ((act->flags & SA_ONSTACK_) && sas_ss_flags(p, sp) == 0) {
    sp = p->sas.sp + p->sas.size;
    entering_alt = 1;
  }
  uint64_t frame = ((sp - sizeof(f)) & ~15ULL) - 8;
  if ((nested_alt || entering_alt) && !sas_contains(p, frame))
    return -EFAULT;  // it would overflow the alternate stack: SIGSEGV
  if (!(act->flags & SA_RESTORER_))
    return -EFAULT;  // x86-64 has no vDSO trampoline here: glibc always gives a restorer
  f.pretcode = act->restorer;
  f.uc.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
  f.uc.ss_sp = p->sas.sp;  // compare unsafe_save_altstack(): as sigaltstack set it
  f.uc.ss_flags = (int32_t)p->sas.flags;
  f.uc.ss_size = p->sas.size;
  f.uc.cs = 0x33;
  f.uc.ss = 0x2b;
  f.uc.oldmask = f.uc.sigmask = c->sigsuspended ? c->saved_mask : p->sig.blocked;
  f.info.signo = sig;
  f.info.code = p->siginfo[sig - 1].code;
  f.info.pid = p->siginfo[sig - 1].pid;
  f.info.status = p->siginfo[sig - 1].status;
  if (c->sigdepth < CPU_SIGDEPTH) {  // the FPU and everything else, for rt_sigreturn
    if (!c->sigctx[c->sigdepth] && uc_context_alloc(c->uc, &c->sigctx[c->sigdepth]))
      return -ENOMEM;
    uc_context_save(c->uc, c->sigctx[c->sigdepth]);
  }
  c->sigdepth++;
  int err = copy_to_user(c, frame, &f, sizeof(f));
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
  p->sig.blocked |= act->mask | ((act->flags & SA_NODEFER_) ? 0 : SIG_BIT(sig));
  p->sig.blocked &= ~UNBLOCKABLE;
  if (act->flags & SA_RESETHAND_)
    p->sig.action[sig - 1].handler = 0;
  c->sigsuspended = 0;  // rt_sigreturn restores the mask from before it
  if (p->sas.flags & SS_AUTODISARM_) {  // compare signal_delivered() -> sas_ss_reset()
    memset(&p->sas, 0, sizeof(p->sas));
    p->sas.flags = SS_DISABLE;
  }
  return 0;
}

// Take the pending signals that are not blocked, lowest first: run the handler (its frame
// built), or the default action. 1 if the thread died (c->stop CPU_KILLED). compare
// arch_do_signal_or_restart() -> get_signal() -> handle_signal().
int signal_deliver(struct cpu *c, struct proc *p) {
  while (p->sigpending & ~p->sig.blocked) {
    int sig = __builtin_ctzll(p->sigpending & ~p->sig.blocked) + 1;
    p->sigpending &= ~SIG_BIT(sig);
    struct k_sigaction act = p->sig.action[sig - 1];
    if (act.handler == 1)
      continue;
    if (act.handler == 0) {
      if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT)
        continue;
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
    p->sig.blocked = c->saved_mask;
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
  if (signal_pending(p))
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
    c->saved_mask = p->sig.blocked;
    c->sigsuspended = 1;
    p->sig.blocked = set & ~UNBLOCKABLE;
  }
  return sys_pause(c, p, a);
}

// A call parked in a wait (read, wait4, nanosleep, poll) meets a signal to take: it returns
// -EINTR, or with SA_RESTART runs again after the handler when it is a call Linux restarts.
// compare handle_signal()'s -ERESTARTSYS cases.
void signal_interrupt_call(struct cpu *c, struct proc *p) {
  int sig = __builtin_ctzll(p->sigpending & ~p->sig.blocked) + 1;
  const struct k_sigaction *act = &p->sig.action[sig - 1];
  int restartable = c->pnr == 0 || c->pnr == 1 || c->pnr == 19 || c->pnr == 20 ||
                    c->pnr == 17 || c->pnr == 61;  // read write readv writev pread64 wait4
  uint64_t rax = (uint64_t)-EINTR, rip;
  c->pending = 0;
  c->slept = c->timed_out = 0;
  if (act->handler > 1 && (act->flags & SA_RESTART_) && restartable) {
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
  do_sigaltstack(p, &ss, NULL, sp);  // compare restore_altstack(): its errors are ignored
  memcpy(c->reload_regs, uc.regs, sizeof(c->reload_regs));
  c->reload = 1;
  c->resched = 1;  // syscall_dispatch stops the CPU: the registers load before it goes on
  p->sig.blocked = uc.sigmask & ~UNBLOCKABLE;
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
}

// kill(2) and tgkill(2) (one thread a process): to a process, the caller's group (0), a
// group (< -1) or everyone but init and the caller (-1), by the kernel's signal_kill. The
// sender's own signal is taken on the way back to user mode (its default action ends it
// here); the others that need the trio layer (wake one to take a queued signal, or end it)
// are in the kernel's outbox, and the CPU stops with CPU_SIGNAL for it to drain them.
// compare kill_something_info().
static int64_t do_kill(struct cpu *c, struct proc *p, int pid, int sig) {
  int self;
  int r = signal_kill(c->k, p, pid, sig, &self);
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

int64_t sys_tgkill(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int)a[0] <= 0 || (int)a[1] <= 0)
    return -EINVAL;
  if ((int)a[0] != (int)a[1])
    return -ESRCH;  // one thread a process: tid is the pid
  return do_kill(c, p, (int)a[1], (int)a[2]);
}

int64_t sys_tkill(struct cpu *c, struct proc *p, const uint64_t *a) {
  if ((int)a[0] <= 0)
    return -EINVAL;
  return do_kill(c, p, (int)a[0], (int)a[1]);
}
