// signal.c — signals sent to processes: queued for a handler, ignored, or a default action
// that terminates (which the caller carries out: only the trio layer ends a task); the stop
// signals stop the process when a thread takes them (arch/x86), SIGCONT continues it at once. The
// pending set and what each pending signal says (siginfo) live in struct proc; a thread on
// the CPU takes them at its next return to user mode (arch/x86 sys_signal.c). compare Linux
// kernel/signal.c: send_signal_locked(), sig_ignored(), do_notify_parent().
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel.h"

#define SIG_BIT(n) (1ULL << ((n) - 1))

// Signals whose default action is to do nothing (compare sig_kernel_ignore()).
static int sig_default_ignored(int sig) {
  return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

#define SIG_STOP_MASK (SIG_BIT(SIGSTOP) | SIG_BIT(SIGTSTP) | SIG_BIT(SIGTTIN) | SIG_BIT(SIGTTOU))

// Whether sig's default action is to stop (compare sig_kernel_stop()).
int sig_stop_kind(int sig) { return sig > 0 && sig <= SIG_NSIG && (SIG_STOP_MASK & SIG_BIT(sig)); }

// Whether group pgid is orphaned: no member has a parent in another group of the same
// session (a job control shell would not be there to continue it): SIGTSTP, SIGTTIN and
// SIGTTOU do not stop it. compare will_become_orphaned_pgrp().
int pgrp_orphaned(struct kernel *k, int pgid) {
  for (int i = 1; i < k->pid_max; i++) {
    struct proc *t = k->procs[i], *parent;
    if (!t || t->pgid != pgid || t->state == PS_ZOMBIE)
      continue;
    parent = proc_get_any(k, t->ppid);
    if (parent && parent->pgid != pgid && parent->sid == t->sid)
      return 0;
  }
  return 1;
}

// p stopped (CLD_STOPPED, status its stop signal) or continued (CLD_CONTINUED, SIGCONT): its
// parent gets SIGCHLD unless it ignores it or asked SA_NOCLDSTOP. compare
// do_notify_parent_cldstop().
void signal_notify_parent_stop(struct kernel *k, struct proc *p, int why, int status) {
  struct proc *parent = proc_get_any(k, p->ppid);
  if (!parent || parent->state == PS_ZOMBIE)
    return;
  const struct k_sigaction *act = &parent->sig.action[SIGCHLD - 1];
  if (act->handler != 1 && !(act->flags & SA_NOCLDSTOP))
    signal_send(k, parent, SIGCHLD, why, p->pid, status);
}

// Send sig to p with its siginfo (code, sender pid, status). SIGQ_QUEUED: pending for a
// handler, or blocked until unblocked, or a stop signal for the thread that takes it;
// SIGQ_IGNORED: dropped; SIGQ_TERM: its default action ends p now; SIGQ_CONTINUED: SIGCONT
// continued a stopped p (its threads are to be woken) and nothing is queued. A stop signal
// drops a pending SIGCONT and SIGCONT the pending stop signals, whatever their actions.
// compare send_signal_locked() after prepare_signal().
int signal_send(struct kernel *k, struct proc *p, int sig, int code, int from, int status) {
  const struct k_sigaction *act = &p->sig.action[sig - 1];
  int blocked = (p->sig.blocked & SIG_BIT(sig)) != 0, continued = 0;
  if (p->pid == 1 && act->handler == 0)
    return SIGQ_IGNORED;  // init gets only the signals it handles (SIGNAL_UNKILLABLE)
  if (sig == SIGKILL)
    return SIGQ_TERM;
  if (sig_stop_kind(sig)) {
    p->sigpending &= ~SIG_BIT(SIGCONT);
  } else if (sig == SIGCONT) {
    p->sigpending &= ~SIG_STOP_MASK;
    if (p->stop_sig && p->state == PS_RUNNING) {
      p->stop_sig = 0;
      p->stop_report = 0;
      p->cont_report = 1;
      continued = 1;
      signal_notify_parent_stop(k, p, CLD_CONTINUED, SIGCONT);
    }
  }
  if (act->handler == 1 || (act->handler == 0 && sig_default_ignored(sig) && !blocked))
    return continued ? SIGQ_CONTINUED : SIGQ_IGNORED;  // SIG_IGN, or a default that ignores
  if (act->handler == 0 && !blocked && !sig_stop_kind(sig))
    return SIGQ_TERM;
  p->sigpending |= SIG_BIT(sig);
  p->siginfo[sig - 1].code = code;
  p->siginfo[sig - 1].pid = from;
  p->siginfo[sig - 1].status = status;
  p->siginfo[sig - 1].fault = 0;
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
  return sig ? signal_send(k, p, sig, SI_USER, sender, 0) : SIGQ_IGNORED;
}

// Whether sender may signal t: privilege (effective uid 0 stands for CAP_KILL), a real or
// effective uid matching t's real or saved one, or SIGCONT within a session.
// compare check_kill_permission() -> kill_ok_by_cred().
static int kill_permitted(const struct proc *s, const struct proc *t, int sig) {
  const struct cred *a = &s->cred, *b = &t->cred;
  if (a->euid == 0 || a->euid == b->suid || a->euid == b->uid || a->uid == b->suid ||
      a->uid == b->uid)
    return 1;
  return sig == SIGCONT && s->sid == t->sid;
}

// Note what the trio layer must do for t: wake it (sig 0) or end it (sig). -ENOMEM: the
// signal stays pending, the wake-up is lost. compare signal_wake_up() (here the waking is
// the trio layer's: it drains the outbox).
int signal_wake_later(struct kernel *k, int pid, int sig) {
  if (k->sigout_len == k->sigout_cap) {
    uint32_t cap = k->sigout_cap ? 2 * k->sigout_cap : 16;
    struct sig_out *n = realloc(k->sigout, cap * sizeof(*n));
    if (!n)
      return -ENOMEM;
    k->sigout = n;
    k->sigout_cap = cap;
  }
  k->sigout[k->sigout_len].pid = pid;
  k->sigout[k->sigout_len++].sig = sig;
  return 0;
}

// kill(2) of one process t by s: the signal's validity, permission, then a zombie takes it
// and nothing happens; else signal_send, and a process other than s that must be woken or
// ended goes to the outbox. s's own outcome (SIGQ_*) goes to *self. compare
// group_send_sig_info().
static int kill_one(struct kernel *k, struct proc *s, struct proc *t, int sig, int *self) {
  if (sig < 0 || sig > SIG_NSIG)
    return -EINVAL;
  if (!kill_permitted(s, t, sig))
    return -EPERM;
  if (!sig || t->state == PS_ZOMBIE)
    return 0;
  int r = signal_send(k, t, sig, SI_USER, s->pid, 0);
  if (t == s)
    *self = r;
  else if (r != SIGQ_IGNORED)
    return signal_wake_later(k, t->pid, r == SIGQ_TERM ? sig : 0);
  return 0;
}

// kill(2) from sender: pid > 0 that process; 0 the sender's group; -1 every process but init
// and the sender (errors other than EPERM count); < -1 group -pid (success if any took it).
// -ESRCH when nobody is there. *self: what the sender's own copy does (SIGQ_IGNORED if it
// got none). compare kill_something_info(), __kill_pgrp_info().
int signal_kill(struct kernel *k, struct proc *sender, int pid, int sig, int *self) {
  *self = SIGQ_IGNORED;
  if (pid > 0) {
    struct proc *t = proc_get_any(k, pid);
    return t ? kill_one(k, sender, t, sig, self) : -ESRCH;
  }
  if (pid == INT_MIN)
    return -ESRCH;
  int pgid = pid ? -pid : sender->pgid, count = 0, success = 0, ret = pid == -1 ? 0 : -ESRCH;
  for (int i = 1; i < k->pid_max; i++) {
    struct proc *t = k->procs[i];
    if (!t || (pid == -1 ? (i == 1 || t == sender) : t->pgid != pgid))
      continue;
    int err = kill_one(k, sender, t, sig, self);
    count++;
    if (pid == -1) {
      if (err != -EPERM)
        ret = err;
    } else {
      success |= !err;
      ret = err;
    }
  }
  if (pid == -1)
    return count ? ret : -ESRCH;
  return success ? 0 : ret;
}

// The processes kill(2) of running code left for the trio layer (no Linux counterpart: the
// scheduler's side of signal_wake_up()), oldest first: up to n
// (pid, signal: 0 wake it to take a queued signal, else its default action ends it) pairs
// are moved out; returns how many.
int sfd_signal_outbox(struct kernel *k, int *pids, int *sigs, int n) {
  if (k->panicked)
    return -KPANIC;
  int m = n < (int)k->sigout_len ? n : (int)k->sigout_len;
  for (int i = 0; i < m; i++) {
    pids[i] = k->sigout[i].pid;
    sigs[i] = k->sigout[i].sig;
  }
  if (m)  // an outbox never used has no array (memmove of NULL is undefined even for 0 bytes)
    memmove(k->sigout, k->sigout + m, (k->sigout_len - (uint32_t)m) * sizeof(*k->sigout));
  k->sigout_len -= (uint32_t)m;
  return m;
}
