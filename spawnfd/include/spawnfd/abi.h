/* spawnfd/abi.h — the fd model as system calls: create a process with zero threads, build it
 * through a builder fd, launch it by closing that fd, wait for it and signal it through a
 * pidfd-like wait handle. For C programs that run on the spawnfd simulator (docs/abi.md is
 * the reference, one man-page section per call).
 *
 * The calls have numbers in a private range Linux does not use (SPAWNFD_NR_BASE = 1024 and
 * up; Linux's x86-64 numbers stop below 512). Every wrapper is a static inline function over
 * syscall(2): it returns what the call returns, or -1 with errno set, as glibc's wrappers do.
 * On a real Linux kernel every call fails with ENOSYS, so a program can fall back to
 * posix_spawn(3).
 *
 *     cc -I"$(python3 -m spawnfd.abi)" prog.c
 *
 * The wrappers use syscall(2): glibc declares it with _DEFAULT_SOURCE, which the default
 * -std=gnu* gives (with -std=c99 and the like, define _GNU_SOURCE).
 *
 * The simulated kernel includes this header too (with SPAWNFD_ABI_KERNEL defined: numbers and
 * structs only), so the numbers and layouts cannot drift apart.
 */
#ifndef SPAWNFD_ABI_H
#define SPAWNFD_ABI_H

#include <stdint.h>

/* ---- numbers ---- */
#define SPAWNFD_NR_BASE 1024
#define SPAWNFD_NR_create (SPAWNFD_NR_BASE + 0)      /* compare clone3(CLONE_PIDFD) */
#define SPAWNFD_NR_mmap (SPAWNFD_NR_BASE + 1)        /* compare mmap(2), old_mmap() */
#define SPAWNFD_NR_munmap (SPAWNFD_NR_BASE + 2)      /* compare munmap(2) */
#define SPAWNFD_NR_mprotect (SPAWNFD_NR_BASE + 3)    /* compare mprotect(2) */
#define SPAWNFD_NR_vm_writev (SPAWNFD_NR_BASE + 4)   /* compare process_vm_writev(2) */
#define SPAWNFD_NR_vm_readv (SPAWNFD_NR_BASE + 5)    /* compare process_vm_readv(2) */
#define SPAWNFD_NR_install_fd (SPAWNFD_NR_BASE + 6)  /* compare dup3(2) across tables */
#define SPAWNFD_NR_open (SPAWNFD_NR_BASE + 7)        /* compare openat(2) by the child */
#define SPAWNFD_NR_chdir (SPAWNFD_NR_BASE + 8)       /* compare chdir(2) by the child */
#define SPAWNFD_NR_setresuid (SPAWNFD_NR_BASE + 9)   /* compare setresuid(2) by the child */
#define SPAWNFD_NR_setresgid (SPAWNFD_NR_BASE + 10)  /* compare setresgid(2) by the child */
#define SPAWNFD_NR_setregs (SPAWNFD_NR_BASE + 11)    /* compare start_thread() of execve */
#define SPAWNFD_NR_map_cow (SPAWNFD_NR_BASE + 12)    /* compare fork's copy_page_range() */
#define SPAWNFD_NR_mmapv (SPAWNFD_NR_BASE + 13)      /* an ELF loader's mmaps in one call */
#define SPAWNFD_NR_COUNT 14

/* The real Linux calls the wait handle answers (x86-64 numbers). */
#define SPAWNFD_NR_waitid 247
#define SPAWNFD_NR_pidfd_send_signal 424
#define SPAWNFD_P_PIDFD 3 /* waitid's idtype P_PIDFD (older libcs lack the name) */

/* ---- structures (fixed layout: the same for the kernel and every compiler) ---- */

/* spawnfd_create(): what the caller gets. */
struct spawnfd_handles {
  int32_t builder_fd; /* the one handle that builds the embryo; close(2) launches it */
  int32_t wait_fd;    /* the wait handle: waitid(P_PIDFD), pidfd_send_signal(2) */
};

/* spawnfd_mmap(): mmap(2)'s six arguments. */
struct spawnfd_mmap_args {
  uint64_t addr;  /* a hint, or the address with MAP_FIXED / MAP_FIXED_NOREPLACE */
  uint64_t len;   /* bytes */
  int32_t prot;   /* PROT_* */
  int32_t flags;  /* MAP_* */
  int32_t fd;     /* a descriptor of the caller (MAP_ANONYMOUS: ignored) */
  int32_t pad;    /* zero */
  uint64_t off;   /* file offset, page aligned */
};
#define SPAWNFD_MMAP_ARGS_SIZE0 40 /* sizeof(struct spawnfd_mmap_args), first version */

/* spawnfd_mmapv(): one step of a user-space ELF loader (the layout of the kernel's struct
 * sfd_mapv). Steps run in order; on failure nothing of the call stays mapped. */
enum { SPAWNFD_MAPV_MMAP = 0, SPAWNFD_MAPV_MUNMAP = 1, SPAWNFD_MAPV_ZERO = 2 };
enum { SPAWNFD_MAPV_ABS = 0, SPAWNFD_MAPV_REL = 1, SPAWNFD_MAPV_BIAS = 2 };
#define SPAWNFD_MAPV_MAX 4096
struct spawnfd_mapv {
  uint64_t addr;  /* ABS: the address; REL: added to the bias; BIAS: the link address */
  uint64_t len;   /* bytes */
  uint64_t off;   /* MMAP of a file: its offset */
  int32_t op;     /* SPAWNFD_MAPV_MMAP, _MUNMAP, or _ZERO (write len <= 4096 zero bytes) */
  int32_t rel;    /* SPAWNFD_MAPV_ABS, _REL, or _BIAS (first step only: the kernel picks the
                     address, and the bias becomes the result minus addr) */
  int32_t prot;   /* MMAP: PROT_* */
  int32_t flags;  /* MMAP: MAP_* */
  int32_t fd;     /* MMAP of a file: a descriptor of the caller */
  int32_t pad;    /* zero */
  uint64_t out;   /* MMAP: the address mapped (written back) */
};
struct spawnfd_mapv_result {
  uint64_t bias;   /* the load bias (0 without a BIAS step) */
  uint32_t failed; /* on failure: the index of the step that failed */
  uint32_t pad;
};

/* spawnfd_setregs(): where the first thread starts. */
struct spawnfd_regs {
  uint64_t rip; /* the first instruction */
  uint64_t rsp; /* the stack pointer: argc, argv, envp, auxv above it (the SysV ABI) */
};
#define SPAWNFD_REGS_SIZE0 16

#ifndef SPAWNFD_ABI_KERNEL
/* ---- wrappers ---- */
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/syscall.h>

/* A new embryo, child of the caller: no thread, no memory, no descriptors, the caller's
 * credentials and cwd. h gets the builder fd and the wait handle (both close-on-exec).
 * Returns the child's pid. compare clone3(2) with CLONE_PIDFD. */
static inline pid_t spawnfd_create(struct spawnfd_handles *h, unsigned int flags) {
  return (pid_t)syscall(SPAWNFD_NR_create, h, flags);
}

/* mmap(2) into the embryo; fd is the caller's. Returns the address in the embryo, or
 * MAP_FAILED ((void *)-1) with errno set. */
static inline void *spawnfd_mmap(int bfd, void *addr, size_t len, int prot, int flags, int fd,
                                 off_t off) {
  struct spawnfd_mmap_args a = {(uint64_t)(uintptr_t)addr, len, prot, flags, fd, 0,
                                (uint64_t)off};
  return (void *)syscall(SPAWNFD_NR_mmap, bfd, &a, sizeof(a));
}

/* munmap(2) in the embryo. */
static inline int spawnfd_munmap(int bfd, void *addr, size_t len) {
  return (int)syscall(SPAWNFD_NR_munmap, bfd, addr, len);
}

/* mprotect(2) in the embryo. */
static inline int spawnfd_mprotect(int bfd, void *addr, size_t len, int prot) {
  return (int)syscall(SPAWNFD_NR_mprotect, bfd, addr, len, prot);
}

/* process_vm_writev(2) into the embryo: local iovecs are the caller's memory, remote ones the
 * embryo's. Returns the bytes written. */
static inline ssize_t spawnfd_vm_writev(int bfd, const struct iovec *local, unsigned long lcnt,
                                        const struct iovec *remote, unsigned long rcnt,
                                        unsigned long flags) {
  return syscall(SPAWNFD_NR_vm_writev, bfd, local, lcnt, remote, rcnt, flags);
}

/* process_vm_readv(2) from the embryo. Returns the bytes read. */
static inline ssize_t spawnfd_vm_readv(int bfd, const struct iovec *local, unsigned long lcnt,
                                       const struct iovec *remote, unsigned long rcnt,
                                       unsigned long flags) {
  return syscall(SPAWNFD_NR_vm_readv, bfd, local, lcnt, remote, rcnt, flags);
}

/* Write len bytes at addr in the embryo: one buffer, all or an error. */
static inline int spawnfd_write(int bfd, void *addr, const void *buf, size_t len) {
  struct iovec l = {(void *)(uintptr_t)buf, len}, r = {addr, len};
  ssize_t n = spawnfd_vm_writev(bfd, &l, 1, &r, 1, 0);
  return n < 0 ? -1 : 0;
}

/* Read len bytes at addr of the embryo into buf. */
static inline int spawnfd_read(int bfd, void *addr, void *buf, size_t len) {
  struct iovec l = {buf, len}, r = {addr, len};
  ssize_t n = spawnfd_vm_readv(bfd, &l, 1, &r, 1, 0);
  return n < 0 ? -1 : 0;
}

/* Install the caller's descriptor fd as the embryo's child_fd (-1: the lowest free one),
 * closing what was there; flags: O_CLOEXEC. Returns the embryo's descriptor. */
static inline int spawnfd_install_fd(int bfd, int fd, int child_fd, unsigned int flags) {
  return (int)syscall(SPAWNFD_NR_install_fd, bfd, fd, child_fd, flags);
}

/* open(2) done as the embryo (its cwd and credentials), the result installed as its
 * child_fd (-1: the lowest free). Returns the embryo's descriptor. */
static inline int spawnfd_open(int bfd, const char *path, int flags, mode_t mode,
                               int child_fd) {
  return (int)syscall(SPAWNFD_NR_open, bfd, path, flags, mode, child_fd);
}

/* chdir(2) for the embryo. */
static inline int spawnfd_chdir(int bfd, const char *path) {
  return (int)syscall(SPAWNFD_NR_chdir, bfd, path);
}

/* setresuid(2) / setresgid(2) for the embryo ((uid_t)-1: unchanged); privileges only drop. */
static inline int spawnfd_setresuid(int bfd, uid_t r, uid_t e, uid_t s) {
  return (int)syscall(SPAWNFD_NR_setresuid, bfd, r, e, s);
}

static inline int spawnfd_setresgid(int bfd, gid_t r, gid_t e, gid_t s) {
  return (int)syscall(SPAWNFD_NR_setresgid, bfd, r, e, s);
}

/* Where the first thread starts: rip, rsp. */
static inline int spawnfd_setregs(int bfd, uint64_t rip, uint64_t rsp) {
  struct spawnfd_regs r = {rip, rsp};
  return (int)syscall(SPAWNFD_NR_setregs, bfd, &r, sizeof(r));
}

/* Map [addr, addr + len) of process src (0: the caller; else a child of it with its uid)
 * into the embryo copy-on-write at the same addresses, sharing last-level page tables of
 * whole 2 MiB chunks. */
static inline int spawnfd_map_cow(int bfd, pid_t src, void *addr, size_t len) {
  return (int)syscall(SPAWNFD_NR_map_cow, bfd, src, addr, len);
}

/* An ELF loader's mmap, munmap and zero steps, in order, in one call. */
static inline int spawnfd_mmapv(int bfd, struct spawnfd_mapv *v, unsigned int n,
                                struct spawnfd_mapv_result *res) {
  return (int)syscall(SPAWNFD_NR_mmapv, bfd, v, n, res);
}

/* Launch: close the builder fd; the first thread starts at the registers. */
static inline int spawnfd_launch(int bfd) { return close(bfd); }

/* waitid(P_PIDFD, wait_fd, info, options): options as waitid(2) (WEXITED, WNOHANG, WNOWAIT). */
static inline int spawnfd_waitid(int wait_fd, siginfo_t *info, int options) {
  return (int)syscall(SPAWNFD_NR_waitid, SPAWNFD_P_PIDFD, wait_fd, info, options, NULL);
}

/* Wait for the process and return its wait status (as waitpid(2) gives it), or -1. */
static inline int spawnfd_wait(int wait_fd) {
  siginfo_t si;
  if (spawnfd_waitid(wait_fd, &si, WEXITED) < 0)
    return -1;
  if (si.si_code == CLD_EXITED)
    return (si.si_status & 0xff) << 8;
  return (si.si_status & 0x7f) | (si.si_code == CLD_DUMPED ? 0x80 : 0);
}

/* pidfd_send_signal(2) through the wait handle: an embryo dies of sig at once. */
static inline int spawnfd_kill(int wait_fd, int sig) {
  return (int)syscall(SPAWNFD_NR_pidfd_send_signal, wait_fd, sig, NULL, 0);
}
#endif /* SPAWNFD_ABI_KERNEL */

#endif /* SPAWNFD_ABI_H */
