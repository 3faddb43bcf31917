/* compare.c — one parent spawns /bin/true N times by each method in turn: glibc
 * posix_spawn(3), fork(2) + execve(2), vfork(2) + execve(2), fdspawn() (the fd model: ELF
 * loading in the parent), and fdspawn() through ld.so alone; after it mapped and wrote MIB
 * MiB of anonymous memory (MADV_POPULATE_WRITE). `spawnfd bench abi` runs it on the
 * simulator and reads the kernel's counters around each method: before one it prints
 * "ready METHOD" and waits for a byte on stdin, after it "done METHOD" and waits again.
 *
 *     compare N MIB [method...]    methods: posix_spawn fork vfork fdspawn fdspawn-ldso none
 *
 * ("none" spawns nothing: the cost of the sync points themselves, which the harness
 * subtracts.)
 *
 *     cc -I<spawnfd/include> compare.c fdspawn.c -o compare
 */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <spawnfd/abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdspawn.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

extern char **environ;
static char *const true_argv[] = {"true", NULL};

/* One spawn of /bin/true by method m, waited for: its wait status, or -1. compare
 * glibc's __spawni() (posix_spawn), and what fork(2)/vfork(2) + execve(2) callers do. */
static int spawn_once(const char *m) {
  pid_t pid;
  int st = -1;
  if (!strcmp(m, "none")) { /* first: the baseline's own test costs the least */
    st = 0;
  } else if (!strcmp(m, "posix_spawn")) {
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ) ||
        waitpid(pid, &st, 0) < 0)
      return -1;
  } else if (!strcmp(m, "fork") || !strcmp(m, "vfork")) {
    pid = !strcmp(m, "fork") ? fork() : vfork();
    if (pid == 0) {
      execve("/bin/true", true_argv, environ);
      _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
      return -1;
 } else if (!strcmp(m, "fdspawn") || !strcmp(m, "fdspawn-ldso")) {
    struct fdspawn_attr attr = {.flags = strcmp(m, "fdspawn") ? FDSPAWN_LDSO : 0};
    int wfd;
    if (fdspawn(&pid, &wfd, "/bin/true", &attr, true_argv, environ))
      return -1;
    st = spawnfd_wait(wfd);
    close(wfd);
  }
  return st;
}

/* Tell the harness where we are and wait for its go (a barrier over two pipes). */
static void sync_point(const char *what, const char *m) {
  char c;
  printf("%s %s\n", what, m);
  fflush(stdout);
  if (read(0, &c, 1) != 1)
    exit(3);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: compare N MIB [posix_spawn|fork|vfork|fdspawn|fdspawn-ldso|none...]\n");
    return 2;
  }
  long n = atol(argv[1]);
  size_t len = (size_t)atol(argv[2]) << 20;
  if (len) {
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
      return perror("mmap"), 2;
    if (madvise(mem, len, MADV_POPULATE_WRITE))  /* an older kernel: touch every page */
      for (size_t i = 0; i < len; i += 4096)
        mem[i] = 1;
  }
  static const char *all[] = {"posix_spawn", "fork", "vfork", "fdspawn", "fdspawn-ldso"};
  int bad = 0, nm = argc > 3 ? argc - 3 : 5;
  for (int i = 0; i < nm; i++) {
    const char *m = argc > 3 ? argv[3 + i] : all[i];
    if (spawn_once(m) != 0)  /* warm-up, not measured: lazy PLT binding, first allocations */
      bad++;
    sync_point("ready", m);
    for (long j = 0; j < n; j++)
      if (spawn_once(m) != 0)
        bad++;
    sync_point("done", m);
  }
  return bad != 0;
}
