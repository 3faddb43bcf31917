// proc.c — processes: pid allocation and the pid table. A process owns an mm, a descriptor
// table and a working directory. (Threads, exit, wait and signals arrive with exec.)
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "kernel/kernel.h"

// The process (live or zombie) with this pid, or NULL.
struct proc *proc_get_any(struct kernel *k, int pid) {
  return (pid > 0 && pid < k->pid_max) ? k->procs[pid] : NULL;
}

// The live (not exited) process with this pid, or NULL.
struct proc *proc_get(struct kernel *k, int pid) {
  struct proc *p = proc_get_any(k, pid);
  return (p && p->state == PS_RUNNING) ? p : NULL;
}

// Next free pid after the last one handed out, wrapping like Linux alloc_pid().
static int pid_alloc(struct kernel *k) {
  for (int n = 0; n < k->pid_max; n++) {
    int pid = k->last_pid + 1 + n;
    if (pid >= k->pid_max)
      pid = 1 + (pid - k->pid_max) % (k->pid_max - 1);
    if (!k->procs[pid] && !k->tids[pid] && !k->pid_users[pid])  // nor a thread's, nor a
                                                                // live group's or session's id
      return k->last_pid = pid;
  }
  return -EAGAIN;
}

// A thread id for a thread that is not its process's first: from the same space as pids
// (compare Linux alloc_pid() for a task of a thread group). -EAGAIN when all are taken.
int tid_alloc(struct kernel *k) { return pid_alloc(k); }

// A new process with the given address space (a new empty one if mm is NULL), an empty
// descriptor table and cwd "/". On failure the caller still owns mm.
int proc_new(struct kernel *k, int ppid, struct mm *mm, struct proc **out) {
  int err = 0, pid = pid_alloc(k);
  if (pid < 0)
    return pid;
  struct proc *p = calloc(1, sizeof(*p));
  if (!p)
    return -ENOMEM;
  if (!(p->mm = mm ? mm : mm_create(k, &err))) {
    free(p);
    return err;
  }
  p->pid = pid;
  p->ppid = ppid;
  struct proc *parent = proc_get_any(k, ppid);  // compare copy_process(): the parent's
  p->pgid = parent ? parent->pgid : pid;        // group and session (init: its own)
  p->sid = parent ? parent->sid : pid;
  k->pid_users[p->pgid]++;
  k->pid_users[p->sid]++;
  p->forknoexec = 1;
  p->sas.flags = SS_DISABLE;  // no alternate signal stack (compare sas_ss_reset())
  p->serial = ++k->next_serial;
  strcpy(p->cwd, "/");
  k->procs[pid] = p;
  *out = p;
  return 0;
}

// Let go of the state on the CPU of p's threads, all of them (exit, reaping). compare Linux
// exit_thread() in each thread of a group.
static void proc_exit_thread(struct kernel *k, struct proc *p) {
  if (p->thread) {
    k->thread_free(p->thread);
    p->thread = NULL;
  }
}

// Release a process's memory and descriptors and its pid (reaping, or kernel teardown).
void proc_free(struct kernel *k, struct proc *p) {
  k->procs[p->pid] = NULL;
  k->pid_users[p->pgid]--;
  k->pid_users[p->sid]--;
  proc_exit_thread(k, p);
  fdt_fini(k, &p->fds);
  if (p->vfork_parent)
    proc_release_vfork(k, p);
  if (p->mm)
    mm_destroy(p->mm);
  free(p);
}

// A vfork child gives its parent's address space back (at exec or exit); the parent resumes.
// compare Linux mm_release() -> complete_vfork_done().
void proc_release_vfork(struct kernel *k, struct proc *p) {
  struct proc *parent = proc_get_any(k, p->vfork_parent);
  if (parent && parent->vfork_child == p->pid)
    parent->vfork_child = 0;
  p->vfork_parent = 0;
  p->mm = NULL;  // borrowed, never ours to destroy
}

// vfork(2): a child that runs in the parent's address space (nothing is copied) with a copy
// of its descriptor table; the parent is suspended (its calls fail with -EAGAIN) until the
// child execs or exits. compare kernel_clone() with CLONE_VM | CLONE_VFORK.
int sfd_vfork(struct kernel *k, int pid, int *child_pid) {
  struct proc *parent, *c;
  ENTER(k, pid, parent);
  int err = proc_new(k, pid, parent->mm, &c);
  if (err)
    return err;
  c->vfork_parent = pid;
  if ((err = fdt_dup_table(&c->fds, &parent->fds))) {
    proc_free(k, c);
    return err;
  }
  memcpy(c->cwd, parent->cwd, sizeof(c->cwd));
  c->cred = parent->cred;
  c->sig = parent->sig;
  c->sas = parent->sas;  // kept by fork and vfork (compare copy_process())
  parent->vfork_child = c->pid;
  *child_pid = c->pid;
  return 0;
}

// fork(2) for a caller-driven process: the child gets a copy of the address space under the
// given policy (FORK_*) and of the descriptor table (sharing open file descriptions).
// -ENOMEM rolls back completely. compare Linux kernel_clone() / copy_process().
static int do_fork(struct kernel *k, struct proc *parent, int mode, int *child_pid) {
  struct proc *c;
  int err = 0;
  struct mm *mm = mm_dup(parent->mm, mode, &err);
  if (!mm)
    return err;
  if ((err = proc_new(k, parent->pid, mm, &c))) {
    mm_destroy(mm);
    return err;
  }
  if ((err = fdt_dup_table(&c->fds, &parent->fds))) {
    proc_free(k, c);
    return err;
  }
  memcpy(c->cwd, parent->cwd, sizeof(c->cwd));
  c->cred = parent->cred;
  c->sig = parent->sig;
  c->sas = parent->sas;
  *child_pid = c->pid;
  return 0;
}

int sfd_fork(struct kernel *k, int pid, int mode, int *child_pid) {
  struct proc *p;
  ENTER(k, pid, p);
  if (mode < 0 || mode > FORK_COW_PT_EAGER)
    return -EINVAL;
  return LEAVE(k, do_fork(k, p, mode, child_pid));
}

// Terminate p (running or an embryo) with a wait status: release memory and descriptors at
// once, hand children to init, become a zombie until the parent waits. init may not exit
// (Linux would panic). compare Linux do_exit().
int proc_exit(struct kernel *k, struct proc *p, int wstatus) {
  int pid = p->pid;
  if (pid == 1)
    return -EPERM;
  proc_exit_thread(k, p);
  fdt_fini(k, &p->fds);
  struct proc *vchild = p->vfork_child ? proc_get_any(k, p->vfork_child) : NULL;
  if (vchild) {  // killed while suspended in vfork: the child keeps the address space
    vchild->vfork_parent = 0;
    p->vfork_child = 0;
  } else if (p->vfork_parent) {
    proc_release_vfork(k, p);
  } else {
    mm_destroy(p->mm);
  }
  p->mm = NULL;
  p->state = PS_ZOMBIE;
  p->wstatus = wstatus;
  struct proc *parent = proc_get_any(k, p->ppid);
  if (parent && parent->state != PS_ZOMBIE) {  // compare do_notify_parent(): SIGCHLD
    struct wait_info w;
    wait_info_fill(p, &w);
    signal_send(k, parent, SIGCHLD, w.code, pid, w.status);
  }
  for (int i = 1; i < k->pid_max; i++)
    if (k->procs[i] && k->procs[i]->ppid == pid)
      k->procs[i]->ppid = 1;  // compare forget_original_parent(): reparent to init
  return LEAVE(k, 0);
}

// exit(2): the wait status says "exited with code".
int sfd_exit(struct kernel *k, int pid, int code) {
  struct proc *p;
  ENTER(k, pid, p);
  return proc_exit(k, p, (code & 0xff) << 8);
}

// Death by a signal (SIGKILL, SIGTERM, SIGPIPE... with the default action): the wait status
// says "killed by sig". A suspended vfork parent can be killed too, and so can an embryo.
int sfd_kill_exit(struct kernel *k, int pid, int sig) {
  if (k->panicked)
    return -KPANIC;
  struct proc *p = proc_get_any(k, pid);
  if (!p || p->state == PS_ZOMBIE)
    return -ESRCH;
  if (sig <= 0 || sig >= 65)
    return -EINVAL;
  return proc_exit(k, p, sig & 0x7f);
}

// The identity of the open file behind fd (its inode number): what a waiter parks on.
int sfd_fd_ident(struct kernel *k, int pid, int fd, uint64_t *ident, int *is_pipe) {
  if (k->panicked)
    return -KPANIC;
  struct proc *p = proc_get(k, pid);
  if (!p)
    return -ESRCH;
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  *ident = f->ino->ino;
  *is_pipe = f->ino->kind == IK_PIPE;
  return 0;
}

// pid's CPU counters; a zombie's too (they stay until it is reaped).
int sfd_cpu_counters(struct kernel *k, int pid, struct cpu_counters *out) {
  if (k->panicked)
    return -KPANIC;
  struct proc *p = proc_get_any(k, pid);
  if (!p)
    return -ESRCH;
  *out = p->cpu;
  return 0;
}

// chdir(2) for p.
int proc_chdir(struct kernel *k, struct proc *p, const char *path) {
  char norm[4096];
  struct inode *ino;
  int err = path_normalise(p->cwd, path, norm, sizeof(norm));
  if (!err)
    err = vfs_lookup(k, norm, O_RDONLY | O_DIRECTORY, 0, &ino);
  if (!err)
    memcpy(p->cwd, norm, strlen(norm) + 1);
  return err;
}

int sfd_chdir(struct kernel *k, int pid, const char *path) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, proc_chdir(k, p, path));
}

// Whether id may be taken by a process holding ids a, b, c without privilege.
static int id_allowed(uint32_t id, uint32_t a, uint32_t b, uint32_t c) {
  return id == NO_ID || id == a || id == b || id == c;
}

// setresuid + setresgid: ids[0..2] real/effective/saved uid, ids[3..5] the gids; NO_ID leaves
// one unchanged. Without privilege (effective uid 0) each new id must be one of the current
// real, effective or saved ids. Checked completely before anything changes (-EPERM).
// compare Linux __sys_setresuid().
int cred_change(struct cred *c, const uint32_t *ids) {
  uint32_t *slot[6] = {&c->uid, &c->euid, &c->suid, &c->gid, &c->egid, &c->sgid};
  for (int i = 0; i < 6 && c->euid != 0; i++) {
    int ok = i < 3 ? id_allowed(ids[i], c->uid, c->euid, c->suid)
                   : id_allowed(ids[i], c->gid, c->egid, c->sgid);
    if (!ok)
      return -EPERM;
  }
  for (int i = 0; i < 6; i++)
    if (ids[i] != NO_ID)
      *slot[i] = ids[i];
  return 0;
}

// setresuid(2) + setresgid(2) for a caller-driven process; ids of -1 stay. Without effective
// uid 0 each new id must be one of the current real, effective or saved ids.
int sfd_setcred(struct kernel *k, int pid, const uint32_t *ids) {
  struct proc *p;
  ENTER(k, pid, p);
  return cred_change(&p->cred, ids);
}

// What a wait reports of zombie c: the pid, the siginfo's si_code (CLD_EXITED, CLD_KILLED,
// CLD_DUMPED) and si_status (exit code or signal), si_uid, and the wait4 status.
// compare wait_task_zombie().
void wait_info_fill(const struct proc *c, struct wait_info *w) {
  w->pid = c->pid;
  w->uid = (int)c->cred.uid;
  w->wstatus = c->wstatus;
  if (c->wstatus & 0x7f) {
    w->code = (c->wstatus & 0x80) ? CLD_DUMPED : CLD_KILLED;
    w->status = c->wstatus & 0x7f;
  } else {
    w->code = CLD_EXITED;
    w->status = (c->wstatus >> 8) & 0xff;
  }
}

// Whether child c is one a wait of (which, id) asks for. compare eligible_pid().
static int wait_matches(const struct proc *c, int which, int id) {
  return which == P_ALL || (which == P_PID && c->pid == id) || (which == P_PGID && c->pgid == id);
}

// The wait of wait4(2) and waitid(2): a child of p that (which, id) names and that exited
// (with WEXITED: reaped unless WNOWAIT), stopped (WSTOPPED, wait4's WUNTRACED) or continued
// (WCONTINUED), each reported once unless WNOWAIT. Returns its pid with *w filled, 0 when
// children match but none is reportable (the caller blocks unless WNOHANG), -ECHILD when
// none matches. compare do_wait() -> wait_consider_task(), wait_task_stopped(),
// wait_task_continued().
int proc_wait(struct kernel *k, struct proc *p, int which, int id, int options,
              struct wait_info *w) {
  int any = 0;
  if (which == P_PID && (id < 1 || id >= k->pid_max))
    return -ECHILD;
  int lo = which == P_PID ? id : 1, hi = which == P_PID ? id + 1 : k->pid_max;
  for (int i = lo; i < hi; i++) {
    struct proc *c = k->procs[i];
    if (!c || c->ppid != p->pid || !wait_matches(c, which, id))
      continue;
    if (c->state != PS_ZOMBIE) {
      any = 1;  // a live child (or embryo) may still exit
      if ((options & WSTOPPED) && c->stop_report) {
        w->pid = c->pid;
        w->uid = (int)c->cred.uid;
        w->code = CLD_STOPPED;
        w->status = c->stop_report;
        w->wstatus = (c->stop_report << 8) | 0x7f;
        if (!(options & WNOWAIT))
          c->stop_report = 0;
        return i;
      }
      if ((options & WCONTINUED) && c->cont_report) {
        w->pid = c->pid;
        w->uid = (int)c->cred.uid;
        w->code = CLD_CONTINUED;
        w->status = SIGCONT;
        w->wstatus = 0xffff;
        if (!(options & WNOWAIT))
          c->cont_report = 0;
        return i;
      }
      continue;
    }
    if (!(options & WEXITED))
      continue;
    wait_info_fill(c, w);
    if (!(options & WNOWAIT))
      proc_free(k, c);
    return i;
  }
  return any ? 0 : -ECHILD;
}

// wait4(2) for caller-driven processes: reap an exited child (child > 0: that one, -1: any).
// Returns the reaped pid with *wstatus set, 0 if nothing has exited and nohang is set,
// -EAGAIN if nothing has exited (the synchronous API cannot block), -ECHILD if no such child.
int sfd_wait(struct kernel *k, int pid, int child, int nohang, int *wstatus) {
  struct proc *p;
  struct wait_info w;
  ENTER(k, pid, p);
  int got = proc_wait(k, p, child > 0 ? P_PID : P_ALL, child, WEXITED, &w);
  if (got > 0)
    *wstatus = w.wstatus;
  return got ? got : nohang ? 0 : -EAGAIN;
}

// ---- process groups and sessions (compare Linux kernel/sys.c) ----

// Put p in group pgid of session sid; the pid users follow. compare change_pid().
static void proc_set_pgrp(struct kernel *k, struct proc *p, int pgid, int sid) {
  k->pid_users[p->pgid]--;
  k->pid_users[p->sid]--;
  p->pgid = pgid;
  p->sid = sid;
  k->pid_users[pgid]++;
  k->pid_users[sid]++;
}

// A process (live, zombie or embryo) of group pgid, or NULL. compare pid_task(pgrp,
// PIDTYPE_PGID).
struct proc *pgrp_member(struct kernel *k, int pgid) {
  if (pgid <= 0 || pgid >= k->pid_max || !k->pid_users[pgid])
    return NULL;
  for (int i = 1; i < k->pid_max; i++)
    if (k->procs[i] && k->procs[i]->pgid == pgid)
      return k->procs[i];
  return NULL;
}

// setpgid(2) by cur: pid (0: cur) joins group pgid (0: its own pid). Only cur itself or a
// child of cur in cur's session that has not exec'd yet; not a session leader; the group
// must exist in cur's session unless it is pid's own. compare ksys_setpgid().
int proc_setpgid(struct kernel *k, struct proc *cur, int pid, int pgid) {
  if (!pid)
    pid = cur->pid;
  if (!pgid)
    pgid = pid;
  if (pgid < 0)
    return -EINVAL;
  struct proc *p = proc_get_any(k, pid);
  if (!p)
    return -ESRCH;
  if (p->ppid == cur->pid) {
    if (p->sid != cur->sid)
      return -EPERM;
    if (!p->forknoexec)
      return -EACCES;
  } else if (p != cur) {
    return -ESRCH;
  }
  if (p->sid == p->pid)
    return -EPERM;  // a session leader stays in its group
  if (pgid != pid) {
    struct proc *g = pgrp_member(k, pgid);
    if (!g || g->sid != cur->sid)
      return -EPERM;
  }
  proc_set_pgrp(k, p, pgid, p->sid);
  return 0;
}

// setsid(2): cur leads a new session and group of its pid, unless it leads a session
// already or its pid names a group. compare ksys_setsid().
int proc_setsid(struct kernel *k, struct proc *cur) {
  if (cur->sid == cur->pid || pgrp_member(k, cur->pid))
    return -EPERM;
  proc_set_pgrp(k, cur, cur->pid, cur->pid);
  return cur->pid;
}

// getpgid(2) (sid 0) and getsid(2) (sid 1) of pid (0: cur); -ESRCH if there is no such
// process (a zombie has them until reaped). compare SYSCALL_DEFINE1(getpgid), getsid.
int proc_getpgid(struct kernel *k, struct proc *cur, int pid, int sid) {
  struct proc *p = pid ? proc_get_any(k, pid) : cur;
  if (!p)
    return -ESRCH;
  return sid ? p->sid : p->pgid;
}

// The parent of a live or zombie process.
int sfd_ppid(struct kernel *k, int pid) {
  struct proc *p = proc_get_any(k, pid);
  return p ? p->ppid : -ESRCH;
}
