// kernel/kernel.h — what the process layer exports: processes and credentials, the fd
// model's embryos and handles, check(), and the system-call entry guards. Calls go down to
// fs/ and mm/.
#ifndef SPAWNFD_KERNEL_H
#define SPAWNFD_KERNEL_H

#include "fs/fs.h"

// ---- proc.c: processes ----
struct proc *proc_get(struct kernel *k, int pid);
struct proc *proc_get_any(struct kernel *k, int pid);
int proc_new(struct kernel *k, int ppid, struct mm *mm, struct proc **out);
void proc_free(struct kernel *k, struct proc *p);
void proc_release_vfork(struct kernel *k, struct proc *p);
int proc_exit(struct kernel *k, struct proc *p, int wstatus);
int proc_chdir(struct kernel *k, struct proc *p, const char *path);
int cred_change(struct cred *c, const uint32_t *ids);
// wait4(2), waitid(2): what a wait reports; which is P_ALL, P_PID or P_PGID.
struct wait_info {
  int pid, code, status, uid;  // siginfo: si_pid, si_code (CLD_*), si_status, si_uid
  int wstatus;                 // wait4's status word
};
void wait_info_fill(const struct proc *c, struct wait_info *w);
int proc_wait(struct kernel *k, struct proc *p, int which, int id, int options,
              struct wait_info *w);
// process groups and sessions
struct proc *pgrp_member(struct kernel *k, int pgid);
int proc_setpgid(struct kernel *k, struct proc *cur, int pid, int pgid);
int proc_setsid(struct kernel *k, struct proc *cur);
int proc_getpgid(struct kernel *k, struct proc *cur, int pid, int sid);

int tid_alloc(struct kernel *k);

// ---- futex.c: the futex wait queues ----
// A futex's identity: the address space and the address in a private mapping, or (mm NULL)
// the frame and the offset in it in a shared one. compare Linux union futex_key.
struct futex_key {
  const void *mm;
  uint64_t addr;
};
// A thread parked in FUTEX_WAIT. compare Linux struct futex_q.
struct futex_q {
  struct futex_q *next;   // the queue
  struct futex_q *wnext;  // the woken list
  struct futex_key key;
  uint32_t bitset;        // FUTEX_WAIT_BITSET's mask (FUTEX_WAIT: all ones)
  int tid;                // the waiting thread
  int queued;             // on the queue
  int woken;              // a wake took it off the queue: its wait returns 0
};
void futex_queue(struct kernel *k, struct futex_q *q);
void futex_unqueue(struct kernel *k, struct futex_q *q);
void futex_forget(struct kernel *k, struct futex_q *q);
int futex_wake(struct kernel *k, const struct futex_key *key, int nr, uint32_t bitset);
int futex_requeue(struct kernel *k, const struct futex_key *key1, const struct futex_key *key2,
                  int nr_wake, int nr_requeue);

// ---- spawn.c: the fd model (zero-thread embryos, builder fds, wait handles) ----
struct inode *handle_inode_new(struct kernel *k, enum inode_kind kind, struct proc *target);
void builder_release(struct kernel *k, struct inode *ino);
int builder_launch(struct kernel *k, struct file *f);
struct proc *proc_by_handle(struct kernel *k, const struct inode *ino);

// ---- check.c: recompute truth ----
int check_kernel(struct kernel *k, char *msg, size_t cap);

// The system-call entry guards (every sfd_* entry point): resolve pid to a live process and
// refuse while the kernel is panicked or the process is a suspended vfork parent — unless
// the call is one of its own threads' (only the thread that vforked is suspended, as Linux).
#define ENTER(k, pid, p)                                       \
  do {                                                         \
    if ((k)->panicked)                                         \
      return -KPANIC;                                          \
    (p) = proc_get((k), (pid));                                \
    if (!(p))                                                  \
      return -ESRCH;                                           \
    if ((p)->vfork_child && (k)->syscall_pid != (p)->pid)      \
      return -EAGAIN;                                          \
  } while (0)
// ENTER for inspection (maps, statistics, registers): embryos can be looked at, not changed.
#define ENTER_VIEW(k, pid, p)                              \
  do {                                                     \
    if ((k)->panicked)                                     \
      return -KPANIC;                                      \
    (p) = proc_get_any((k), (pid));                        \
    if (!(p) || (p)->state == PS_ZOMBIE)                   \
      return -ESRCH;                                       \
    if ((p)->vfork_child)                                  \
      return -EAGAIN;                                      \
  } while (0)
#define LEAVE(k, rc) ((k)->panicked ? -KPANIC : (rc))

// ---- signal.c: sending signals ----
enum { SIGQ_QUEUED = 0, SIGQ_IGNORED = 1, SIGQ_TERM = 2, SIGQ_CONTINUED = 3 };
int sig_stop_kind(int sig);
int pgrp_orphaned(struct kernel *k, int pgid);
void signal_notify_parent_stop(struct kernel *k, struct proc *p, int why, int status);
int signal_send(struct kernel *k, struct proc *p, int sig, int code, int from, int status);
int signal_pending(const struct proc *p);
int signal_kill(struct kernel *k, struct proc *sender, int pid, int sig, int *self);
int signal_wake_later(struct kernel *k, int pid, int sig);

#endif
