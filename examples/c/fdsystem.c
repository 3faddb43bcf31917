/* fdsystem.c — system(3) on fdspawn(): /bin/sh -c command, started through the fd model and
 * waited for through its wait handle. On a kernel without the fd model's calls (a real Linux:
 * ENOSYS) it falls back to posix_spawn(3), so the same program runs natively too.
 *
 *     cc -I<spawnfd/include> fdsystem.c fdspawn.c -o fdsystem
 *     fdsystem 'echo hi' 'exit 3' ...   runs each command, then prints its status
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <spawnfd/abi.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdspawn.h"

extern char **environ;

/* The wait status of /bin/sh -c command, or -1 with errno set if no shell could be started
 * (a shell that cannot run the command exits 127, as system() reports it). command NULL:
 * whether a shell is there (1). SIGINT and SIGQUIT are ignored while it runs, as system()
 * does; no SIGCHLD blocking is needed: the wait is on this child's own wait handle.
 * compare glibc do_system(). */
int fdsystem(const char *command) {
  char *argv[] = {"sh", "-c", (char *)command, NULL};
  struct sigaction ign = {.sa_handler = SIG_IGN}, intr, quit;
  pid_t pid;
  int wfd, status = -1;
  if (!command)
    return access("/bin/sh", X_OK) == 0;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGINT, &ign, &intr);
  sigaction(SIGQUIT, &ign, &quit);
  int err = fdspawn(&pid, &wfd, "/bin/sh", NULL, argv, environ);
  if (!err) {
    status = spawnfd_wait(wfd);
    close(wfd);
  } else if (err == ENOSYS) { /* no fd model here: posix_spawn */
    err = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    if (!err && waitpid(pid, &status, 0) < 0)
      status = -1;
  }
  sigaction(SIGINT, &intr, NULL);
  sigaction(SIGQUIT, &quit, NULL);
  if (err) {
    errno = err;
    return -1;
  }
  return status;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0); /* the children write to the same stdout */
  printf("shell available: %d\n", fdsystem(NULL));
  for (int i = 1; i < argc; i++) {
    int st = fdsystem(argv[i]);
    if (st < 0)
      printf("[%s] failed: %s\n", argv[i], strerror(errno));
    else if (WIFEXITED(st))
      printf("[%s] exited %d\n", argv[i], WEXITSTATUS(st));
    else
      printf("[%s] killed by signal %d\n", argv[i], WTERMSIG(st));
  }
  return 0;
}
