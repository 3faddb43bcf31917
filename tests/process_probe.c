// Process system calls from a real program, each with its result and errno printed: run
// natively and on the simulator by tests/test_realspawn.py, the two outputs compared.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/select.h>
#include <time.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int x = 1;

static void show(const char *what, long r) {
  printf("%s %ld %d\n", what, r, r < 0 ? errno : 0);
  errno = 0;
}

int main(void) {
  int st = 0;
  pid_t p;
  setvbuf(stdout, NULL, _IONBF, 0);  // nothing buffered is copied into a child
  show("wait4 without children", syscall(SYS_wait4, -1, &st, 0, NULL));
  p = fork();
  if (p == 0)
    _exit(7);
  show("wait4 bad status pointer", syscall(SYS_wait4, p, (int *)8, 0, NULL));
  show("wait4 bad rusage pointer", syscall(SYS_wait4, p, &st, 0, (void *)8));
  show("wait4 bad options", syscall(SYS_wait4, -1, &st, 0x1000, NULL));
  show("waitpid reaps it", waitpid(p, &st, 0) == p);
  printf("exit status %d\n", WEXITSTATUS(st));
  p = vfork();
  if (p == 0) {
    execl("/bin/echo", "echo", "a vfork child exec'd echo", (char *)NULL);
    _exit(127);
  }
  show("waitpid vfork child", waitpid(p, &st, 0) == p);
  printf("vfork child status %d\n", WEXITSTATUS(st));
  show("execve bad argv", syscall(SYS_execve, "/bin/echo", (char **)8, NULL));
  show("execve bad path", syscall(SYS_execve, (char *)8, NULL, NULL));
  show("execve missing file", execl("/nonexistent", "x", (char *)NULL));
  show("execve a directory", execl("/tmp", "x", (char *)NULL));
  show("clone thread without sighand", syscall(SYS_clone, CLONE_THREAD, 0, 0, 0, 0));
  show("clone sighand without vm", syscall(SYS_clone, CLONE_SIGHAND, 0, 0, 0, 0));
  p = fork();
  if (p == 0) {
    usleep(50000);
    _exit(3);
  }
  show("waitpid WNOHANG, child running", waitpid(p, &st, WNOHANG));
  show("waitpid then", waitpid(p, &st, 0) == p);
  printf("status %d\n", WEXITSTATUS(st));
  p = fork();
  if (p == 0) {
    x = 2;  // its own copy
    _exit(x);
  }
  waitpid(p, &st, 0);
  printf("copy on write: parent %d child %d\n", x, WEXITSTATUS(st));
  p = fork();
  if (p == 0)
    *(volatile int *)16 = 1;  // dies alone between fork and exec
  waitpid(p, &st, 0);
  printf("child crash: signalled %d signal %d\n", WIFSIGNALED(st), WTERMSIG(st));
  show("getpeername of a file", syscall(SYS_getpeername, 1, NULL, NULL));
  show("getpeername bad fd", syscall(SYS_getpeername, 99, NULL, NULL));
  show("wait4 ECHILD again", waitpid(-1, &st, WNOHANG));
  int fds[2];
  pipe(fds);
  struct pollfd pf[3] = {{fds[0], POLLIN, 0}, {fds[1], POLLOUT, 0}, {99, POLLIN, 0}};
  show("poll: empty pipe, write end, bad fd", poll(pf, 3, 0));
  printf("revents %d %d %d\n", pf[0].revents, pf[1].revents, pf[2].revents);
  write(fds[1], "x", 1);
  show("poll: a byte waits", poll(pf, 1, -1));
  printf("revents %d\n", pf[0].revents);
  char ch;
  read(fds[0], &ch, 1);
  show("poll 50 ms on an empty pipe", poll(pf, 1, 50));
  struct pollfd *volatile bad_pf = (struct pollfd *)8;  // (volatile: no compiler warning)
  show("poll bad pointer", poll(bad_pf, 1, 0));
  struct timespec bad = {0, 1000000000};
  show("ppoll bad timespec", ppoll(pf, 1, &bad, NULL));
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(fds[0], &rs);
  struct timeval tv = {0, 20000};
  show("select 20 ms on an empty pipe", select(fds[0] + 1, &rs, NULL, NULL, &tv));
  printf("timeval after %ld %ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
  FD_ZERO(&rs);
  FD_SET(50, &rs);
  show("select a closed fd", select(51, &rs, NULL, NULL, NULL));
  close(fds[0]);
  pf[1].revents = 0;
  show("poll: the write end, no reader", poll(&pf[1], 1, 0));
  printf("revents %d\n", pf[1].revents);
  close(fds[1]);
  show("close_range first > last", syscall(SYS_close_range, 5, 3, 0));
  show("close_range bad flags", syscall(SYS_close_range, 3, 10, 8));
  int d = dup(1);
  show("close_range cloexec", syscall(SYS_close_range, d, d, 4));
  show("cloexec flag set", fcntl(d, F_GETFD));
  show("close_range", syscall(SYS_close_range, d, ~0U, 0));
  show("closed", fcntl(d, F_GETFD));
  p = fork();
  if (p == 0) {
    usleep(20000);
    _exit(0);
  }
  show("poll with no descriptors, 30 ms", poll(NULL, 0, 30));
  waitpid(p, &st, 0);
  return 0;
}
