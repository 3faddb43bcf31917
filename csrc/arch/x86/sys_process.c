// sys_process.c — processes from running code: fork, vfork, clone, execve, wait4, waitid,
// process groups and sessions (setpgid, getpgid, getpgrp, setsid, getsid). Each goes
// down the kernel's own paths (the fork policy of the kernel, sfd_vfork, do_execve through
// sfd_execve, sfd_wait); what only the trio layer can do — start the child's task, suspend a
// vfork parent, run a stand-in after exec, park a waiter — is asked for by the stop reason.
// compare Linux kernel/fork.c (kernel_clone), fs/exec.c (do_execveat_common), kernel/exit.c
// (kernel_wait4, kernel_waitid), kernel/sys.c (setpgid, setsid).
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "arch/x86/syscalls.h"

#define CLONE_VM_ 0x00000100
#define CLONE_FS_ 0x00000200
#define CLONE_FILES_ 0x00000400
#define CLONE_SIGHAND_ 0x00000800
#define CLONE_PIDFD_ 0x00001000
#define CLONE_PTRACE_ 0x00002000
#define CLONE_VFORK_ 0x00004000
#define CLONE_PARENT_ 0x00008000
#define CLONE_THREAD_ 0x00010000
#define CLONE_SYSVSEM_ 0x00040000
#define CLONE_SETTLS_ 0x00080000
#define CLONE_PARENT_SETTID_ 0x00100000
#define CLONE_CHILD_CLEARTID_ 0x00200000
#define CLONE_CHILD_SETTID_ 0x01000000
#define CSIGNAL_ 0xff
#define WNOHANG_ 1
#define WUNTRACED_ 2
#define WSTOPPED_ 2
#define WEXITED_ 4
#define WCONTINUED_ 8
#define WNOWAIT_ 0x01000000
#define P_PIDFD_ 3
#define WNOTHREAD_ 0x20000000
#define WALL_ 0x40000000
#define WCLONE_ 0x80000000U
#define RUSAGE_BYTES 144

// What a clone asks for, whichever call made it. compare struct kernel_clone_args.
struct clone_req {
  uint64_t flags, stack, ptid, ctid, tls;
};

// Flags this kernel implements: a process (fork) or a vfork child, a thread (CLONE_THREAD
// with CLONE_VM, CLONE_SIGHAND, CLONE_FS and CLONE_FILES, as pthread_create asks), the tid
// stores and TLS. A process sharing memory, descriptors or fs state without being a
// thread or a vfork child, and the namespace flags, are -ENOSYS, each refused before
// anything is made. compare copy_process()'s checks.
static int clone_check(const struct clone_req *r) {
  uint64_t known = CSIGNAL_ | CLONE_VM_ | CLONE_VFORK_ | CLONE_SETTLS_ | CLONE_PARENT_SETTID_ |
                   CLONE_CHILD_CLEARTID_ | CLONE_CHILD_SETTID_ | CLONE_THREAD_ |
                   CLONE_SIGHAND_ | CLONE_FS_ | CLONE_FILES_ | CLONE_SYSVSEM_;
  uint64_t thread = CLONE_THREAD_ | CLONE_VM_ | CLONE_SIGHAND_ | CLONE_FS_ | CLONE_FILES_;
  if ((r->flags & CLONE_SIGHAND_) && !(r->flags & CLONE_VM_))
    return -EINVAL;
  if ((r->flags & CLONE_THREAD_) && !(r->flags & CLONE_SIGHAND_))
    return -EINVAL;
  if ((r->flags & CSIGNAL_) > 64)
    return -EINVAL;
  if (r->flags & ~known)
    return -ENOSYS;  // namespaces, ptrace, pidfds, CLONE_PARENT...: not here
  if (r->flags & CLONE_THREAD_)
    return (r->flags & thread) == thread ? 0 : -ENOSYS;  // a thread with its own table or fs
  if ((r->flags & CLONE_VM_) && !(r->flags & CLONE_VFORK_))
    return -ENOSYS;  // a second process in one mm without vfork's suspension
  if (r->flags & (CLONE_SIGHAND_ | CLONE_FS_ | CLONE_FILES_))
    return -ENOSYS;  // a process sharing handlers, fs state or descriptors
  return 0;
}

// clone(CLONE_THREAD): a new thread of this process (CPU_CLONED: the trio layer starts it),
// with the tid stores. compare copy_process() for a thread.
static int64_t do_clone_thread(struct cpu *c, struct proc *p, const struct clone_req *r) {
  struct cpu *t;
  int err = cpu_thread_clone(c, r->stack, r->tls, !!(r->flags & CLONE_SETTLS_), &t);
  if (err)
    return err;
  uint32_t tid = (uint32_t)t->tid;
  if (((r->flags & CLONE_CHILD_SETTID_) &&
       (err = mm_access(p->mm, r->ctid, NULL, (const uint8_t *)&tid, sizeof(tid)))) ||
      ((r->flags & CLONE_PARENT_SETTID_) &&
       (err = mm_access(p->mm, r->ptid, NULL, (const uint8_t *)&tid, sizeof(tid))))) {
    cpu_thread_unclone(t);
    return err;
  }
  if (r->flags & CLONE_CHILD_CLEARTID_)
    t->clear_child_tid = r->ctid;
  c->stop = CPU_CLONED;
  c->status = t->tid;
  return t->tid;
}

// After the child exists: the tid stores, then the thread state that continues from the
// parent's registers. On failure the child is torn down, nothing else changed.
static int clone_finish(struct cpu *c, struct proc *p, struct proc *child,
                        const struct clone_req *r, const struct spawn_window *mark) {
  uint32_t tid = (uint32_t)child->pid;
  int err = 0;
  if (r->flags & CLONE_CHILD_SETTID_)  // in the child's memory (its copy, or the shared mm)
    err = mm_access(child->mm, r->ctid, NULL, (const uint8_t *)&tid, sizeof(tid));
  if (!err && (r->flags & CLONE_PARENT_SETTID_))
    err = mm_access(p->mm, r->ptid, NULL, (const uint8_t *)&tid, sizeof(tid));
  if (!err)
    err = cpu_thread_copy(c, child, r->stack, r->tls, !!(r->flags & CLONE_SETTLS_));
  child->sig.blocked = *c->blocked;  // the forking thread's mask and alternate stack (it
  child->sas = *c->sas;              // may not be the first)
  if (err) {
    proc_exit(c->k, child, SIGKILL);
    proc_free(c->k, child);
    return err;
  }
  if (r->flags & CLONE_CHILD_CLEARTID_)
    child->thread->clear_child_tid = r->ctid;
  spawn_window_open(child->thread, mark);
  return 0;
}

// compare kernel_clone(): a child process under the kernel's fork policy, or a vfork child
// that borrows this address space while this thread waits (CPU_VFORKED). Returns its pid.
static int64_t do_clone(struct cpu *c, struct proc *p, const struct clone_req *r) {
  struct spawn_window mark;
  int child_pid, err = clone_check(r);
  if (err)
    return err;
  if (r->flags & CLONE_THREAD_)
    return do_clone_thread(c, p, r);
  spawn_window_mark(c->k, c, &mark);  // the window counts the fork's own copying
  if (r->flags & CLONE_VFORK_)
    err = sfd_vfork(c->k, p->pid, &child_pid);
  else
    err = sfd_fork(c->k, p->pid, c->k->fork_mode, &child_pid);
  if (err)
    return err;
  struct proc *child = proc_get_any(c->k, child_pid);
  if ((err = clone_finish(c, p, child, r, &mark)))
    return err;
  c->stop = (r->flags & CLONE_VFORK_) ? CPU_VFORKED : CPU_FORKED;
  c->status = child_pid;
  c->vforked = (r->flags & CLONE_VFORK_) ? child_pid : 0;
  return child_pid;
}

int64_t sys_fork(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct clone_req r = {.flags = SIGCHLD};
  (void)a;
  return do_clone(c, p, &r);
}

int64_t sys_vfork(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct clone_req r = {.flags = CLONE_VM_ | CLONE_VFORK_ | SIGCHLD};
  (void)a;
  return do_clone(c, p, &r);
}

// clone(flags, stack, parent_tid, child_tid, tls): the x86-64 argument order.
int64_t sys_clone(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct clone_req r = {.flags = a[0], .stack = a[1], .ptid = a[2], .ctid = a[3], .tls = a[4]};
  if (r.flags >> 32)
    return -EINVAL;  // clone() takes an unsigned long, but only clone3 has the high flags
  return do_clone(c, p, &r);
}

// clone3(struct clone_args *, size). compare copy_clone_args_from_user().
int64_t sys_clone3(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t args[11] = {0};  // flags, pidfd, child_tid, parent_tid, exit_signal, stack,
                            // stack_size, tls, set_tid, set_tid_size, cgroup
  if (a[1] < 64 || a[1] > 4096)
    return a[1] < 64 ? -EINVAL : -E2BIG;
  int err = copy_from_user(c, args, a[0], a[1] < sizeof(args) ? a[1] : sizeof(args));
  if (err)
    return err;
  if (args[4] & ~(uint64_t)CSIGNAL_ || args[8] || args[9] || (args[5] && !args[6]))
    return -EINVAL;
  if (args[5] + args[6] < args[5])
    return -EINVAL;
  struct clone_req r = {.flags = args[0] | args[4], .stack = args[5] ? args[5] + args[6] : 0,
                        .ptid = args[3], .ctid = args[2], .tls = args[7]};
  if (args[0] & CSIGNAL_)
    return -EINVAL;
  return do_clone(c, p, &r);
}

// Append the NUL-terminated strings of a user array of pointers (argv or envp) to *buf,
// counting them. -E2BIG past the limits execve checks again. compare copy_strings().
static int copy_string_array(struct cpu *c, uint64_t uarr, char **buf, uint64_t *len,
                             uint64_t *cap, int *count) {
  for (uint64_t i = 0; uarr; i++) {
    uint64_t up;
    int err = copy_from_user(c, &up, uarr + i * 8, 8);
    if (err)
      return err;
    if (!up)
      return 0;
    if (*len >= ARG_LIMIT || i >= ARG_LIMIT / 8)
      return -E2BIG;
    if (*cap - *len < MAX_ARG_STRLEN + 1) {
      uint64_t ncap = *cap * 2 > *len + MAX_ARG_STRLEN + 1 ? *cap * 2 : *len + MAX_ARG_STRLEN + 1;
      char *n = realloc(*buf, ncap);
      if (!n)
        return -ENOMEM;
      *buf = n;
      *cap = ncap;
    }
    if ((err = strncpy_from_user(c, *buf + *len, up, MAX_ARG_STRLEN + 1)))
      return err == -ENAMETOOLONG ? -E2BIG : err;
    *len += strlen(*buf + *len) + 1;
    (*count)++;
  }
  return 0;
}

// execve(path, argv, envp): on success a new program is in place (CPU_EXECED: the trio layer
// runs it, on this CPU or as its stand-in); a vfork parent resumes. compare do_execveat().
static int64_t do_execve_user(struct cpu *c, struct proc *p, const char *path, uint64_t uargv,
                              uint64_t uenvp) {
  char *buf = NULL;
  uint64_t len = 0, cap = 0, rip, rsp;
  int argc = 0, envc = 0;
  int err = copy_string_array(c, uargv, &buf, &len, &cap, &argc);
  if (!err)
    err = copy_string_array(c, uenvp, &buf, &len, &cap, &envc);
  if (!err)
    err = sfd_execve(c->k, p->pid, path, buf ? buf : "", len, argc, envc,
                     p->serial * 0x9e3779b97f4a7c15ULL, &rip, &rsp);
  free(buf);
  if (err)
    return err;
  c->mm = p->mm;  // the old one is gone (or back with the vfork parent)
  cpu_de_thread(c);  // the other threads are gone: this one is the process's only thread
  c->stop = CPU_EXECED;
  spawn_window_close(c, 0);
  return 0;
}

int64_t sys_execve(struct cpu *c, struct proc *p, const uint64_t *a) {
  char *path = malloc(PATH_MAX);
  if (!path)
    return -ENOMEM;
  int64_t err = strncpy_from_user(c, path, a[0], PATH_MAX);
  if (!err)
    err = do_execve_user(c, p, path, a[1], a[2]);
  free(path);
  return err;
}

// execveat(dirfd, path, argv, envp, flags): a path relative to dirfd; AT_EMPTY_PATH (exec
// the descriptor itself) needs fexecve's /proc path: -ENOSYS here.
int64_t sys_execveat(struct cpu *c, struct proc *p, const uint64_t *a) {
  if (a[4] & ~(uint64_t)(AT_SYMLINK_NOFOLLOW_ | AT_EMPTY_PATH_))
    return -EINVAL;
  char *path = malloc(PATH_MAX);
  if (!path)
    return -ENOMEM;
  int64_t err = user_path_at(c, p, (int)a[0], a[1], path);
  if (!err && !path[0])
    err = (a[4] & AT_EMPTY_PATH_) ? -ENOSYS : -ENOENT;
  if (!err)
    err = do_execve_user(c, p, path, a[2], a[3]);
  free(path);
  return err;
}

// wait4(pid, wstatus, options, rusage): reap a child that exited: pid > 0 that one, -1 any,
// 0 one of the caller's group, < -1 one of group -pid. Nothing yet and no WNOHANG: the thread
// waits (CPU_WAIT) and the call runs again when a child changes state. Stopped and continued
// children do not happen (no stop state). As Linux, a bad status or rusage pointer is EFAULT
// after the child was reaped: its status is lost. compare kernel_wait4().
int64_t sys_wait4(struct cpu *c, struct proc *p, const uint64_t *a) {
  int pid = (int)a[0];
  uint32_t opts = (uint32_t)a[2];
  struct wait_info w;
  if (opts & ~(uint32_t)(WNOHANG_ | WUNTRACED_ | WCONTINUED_ | WNOTHREAD_ | WALL_ | WCLONE_))
    return -EINVAL;
  if (pid == INT32_MIN)
    return -ESRCH;  // compare kernel_wait4(): -INT_MIN overflows
  int which = pid > 0 ? P_PID : pid == -1 ? P_ALL : P_PGID;
  int id = pid > 0 ? pid : pid == 0 ? p->pgid : -pid;
  int got = proc_wait(c->k, p, which, id, (int)opts | WEXITED_, &w);
  if (got == 0 && !(opts & WNOHANG_)) {
    c->stop = CPU_WAIT;
    return 0;
  }
  if (got <= 0)
    return got;
  uint8_t ru[RUSAGE_BYTES] = {0};
  if ((a[1] && copy_to_user(c, a[1], &w.wstatus, sizeof(w.wstatus))) ||
      (a[3] && copy_to_user(c, a[3], ru, sizeof(ru))))
    return -EFAULT;
  return got;
}

// The wait of waitid(2): the options and the id type checked, a wait handle (the fd model's
// pidfd) resolved to its process, then the kernel's wait; blocks (CPU_WAIT) like wait4.
// compare kernel_waitid().
static int do_waitid(struct cpu *c, struct proc *p, int which, int id, uint32_t opts,
                     struct wait_info *w) {
  if (opts & ~(uint32_t)(WNOHANG_ | WNOWAIT_ | WEXITED_ | WSTOPPED_ | WCONTINUED_ |
                         WNOTHREAD_ | WCLONE_ | WALL_))
    return -EINVAL;
  if (!(opts & (WEXITED_ | WSTOPPED_ | WCONTINUED_)))
    return -EINVAL;
  switch (which) {
  case P_ALL:
    break;
  case P_PID:
    if (id <= 0)
      return -EINVAL;
    break;
  case P_PGID:
    if (id < 0)
      return -EINVAL;
    if (!id)
      id = p->pgid;
    break;
  case P_PIDFD_: {  // compare pidfd_get_pid(): a wait handle, O_NONBLOCK meaning WNOHANG
    if (id < 0)
      return -EINVAL;
    struct file *f = fdt_get(&p->fds, id);
    if (!f || f->ino->kind != IK_PIDFD)
      return -EBADF;
    struct proc *t = proc_by_handle(c->k, f->ino);
    if (f->flags & O_NONBLOCK)
      opts |= WNOHANG_;
    which = P_PID;
    id = t ? t->pid : c->k->pid_max;  // reaped: it matches no child (-ECHILD)
    break;
  }
  default:
    return -EINVAL;
  }
  int got = proc_wait(c->k, p, which, id, (int)opts, w);
  if (got == 0 && !(opts & WNOHANG_))
    c->stop = CPU_WAIT;
  return got;
}

// waitid(idtype, id, infop, options, rusage): returns 0; the siginfo says what was found
// (si_signo SIGCHLD, si_code CLD_*, si_pid, si_uid, si_status) or is zeroes (WNOHANG and
// nothing to report). As Linux, those fields are written whatever the result (an error
// too), the rest of the siginfo is left alone, and a bad pointer is EFAULT.
// compare SYSCALL_DEFINE5(waitid).
int64_t sys_waitid(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct wait_info w = {0};
  int err = do_waitid(c, p, (int)a[0], (int)a[1], (uint32_t)a[3], &w);
  int32_t head[3] = {0, 0, 0}, tail[3];  // si_signo, si_errno, si_code; si_pid, uid, status
  if (c->stop == CPU_WAIT)
    return 0;  // parked: it runs again
  if (err > 0) {
    uint8_t ru[RUSAGE_BYTES] = {0};
    head[0] = SIGCHLD;
    head[2] = w.code;
    err = 0;
    if (a[4] && copy_to_user(c, a[4], ru, sizeof(ru)))
      return -EFAULT;
  } else {
    memset(&w, 0, sizeof(w));
  }
  if (!a[2])
    return err;
  tail[0] = w.pid;
  tail[1] = w.uid;
  tail[2] = w.status;
  if (copy_to_user(c, a[2], head, sizeof(head)) || copy_to_user(c, a[2] + 16, tail, sizeof(tail)))
    return -EFAULT;
  return err;
}

// setpgid(2), getpgid(2), getpgrp(2), setsid(2), getsid(2): the kernel's process groups and
// sessions. compare kernel/sys.c.
int64_t sys_setpgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return proc_setpgid(c->k, p, (int)a[0], (int)a[1]);
}

int64_t sys_getpgid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return proc_getpgid(c->k, p, (int)a[0], 0);
}

int64_t sys_getpgrp(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)c;
  (void)a;
  return p->pgid;
}

int64_t sys_setsid(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)a;
  return proc_setsid(c->k, p);
}

int64_t sys_getsid(struct cpu *c, struct proc *p, const uint64_t *a) {
  return proc_getpgid(c->k, p, (int)a[0], 1);
}
