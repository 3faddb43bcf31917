// Signals delivered to a real program: handlers on the x86-64 signal frame, rt_sigreturn,
// masks, siginfo, SIGCHLD, SIGPIPE, EINTR and SA_RESTART, kill of a child. Run natively and
// on the simulator by tests/test_realspawn.py, the two outputs compared.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int hits, last_sig, last_code, last_status, chld_pid_ok;
static volatile double fpu_junk;

static void handler(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  hits++;
  last_sig = sig;
  last_code = si->si_code;
  if (sig == SIGCHLD)
    last_status = si->si_status;
  fpu_junk = fpu_junk * 3.25 + 1.5;  // the handler uses the FPU (SSE) registers
}

static void on(int sig, int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | flags;
  sigaction(sig, &sa, NULL);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  on(SIGUSR1, SA_RESTART);
  volatile double x = 1.0 / 3.0;
  kill(getpid(), SIGUSR1);
  printf("kill self: hits %d sig %d code %d, fpu kept %d\n", hits, last_sig, last_code,
         x == 1.0 / 3.0);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  raise(SIGUSR1);
  printf("blocked: hits %d\n", hits);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  printf("unblocked: hits %d\n", hits);

  on(SIGCHLD, 0);
  pid_t p = fork();
  if (p == 0)
    _exit(5);
  int st;
  while (waitpid(p, &st, 0) < 0 && errno == EINTR)
    ;
  printf("SIGCHLD: sig %d status %d exit %d\n", last_sig, last_status, WEXITSTATUS(st));
  signal(SIGCHLD, SIG_DFL);

  int fds[2];
  pipe(fds);
  on(SIGUSR2, 0);  // no SA_RESTART: the read returns EINTR
  pid_t parent = getpid();
  p = fork();
  if (p == 0) {
    usleep(20000);
    kill(parent, SIGUSR2);
    _exit(0);
  }
  char ch;
  ssize_t r = read(fds[0], &ch, 1);
  printf("read interrupted: %zd %s, sig %d\n", r, r < 0 ? strerror(errno) : "", last_sig);
  waitpid(p, &st, 0);
  on(SIGUSR2, SA_RESTART);  // now it restarts and gets the byte written after the signal
  p = fork();
  if (p == 0) {
    usleep(20000);
    kill(parent, SIGUSR2);
    usleep(20000);
    write(fds[1], "y", 1);
    _exit(0);
  }
  r = read(fds[0], &ch, 1);
  printf("read restarted: %zd %c\n", r, r == 1 ? ch : '?');
  waitpid(p, &st, 0);

  on(SIGPIPE, 0);
  close(fds[0]);
  r = write(fds[1], "z", 1);
  printf("SIGPIPE handled: %zd %s, sig %d\n", r, strerror(errno), last_sig);

  p = fork();
  if (p == 0) {
    for (;;)
      pause();
  }
  usleep(20000);
  kill(p, SIGTERM);
  waitpid(p, &st, 0);
  printf("child killed: signalled %d sig %d\n", WIFSIGNALED(st), WTERMSIG(st));
  int k = kill(getpid(), 99);
  printf("kill bad signal: %d %d\n", k, errno);
  k = kill(99999, 0);
  printf("kill no such pid: %d %d\n", k, errno);
  return 0;
}
