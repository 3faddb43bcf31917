// sys_poll.c — poll, ppoll, select, pselect6 over pipes and files. compare Linux fs/select.c:
// every descriptor is asked what it is ready for (pipe_poll(), or always ready: a regular
// file or a device); if none is and the timeout allows, the thread waits (CPU_POLL) until a
// pipe moves, a child exits (a wait handle is readable then: pidfd_poll()) or the timeout
// passes (the trio clock), and the call runs again.
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/syscalls.h"

#define DEFAULT_POLLMASK (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)
#define POLLIN_SET (POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR)
#define POLLOUT_SET (POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR)
#define POLLEX_SET (POLLPRI)
#define NO_TIMEOUT UINT64_MAX

struct pollfd_ {
  int32_t fd;
  int16_t events, revents;
};

// A wait handle is readable once its process has exited, and hung up once it was reaped
// (docs/abi.md). compare pidfd_poll().
static unsigned wait_handle_poll(struct kernel *k, const struct file *f) {
  struct proc *t = proc_by_handle(k, f->ino);
  if (!t)
    return POLLIN | POLLRDNORM | POLLHUP;
  return t->state == PS_ZOMBIE ? POLLIN | POLLRDNORM : 0;
}

// What fd is ready for now; POLLNVAL for a descriptor that is not open. compare vfs_poll().
static unsigned fd_poll(struct kernel *k, struct proc *p, int fd) {
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return POLLNVAL;
  if (f->ino->kind == IK_PIDFD)
    return wait_handle_poll(k, f);
  return f->ino->kind == IK_PIPE ? pipe_poll(f) : DEFAULT_POLLMASK;
}

// Nothing is ready: wait for timeout_ns (NO_TIMEOUT: for ever) unless it is 0 or already
// over. Returns 1 when the caller returns now (nothing ready), 0 when the thread waits.
static int poll_wait(struct cpu *c, uint64_t timeout_ns) {
  if (!timeout_ns || c->timed_out) {
    c->timed_out = 0;
    return 1;
  }
  c->stop = CPU_POLL;
  c->sleep_ns = timeout_ns;
  c->poll_again = c->resuming;  // the same call: its deadline stands
  return 0;
}

// compare do_sys_poll(): the array in, each revents set, the count of ready entries.
static int64_t do_poll(struct cpu *c, struct proc *p, uint64_t ufds, uint64_t nfds,
                       uint64_t timeout_ns) {
  if (nfds > FD_MAX)
    return -EINVAL;
  struct pollfd_ *v = malloc(nfds ? nfds * sizeof(*v) : 1);
  if (!v)
    return -ENOMEM;
  int64_t n = copy_from_user(c, v, ufds, nfds * sizeof(*v));
  for (uint64_t i = 0; !n && i < nfds; i++) {
    v[i].revents = 0;
    if (v[i].fd < 0)
      continue;
    unsigned mask = fd_poll(c->k, p, v[i].fd);
    v[i].revents = (int16_t)(mask & ((uint16_t)v[i].events | POLLERR | POLLHUP | POLLNVAL));
  }
  if (n) {
    free(v);
    return n;
  }
  for (uint64_t i = 0; i < nfds; i++)
    n += v[i].revents != 0;
  if (n || poll_wait(c, timeout_ns)) {
    c->timed_out = 0;
    for (uint64_t i = 0; i < nfds && !(n < 0); i++)  // only revents is written back
      if (copy_to_user(c, ufds + i * sizeof(*v) + 6, &v[i].revents, 2))
        n = -EFAULT;
  }
  free(v);
  return n;
}

int64_t sys_poll(struct cpu *c, struct proc *p, const uint64_t *a) {
  int timeout_ms = (int)a[2];
  return do_poll(c, p, a[0], a[1], timeout_ms < 0 ? NO_TIMEOUT : (uint64_t)timeout_ms * 1000000);
}

// A user timespec as nanoseconds; -EINVAL if it is not a valid one. compare
// poll_select_set_timeout().
static int timespec_ns(struct cpu *c, uint64_t uts, uint64_t *ns) {
  int64_t ts[2];
  int err = copy_from_user(c, ts, uts, sizeof(ts));
  if (err)
    return err;
  if (ts[0] < 0 || ts[1] < 0 || ts[1] >= 1000000000)
    return -EINVAL;
  *ns = (uint64_t)ts[0] > (NO_TIMEOUT - 1) / 1000000000 - 1 ? NO_TIMEOUT - 1
                                                           : (uint64_t)ts[0] * 1000000000 + (uint64_t)ts[1];
  return 0;
}

// ppoll(fds, nfds, timeout, sigmask, sigsetsize): no signal is delivered yet, so the mask
// only has its size checked.
int64_t sys_ppoll(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t ns = NO_TIMEOUT;
  if (a[3] && a[4] != 8)
    return -EINVAL;
  if (a[2]) {
    int err = timespec_ns(c, a[2], &ns);
    if (err)
      return err;
  }
  return do_poll(c, p, a[0], a[1], ns);
}

// compare core_sys_select(): the three sets in, the ready bits out, their count. A set bit
// for a descriptor that is not open is -EBADF.
static int64_t do_select(struct cpu *c, struct proc *p, int64_t nfds, const uint64_t *usets,
                         uint64_t timeout_ns) {
  uint64_t in[3][FD_MAX / 64] = {{0}}, out[3][FD_MAX / 64] = {{0}};
  const unsigned want[3] = {POLLIN_SET, POLLOUT_SET, POLLEX_SET};
  int64_t n = 0;
  if (nfds < 0)
    return -EINVAL;
  if (nfds > FD_MAX)
    nfds = FD_MAX;
  uint64_t bytes = ((uint64_t)nfds + 63) / 64 * 8;
  for (int s = 0; s < 3; s++)
    if (usets[s] && copy_from_user(c, in[s], usets[s], bytes))
      return -EFAULT;
  for (int64_t fd = 0; fd < nfds; fd++) {
    uint64_t bit = 1ULL << (fd % 64);
    int any = (in[0][fd / 64] | in[1][fd / 64] | in[2][fd / 64]) & bit ? 1 : 0;
    if (!any)
      continue;
    unsigned mask = fd_poll(c->k, p, (int)fd);
    if (mask & POLLNVAL)
      return -EBADF;
    for (int s = 0; s < 3; s++)
      if ((in[s][fd / 64] & bit) && (mask & want[s])) {
        out[s][fd / 64] |= bit;
        n++;
      }
  }
  if (!n && !poll_wait(c, timeout_ns))
    return 0;
  c->timed_out = 0;
  for (int s = 0; s < 3; s++)
    if (usets[s] && copy_to_user(c, usets[s], out[s], bytes))
      return -EFAULT;
  return n;
}

// select and pselect6 after their timeouts are read: the sets are a[1..3], the timeout's
// address a[4]. A timeout that ran out reads 0 after (both have 16 bytes: timeval, timespec).
static int64_t select_timed(struct cpu *c, struct proc *p, const uint64_t *a, uint64_t ns) {
  uint64_t sets[3] = {a[1], a[2], a[3]};
  int64_t n = do_select(c, p, (int64_t)(int)a[0], sets, ns);
  if (n == 0 && c->stop != CPU_POLL && a[4] && ns) {
    int64_t zero[2] = {0, 0};
    if (copy_to_user(c, a[4], zero, sizeof(zero)))
      return -EFAULT;
  }
  return n;
}

// select(nfds, readfds, writefds, exceptfds, timeval): on a timeout the timeval reads 0 after
// (Linux writes back the time not slept).
int64_t sys_select(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t ns = NO_TIMEOUT;
  if (a[4]) {
    int64_t tv[2];
    if (copy_from_user(c, tv, a[4], sizeof(tv)))
      return -EFAULT;
    if (tv[0] < 0 || tv[1] < 0 || tv[1] >= 1000000)
      return -EINVAL;
    ns = (uint64_t)tv[0] > (NO_TIMEOUT - 1) / 1000000000 - 1 ? NO_TIMEOUT - 1
                                                            : (uint64_t)tv[0] * 1000000000 + (uint64_t)tv[1] * 1000;
  }
  return select_timed(c, p, a, ns);
}

// pselect6(nfds, readfds, writefds, exceptfds, timespec, {sigmask, size}).
int64_t sys_pselect6(struct cpu *c, struct proc *p, const uint64_t *a) {
  uint64_t ns = NO_TIMEOUT;
  if (a[4]) {
    int err = timespec_ns(c, a[4], &ns);
    if (err)
      return err;
  }
  if (a[5]) {
    uint64_t sig[2];
    if (copy_from_user(c, sig, a[5], sizeof(sig)))
      return -EFAULT;
    if (sig[0] && sig[1] != 8)
      return -EINVAL;
  }
  return select_timed(c, p, a, ns);
}
