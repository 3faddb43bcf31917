// fault_probe.c — faults of running code given to handlers (compare force_sig_fault()), run
// natively and on the simulator by tests/test_faults.py; every line must be the same on
// both. si_addr is compared to the page (the simulator knows a data fault's page).
// argv[1]: "all", or a scenario that ends the process.
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Winfinite-recursion"
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static sigjmp_buf env;
static char *page;
static int fix_once = 1;  // the first fault is fixed by the handler, the others jump out

static char *filemap;  // the short file's mapping (SIGBUS is reported relative to it)

static long page_of(void *a) { return (long)(((uintptr_t)a & ~4095UL) - (uintptr_t)page); }
static long file_page_of(void *a) {
  return (long)(((uintptr_t)a & ~4095UL) - (uintptr_t)filemap);
}

// A 2-page mapping of a 100-byte file in /tmp: its second page is past the end (SIGBUS).
static char *map_short_file(void) {
  char path[] = "/tmp/fault-probe-XXXXXX";
  int fd = mkstemp(path);
  char buf[100] = {1};
  if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
    exit(4);
  char *m = mmap(NULL, 2 * 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  unlink(path);
  close(fd);
  return m;
}

static void on_fault(int sig, siginfo_t *si, void *uc_) {
  ucontext_t *uc = uc_;
  greg_t *g = uc->uc_mcontext.gregs;
  printf("%s: code %d page %+ld rip at si_addr %d trapno %lld err %lld\n", strsignal(sig),
         si->si_code, sig == SIGSEGV ? page_of(si->si_addr)
                      : sig == SIGBUS ? file_page_of(si->si_addr) : 0L,
         (void *)g[REG_RIP] == si->si_addr, (long long)g[REG_TRAPNO], (long long)g[REG_ERR]);
  if (sig == SIGSEGV && fix_once) {
    fix_once = 0;
    mprotect(page, 4096, PROT_READ | PROT_WRITE);  // fix it: the write runs again
    return;
  }
  siglongjmp(env, 1);
}

static void on_overflow(int sig, siginfo_t *si, void *uc_) {
  (void)uc_;
  printf("%s on the alternate stack: code %d\n", strsignal(sig), si->si_code);
  siglongjmp(env, 1);
}

static void on_trap(int sig, siginfo_t *si, void *uc_) {
  (void)uc_;
  printf("%s: code %#x addr %p\n", strsignal(sig), (unsigned)si->si_code, si->si_addr);
}

static char alt[65536];
static volatile int depth;
__attribute__((noinline)) static int recurse(int n) {
  volatile char buf[4096];
  buf[0] = (char)n;
  depth++;
  return recurse(n + 1) + buf[0];
}

static char *none;  // a PROT_NONE page

// The FPU state in the frame: a handler reads xmm1 from uc_mcontext.fpregs and changes it;
// rt_sigreturn loads the changed value.
static void on_usr1(int sig, siginfo_t *si, void *uc_) {
  ucontext_t *uc = uc_;
  fpregset_t fp = uc->uc_mcontext.fpregs;
  (void)sig;
  (void)si;
  printf("fpu: fpregs %s, cwd %#x, mxcsr %#x, xmm1 %#x %#x\n", fp ? "set" : "NULL",
         fp ? fp->cwd : 0, fp ? fp->mxcsr : 0, fp ? fp->_xmm[1].element[0] : 0,
         fp ? fp->_xmm[1].element[1] : 0);
  if (fp) {
    fp->_xmm[1].element[0] = 0x12345678;
    fp->_xmm[1].element[1] = 0x9abcdef0;
  }
}

static void fpu_frame(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGUSR1, &sa, NULL);
  uint64_t out, pattern = 0x1111222233334444ULL;
  long rax = SYS_tgkill;
  // xmm1 set, the signal sent and xmm1 read back in one asm: no call in between clobbers it
  __asm__ volatile("movq %[in], %%xmm1\n\tsyscall\n\tmovq %%xmm1, %[out]"
                   : [out] "=r"(out), "+a"(rax)
                   : [in] "r"(pattern), "D"((long)getpid()), "S"((long)gettid()),
                     "d"((long)SIGUSR1)
                   : "rcx", "r11", "memory", "xmm1");
  printf("fpu: xmm1 after the handler %#llx\n", (unsigned long long)out);
  // a program starts with Linux's x87 control word: double extended precision
  volatile long double one = 1, three = 3;
  printf("fpu: 1/3 in long double %.21Lg\n", one / three);
}

static void *thread_fault(void *arg) {
  (void)arg;
  if (!sigsetjmp(env, 1))
    *(volatile int *)(none + 16) = 1;  // caught by this thread
  printf("thread: went on after its fault\n");
  return NULL;
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "all";
  struct sigaction sa;
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
  sigaction(SIGFPE, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sa.sa_sigaction = on_trap;
  sigaction(SIGTRAP, &sa, NULL);
  page = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(page + 4096, 4096);
  none = page + 2 * 4096;
  mprotect(none, 4096, PROT_NONE);
  if (!strcmp(what, "all")) {
    ((volatile char *)page)[8] = 7;  // SEGV_ACCERR on a page never touched: fixed, redone
    printf("after the fix: %d\n", page[8]);
    if (!sigsetjmp(env, 1))
      *(volatile int *)(page + 4096 + 24) = 1;  // SEGV_MAPERR
    if (!sigsetjmp(env, 1))
      (void)*(volatile int *)(page + 4096 * 1000);  // a read of nothing
    mprotect(page, 4096, PROT_READ);
    if (!sigsetjmp(env, 1))
      ((volatile char *)page)[100] = 1;  // ACCERR on a present page
    if (!sigsetjmp(env, 1))
      ((void (*)(void))page)();  // a fetch from a page without PROT_EXEC
    if (!sigsetjmp(env, 1))
      __asm__ volatile("ud2");
    char *file = filemap = map_short_file();
    if (!sigsetjmp(env, 1))
      printf("%d\n", file[4096 + 5]);  // past the end of the file: SIGBUS, BUS_ADRERR
    printf("the file's first page reads %d\n", file[0]);
    volatile int zero = 0;
    if (!sigsetjmp(env, 1))
      printf("%d\n", 5 / zero);
    __asm__ volatile("int3");
    printf("after int3\n");
    fpu_frame();
    pthread_t t;
    pthread_create(&t, NULL, thread_fault, NULL);
    pthread_join(t, NULL);
    // a stack overflow, caught on the alternate stack
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
    sigaltstack(&ss, NULL);
    sa.sa_sigaction = on_overflow;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    if (!sigsetjmp(env, 1))
      recurse(0);
    printf("stack overflow caught %d\n", depth > 10);
    return 0;
  }
  if (!strcmp(what, "blocked")) {  // a fault with its signal blocked: the default action
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSEGV);
    sigprocmask(SIG_BLOCK, &set, NULL);
    *(volatile int *)(page + 4096) = 1;
  }
  if (!strcmp(what, "ignored")) {  // SIG_IGN does not ignore a fault
    signal(SIGSEGV, SIG_IGN);
    *(volatile int *)(page + 4096) = 1;
  }
  if (!strcmp(what, "bus")) {  // SIGBUS's default action
    signal(SIGBUS, SIG_DFL);
    char *file = map_short_file();
    printf("%d\n", file[4096]);
  }
  if (!strcmp(what, "nested")) {  // a fault in the handler of the same fault
    sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))(uintptr_t)page;  // not executable
    sigaction(SIGSEGV, &sa, NULL);
    *(volatile int *)(page + 4096) = 1;
  }
  return 3;
}
