// stop_probe.c — stopping and continuing (SIGSTOP, SIGTSTP, SIGCONT; wait4's WUNTRACED and
// WCONTINUED, waitid's WSTOPPED and WCONTINUED, SIGCHLD's CLD_STOPPED and CLD_CONTINUED), run
// natively and on the simulator by tests/test_realspawn.py; every line must be the same.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t chld_codes[8], nchld;

static void on_chld(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  if (nchld < 8)
    chld_codes[nchld++] = si->si_code;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

static const char *code_name(int code) {
  return code == CLD_STOPPED ? "CLD_STOPPED" : code == CLD_CONTINUED ? "CLD_CONTINUED"
         : code == CLD_EXITED ? "CLD_EXITED" : code == CLD_KILLED ? "CLD_KILLED" : "?";
}

static void describe(const char *what, int st) {
  if (WIFSTOPPED(st))
    printf("%s: stopped by %s\n", what, sigabbrev_np(WSTOPSIG(st)));
  else if (WIFCONTINUED(st))
    printf("%s: continued\n", what);
  else if (WIFSIGNALED(st))
    printf("%s: killed by %s\n", what, sigabbrev_np(WTERMSIG(st)));
  else
    printf("%s: exited %d\n", what, WEXITSTATUS(st));
}

// A child that counts in a loop of short sleeps, writing each step to a pipe.
static pid_t counter(int *rfd) {
  int p[2];
  if (pipe(p))
    exit(2);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    for (char i = 0;; i++) {
      if (write(p[1], &i, 1) != 1)
        _exit(3);
      sleep_ms(2);
    }
  }
  close(p[1]);
  *rfd = p[0];
  return pid;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  // a group of its own, whose parent is outside it in the same session: not orphaned, so
  // SIGTSTP stops its children as natively whatever group the test runner is in
  if (setpgid(0, 0))
    return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_chld;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGCHLD, &sa, NULL);
  int st, rfd;
  char b;
  pid_t c = counter(&rfd);
  read(rfd, &b, 1);
  kill(c, SIGSTOP);
  printf("wait4 WUNTRACED: %d\n", waitpid(c, &st, WUNTRACED) == c);
  describe("child", st);
  printf("reported once: %d\n", waitpid(c, &st, WUNTRACED | WNOHANG));
  // stopped, it writes nothing: drain what it wrote before, wait, find nothing new
  fcntl(rfd, F_SETFL, O_NONBLOCK);
  while (read(rfd, &b, 1) == 1) {
  }
  sleep_ms(30);
  printf("quiet while stopped: %d\n", read(rfd, &b, 1) < 0 && errno == EAGAIN);
  fcntl(rfd, F_SETFL, 0);
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  kill(c, SIGCONT);
  printf("waitid WCONTINUED|WNOWAIT: %d\n", waitid(P_PID, c, &si, WCONTINUED | WNOWAIT));
  printf("  si_code %s si_status %s\n", code_name(si.si_code), sigabbrev_np(si.si_status));
  printf("wait4 WCONTINUED: %d\n", waitpid(c, &st, WCONTINUED) == c);
  describe("child", st);
  // it runs again: the pipe fills with its counting
  int n = 0;
  for (int i = 0; i < 3; i++)
    n += read(rfd, &b, 1);
  printf("read after the continue: %d\n", n);
  kill(c, SIGTSTP);  // its default action stops too (the group is not orphaned)
  memset(&si, 0, sizeof(si));
  printf("waitid WSTOPPED: %d\n", waitid(P_PID, c, &si, WSTOPPED));
  printf("  si_code %s si_status %s\n", code_name(si.si_code), sigabbrev_np(si.si_status));
  printf("a stopped child takes SIGKILL: %d\n", kill(c, SIGKILL));
  waitpid(c, &st, 0);
  describe("child", st);
  close(rfd);
  printf("SIGCHLD codes:");
  for (int i = 0; i < nchld; i++)
    printf(" %s", code_name(chld_codes[i]));
  printf("\n");
  // SA_NOCLDSTOP: no SIGCHLD for a stop or a continue, the wait still sees them
  sa.sa_flags |= SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  nchld = 0;
  c = counter(&rfd);
  read(rfd, &b, 1);
  kill(c, SIGSTOP);
  waitpid(c, &st, WUNTRACED);
  describe("child", st);
  kill(c, SIGCONT);
  waitpid(c, &st, WCONTINUED);
  describe("child", st);
  kill(c, SIGTERM);
  waitpid(c, &st, 0);
  describe("child", st);
  printf("SIGCHLD with SA_NOCLDSTOP:");
  for (int i = 0; i < nchld; i++)
    printf(" %s", code_name(chld_codes[i]));
  printf("\n");
  close(rfd);
  // a stop signal blocked, then continued before it is unblocked: SIGCONT discards it
  int ready[2], go[2];
  if (pipe(ready) || pipe(go))
    return 2;
  c = fork();
  if (c == 0) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTSTP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (write(ready[1], "r", 1) != 1 || read(go[0], &b, 1) != 1)  // told when both were sent
      _exit(2);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    _exit(7);
  }
  if (read(ready[0], &b, 1) != 1)
    return 2;
  kill(c, SIGTSTP);
  kill(c, SIGCONT);
  if (write(go[1], "g", 1) != 1)
    return 2;
  waitpid(c, &st, WUNTRACED);
  describe("SIGCONT dropped the pending SIGTSTP", st);
  return 0;
}
