// futex.c — the futex wait queues: threads parked in FUTEX_WAIT, found again by FUTEX_WAKE,
// FUTEX_WAKE_OP and FUTEX_REQUEUE by their key. compare Linux kernel/futex/core.c
// (futex_q, __futex_queue(), __futex_unqueue()), waitwake.c (futex_wake()) and requeue.c
// (futex_requeue()).
//
// The kernel never blocks: a waiter's system call parks (arch/x86 sys_futex.c), its futex_q
// stays queued here, and a wake marks it woken, takes it off the queue and puts its thread
// id on the woken list, from which the trio layer learns whom to run again
// (sfd_futex_woken). One queue in FIFO order stands for Linux's hash of priority lists: all
// waiters here have the same priority, so both wake in the order they queued.
#include "kernel/kernel.h"

// Queue q (its key, bitset and tid set) behind every waiter already queued.
void futex_queue(struct kernel *k, struct futex_q *q) {
  struct futex_q **pp = &k->futex_queue;
  while (*pp)
    pp = &(*pp)->next;
  q->next = NULL;
  q->queued = 1;
  q->woken = 0;
  *pp = q;
}

// Take q off the queue, if it is on it (a waiter that timed out, was interrupted, exits).
void futex_unqueue(struct kernel *k, struct futex_q *q) {
  if (!q->queued)
    return;
  for (struct futex_q **pp = &k->futex_queue; *pp; pp = &(*pp)->next)
    if (*pp == q) {
      *pp = q->next;
      break;
    }
  q->queued = 0;
  q->next = NULL;
}

static int key_eq(const struct futex_key *a, const struct futex_key *b) {
  return a->mm == b->mm && a->addr == b->addr;
}

// Wake q: off the queue, onto the woken list for the trio layer. compare futex_wake_mark().
static void wake_one(struct kernel *k, struct futex_q **pp) {
  struct futex_q *q = *pp;
  *pp = q->next;
  q->next = NULL;
  q->queued = 0;
  q->woken = 1;
  q->wnext = k->futex_woken;
  k->futex_woken = q;
}

// Wake up to nr waiters on key whose bitset meets bitset, oldest first; how many woke. As
// Linux, a count of 0 or less still wakes one. compare futex_wake().
int futex_wake(struct kernel *k, const struct futex_key *key, int nr, uint32_t bitset) {
  int woken = 0;
  struct futex_q **pp = &k->futex_queue;
  while (*pp) {
    if (key_eq(&(*pp)->key, key) && ((*pp)->bitset & bitset)) {
      wake_one(k, pp);
      if (++woken >= nr)
        break;
    } else {
      pp = &(*pp)->next;
    }
  }
  return woken;
}

// Wake up to nr_wake waiters on key1 and move up to nr_requeue of the rest to key2, where a
// later wake of key2 finds them; the number woken plus the number moved. compare
// futex_requeue() (no PI).
int futex_requeue(struct kernel *k, const struct futex_key *key1, const struct futex_key *key2,
                  int nr_wake, int nr_requeue) {
  int woken = 0, moved = 0;
  struct futex_q **pp = &k->futex_queue;
  while (*pp) {
    if (!key_eq(&(*pp)->key, key1)) {
      pp = &(*pp)->next;
    } else if (woken < nr_wake) {
      wake_one(k, pp);
      woken++;
    } else if (moved < nr_requeue) {
      (*pp)->key = *key2;
      moved++;
      pp = &(*pp)->next;
    } else {
      break;
    }
  }
  return woken + moved;
}

// The threads woken since the last call, up to max of them into tids; how many. The trio
// layer runs each again: its parked FUTEX_WAIT returns 0.
int sfd_futex_woken(struct kernel *k, int *tids, int max) {
  if (k->panicked)
    return -KPANIC;
  int n = 0;
  while (k->futex_woken && n < max) {
    struct futex_q *q = k->futex_woken;
    k->futex_woken = q->wnext;
    q->wnext = NULL;
    tids[n++] = q->tid;
  }
  return n;
}

// q's thread goes away: off the queue and off the woken list.
void futex_forget(struct kernel *k, struct futex_q *q) {
  futex_unqueue(k, q);
  for (struct futex_q **pp = &k->futex_woken; *pp; pp = &(*pp)->wnext)
    if (*pp == q) {
      *pp = q->wnext;
      break;
    }
  q->wnext = NULL;
  q->woken = 0;
}
