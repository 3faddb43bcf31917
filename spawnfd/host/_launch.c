// spawnfd host launcher: one C call per spawn.
//
// sfd_spawn() starts a child with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), as glibc's
// posix_spawn does, or with a plain clone(CLONE_PIDFD) that copies the parent (fork). The child
// replays the builder's steps in order and reports the index and errno of the first that fails
// (through shared memory after a vfork, through a close-on-exec pipe after a fork), so the parent
// can raise the exact OSError for the exact step. sfd_posix_spawn() runs the same steps through
// glibc's posix_spawn file actions, which report only an errno.
//
// Everything the child does is a plain system call: it shares (or copied) the memory of a
// multi-threaded Python process, so it never allocates, never takes a lock, never returns.

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define SFD_DUP2 1    // dup2(fd, arg): fd is a descriptor of the parent
#define SFD_CHDIR 2   // chdir(path)
#define SFD_FCHDIR 3  // fchdir(fd)
#define SFD_SETPGID 4 // setpgid(0, arg)
#define SFD_SETSID 5  // setsid()
#define SFD_UMASK 6   // umask(arg)
#define SFD_CGROUP 7  // write "0" to fd, an open cgroup.procs: join that cgroup

#define SFD_STEP_PARENT (-1)  // clone, pipe or pidfd_open failed in the parent
#define SFD_STEP_CLOEXEC (-2) // marking the inherited descriptors close-on-exec failed
#define SFD_STEP_SIGNALS (-3) // resetting dispositions or the signal mask failed

#define SFD_MAX_ACTIONS 4096
#define SFD_STACK_SIZE (64 * 1024)

struct sfd_action {
    int op;           // SFD_*
    int fd;           // descriptor of the parent the step reads, or -1; consumed by the child
    int arg;          // target fd, pgid or umask
    const char *path; // SFD_CHDIR only
};

struct sfd_spawn {
    // what to run
    char *const *paths; // execve candidates in order, NULL-terminated (the PATH search)
    char *const *argv;  // NULL-terminated
    char *const *envp;  // NULL-terminated, or NULL for the parent's environ
    // how to set the child up
    struct sfd_action *actions; // applied in order
    int nactions;               // Invariant: 0 <= nactions <= SFD_MAX_ACTIONS
    int cloexec_from;           // close every fd >= this that no SFD_DUP2 targets; -1: keep
    int fork;                   // 1: copy the parent (fork); 0: share its memory until exec
    int set_sigmask;            // 1: the child starts with sigmask, 0: with the parent's mask
    uint64_t sigmask;           // bit sig-1 set: sig blocked in the child
    uint64_t sigdefault;        // bit sig-1 set: sig reset to SIG_DFL in the child
    // results
    int pid;   // the child, > 0 on success
    int pidfd; // a pidfd for it, on success
    int step;  // the failing step: SFD_STEP_*, 0..nactions-1, or nactions for execve
    int err;   // errno of the failure, 0 on success
};

struct sfd_child {
    struct sfd_spawn *s;
    sigset_t oldmask; // the parent thread's mask before it blocked everything
    int errfd;        // fork: write end of the error pipe; vfork: -1
};

extern char **environ;

// Report the failure of step to the parent and exit; never returns.
__attribute__((no_sanitize_address, noreturn)) static void child_fail(struct sfd_child *c,
                                                                       int step, int err)
{
    if (c->errfd >= 0) {
        int msg[2] = {step, err};
        ssize_t n;
        do
            n = write(c->errfd, msg, sizeof msg);
        while (n < 0 && errno == EINTR);
    } else {
        volatile struct sfd_spawn *vs = c->s;
        vs->step = step;
        vs->err = err;
    }
    for (;;)
        syscall(SYS_exit_group, 127);
}

// Put every handled signal, and every signal in sigdefault, back to SIG_DFL. The child must not
// run the parent's handlers: they would touch the memory it shares with the parent.
__attribute__((no_sanitize_address)) static int child_reset_signals(const struct sfd_spawn *s)
{
    for (int sig = 1; sig < 65; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &sa) != 0)
            continue; // glibc's internal signals: not ours to touch
        int force = (s->sigdefault >> (sig - 1)) & 1;
        if (!force && (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        if (sigaction(sig, &sa, NULL) != 0)
            return errno;
    }
    return 0;
}

// Largest fd an SFD_DUP2 step writes, or -1.
static int max_target(const struct sfd_spawn *s)
{
    int max = -1;
    for (int i = 0; i < s->nactions; i++)
        if (s->actions[i].op == SFD_DUP2 && s->actions[i].arg > max)
            max = s->actions[i].arg;
    return max;
}

// Move every descriptor a step reads above the largest target, so no dup2 clobbers a source
// still to be read. The copies are close-on-exec. Returns the failing step or -1.
__attribute__((no_sanitize_address)) static int child_relocate(struct sfd_child *c, int *err)
{
    struct sfd_spawn *s = c->s;
    int top = max_target(s);
    if (top < 0)
        return -1;
    if (c->errfd >= 0 && c->errfd <= top) {
        int fd = fcntl(c->errfd, F_DUPFD_CLOEXEC, top + 1);
        if (fd < 0) {
            *err = errno;
            return SFD_STEP_PARENT;
        }
        c->errfd = fd;
    }
    for (int i = 0; i < s->nactions; i++) {
        struct sfd_action *a = &s->actions[i];
        if (a->fd < 0 || a->fd > top)
            continue;
        int fd = fcntl(a->fd, F_DUPFD_CLOEXEC, top + 1);
        if (fd < 0) {
            *err = errno;
            return i;
        }
        a->fd = fd;
    }
    return -1;
}

// Join the cgroup whose cgroup.procs is open as fd.
__attribute__((no_sanitize_address)) static int child_join_cgroup(int fd)
{
    ssize_t n;
    do
        n = write(fd, "0", 1);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

// Apply one step. Returns 0 or -1 with errno set.
__attribute__((no_sanitize_address)) static int child_apply(const struct sfd_action *a)
{
    switch (a->op) {
    case SFD_DUP2:
        return dup2(a->fd, a->arg) < 0 ? -1 : 0;
    case SFD_CHDIR:
        return chdir(a->path);
    case SFD_FCHDIR:
        return fchdir(a->fd);
    case SFD_SETPGID:
        return setpgid(0, a->arg);
    case SFD_SETSID:
        return setsid() < 0 ? -1 : 0;
    case SFD_UMASK:
        umask((mode_t)a->arg);
        return 0;
    case SFD_CGROUP:
        return child_join_cgroup(a->fd);
    }
    errno = EINVAL;
    return -1;
}

// Try each candidate like CPython's _posixsubprocess: the first error other than ENOENT or
// ENOTDIR wins, else the last one.
__attribute__((no_sanitize_address)) static int child_exec(const struct sfd_spawn *s)
{
    char *const *envp = s->envp ? s->envp : environ;
    int saved = 0;
    for (char *const *p = s->paths; *p; p++) {
        execve(*p, s->argv, envp);
        if (errno != ENOENT && errno != ENOTDIR && saved == 0)
            saved = errno;
    }
    return saved ? saved : errno;
}

// The child: signals, descriptors, steps in order, mask, exec. Compare glibc __spawni_child().
__attribute__((no_sanitize_address)) static int child_main(void *arg)
{
    struct sfd_child *c = arg;
    struct sfd_spawn *s = c->s;
    int err = child_reset_signals(s);
    if (err)
        child_fail(c, SFD_STEP_SIGNALS, err);
    int step = child_relocate(c, &err);
    if (step != -1)
        child_fail(c, step, err);
    if (s->cloexec_from >= 0 &&
        syscall(SYS_close_range, s->cloexec_from, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        child_fail(c, SFD_STEP_CLOEXEC, errno);
    for (int i = 0; i < s->nactions; i++)
        if (child_apply(&s->actions[i]) != 0)
            child_fail(c, i, errno);
    sigset_t mask = c->oldmask;
    if (s->set_sigmask) {
        sigemptyset(&mask);
        for (int sig = 1; sig < 65; sig++)
            if ((s->sigmask >> (sig - 1)) & 1)
                sigaddset(&mask, sig);
    }
    if (sigprocmask(SIG_SETMASK, &mask, NULL) != 0)
        child_fail(c, SFD_STEP_SIGNALS, errno);
    child_fail(c, s->nactions, child_exec(s));
}

// Wait for a child that failed before exec, so it leaves no zombie.
static void reap(int pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

// vfork: the child borrows our memory and a stack in this frame until it execs or exits.
static void spawn_vfork(struct sfd_child *c)
{
    struct sfd_spawn *s = c->s;
    _Alignas(16) char stack[SFD_STACK_SIZE];
    int pidfd = -1;
    int pid = clone(child_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD,
                    c, &pidfd);
    if (pid < 0) {
        s->step = SFD_STEP_PARENT;
        s->err = errno;
        return;
    }
    s->pid = pid;
    s->pidfd = pidfd;
}

// fork: the child gets a copy of our memory and reports failure through a pipe.
static void spawn_fork(struct sfd_child *c)
{
    struct sfd_spawn *s = c->s;
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        s->step = SFD_STEP_PARENT;
        s->err = errno;
        return;
    }
    // Keep the pipe clear of every fd a step names: a stale number the caller passes must
    // still be EBADF in the child, not silently our pipe. A number at or past RLIMIT_NOFILE
    // can never be a descriptor (the child's dup2 says EBADF), so it is not in the way.
    struct rlimit nofile;
    rlim_t limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : RLIM_INFINITY;
    int top = 2;
    for (int i = 0; i < s->nactions; i++)
        if (s->actions[i].fd > top && (limit == RLIM_INFINITY || (rlim_t)s->actions[i].fd < limit))
            top = s->actions[i].fd;
    for (int i = 0; i < 2; i++) {
        if (ep[i] > top)
            continue;
        int fd = fcntl(ep[i], F_DUPFD_CLOEXEC, top + 1);
        if (fd < 0) {
            s->step = SFD_STEP_PARENT;
            s->err = errno;
            close(ep[0]);
            close(ep[1]);
            return;
        }
        close(ep[i]);
        ep[i] = fd;
    }
    c->errfd = ep[1];
    int pidfd = -1;
    long pid = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pidfd, 0, 0);
    if (pid == 0)
        child_main(c);
    int saved = errno;
    close(ep[1]);
    if (pid < 0) {
        close(ep[0]);
        s->step = SFD_STEP_PARENT;
        s->err = saved;
        return;
    }
    s->pid = (int)pid;
    s->pidfd = pidfd;
    int msg[2];
    ssize_t n;
    do
        n = read(ep[0], msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == (ssize_t)sizeof msg) {
        s->step = msg[0];
        s->err = msg[1];
    } else if (n != 0) { // a short report: the child died while writing it
        s->step = SFD_STEP_PARENT;
        s->err = EPIPE;
    }
}

// Start the child described by s. Returns 0 with s->pid and s->pidfd set, or the errno of the
// failing step with s->step set; a child that failed has been reaped and its pidfd closed.
int sfd_spawn(struct sfd_spawn *s)
{
    s->pid = s->pidfd = -1;
    s->step = 0;
    s->err = 0;
    if (s->nactions < 0 || s->nactions > SFD_MAX_ACTIONS || !s->paths || !s->paths[0] || !s->argv) {
        s->step = SFD_STEP_PARENT;
        return s->err = EINVAL;
    }
    struct sfd_child c = {.s = s, .errfd = -1};
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &c.oldmask);
    if (s->fork)
        spawn_fork(&c);
    else
        spawn_vfork(&c);
    pthread_sigmask(SIG_SETMASK, &c.oldmask, NULL);
    if (s->err && s->pid > 0) {
        reap(s->pid);
        close(s->pidfd);
        s->pid = s->pidfd = -1;
    }
    return s->err;
}

// Fill set from a bit mask (bit sig-1 for sig). sigaddset() refuses glibc's internal signals
// (32 and 33), so their bits are set by hand: posix_spawn must see them in the sigdefault set.
static void mask_to_set(uint64_t bits, sigset_t *set)
{
    const unsigned word = 8 * sizeof set->__val[0];
    sigemptyset(set);
    for (unsigned sig = 1; sig < 65; sig++)
        if ((bits >> (sig - 1)) & 1)
            set->__val[(sig - 1) / word] |= 1UL << ((sig - 1) % word);
}

// Is fd the target of a SFD_DUP2 step before step end?
static int targeted_before(const struct sfd_spawn *s, int fd, int end)
{
    for (int i = 0; i < end; i++)
        if (s->actions[i].op == SFD_DUP2 && s->actions[i].arg == fd)
            return 1;
    return 0;
}

// Turn the steps into file actions and attributes. Sources that an earlier dup2 would clobber
// are first copied above every fd in play, to temp, temp+1, ...; closefrom removes the copies.
// Returns 0 or the errno, with s->step set to the step it cannot express.
static int build_actions(struct sfd_spawn *s, posix_spawn_file_actions_t *fa,
                         posix_spawnattr_t *at, short *flags)
{
    int top = max_target(s), temp = top + 1, rc = 0;
    for (int i = 0; i < s->nactions; i++)
        if (s->actions[i].fd >= temp)
            temp = s->actions[i].fd + 1;
    int first_temp = temp;
    for (int i = 0; i < s->nactions && rc == 0; i++) {
        struct sfd_action *a = &s->actions[i];
        if (a->fd >= 0 && targeted_before(s, a->fd, i)) {
            rc = posix_spawn_file_actions_adddup2(fa, a->fd, temp);
            a->fd = temp++;
        }
    }
    for (int i = 0; i < s->nactions && rc == 0; i++) {
        struct sfd_action *a = &s->actions[i];
        s->step = i;
        switch (a->op) {
        case SFD_DUP2:
            rc = posix_spawn_file_actions_adddup2(fa, a->fd, a->arg);
            break;
        case SFD_CHDIR:
            rc = posix_spawn_file_actions_addchdir_np(fa, a->path);
            break;
        case SFD_FCHDIR:
            rc = posix_spawn_file_actions_addfchdir_np(fa, a->fd);
            break;
        case SFD_SETPGID:
            *flags |= POSIX_SPAWN_SETPGROUP;
            rc = posix_spawnattr_setpgroup(at, a->arg);
            break;
        case SFD_SETSID:
            *flags |= POSIX_SPAWN_SETSID;
            break;
        default: // umask, cgroup: posix_spawn has no such attribute
            rc = ENOTSUP;
        }
    }
    if (rc)
        return rc;
    s->step = SFD_STEP_CLOEXEC;
    if (s->cloexec_from >= 0) {
        int lo = s->cloexec_from;
        for (int fd = lo; fd <= top && rc == 0; fd++)
            if (!targeted_before(s, fd, s->nactions))
                rc = posix_spawn_file_actions_addclose(fa, fd);
        if (rc == 0)
            rc = posix_spawn_file_actions_addclosefrom_np(fa, lo > top ? lo : top + 1);
    } else {
        for (int fd = first_temp; fd < temp && rc == 0; fd++) // only our copies
            rc = posix_spawn_file_actions_addclose(fa, fd);
    }
    return rc;
}

// The same child through glibc posix_spawn (clone(CLONE_VM | CLONE_VFORK) inside), then
// pidfd_open. Only the first path is tried. Returns 0 or the errno, which posix_spawn does not
// attribute to a step: s->step is then nactions.
int sfd_posix_spawn(struct sfd_spawn *s)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    short flags = 0;
    pid_t pid = -1;
    s->pid = s->pidfd = -1;
    s->err = 0;
    s->step = SFD_STEP_PARENT;
    if (s->nactions < 0 || s->nactions > SFD_MAX_ACTIONS || !s->paths || !s->paths[0] || !s->argv)
        return s->err = EINVAL;
    if ((s->err = posix_spawn_file_actions_init(&fa)) != 0)
        return s->err;
    if ((s->err = posix_spawnattr_init(&at)) != 0)
        goto out_fa;
    if ((s->err = build_actions(s, &fa, &at, &flags)) != 0)
        goto out;
    sigset_t set;
    if (s->set_sigmask) {
        flags |= POSIX_SPAWN_SETSIGMASK;
        mask_to_set(s->sigmask, &set);
        posix_spawnattr_setsigmask(&at, &set);
    }
    // glibc's child sets its internal signals (32, 33) to SIG_IGN, which exec keeps, unless
    // they are in the sigdefault set: put them back to SIG_DFL as sfd_spawn() leaves them.
    uint64_t sigdefault = s->sigdefault | (1ULL << 31) | (1ULL << 32);
    {
        flags |= POSIX_SPAWN_SETSIGDEF;
        mask_to_set(sigdefault, &set);
        posix_spawnattr_setsigdefault(&at, &set);
    }
    if ((s->err = posix_spawnattr_setflags(&at, flags)) != 0)
        goto out;
    s->step = s->nactions;
    s->err = posix_spawn(&pid, s->paths[0], &fa, &at, s->argv, s->envp ? s->envp : environ);
    if (s->err)
        goto out;
    s->pid = pid;
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (s->pidfd < 0) { // cannot hold it: do not leave it running unheld
        s->err = errno;
        s->step = SFD_STEP_PARENT;
        kill(pid, SIGKILL);
        reap(pid);
        s->pid = -1;
    }
out:
    posix_spawnattr_destroy(&at);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
    return s->err;
}
