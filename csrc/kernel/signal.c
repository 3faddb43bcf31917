// signal.c — signals sent to processes: queued for a handler, ignored, or a default action
// that terminates (which the caller carries out: only the trio layer ends a task). The
// pending set and what each pending signal says (siginfo) live in struct proc; a thread on
// the CPU takes them at its next return to user mode (arch/x86 sys_signal.c). compare Linux
// kernel/signal.c: send_signal_locked(), sig_ignored(), do_notify_parent().
#include <signal.h>

#include "kernel/kernel.h"

#define SIG_BIT(n) (1ULL << ((n) - 1))

// Signals whose default action is to do nothing (compare sig_kernel_ignore()).
static int sig_default_ignored(int sig) {
  return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

// Send sig to p with its siginfo (code, sender pid, status). SIGQ_QUEUED: pending for a
// handler, or blocked until unblocked; SIGQ_IGNORED: dropped; SIGQ_TERM: its default action
// ends p now. compare send_signal_locked() after prepare_signal()'s ignore check.
int signal_send(struct proc *p, int sig, int code, int from, int status) {
  const struct k_sigaction *act = &p->sig.action[sig - 1];
  int blocked = (p->sig.blocked & SIG_BIT(sig)) != 0;
  if (sig == SIGKILL)
    return SIGQ_TERM;
  if (act->handler == 1 || (act->handler == 0 && sig_default_ignored(sig) && !blocked))
    return SIGQ_IGNORED;  // SIG_IGN, or a default that ignores (blocked: kept till unblocked)
  if (act->handler == 0 && !blocked)
    return SIGQ_TERM;
  p->sigpending |= SIG_BIT(sig);
  p->siginfo[sig - 1].code = code;
  p->siginfo[sig - 1].pid = from;
  p->siginfo[sig - 1].status = status;
  return SIGQ_QUEUED;
}

// Whether p has a signal to take now (pending and not blocked).
int signal_pending(const struct proc *p) { return (p->sigpending & ~p->sig.blocked) != 0; }

// sfd_signal_send: what sending sig to pid does (SIGQ_*), the siginfo of kill(2) from
// sender. sig 0 checks that pid exists.
int sfd_signal_send(struct kernel *k, int sender, int pid, int sig) {
  if (k->panicked)
    return -KPANIC;
  struct proc *p = proc_get_any(k, pid);
  if (!p || p->state == PS_ZOMBIE)
    return -ESRCH;
  if (sig < 0 || sig > SIG_NSIG)
    return -EINVAL;
  return sig ? signal_send(p, sig, SI_USER, sender, 0) : SIGQ_IGNORED;
}
