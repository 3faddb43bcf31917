// Job control from a real program: process groups and sessions (setsid, setpgid, getpgid,
// getpgrp, getsid) with Linux's errors, kill of a group (kill(-pgid), kill(0)), wait4 of a
// group, waitid and its siginfo, and the alternate signal stack (sigaltstack, SA_ONSTACK,
// uc_stack). Run natively and on the simulator by tests/test_realspawn.py, the two outputs
// compared; "killall" (kill(-1)) runs natively as the init of a new pid namespace.
// Only relations are printed (pids differ between the two runs).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

static const char *self;

static const char *err(long r) { return r >= 0 ? "ok" : strerrorname_np(errno); }

// A child that does fn and exits with its result.
static pid_t child(int (*fn)(void *), void *arg) {
  pid_t p = fork();
  if (p == 0)
    _exit(fn(arg));
  return p;
}

static int wait_status(pid_t p) {
  int st = -1;
  while (waitpid(p, &st, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// ---- process groups and sessions ----
static int block_fds[2];
static int block_on(void *arg) {  // read until the parent closes the pipe
  char c;
  (void)arg;
  close(block_fds[1]);
  while (read(block_fds[0], &c, 1) > 0)
    ;
  return 0;
}

static int new_session(void *arg) {
  (void)arg;
  pid_t me = getpid(), s = setsid();
  printf("  child setsid: %s is-pid %d; sid %d pgrp %d\n", err(s), s == me, getsid(0) == me,
         getpgrp() == me);
  printf("  again: %s;", err(setsid()));
  printf(" setpgid(0,0): %s;", err(setpgid(0, 0)));
  printf(" setpgid(0,ppid's group): %s\n", err(setpgid(0, getpgid(getppid()))));
  printf("  getsid(parent) is another session: %d\n", getsid(getppid()) != me);
  return 0;
}

static int group_then_setsid(void *arg) {
  (void)arg;
  pid_t me = getpid();
  long r = setpgid(0, 0);
  printf("  group leader: setpgid(0,0) %s pgrp-is-pid %d; setsid %s\n", err(r),
         getpgrp() == me, err(setsid()));
  printf("  setpgid(parent, 0): %s\n", err(setpgid(getppid(), 0)));
  pid_t g = fork();
  if (g == 0)
    _exit(getpgrp() == me ? 3 : 4);
  printf("  grandchild inherits the group: %d\n", wait_status(g) == 3);
  g = fork();
  if (g == 0) {  // exec keeps the group and session
    execl(self, self, "ids", (char *)NULL);
    _exit(99);
  }
  wait_status(g);
  char *argv[] = {(char *)self, "ids", NULL};
  if (posix_spawn(&g, self, NULL, NULL, argv, environ) == 0)  // clone(CLONE_VM|CLONE_VFORK)
    wait_status(g);
  return 0;
}

static void groups(void) {
  pid_t me = getpid(), g0 = getpgrp(), s0 = getsid(0);
  printf("groups\n");
  printf("  getpgid(0) %d getpgid(self) %d getsid(self) %d\n", getpgid(0) == g0,
         getpgid(me) == g0, getsid(me) == s0);
  pid_t gone = fork();
  if (gone == 0)
    _exit(0);
  wait_status(gone);
  printf("  reaped pid: getpgid %s", err(getpgid(gone)));
  printf(" getsid %s", err(getsid(gone)));
  printf(" setpgid %s;", err(setpgid(gone, 0)));
  printf(" getpgid(-1) %s", err(getpgid(-1)));
  printf(" getsid(-1) %s\n", err(getsid(-1)));
  printf("  setpgid(0,-1) %s", err(setpgid(0, -1)));
  printf(" setpgid(-5,0) %s", err(setpgid(-5, 0)));
  printf(" setpgid(-5,7) %s\n", err(setpgid(-5, 7)));

  int fds[2];
  pipe(block_fds);
  pid_t a = child(block_on, NULL);
  printf("  child inherits the group: %d\n", getpgid(a) == g0);
  printf("  setpgid(child, child) %s", err(setpgid(a, a)));
  printf(" -> its own %d;", getpgid(a) == a);
  printf(" back to ours %s", err(setpgid(a, g0)));
  printf(" %d;", getpgid(a) == g0);
  printf(" to no group %s\n", err(setpgid(a, gone)));
  printf("  setpgid(child, 0) twice: %s", err(setpgid(a, 0)));
  printf(" %s\n", err(setpgid(a, 0)));
  close(block_fds[1]);
  wait_status(a);

  // a child that exec'd: EACCES (the exec is known to be done when the cloexec pipe closes)
  int in[2], done[2];
  pipe(in);
  pipe2(done, O_CLOEXEC);
  pid_t e = fork();
  if (e == 0) {
    dup2(in[0], 0);
    close(in[0]);
    close(in[1]);
    execl("/bin/cat", "cat", (char *)NULL);
    _exit(99);
  }
  close(in[0]);
  close(done[1]);
  char c;
  read(done[0], &c, 1);
  printf("  exec'd child: setpgid %s, getpgid %d\n", err(setpgid(e, e)), getpgid(e) == g0);
  close(in[1]);
  wait_status(e);

  pipe(fds);
  pid_t s = fork();
  if (s == 0) {
    close(fds[0]);
    int r = new_session(NULL);
    close(fds[1]);  // the parent looks at us now
    pause();
    _exit(r);
  }
  close(fds[1]);
  read(fds[0], &c, 1);
  printf("  parent: setpgid(new session's leader, its pid) %s,", err(setpgid(s, s)));
  printf(" to our group %s; getsid %d\n", err(setpgid(s, g0)), getsid(s) == s);
  kill(s, SIGKILL);
  wait_status(s);
  wait_status(child(group_then_setsid, NULL));
}

// ---- kill of a group ----
static volatile sig_atomic_t hits;
static void count(int sig) {
  (void)sig;
  hits++;
}
static void exit_on(int sig) { _exit(20 + sig); }

static void handle(int sig, void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = fn;
  sigaction(sig, &sa, NULL);
}

static int waiter(void *arg) {  // tells the parent it is ready, then waits for a signal
  close((int)(intptr_t)arg);
  for (;;)
    pause();
  return 0;
}

static int kill_zero(void *arg) {  // kill(0): ourselves and our child, our own group
  (void)arg;
  setpgid(0, 0);
  int fds[2];
  pipe(fds);
  handle(SIGUSR1, exit_on);
  pid_t w = child(waiter, (void *)(intptr_t)fds[1]);
  close(fds[1]);
  char c;
  read(fds[0], &c, 1);
  handle(SIGUSR1, count);
  long r = kill(0, SIGUSR1);
  printf("  kill(0): %s, self hits %d,", err(r), (int)hits);
  printf(" child exit %d\n", wait_status(w));
  return 0;
}

static int unprivileged(void *arg) {  // another uid: only its own processes, SIGCONT in-session
  pid_t parent = getppid();
  (void)arg;
  setpgid(0, 0);
  pipe(block_fds);
  pid_t g = fork();
  if (g == 0) {  // a root process in a group of its own, until we exit
    setpgid(0, 0);
    block_on(NULL);
    _exit(0);
  }
  close(block_fds[0]);
  setpgid(g, g);
  if (setuid(65534))
    return 1;
  printf("  uid 65534: kill(parent, 0) %s", err(kill(parent, 0)));
  printf(" SIGCONT %s", err(kill(parent, SIGCONT)));
  printf(" kill(-root's group, 0) %s", err(kill(-g, 0)));
  printf(" kill(0, 0) %s\n", err(kill(0, 0)));
  return 0;
}

static void group_kill(void) {
  printf("kill groups\n");
  int fds[2];
  pipe(fds);
  handle(SIGUSR1, exit_on);
  pid_t x = child(waiter, (void *)(intptr_t)fds[1]);
  pid_t y = child(waiter, (void *)(intptr_t)fds[1]);
  pid_t z = child(waiter, (void *)(intptr_t)fds[1]);
  close(fds[1]);
  char c;
  read(fds[0], &c, 1);
  handle(SIGUSR1, SIG_DFL);
  setpgid(x, x);
  setpgid(y, x);
  printf("  kill(-x, 0) %s", err(kill(-x, 0)));
  printf(" kill(-x, 99) %s\n", err(kill(-x, 99)));
  printf("  kill(-x, SIGUSR1) %s\n", err(kill(-x, SIGUSR1)));
  int st;
  pid_t a = waitpid(-x, &st, 0), b = waitpid(-x, &st, 0);
  printf("  waitpid(-x) twice: %d, status %d; again: %s\n",
         (a == x || a == y) && (b == x || b == y) && a != b, WEXITSTATUS(st),
         err(waitpid(-x, &st, 0)));
  printf("  kill(-x) of an empty group: %s\n", err(kill(-x, SIGUSR1)));
  printf("  z in our group, waitpid(0, WNOHANG): %d\n", waitpid(0, &st, WNOHANG));
  kill(z, SIGKILL);
  printf("  waitpid(0) reaps z %d,", waitpid(0, &st, 0) == z);
  printf(" then %s\n", err(waitpid(0, &st, 0)));
  wait_status(child(kill_zero, NULL));
  wait_status(child(unprivileged, NULL));
}

// ---- waitid ----
static void show(const char *what, long r, siginfo_t *si) {
  printf("  %s: %s signo %d code %d pid-ok %d uid %d status %d errno %d\n", what, err(r),
         si->si_signo, si->si_code, si->si_pid != 0, si->si_uid == getuid(), si->si_status,
         si->si_errno);
}

static int exit7(void *arg) {
  (void)arg;
  return 7;
}

static void waits(void) {
  siginfo_t si;
  printf("waitid\n");
  memset(&si, 0x55, sizeof(si));
  show("no children", waitid(P_ALL, 0, &si, WEXITED), &si);
  memset(&si, 0x55, sizeof(si));
  show("options 0", waitid(P_ALL, 0, &si, 0), &si);
  printf("  bad: idtype %s", err(waitid(7, 0, &si, WEXITED)));
  printf(" P_PID 0 %s", err(waitid(P_PID, 0, &si, WEXITED)));
  printf(" P_PGID -1 %s", err(waitid(P_PGID, -1, &si, WEXITED)));
  printf(" option %s\n", err(waitid(P_ALL, 0, &si, WEXITED | 0x100)));
  printf("  P_PIDFD: not a pidfd %s", err(waitid(P_PIDFD, 1, &si, WEXITED)));
  printf(" closed %s", err(waitid(P_PIDFD, 999, &si, WEXITED)));
  printf(" negative %s\n", err(waitid(P_PIDFD, -1, &si, WEXITED)));
  int fds[2];
  pipe(fds);
  pid_t w = child(waiter, (void *)(intptr_t)fds[1]);
  close(fds[1]);
  char c;
  read(fds[0], &c, 1);
  memset(&si, 0x55, sizeof(si));
  show("running, WNOHANG", waitid(P_PID, w, &si, WEXITED | WNOHANG), &si);
  printf("  si_pid %d\n", si.si_pid);
  kill(w, SIGKILL);
  memset(&si, 0, sizeof(si));
  show("killed, WNOWAIT", waitid(P_PID, w, &si, WEXITED | WNOWAIT), &si);
  printf("  still there: %d\n", si.si_pid == w && kill(w, 0) == 0);
  show("killed", waitid(P_ALL, 0, &si, WEXITED), &si);
  printf("  reaped: %d", si.si_pid == w);
  printf(" %s\n", err(kill(w, 0)));

  pid_t e = child(exit7, NULL);
  memset(&si, 0x55, sizeof(si));
  while (waitid(P_PID, e, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
    ;
  memset(&si, 0x55, sizeof(si));
  show("WSTOPPED|WCONTINUED only, WNOHANG", waitid(P_ALL, 0, &si, WSTOPPED | WCONTINUED | WNOHANG),
       &si);
  show("P_PGID 0 (ours)", waitid(P_PGID, 0, &si, WEXITED), &si);
  printf("  exited: %d\n", si.si_pid == e);
  e = child(exit7, NULL);
  usleep(20000);
  printf("  P_PGID of another group %s\n", err(waitid(P_PGID, e, &si, WEXITED | WNOHANG)));
  printf("  infop NULL: %s\n", err(waitid(P_PID, e, NULL, WEXITED)));
  printf("  gone: %s\n", err(waitid(P_PID, e, &si, WEXITED)));
  e = child(exit7, NULL);
  usleep(20000);
  printf("  bad infop: %s,", err(waitid(P_PID, e, (siginfo_t *)8, WEXITED)));
  printf(" then %s\n", err(waitid(P_PID, e, &si, WEXITED | WNOHANG)));
  pid_t g = fork();
  if (g == 0) {
    setpgid(0, 0);
    _exit(9);
  }
  setpgid(g, g);
  memset(&si, 0, sizeof(si));
  show("P_PGID g", waitid(P_PGID, g, &si, WEXITED), &si);
}

// ---- pause, sigsuspend ----
static int send_usr1(void *arg) {  // to the parent, once it waits
  (void)arg;
  usleep(20000);
  kill(getppid(), SIGUSR1);
  return 0;
}

static void suspend(void) {
  sigset_t block, empty, now;
  printf("pause, sigsuspend\n");
  hits = 0;
  handle(SIGUSR1, count);
  pid_t p = child(send_usr1, NULL);
  long r = pause();
  printf("  pause: %s hits %d\n", err(r), (int)hits);
  wait_status(p);
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, NULL);
  p = child(send_usr1, NULL);
  usleep(60000);  // the signal is pending (blocked) before sigsuspend unblocks it
  sigemptyset(&empty);
  r = sigsuspend(&empty);
  sigprocmask(SIG_BLOCK, NULL, &now);
  printf("  sigsuspend, pending: %s hits %d, mask back %d\n", err(r), (int)hits,
         sigismember(&now, SIGUSR1));
  wait_status(p);
  p = child(send_usr1, NULL);
  r = sigsuspend(&empty);  // waits for it
  sigprocmask(SIG_BLOCK, NULL, &now);
  printf("  sigsuspend, waiting: %s hits %d, mask back %d\n", err(r), (int)hits,
         sigismember(&now, SIGUSR1));
  wait_status(p);
  printf("  bad set %s", err(syscall(SYS_rt_sigsuspend, (void *)8, 8)));
  printf(" bad size %s\n", err(syscall(SYS_rt_sigsuspend, &empty, 4)));
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  handle(SIGUSR1, SIG_DFL);
}

// ---- the alternate signal stack ----
static char *alt;
#define ALT_SIZE (64 * 1024)
static volatile int on_alt, uc_flags_seen, uc_sp_ok, uc_size_ok, in_flags, change_err, nested;

static int in_alt(void *p) { return (char *)p > alt && (char *)p <= alt + ALT_SIZE; }

static void alt_handler(int sig, siginfo_t *si, void *ucv) {
  ucontext_t *uc = ucv;
  char local;
  stack_t cur, ss = {.ss_sp = alt, .ss_size = ALT_SIZE};
  (void)si;
  on_alt = in_alt(&local);
  uc_flags_seen = uc->uc_stack.ss_flags;
  uc_sp_ok = uc->uc_stack.ss_sp == alt;
  uc_size_ok = uc->uc_stack.ss_size == ALT_SIZE;
  sigaltstack(NULL, &cur);
  in_flags = cur.ss_flags;
  change_err = sigaltstack(&ss, NULL) < 0 ? errno : 0;
  if (sig == SIGUSR1)
    raise(SIGUSR2);  // nested: still on the alternate stack, below this frame
}

static void nested_handler(int sig, siginfo_t *si, void *ucv) {
  char local;
  (void)sig;
  (void)si;
  nested = in_alt(&local) + 2 * (((ucontext_t *)ucv)->uc_stack.ss_flags == 0);
}

static void on_alt_stack(int sig, void (*fn)(int, siginfo_t *, void *), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = fn;
  sa.sa_flags = SA_SIGINFO | flags;
  sigaction(sig, &sa, NULL);
}

static void report(const char *what) {
  printf("  %s: on alt %d, uc_stack flags %d sp %d size %d, sigaltstack in handler flags %d,"
         " change %s\n",
         what, on_alt, uc_flags_seen, uc_sp_ok, uc_size_ok, in_flags,
         change_err ? strerrorname_np(change_err) : "ok");
}

static void show_stack(const char *what) {
  stack_t o;
  memset(&o, 0x55, sizeof(o));
  long r = sigaltstack(NULL, &o);
  printf("  %s: %s flags %d sp-is-alt %d null %d size %zu\n", what, err(r), o.ss_flags,
         o.ss_sp == alt, o.ss_sp == NULL, o.ss_size);
}

static void altstack(void) {
  printf("sigaltstack\n");
  alt = malloc(ALT_SIZE);
  show_stack("at start");
  stack_t ss = {.ss_sp = alt, .ss_size = 2047};
  printf("  size 2047 %s", err(sigaltstack(&ss, NULL)));
  ss.ss_size = ALT_SIZE;
  ss.ss_flags = 4;
  printf(" flags 4 %s", err(sigaltstack(&ss, NULL)));
  ss.ss_flags = SS_ONSTACK;
  printf(" SS_ONSTACK %s", err(sigaltstack(&ss, NULL)));
  printf(" bad pointer %s\n", err(sigaltstack((stack_t *)8, NULL)));
  show_stack("after SS_ONSTACK");
  ss.ss_flags = 0;
  ss.ss_size = 2048;
  printf("  size 2048 %s\n", err(sigaltstack(&ss, NULL)));
  ss.ss_size = ALT_SIZE;
  sigaltstack(&ss, NULL);
  show_stack("set");
  on_alt_stack(SIGUSR1, alt_handler, SA_ONSTACK);
  on_alt_stack(SIGUSR2, nested_handler, SA_ONSTACK);
  raise(SIGUSR1);
  report("SA_ONSTACK");
  printf("  nested: on alt %d, uc_stack flags 0 %d\n", nested & 1, nested >> 1);
  on_alt_stack(SIGUSR1, alt_handler, 0);
  on_alt_stack(SIGUSR2, nested_handler, 0);
  raise(SIGUSR1);
  report("without SA_ONSTACK");
  pid_t p = fork();
  if (p == 0) {
    show_stack("fork child");
    execl(self, self, "altstack", (char *)NULL);
    _exit(99);
  }
  wait_status(p);
  on_alt_stack(SIGUSR1, alt_handler, SA_ONSTACK);
  ss.ss_flags = SS_ONSTACK | SS_AUTODISARM;
  printf("  SS_AUTODISARM %s", err(sigaltstack(&ss, NULL)));
  raise(SIGUSR1);
  printf("; in the handler on alt %d uc flags %#x sigaltstack flags %d change %s\n", on_alt,
         uc_flags_seen, in_flags, change_err ? strerrorname_np(change_err) : "ok");
  show_stack("after the handler");
  ss.ss_flags = SS_DISABLE;
  printf("  SS_DISABLE %s\n", err(sigaltstack(&ss, NULL)));
  show_stack("disabled");
  raise(SIGUSR1);
  report("disabled");
  stack_t o;
  printf("  old only with bad pointer %s\n", err(sigaltstack(NULL, (stack_t *)8)));
  (void)o;
}

// ---- kill(-1): every process but init and the caller ----
static void killall(void) {
  int fds[2];
  pipe(fds);
  handle(SIGUSR2, exit_on);
  pid_t a = child(waiter, (void *)(intptr_t)fds[1]);
  pid_t b = child(waiter, (void *)(intptr_t)fds[1]);
  signal(SIGUSR2, SIG_IGN);  // the simulator's probe is no pid 1: natively it is spared
  close(fds[1]);
  char c;
  read(fds[0], &c, 1);
  pid_t k = fork();
  if (k == 0) {
    signal(SIGUSR2, SIG_DFL);
    long r = kill(-1, SIGUSR2);  // its own default action would kill it: it is spared
    printf("kill(-1): %s, caller survives\n", err(r));
    printf("kill(-1, 0): %s\n", err(kill(-1, 0)));
    _exit(0);
  }
  printf("caller exit %d,", wait_status(k));
  printf(" others %d", wait_status(a));
  printf(" %d\n", wait_status(b));
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  self = argv[0];
  if (argc > 1 && !strcmp(argv[1], "ids")) {
    printf("  after exec: pgrp is pid %d, session differs from pgrp's %d\n",
           getpgrp() == getppid(), getsid(0) != getpgrp());
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "altstack")) {
    show_stack("after exec");
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "killall")) {
    killall();
    return 0;
  }
  groups();
  group_kill();
  waits();
  suspend();
  altstack();
  return 0;
}
