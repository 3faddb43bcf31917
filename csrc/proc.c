// proc.c — processes: pid allocation and the pid table. A process owns an mm, a descriptor
// table and a working directory. (Threads, exit, wait and signals arrive with exec.)
#include <stdlib.h>
#include <string.h>

#include "spawnfd.h"

// The live process with this pid, or NULL.
struct proc *proc_get(struct kernel *k, int pid) {
  return (pid > 0 && pid < k->pid_max) ? k->procs[pid] : NULL;
}

// Next free pid after the last one handed out, wrapping like Linux alloc_pid().
static int pid_alloc(struct kernel *k) {
  for (int n = 0; n < k->pid_max; n++) {
    int pid = k->last_pid + 1 + n;
    if (pid >= k->pid_max)
      pid = 1 + (pid - k->pid_max) % (k->pid_max - 1);
    if (!k->procs[pid])
      return k->last_pid = pid;
  }
  return -EAGAIN;
}

// A new process with an empty address space and descriptor table, cwd "/".
int proc_new(struct kernel *k, int ppid, struct proc **out) {
  int err = 0, pid = pid_alloc(k);
  if (pid < 0)
    return pid;
  struct proc *p = calloc(1, sizeof(*p));
  if (!p)
    return -ENOMEM;
  if (!(p->mm = mm_create(k, &err))) {
    free(p);
    return err;
  }
  p->pid = pid;
  p->ppid = ppid;
  strcpy(p->cwd, "/");
  k->procs[pid] = p;
  *out = p;
  return 0;
}

// Release a process's memory and descriptors and its pid.
void proc_free(struct kernel *k, struct proc *p) {
  k->procs[p->pid] = NULL;
  fdt_fini(k, &p->fds);
  if (p->mm)
    mm_destroy(p->mm);
  free(p);
}
