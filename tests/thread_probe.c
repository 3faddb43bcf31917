// thread_probe.c — threads, futexes and thread-directed signals, run natively and on the
// simulator by tests/test_threads.py: every line it prints must be the same on both.
// argv[1] picks a scenario; "all" runs those that return.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long futex(void *uaddr, int op, uint32_t val, const void *timeout, void *uaddr2,
                  uint32_t val3) {
  long r = syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3);
  return r < 0 ? -errno : r;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

// ---- locks: a mutex-protected counter, a condition variable, join values ----
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int counter, ready;

static void *count_up(void *arg) {
  for (int i = 0; i < 20000; i++) {
    pthread_mutex_lock(&m);
    counter++;
    pthread_mutex_unlock(&m);
  }
  pthread_mutex_lock(&m);
  ready++;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&m);
  return (void *)((long)arg * 10);
}

static void locks(void) {
  pthread_t t[4];
  long sum = 0;
  for (long i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, count_up, (void *)i);
  pthread_mutex_lock(&m);
  while (ready < 4)
    pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  printf("locks: counter %d joined %ld\n", counter, sum);
}

// ---- ids ----
static void *ids_thread(void *arg) {
  (void)arg;
  printf("ids: thread tid differs %d, same pid %d\n", gettid() != getpid(),
         (int)syscall(SYS_getpid) == getpid());
  return NULL;
}

static void ids(void) {
  pthread_t t;
  printf("ids: main tid is pid %d\n", gettid() == getpid());
  pthread_create(&t, NULL, ids_thread, NULL);
  pthread_join(t, NULL);
}

// ---- futex errors and the simple operations ----
static void futex_errors(void) {
  static uint32_t w = 5, w2 = 1;
  struct timespec ten_ms = {0, 10000000}, bad = {0, 1000000000};
  printf("futex: wait on other value %ld\n", futex(&w, FUTEX_WAIT_PRIVATE, 4, NULL, NULL, 0));
  printf("futex: misaligned %ld\n",
         futex((char *)&w + 1, FUTEX_WAIT_PRIVATE, 5, NULL, NULL, 0));
  printf("futex: timed out %ld\n", futex(&w, FUTEX_WAIT_PRIVATE, 5, &ten_ms, NULL, 0));
  printf("futex: bad timespec %ld\n", futex(&w, FUTEX_WAIT_PRIVATE, 5, &bad, NULL, 0));
  printf("futex: bitset 0 %ld\n", futex(&w, FUTEX_WAIT_BITSET_PRIVATE, 5, NULL, NULL, 0));
  printf("futex: wake bitset 0 %ld\n", futex(&w, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 0));
  printf("futex: wait on NULL %ld\n", futex(NULL, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0));
  printf("futex: wake nobody %ld\n", futex(&w, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0));
  printf("futex: shared wake on NULL %ld\n", futex(NULL, FUTEX_WAKE, 1, NULL, NULL, 0));
  printf("futex: cmp_requeue other value %ld\n",
         futex(&w, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1L, &w2, 4));
  printf("futex: requeue negative %ld\n",
         futex(&w, FUTEX_REQUEUE_PRIVATE, 1, (void *)-1L, &w2, 0));
  printf("futex: unknown op %ld\n", futex(&w, 99, 0, NULL, NULL, 0));
  printf("futex: realtime plain wait %ld\n",
         futex(&w, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 5, NULL, NULL, 0));
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  printf("futex: absolute deadline passed %ld\n",
         futex(&w, FUTEX_WAIT_BITSET_PRIVATE, 5, &now, NULL, FUTEX_BITSET_MATCH_ANY));
  // wake_op: *w2 += 5 (old 1), wake waiters of w2 if old == 1: none wait.
  uint32_t op = FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_EQ, 1);
  long r = futex(&w, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &w2, op);
  printf("futex: wake_op %ld, word now %u\n", r, w2);
  op = FUTEX_OP(FUTEX_OP_OR, 4, FUTEX_OP_CMP_EQ, 0) | (FUTEX_OP_OPARG_SHIFT << 28);
  r = futex(&w, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &w2, op);
  printf("futex: wake_op shift %ld, word now %u\n", r, w2);
  printf("futex: wake_op bad op %ld\n",
         futex(&w, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, &w2, 7u << 28));
  printf("futex: wake_op bad address %ld\n",
         futex(&w, FUTEX_WAKE_OP_PRIVATE, 1, (void *)1L, NULL, op));
}

// ---- wait and wake between threads, requeue ----
static _Atomic uint32_t word_a, word_b;
static atomic_int parked;

static void *waiter(void *arg) {
  _Atomic uint32_t *w = arg;
  atomic_fetch_add(&parked, 1);
  long r;
  while ((r = futex((void *)w, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0)) == -EINTR) {
  }
  return (void *)r;
}

static void wake_requeue(void) {
  pthread_t t[3];
  void *r;
  for (int i = 0; i < 3; i++)
    pthread_create(&t[i], NULL, waiter, (void *)&word_a);
  while (atomic_load(&parked) < 3)
    sleep_ms(5);
  sleep_ms(50);  // they are in the wait now
  printf("wake: requeue %ld\n",
         futex((void *)&word_a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1L, (void *)&word_b, 0));
  sleep_ms(20);
  printf("wake: a has %ld, b has %ld\n",
         futex((void *)&word_a, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0),
         futex((void *)&word_b, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0));
  long sum = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], &r);
    sum += (long)r;
  }
  printf("wake: waits returned %ld\n", sum);
}

// ---- signals: to a thread (tgkill), and a process-directed one taken by the thread that
// does not block it ----
static _Atomic int handled_by, stop_spin;

static void on_usr(int sig) {
  (void)sig;
  handled_by = gettid();
}

static void *spinner(void *arg) {
  (void)arg;
  while (!stop_spin)
    sleep_ms(1);
  return NULL;
}

static void signals(void) {
  pthread_t t;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  pthread_create(&t, NULL, spinner, NULL);
  pid_t tid;
  // the thread's tid: pthread_gettid_np is glibc 2.42; read it from the descriptor
  tid = *(pid_t *)((char *)t + 0x2d0);  // struct pthread.tid on x86-64 glibc 2.36
  pthread_kill(t, SIGUSR1);
  while (!handled_by)
    sleep_ms(1);
  printf("signals: tgkill handled by the thread %d\n", handled_by == tid);
  handled_by = 0;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  kill(getpid(), SIGUSR2);
  while (!handled_by)
    sleep_ms(1);
  printf("signals: blocked in main, handled by the thread %d\n", handled_by == tid);
  printf("signals: tgkill other process's thread %ld\n",
         syscall(SYS_tgkill, getpid(), 1, 0) < 0 ? -(long)errno : 0L);
  printf("signals: tgkill no such thread %ld\n",
         syscall(SYS_tgkill, getpid(), 0x7ffffff0, SIGUSR1) < 0 ? -(long)errno : 0L);
  stop_spin = 1;
  pthread_join(t, NULL);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

// ---- fork from a thread: the child has one thread ----
static void *forker(void *arg) {
  (void)arg;
  pid_t pid = fork();
  if (pid == 0) {
    printf("fork: child pid is its tid %d\n", gettid() == getpid());
    fflush(stdout);
    _exit(4);
  }
  int st;
  waitpid(pid, &st, 0);
  printf("fork: child exited %d\n", WEXITSTATUS(st));
  return NULL;
}

static void fork_from_thread(void) {
  pthread_t t;
  pthread_create(&t, NULL, forker, NULL);
  pthread_join(t, NULL);
}

// ---- clone flags a thread needs ----
static void clone_flags(void) {
  printf("clone: thread without sighand %ld\n",
         syscall(SYS_clone, CLONE_VM | CLONE_THREAD, 0, 0, 0, 0) < 0 ? -(long)errno : 0L);
  printf("clone: sighand without vm %ld\n",
         syscall(SYS_clone, CLONE_SIGHAND, 0, 0, 0, 0) < 0 ? -(long)errno : 0L);
}

// ---- the scenarios that end the process ----
static void *last_exit(void *arg) {
  (void)arg;
  sleep_ms(20);
  printf("mainexit: the last thread exits\n");
  fflush(stdout);
  syscall(SYS_exit, 5);
  return NULL;
}

static void *group_exit(void *arg) {
  (void)arg;
  sleep_ms(20);
  printf("groupexit: a thread ends the process\n");
  fflush(stdout);
  exit(3);
}

static void *thread_exec(void *arg) {
  (void)arg;
  execl("/bin/echo", "echo", "exec'd from a thread", (char *)NULL);
  return NULL;
}

static void *segv(void *arg) {
  (void)arg;
  sleep_ms(10);
  *(volatile int *)8 = 1;
  return NULL;
}

// ---- vfork from one thread while another runs: only the vforking thread is suspended ----
static int vpipe[2];
static _Atomic int thread_mmap_ok;

static void *feeder(void *arg) {
  (void)arg;
  sleep_ms(20);  // the child is blocked in its read by now
  void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  thread_mmap_ok = m != MAP_FAILED && write(vpipe[1], "x", 1) == 1;
  return NULL;
}

static void vfork_while_threads_run(void) {
  pthread_t t;
  if (pipe(vpipe))
    return;
  pthread_create(&t, NULL, feeder, NULL);
  pid_t pid = vfork();
  if (pid == 0) {
    char c = '?';
    if (read(vpipe[0], &c, 1) != 1)
      _exit(1);
    char msg[] = "vfork: the child read ?";
    msg[sizeof(msg) - 2] = c;
    execl("/bin/echo", "echo", msg, (char *)NULL);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  pthread_join(t, NULL);
  printf("vfork: child status %d, the other thread's mmap and write ok %d\n", WEXITSTATUS(st),
         thread_mmap_ok);
}

// ---- a futex in shared memory between two processes (keyed by the mapping, not the mm) ----
static void shared_futex(void) {
  _Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
  _Atomic uint32_t *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  pid_t pid = fork();
  if (pid == 0) {
    w[1] = 1;  // about to wait
    long r;
    while ((r = futex((void *)w, FUTEX_WAIT, 0, NULL, NULL, 0)) == -EINTR) {
    }
    _exit(r == 0 ? 0 : 1);
  }
  while (!w[1])
    sleep_ms(5);
  sleep_ms(50);
  // a private wake, or one on the same address of a private mapping, does not reach it
  long woke_private = futex((void *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  long woke_other = futex((void *)priv, FUTEX_WAKE, 1, NULL, NULL, 0);
  w[0] = 1;
  long woke = futex((void *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
  int st;
  waitpid(pid, &st, 0);
  printf("shared futex: private wake %ld, other mapping %ld, shared wake %ld, child %d\n",
         woke_private, woke_other, woke, WEXITSTATUS(st));
}

// ---- the alternate signal stack is each thread's: a new thread has none ----
static char main_alt[65536], thread_alt[65536];
static _Atomic int on_alt;

static void on_usr_alt(int sig) {
  char here;
  (void)sig;
  on_alt = (&here >= thread_alt && &here < thread_alt + sizeof(thread_alt)) ? 1
           : (&here >= main_alt && &here < main_alt + sizeof(main_alt)) ? 2
                                                                       : 3;
}

static void *alt_thread(void *arg) {
  (void)arg;
  stack_t old, ss = {.ss_sp = thread_alt, .ss_size = sizeof(thread_alt), .ss_flags = 0};
  sigaltstack(NULL, &old);
  printf("altstack: a new thread has none %d\n", (old.ss_flags & SS_DISABLE) != 0);
  sigaltstack(&ss, NULL);
  raise(SIGUSR1);  // tgkill to itself: the handler runs on this thread's alternate stack
  printf("altstack: the thread's handler ran on %s\n",
         on_alt == 1 ? "its own" : on_alt == 2 ? "the main thread's" : "the thread stack");
  return NULL;
}

static void altstacks(void) {
  stack_t ss = {.ss_sp = main_alt, .ss_size = sizeof(main_alt), .ss_flags = 0};
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr_alt;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, NULL);
  sigaltstack(&ss, NULL);
  pthread_t t;
  pthread_create(&t, NULL, alt_thread, NULL);
  pthread_join(t, NULL);
  raise(SIGUSR1);
  printf("altstack: the main thread's handler ran on %s\n",
         on_alt == 2 ? "its own" : on_alt == 1 ? "the other thread's" : "the thread stack");
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, NULL);
}

// ---- robust mutexes: a lock whose owner dies is given to the next one with EOWNERDEAD ----
static pthread_mutex_t robust;
static _Atomic int robust_held;

static void *die_holding(void *arg) {
  (void)arg;
  pthread_mutex_lock(&robust);
  robust_held = 1;
  sleep_ms(30);  // the main thread blocks on it meanwhile (FUTEX_WAITERS)
  return NULL;   // exits holding it
}

static void robust_mutexes(void) {
  pthread_mutexattr_t at;
  pthread_mutexattr_init(&at);
  pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &at);
  pthread_t t;
  pthread_create(&t, NULL, die_holding, NULL);
  while (!robust_held)
    sleep_ms(1);
  int r = pthread_mutex_lock(&robust);  // waits, then its owner's death wakes it
  printf("robust: a waiter gets %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
  pthread_mutex_consistent(&robust);
  pthread_mutex_unlock(&robust);
  pthread_join(t, NULL);
  printf("robust: then it locks %d\n", pthread_mutex_lock(&robust));
  pthread_mutex_unlock(&robust);
  void *head;
  size_t len;
  long got = syscall(SYS_get_robust_list, 0, &head, &len);
  printf("robust: get_robust_list %ld len %zu head set %d\n", got, len, head != NULL);
  printf("robust: set_robust_list of a wrong size %ld\n",
         syscall(SYS_set_robust_list, head, len - 1) < 0 ? -(long)errno : 0L);
  printf("robust: get_robust_list of nobody %ld\n",
         syscall(SYS_get_robust_list, 0x7ffffff0, &head, &len) < 0 ? -(long)errno : 0L);
  // process-shared, in shared memory: a child dies holding it
  pthread_mutex_t *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                                 -1, 0);
  pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(shared, &at);
  pid_t pid = fork();
  if (pid == 0) {
    pthread_mutex_lock(shared);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  r = pthread_mutex_lock(shared);
  printf("robust: a dead process's shared lock gives %s\n",
         r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "all";
  pthread_t t;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(what, "all")) {
    locks();
    ids();
    futex_errors();
    wake_requeue();
    signals();
    fork_from_thread();
    vfork_while_threads_run();
    shared_futex();
    altstacks();
    robust_mutexes();
    clone_flags();
    return 0;
  }
  if (!strcmp(what, "mainexit")) {
    pthread_create(&t, NULL, last_exit, NULL);
    pthread_exit(NULL);
  }
  if (!strcmp(what, "groupexit")) {
    pthread_create(&t, NULL, group_exit, NULL);
    pthread_join(t, NULL);
    return 0;
  }
  if (!strcmp(what, "exec")) {
    pthread_create(&t, NULL, thread_exec, NULL);
    pthread_join(t, NULL);
    return 9;
  }
  if (!strcmp(what, "segv")) {
    pthread_create(&t, NULL, segv, NULL);
    pthread_join(t, NULL);
    return 0;
  }
  return 2;
}
