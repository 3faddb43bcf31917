// sys_signal.c — signal dispositions and the blocked mask (compare Linux kernel/signal.c
// do_sigaction(), sigprocmask()). They are recorded per process (struct sighand in struct
// proc: fork copies them, exec resets caught signals). No signal is delivered to code on the
// CPU yet: a handler is recorded, never run; what the kernel itself raises (SIGPIPE on a
// write to a pipe without readers) kills only under SIG_DFL and unblocked, as Linux does.
#include <signal.h>
#include <string.h>

#include "arch/x86/syscalls.h"

#define SIGSET_SIZE 8
#define SIG_BIT(n) (1ULL << ((n) - 1))
#define UNBLOCKABLE (SIG_BIT(SIGKILL) | SIG_BIT(SIGSTOP))

// Whether sig, raised by the kernel now, kills p (its default action is to terminate).
int sig_kills(const struct proc *p, int sig) {
  return p->sig.action[sig - 1].handler == 0 /* SIG_DFL */ && !(p->sig.blocked & SIG_BIT(sig));
}

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
