// pressure_probe.c — forks on demand from a parent that holds memory it wrote, for
// tests/test_spawn_pressure.py: one byte on stdin, one fork ('f') or vfork + exec ('v');
// one line on stdout, what the fork returned or how the child ended. It forks once (and
// vforks) before it says it is ready, so the pages the fork path writes are its own by then.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  size_t size = (size_t)atoi(argc > 1 ? argv[1] : "8") << 20;
  char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return 1;
  memset(m, 1, size);
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 0; i < 2; i++) {  // warm up: the pages fork and wait write are written now
    pid_t pid = i ? vfork() : fork();
    if (pid == 0)
      _exit(0);
    if (pid < 0 || waitpid(pid, NULL, 0) != pid)
      return 3;
  }
  printf("ready\n");
  char c;
  while (read(0, &c, 1) == 1) {
    pid_t pid = c == 'v' ? vfork() : fork();
    if (pid < 0) {
      printf("fork: %s\n", strerror(errno));
      continue;
    }
    if (pid == 0) {
      if (c == 'v') {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
      }
      m[size / 2]++;  // a COW fault in the child
      _exit(m[size / 2] == 2 ? 0 : 1);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
      return 2;
    if (WIFSIGNALED(st))
      printf("child: killed by %d\n", WTERMSIG(st));
    else
      printf("child: %d\n", WEXITSTATUS(st));
  }
  return 0;
}
