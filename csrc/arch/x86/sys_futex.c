// sys_futex.c — futex(2) for threads on the CPU: FUTEX_WAIT and FUTEX_WAIT_BITSET park the
// calling thread on the kernel's wait queue (kernel/futex.c) until a wake, a timeout or a
// signal; FUTEX_WAKE, FUTEX_WAKE_BITSET, FUTEX_WAKE_OP, FUTEX_REQUEUE and FUTEX_CMP_REQUEUE
// find waiters by key. compare Linux kernel/futex/syscalls.c (do_futex()), waitwake.c
// (futex_wait(), futex_wake(), futex_wake_op()), requeue.c and core.c (get_futex_key()).
// The priority-inheritance operations are -ENOSYS (no scheduler priorities here). Robust
// futexes: set_robust_list, get_robust_list, and the list walked when a thread dies
// (futex_exit_robust).
//
// A wait never blocks the host: it stops the CPU (CPU_FUTEX) with its timeout, the trio
// layer parks the thread until sfd_futex_woken names it or the time passes
// (sfd_cpu_timeout), and the parked call, run again, returns 0 or -ETIMEDOUT.
#include <time.h>

#include "arch/x86/syscalls.h"

#define FUTEX_WAIT_ 0
#define FUTEX_WAKE_ 1
#define FUTEX_REQUEUE_ 3
#define FUTEX_CMP_REQUEUE_ 4
#define FUTEX_WAKE_OP_ 5
#define FUTEX_LOCK_PI_ 6
#define FUTEX_WAIT_BITSET_ 9
#define FUTEX_WAKE_BITSET_ 10
#define FUTEX_WAIT_REQUEUE_PI_ 11
#define FUTEX_LOCK_PI2_ 13
#define FUTEX_PRIVATE_FLAG_ 128
#define FUTEX_CLOCK_REALTIME_ 256
#define FUTEX_BITSET_MATCH_ANY_ 0xffffffffU
#define NO_TIMEOUT UINT64_MAX
#define NSEC_PER_SEC 1000000000LL

// The key of the futex at uaddr: a private futex (or one in private memory) is the address
// space and the address; one in a shared mapping is the file (or shared memory object) and
// the offset in it, so every process that maps it finds the same key. -EINVAL unless
// 4-byte aligned; -EFAULT for a shared futex at an unmapped address. compare
// get_futex_key().
int futex_key_of(struct cpu *c, uint64_t uaddr, int private_, struct futex_key *key) {
  if (uaddr & 3)
    return -EINVAL;
  key->mm = c->mm;
  key->addr = uaddr;
  if (private_)
    return 0;
  struct vma *v = vma_find(&c->mm->vmas, uaddr);
  if (!v || uaddr < v->start)
    return -EFAULT;
  if ((v->flags & VM_SHARED) && v->ino) {
    key->mm = v->ino;
    key->addr = (v->pgoff << PAGE_SHIFT) + (uaddr - v->start);
  }
  return 0;
}

// The timeout of a wait as nanoseconds from now: FUTEX_WAIT's is relative, FUTEX_WAIT_BITSET's
// an absolute time of CLOCK_MONOTONIC or (FUTEX_CLOCK_REALTIME) CLOCK_REALTIME. 0: it has
// passed. -EINVAL for a bad timespec. compare futex_init_timeout().
static int futex_timeout(struct cpu *c, uint64_t utime, int absolute, int realtime,
                         uint64_t *ns) {
  int64_t ts[2];
  *ns = NO_TIMEOUT;
  if (!utime)
    return 0;
  int err = copy_from_user(c, ts, utime, sizeof(ts));
  if (err)
    return err;
  if (ts[0] < 0 || ts[1] < 0 || ts[1] >= NSEC_PER_SEC)
    return -EINVAL;
  int64_t t = ts[0] > (INT64_MAX - ts[1]) / NSEC_PER_SEC ? INT64_MAX
                                                         : ts[0] * NSEC_PER_SEC + ts[1];
  if (absolute) {
    struct timespec now;
    clock_gettime(realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC, &now);
    int64_t n = now.tv_sec * NSEC_PER_SEC + now.tv_nsec;
    t = t > n ? t - n : 0;
  }
  *ns = t == INT64_MAX ? NO_TIMEOUT - 1 : (uint64_t)t;
  return 0;
}

// FUTEX_WAIT(_BITSET): sleep while *uaddr == val, until a wake whose bitset meets ours.
// -EAGAIN if the value differs; a parked wait returns 0 when woken, -ETIMEDOUT when its time
// is over. compare futex_wait() -> futex_wait_setup() + futex_wait_queue().
static int64_t futex_wait(struct cpu *c, uint64_t uaddr, int private_, uint32_t val,
                          uint64_t utime, uint32_t bitset, int absolute, int realtime) {
  struct futex_q *q = &c->fq;
  if (c->resuming) {  // the parked wait runs again
    if (q->woken) {
      q->woken = 0;
      return 0;
    }
    if (c->timed_out) {
      c->timed_out = 0;
      futex_unqueue(c->k, q);
      return -ETIMEDOUT;
    }
    if (q->queued) {
      c->stop = CPU_FUTEX;
      c->poll_again = 1;  // the same wait: its deadline stands
      return 0;
    }
  }
  struct futex_key key;
  uint64_t ns;
  uint32_t cur;
  int err;
  if (!bitset)
    return -EINVAL;
  if ((err = futex_timeout(c, utime, absolute, realtime, &ns)) ||
      (err = futex_key_of(c, uaddr, private_, &key)) ||
      (err = copy_from_user(c, &cur, uaddr, sizeof(cur))))
    return err;
  if (cur != val)
    return -EAGAIN;
  if (!ns)
    return -ETIMEDOUT;
  q->key = key;
  q->bitset = bitset;
  c->futex_uaddr = uaddr;
  c->timed_out = 0;
  futex_queue(c->k, q);
  c->stop = CPU_FUTEX;
  c->poll_again = 0;
  c->sleep_ns = ns;
  return 0;
}

// FUTEX_WAKE_OP's operation on *uaddr2: the old value, compared. compare
// futex_atomic_op_inuser() and futex_atomic_cmp() (-ENOSYS for an unknown op or
// comparison, as Linux).
static int futex_wake_op_do(struct cpu *c, uint64_t uaddr2, uint32_t encoded, int *cmp_true) {
  unsigned op = (encoded >> 28) & 7, cmp = (encoded >> 24) & 15;
  int32_t oparg = (int32_t)(encoded << 8) >> 20, cmparg = (int32_t)(encoded << 20) >> 20;
  int32_t old, val;
  int err;
  if (encoded & (8U << 28)) {  // FUTEX_OP_OPARG_SHIFT
    oparg &= 31;
    oparg = (int32_t)(1U << oparg);
  }
  if (op > 4 || cmp > 5)
    return -ENOSYS;
  if (uaddr2 & 3)
    return -EINVAL;
  if ((err = copy_from_user(c, &old, uaddr2, sizeof(old))))
    return err;
  switch (op) {
  case 0: val = oparg; break;                                  // FUTEX_OP_SET
  case 1: val = (int32_t)((uint32_t)old + (uint32_t)oparg); break;  // FUTEX_OP_ADD
  case 2: val = old | oparg; break;                            // FUTEX_OP_OR
  case 3: val = old & ~oparg; break;                           // FUTEX_OP_ANDN
  default: val = old ^ oparg; break;                           // FUTEX_OP_XOR
  }
  if ((err = copy_to_user(c, uaddr2, &val, sizeof(val))))
    return err;
  switch (cmp) {
  case 0: *cmp_true = old == cmparg; break;
  case 1: *cmp_true = old != cmparg; break;
  case 2: *cmp_true = old < cmparg; break;
  case 3: *cmp_true = old <= cmparg; break;
  case 4: *cmp_true = old > cmparg; break;
  default: *cmp_true = old >= cmparg; break;
  }
  return 0;
}

// futex(uaddr, op, val, utime or val2, uaddr2, val3). compare do_futex().
int64_t sys_futex(struct cpu *c, struct proc *p, const uint64_t *a) {
  int op = (int)a[1], cmd = op & ~(FUTEX_PRIVATE_FLAG_ | FUTEX_CLOCK_REALTIME_);
  int private_ = !!(op & FUTEX_PRIVATE_FLAG_), realtime = !!(op & FUTEX_CLOCK_REALTIME_);
  uint32_t val = (uint32_t)a[2], val3 = (uint32_t)a[5];
  int val2 = (int)a[3];  // the utime argument carries a count for these
  struct futex_key k1, k2;
  int err;
  (void)p;
  if (realtime && cmd != FUTEX_WAIT_BITSET_ && cmd != FUTEX_WAIT_REQUEUE_PI_ &&
      cmd != FUTEX_LOCK_PI2_)
    return -ENOSYS;
  switch (cmd) {
  case FUTEX_WAIT_:
    return futex_wait(c, a[0], private_, val, a[3], FUTEX_BITSET_MATCH_ANY_, 0, 0);
  case FUTEX_WAIT_BITSET_:
    return futex_wait(c, a[0], private_, val, a[3], val3, 1, realtime);
  case FUTEX_WAKE_:
  case FUTEX_WAKE_BITSET_: {
    uint32_t bitset = cmd == FUTEX_WAKE_ ? FUTEX_BITSET_MATCH_ANY_ : val3;
    if (!bitset)
      return -EINVAL;
    if ((err = futex_key_of(c, a[0], private_, &k1)))
      return err;
    return futex_wake(c->k, &k1, (int)val, bitset);
  }
  case FUTEX_REQUEUE_:
  case FUTEX_CMP_REQUEUE_: {
    if ((int)val < 0 || val2 < 0)
      return -EINVAL;
    if ((err = futex_key_of(c, a[0], private_, &k1)) ||
        (err = futex_key_of(c, a[4], private_, &k2)))
      return err;
    if (cmd == FUTEX_CMP_REQUEUE_) {
      uint32_t cur;
      if ((err = copy_from_user(c, &cur, a[0], sizeof(cur))))
        return err;
      if (cur != val3)
        return -EAGAIN;
    }
    return futex_requeue(c->k, &k1, &k2, (int)val, val2);
  }
  case FUTEX_WAKE_OP_: {
    int cmp_true = 0;
    if ((err = futex_key_of(c, a[0], private_, &k1)) ||
        (err = futex_key_of(c, a[4], private_, &k2)) ||
        (err = futex_wake_op_do(c, a[4], val3, &cmp_true)))
      return err;
    int n = futex_wake(c->k, &k1, (int)val, FUTEX_BITSET_MATCH_ANY_);
    if (cmp_true)
      n += futex_wake(c->k, &k2, val2, FUTEX_BITSET_MATCH_ANY_);
    return n;
  }
  default:  // FUTEX_FD is gone; PI futexes (LOCK_PI ... LOCK_PI2) are not here
    (void)FUTEX_LOCK_PI_;
    return -ENOSYS;
  }
}

// ---- robust futexes: the locks a thread holds when it dies (compare kernel/futex/core.c) ----
#define FUTEX_WAITERS_ 0x80000000U
#define FUTEX_OWNER_DIED_ 0x40000000U
#define FUTEX_TID_MASK_ 0x3fffffffU
#define ROBUST_LIST_LIMIT 2048
#define ROBUST_HEAD_BYTES 24  // struct robust_list_head: list, futex_offset, list_op_pending

// set_robust_list(head, len): where the thread's list of held robust locks starts.
int64_t sys_set_robust_list(struct cpu *c, struct proc *p, const uint64_t *a) {
  (void)p;
  if (a[1] != ROBUST_HEAD_BYTES)
    return -EINVAL;
  c->robust_list = a[0];
  return 0;
}

// get_robust_list(tid, head_ptr, len_ptr): the list head of thread tid (0: the caller). Of
// another process's thread only for the same user or root (compare ptrace_may_access()).
int64_t sys_get_robust_list(struct cpu *c, struct proc *p, const uint64_t *a) {
  struct cpu *t = c;
  struct proc *q = p;
  if ((int)a[0]) {
    t = (int)a[0] > 0 ? thread_find(c->k, 0, (int)a[0], &q) : NULL;
    if ((int)a[0] < 0 || !q)
      return -ESRCH;
    if (q != p && p->cred.euid != 0 && p->cred.uid != q->cred.uid)
      return -EPERM;
  }
  uint64_t head = t ? t->robust_list : 0, len = ROBUST_HEAD_BYTES;
  int err = copy_to_user(c, a[2], &len, sizeof(len));
  return err ? err : copy_to_user(c, a[1], &head, sizeof(head));
}

// One lock of the dying thread c at uaddr: if c owns it, mark it FUTEX_OWNER_DIED (keeping
// FUTEX_WAITERS) and wake one waiter, who gets EOWNERDEAD from glibc; a pending unlock that
// already cleared the word still wakes one. compare handle_futex_death().
static void futex_death(struct cpu *c, uint64_t uaddr, int pi, int pending) {
  uint32_t uval, nval;
  struct futex_key key;
  if ((uaddr & 3) || copy_from_user(c, &uval, uaddr, sizeof(uval)) ||
      futex_key_of(c, uaddr, 0, &key))
    return;
  if (pending && !pi && !uval) {
    futex_wake(c->k, &key, 1, FUTEX_BITSET_MATCH_ANY_);
    return;
  }
  if ((uval & FUTEX_TID_MASK_) != (uint32_t)c->tid)
    return;
  nval = (uval & FUTEX_WAITERS_) | FUTEX_OWNER_DIED_;
  if (copy_to_user(c, uaddr, &nval, sizeof(nval)))
    return;
  if (!pi && (uval & FUTEX_WAITERS_))
    futex_wake(c->k, &key, 1, FUTEX_BITSET_MATCH_ANY_);
}

// Thread c dies: every robust lock on its list (bounded, as a list in user memory can be
// anything), then the one whose lock or unlock was in progress. Entries carry the PI flag in
// bit 0. A fault ends the walk. compare exit_robust_list().
void futex_exit_robust(struct cpu *c) {
  struct {
    uint64_t next;
    int64_t futex_offset;
    uint64_t pending;
  } h;
  uint64_t head = c->robust_list, entry, next;
  unsigned limit = ROBUST_LIST_LIMIT;
  c->robust_list = 0;
  if (!head || !c->mm || copy_from_user(c, &h, head, sizeof(h)))
    return;
  uint64_t pending = h.pending & ~1ULL;
  int pi = h.next & 1, pending_pi = h.pending & 1;
  entry = h.next & ~1ULL;
  while (entry != head) {
    int rc = copy_from_user(c, &next, entry, sizeof(next));
    if (entry != pending)
      futex_death(c, entry + (uint64_t)h.futex_offset, pi, 0);
    if (rc)
      return;
    pi = next & 1;
    entry = next & ~1ULL;
    if (!--limit)
      break;
  }
  if (pending)
    futex_death(c, pending + (uint64_t)h.futex_offset, pending_pi, 1);
}
