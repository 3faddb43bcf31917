/* fdspawn.h — posix_spawn(3) written on the fd model's system calls (<spawnfd/abi.h>).
 *
 * fdspawn() does in the parent what execve(2) does in the kernel: it reads the program's ELF
 * headers, maps its PT_LOAD segments and its interpreter (ld.so) into a zero-thread embryo,
 * builds the SysV initial stack there, installs descriptors 0-2 and the ones asked for,
 * sets the cwd and credentials, and closes the builder fd: the first thread starts in ld.so.
 * With FDSPAWN_LDSO it maps ld.so alone and lets it load the program (as "ld.so prog").
 */
#ifndef FDSPAWN_H
#define FDSPAWN_H

#include <sys/types.h>

#define FDSPAWN_MAXFDS 16
#define FDSPAWN_LDSO 0x1   /* map only the interpreter; it maps the program itself */
#define FDSPAWN_SETIDS 0x2 /* drop to uid/gid (setresgid, then setresuid) */

struct fdspawn_attr {
  unsigned flags;       /* FDSPAWN_* */
  const char *cwd;      /* the child's working directory (NULL: the caller's) */
  uid_t uid;            /* FDSPAWN_SETIDS: real, effective and saved uid */
  gid_t gid;            /* FDSPAWN_SETIDS: real, effective and saved gid */
  int nfds;             /* descriptors beyond 0-2: the child's fds[i].child is ... */
  struct {
    int child, parent;  /* ... the caller's fds[i].parent */
  } fds[FDSPAWN_MAXFDS];
};

/* Start path with argv and envp. On success 0, *pid the child's pid and *wait_fd its wait
 * handle (waitid(P_PIDFD), pidfd_send_signal; close it when done). On failure an errno
 * value (as posix_spawn returns it) and nothing was left behind: the errors of execve
 * (ENOENT, EACCES, ENOEXEC, E2BIG, ...) come from the step that failed, before anything
 * ran. compare posix_spawn(3). */
int fdspawn(pid_t *pid, int *wait_fd, const char *path, const struct fdspawn_attr *attr,
            char *const argv[], char *const envp[]);

#endif
