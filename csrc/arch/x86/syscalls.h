// arch/x86/syscalls.h — shared by the files of the system-call table: user copies (compare
// Linux include/linux/uaccess.h) and the handlers that live outside syscall_64.c.
#ifndef SPAWNFD_SYSCALLS_H
#define SPAWNFD_SYSCALLS_H

#include "arch/x86/arch.h"

#define AT_FDCWD_ (-100)
#define AT_SYMLINK_NOFOLLOW_ 0x100
#define AT_REMOVEDIR_ 0x200
#define AT_NO_AUTOMOUNT_ 0x800
#define AT_EMPTY_PATH_ 0x1000
#define AT_STATX_SYNC_TYPE_ 0x6000

typedef int64_t (*syscall_fn)(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- syscall_64.c: user memory ----
int copy_from_user(struct cpu *c, void *dst, uint64_t src, uint64_t n);
int copy_to_user(struct cpu *c, uint64_t dst, const void *src, uint64_t n);
int user_range_ok(struct cpu *c, uint64_t addr, uint64_t n, int write);
int strncpy_from_user(struct cpu *c, char *dst, uint64_t src, size_t cap);
int user_path_at(struct cpu *c, struct proc *p, int dirfd, uint64_t upath, char *out);

// ---- sys_futex.c: futex ----
int64_t sys_futex(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_set_robust_list(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_get_robust_list(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_poll.c: poll, ppoll, select, pselect6 ----
int64_t sys_poll(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_ppoll(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_select(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_pselect6(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_process.c: fork, vfork, clone, execve, wait4, waitid, process groups ----
int64_t sys_fork(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_vfork(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_clone(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_clone3(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_execve(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_execveat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_wait4(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_waitid(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_setpgid(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getpgid(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getpgrp(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_setsid(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getsid(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_fs.c: directories, attributes, links, names, xattrs, statfs ----
int64_t sys_stat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_fstat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_lstat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_newfstatat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_statx(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getdents64(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_readlink(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_readlinkat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_unlink(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_unlinkat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_rmdir(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_mkdir(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_mkdirat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_rename(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_renameat(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_renameat2(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getxattr(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_lgetxattr(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_fgetxattr(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_statfs(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_fstatfs(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_fadvise64(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_time.c: sleeping, the machine's resources ----
int64_t sys_nanosleep(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_clock_nanosleep(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_sysinfo(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_getrusage(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_sched_getaffinity(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_signal.c: dispositions and the mask ----
int64_t sys_rt_sigaction(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_rt_sigprocmask(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_rt_sigreturn(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_kill(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_tgkill(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_tkill(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_sigaltstack(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_pause(struct cpu *c, struct proc *p, const uint64_t *a);
int64_t sys_rt_sigsuspend(struct cpu *c, struct proc *p, const uint64_t *a);

// ---- sys_spawnfd.c: the fd model's calls (a private range), pidfd_send_signal ----
int spawnfd_syscall_nr(uint64_t nr);
int64_t sys_spawnfd(struct cpu *c, struct proc *p, uint64_t nr, const uint64_t *a);
void spawnfd_launched(struct cpu *c, int pid);
int64_t sys_pidfd_send_signal(struct cpu *c, struct proc *p, const uint64_t *a);

#endif
