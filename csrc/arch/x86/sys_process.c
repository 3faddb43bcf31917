// sys_process.c — processes from running code: fork, vfork, clone, execve, wait4. Each goes
// down the kernel's own paths (the fork policy of the kernel, sfd_vfork, do_execve through
// sfd_execve, sfd_wait); what only the trio layer can do — start the child's task, suspend a
// vfork parent, run a stand-in after exec, park a waiter — is asked for by the stop reason.
// compare Linux kernel/fork.c (kernel_clone), fs/exec.c (do_execveat_common), kernel/exit.c
// (kernel_wait4).
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

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
#define WCONTINUED_ 8
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
  child->sig.blocked = *c->blocked;  // the forking thread's mask (it may not be the first)
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

// wait4(pid, wstatus, options, rusage): reap a child that exited. Nothing yet and no WNOHANG:
// the thread waits (CPU_WAIT) and the call runs again when a child changes state. There are
// no process groups: pid 0 and < -1 wait for any child. Stopped and continued children do
// not happen (no job control signals yet). As Linux, a bad status or rusage pointer is
// EFAULT after the child was reaped: its status is lost. compare kernel_wait4().
int64_t sys_wait4(struct cpu *c, struct proc *p, const uint64_t *a) {
  int pid = (int)a[0], status = 0;
  uint32_t opts = (uint32_t)a[2];
  if (opts & ~(uint32_t)(WNOHANG_ | WUNTRACED_ | WCONTINUED_ | WNOTHREAD_ | WALL_ | WCLONE_))
    return -EINVAL;
  if (pid == INT32_MIN)
    return -ESRCH;  // compare kernel_wait4(): -INT_MIN overflows
  int got = sfd_wait(c->k, p->pid, pid > 0 ? pid : -1, !!(opts & WNOHANG_), &status);
  if (got == -EAGAIN) {
    c->stop = CPU_WAIT;
    return 0;
  }
  if (got <= 0)
    return got;
  uint8_t ru[RUSAGE_BYTES] = {0};
  if ((a[1] && copy_to_user(c, a[1], &status, sizeof(status))) ||
      (a[3] && copy_to_user(c, a[3], ru, sizeof(ru))))
    return -EFAULT;
  return got;
}
