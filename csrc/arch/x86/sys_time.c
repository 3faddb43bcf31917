// sys_time.c — sleeping and what a program asks about the machine (compare Linux
// kernel/time/hrtimer.c nanosleep, kernel/sys.c sysinfo/getrusage, kernel/sched/
// core.c sched_getaffinity).
//
// A sleep never blocks the host: the call stops the CPU (CPU_SLEEP) with the time to sleep,
// the trio runtime sleeps that long on its own clock and runs the CPU again, and the parked
// call then returns 0. No signal is ever delivered to code on the CPU, so a sleep is never
// interrupted: the remaining time (rem) is never written, as on Linux when nothing interrupts.
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <time.h>

#include "arch/x86/syscalls.h"

#define NSEC_PER_SEC 1000000000LL
#define TIMER_ABSTIME_ 1

// Park the call for ns nanoseconds (0: return at once); the run after the sleep returns 0.
static int64_t sleep_for(struct cpu *c, int64_t ns) {
  if (c->slept) {
    c->slept = 0;
    return 0;
  }
  if (ns <= 0)
    return 0;
  c->stop = CPU_SLEEP;
  c->sleep_ns = (uint64_t)ns;
  c->slept = 1;
  return 0;
}

// A struct timespec from user memory as nanoseconds; -EINVAL outside [0, 1e9) nanoseconds
// or a negative second count. Saturates instead of overflowing.
static int64_t timespec_ns(struct cpu *c, uint64_t uts, int64_t *ns) {
  int64_t ts[2];
  int err = copy_from_user(c, ts, uts, sizeof(ts));
  if (err)
    return err;
  if (ts[0] < 0 || ts[1] < 0 || ts[1] >= NSEC_PER_SEC)
    return -EINVAL;
  *ns = ts[0] > (INT64_MAX - ts[1]) / NSEC_PER_SEC ? INT64_MAX : ts[0] * NSEC_PER_SEC + ts[1];
  return 0;
}

int64_t sys_nanosleep(struct cpu *c, struct proc *p, const uint64_t *a) {
  int64_t ns;
  (void)p;
  if (c->slept)
    return sleep_for(c, 0);
  int64_t r = timespec_ns(c, a[0], &ns);
  return r ? r : sleep_for(c, ns);
}

int64_t sys_clock_nanosleep(struct cpu *c, struct proc *p, const uint64_t *a) {
  clockid_t clk = (clockid_t)a[0];
  int64_t ns;
  struct timespec now;
  (void)p;
  if (c->slept)
    return sleep_for(c, 0);
  if (clk == CLOCK_THREAD_CPUTIME_ID)
    return -EOPNOTSUPP;  // as Linux
  if (clk == CLOCK_PROCESS_CPUTIME_ID)
    return -EOPNOTSUPP;  // Linux sleeps on it; CPU time here is not modelled (a difference)
  if (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC && clk != CLOCK_BOOTTIME &&
      clk != CLOCK_TAI)
    return -EINVAL;
  int64_t r = timespec_ns(c, a[2], &ns);
  if (r)
    return r;
  if (a[1] & TIMER_ABSTIME_) {  // the deadline on the host clock clock_gettime(2) reads
    clock_gettime(clk, &now);
    int64_t t = (int64_t)now.tv_sec * NSEC_PER_SEC + now.tv_nsec;
    ns = ns > t ? ns - t : 0;
  }
  return sleep_for(c, ns);
}

// sysinfo(2): the simulated machine's memory; uptime and loads as the host's clock says.
int64_t sys_sysinfo(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct sysinfo si;
  struct timespec up;
  struct kernel *k = c->k;
  (void)p;
  memset(&si, 0, sizeof(si));
  clock_gettime(CLOCK_BOOTTIME, &up);
  si.uptime = up.tv_sec;
  si.totalram = (uint64_t)k->fr.nframes * PAGE_SIZE;
  si.freeram = (uint64_t)(k->fr.nframes - k->fr.used) * PAGE_SIZE;
  si.mem_unit = 1;
  for (int pid = 1; pid < k->pid_max; pid++)
    si.procs += k->procs[pid] != NULL;
  return copy_to_user(c, a[0], &si, sizeof(si));
}

// getrusage(2): no time or paging accounting is kept: zeroes.
int64_t sys_getrusage(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct rusage ru;
  int who = (int)a[0];
  (void)p;
  if (who != RUSAGE_SELF && who != RUSAGE_CHILDREN && who != RUSAGE_THREAD)
    return -EINVAL;
  memset(&ru, 0, sizeof(ru));
  return copy_to_user(c, a[1], &ru, sizeof(ru));
}

// sched_getaffinity(2): one CPU (cpu 0); the mask is one unsigned long.
int64_t sys_sched_getaffinity(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t mask = 1;
  int pid = (int)a[0];
  if (pid < 0 || (pid && pid != p->pid && !proc_get(c->k, pid)))
    return -ESRCH;
  if ((uint32_t)a[1] < sizeof(mask) || ((uint32_t)a[1] & (sizeof(mask) - 1)))
    return -EINVAL;
  int err = copy_to_user(c, a[2], &mask, sizeof(mask));
  return err ? err : (int64_t)sizeof(mask);
}
