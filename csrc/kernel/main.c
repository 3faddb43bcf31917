// kernel.c — the simulated machine: boot (frames, zero page, VFS, init), teardown, panic,
// statistics and the fault-injection knob.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel.h"

#define PID_MAX 32768

// Mark the kernel broken; every later call fails with -KPANIC and the message.
void kpanic(struct kernel *k, const char *fmt, ...) {
  if (k->panicked)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->panic_msg, sizeof(k->panic_msg), fmt, ap);
  va_end(ap);
  k->panicked = 1;
}

static int kernel_boot(struct kernel *k, uint64_t mem_bytes) {
  int err = frames_init(&k->fr, mem_bytes);
  if (err)
    return err;
  if ((err = frame_alloc(k, FK_ZERO, &k->fr.zero_pfn)))
    return err;
  if (!(k->procs = calloc(PID_MAX, sizeof(*k->procs))) ||
      !(k->tids = calloc(PID_MAX, sizeof(*k->tids))) ||
      !(k->pid_users = calloc(PID_MAX, sizeof(*k->pid_users))))
    return -ENOMEM;
  k->pid_max = PID_MAX;
  if ((err = vfs_init(k)) || (err = thp_init(k)))
    return err;
  struct proc *init;
  return proc_new(k, 0, NULL, &init);
}

// Boot a kernel with mem_bytes of simulated memory; init is pid 1.
int sfd_kernel_new(uint64_t mem_bytes, struct kernel **out) {
  struct kernel *k = calloc(1, sizeof(*k));
  if (!k)
    return -ENOMEM;
  k->overcommit_ratio = 50;  // vm.overcommit_ratio's default
  int err = kernel_boot(k, mem_bytes);
  if (err) {
    sfd_kernel_free(k);
    return err;
  }
  *out = k;
  return 0;
}

// Tear everything down, processes first (they hold inodes and frames).
void sfd_kernel_free(struct kernel *k) {
  if (!k)
    return;
  if (k->procs) {
    for (int pid = 1; pid < k->pid_max; pid++)
      if (k->procs[pid])
        proc_free(k, k->procs[pid]);
    free(k->procs);
  }
  free(k->tids);
  free(k->pid_users);
  free(k->sigout);
  if (k->cpu)
    k->cpu_free(k->cpu);  // after the processes: each lets go of the CPU first
  vfs_fini(k);
  free(k->thp_maps);
  free(k->trace);
  frames_fini(&k->fr);
  pt_pool_fini(k);
  free(k);
}

const char *sfd_panic_message(struct kernel *k) { return k->panic_msg; }

int sfd_kstats(struct kernel *k, struct kstats *out) {
  *out = k->st;
  out->frames_total = k->fr.nframes;
  out->frames_used = k->fr.used;
  out->anon_frames = k->fr.by_kind[FK_ANON];
  out->pagecache_frames = k->fr.by_kind[FK_PAGECACHE];
  out->pagetable_frames = k->fr.by_kind[FK_PAGETABLE];
  out->frames_allocated = k->fr.allocated;
  out->frames_freed = k->fr.freed;
  out->buffers = k->fr.buffers;
  out->committed_as = k->committed << PAGE_SHIFT;
  out->commit_limit = vm_commit_limit(k) << PAGE_SHIFT;
  return 0;
}

// Fail the n-th frame allocation from now (n >= 1), once; 0 turns injection off.
int sfd_fail_alloc_after(struct kernel *k, uint64_t n) {
  if (k->panicked)
    return -KPANIC;
  k->fr.fail_after = n;
  k->fr.allocs = 0;
  return 0;
}

int sfd_frame_info(struct kernel *k, uint64_t pfn, uint32_t *ref, uint32_t *kind) {
  if (pfn >= k->fr.nframes)
    return -EINVAL;
  *ref = k->fr.f[pfn].ref;
  *kind = k->fr.f[pfn].kind;
  return 0;
}

int sfd_check(struct kernel *k, char *msg, size_t cap) {
  if (k->panicked) {
    snprintf(msg, cap, "%s", k->panic_msg);
    return -KPANIC;
  }
  int err = check_kernel(k, msg, cap);
  if (err)
    kpanic(k, "%s", msg);
  return err;
}

// Share last-level tables of big MAP_SHARED file mappings from now on (0 turns it off for
// new attachments; tables already shared stay shared).
int sfd_set_overcommit(struct kernel *k, int mode, uint32_t ratio) {
  if (k->panicked)
    return -KPANIC;
  if (mode < 0 || mode > 2)
    return -EINVAL;
  k->overcommit = mode;
  k->overcommit_ratio = ratio;
  return 0;
}

// The fork policy a running program's fork(2) uses (FORK_*).
int sfd_set_fork_mode(struct kernel *k, int mode) {
  if (k->panicked)
    return -KPANIC;
  if (mode < FORK_COPY || mode > FORK_COW_PT_EAGER)
    return -EINVAL;
  k->fork_mode = mode;
  return 0;
}

int sfd_set_share_pagetables(struct kernel *k, int on) {
  if (k->panicked)
    return -KPANIC;
  k->share_pagetables = !!on;
  return 0;
}
