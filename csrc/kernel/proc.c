// proc.c — processes: pid allocation and the pid table. A process owns an mm, a descriptor
// table and a working directory. (Threads, exit, wait and signals arrive with exec.)
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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
    if (!k->procs[pid] && !k->tids[pid])
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
  if (parent && parent->state != PS_ZOMBIE)  // compare do_notify_parent(): SIGCHLD
    signal_send(parent, SIGCHLD, (wstatus & 0x7f) ? CLD_KILLED : CLD_EXITED, pid,
                (wstatus & 0x7f) ? (wstatus & 0x7f) : (wstatus >> 8) & 0xff);
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

// wait4(2) for caller-driven processes: reap an exited child (child > 0: that one, -1: any).
// Returns the reaped pid with *wstatus set, 0 if nothing has exited and nohang is set,
// -EAGAIN if nothing has exited (the synchronous API cannot block), -ECHILD if no such child.
int sfd_wait(struct kernel *k, int pid, int child, int nohang, int *wstatus) {
  struct proc *p;
  ENTER(k, pid, p);
  int any = 0;
  for (int i = (child > 0 ? child : 1); i < k->pid_max; i++) {
    struct proc *c = k->procs[i];
    if (c && c->ppid == pid) {
      any = 1;
      if (c->state == PS_ZOMBIE) {
        *wstatus = c->wstatus;
        proc_free(k, c);
        return i;
      }
    }
    if (child > 0)
      break;
  }
  if (!any)
    return -ECHILD;
  return nohang ? 0 : -EAGAIN;
}

// The parent of a live or zombie process.
int sfd_ppid(struct kernel *k, int pid) {
  struct proc *p = proc_get_any(k, pid);
  return p ? p->ppid : -ESRCH;
}
