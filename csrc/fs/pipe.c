// pipe.c — pipes: a 64 KiB ring buffer behind an unnamed inode, a read end and a write end.
// The kernel never blocks: a read of an empty pipe with writers, or a write that does not fit,
// returns -EAGAIN and the caller (Python, with trio) parks until the other side moves.
// compare Linux fs/pipe.c: pipe_read(), pipe_write() (writes of at most PIPE_BUF bytes are
// atomic), EOF once no writer is left, -EPIPE once no reader is left.
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/fs.h"
#include "kernel/kernel.h"  // up: ENTER, the sfd_* entry guard (Linux: current)

#define PIPE_SIZE (64 * 1024)
#define PIPE_BUF_ATOMIC 4096

// A new pipe inode (refs 0: the two files take theirs). NULL if the host is out of memory.
static struct inode *pipe_inode_new(struct kernel *k) {
  struct inode *ino = calloc(1, sizeof(*ino));
  struct pipe *pp = calloc(1, sizeof(*pp));
  uint8_t *buf = malloc(PIPE_SIZE);
  if (!ino || !pp || !buf) {
    free(ino);
    free(pp);
    free(buf);
    return NULL;
  }
  pp->buf = buf;
  pp->events = &k->pipe_events;
  ino->kind = IK_PIPE;
  ino->mode = S_IFIFO | 0600;
  ino->host_fd = -1;
  ino->ino = ++k->next_ino;
  ino->dev_minor = 0xd;
  ino->pipe = pp;
  return ino;
}

// Release a pipe's buffer (the inode's last reference is gone).
void pipe_free(struct pipe *pp) {
  if (pp) {
    free(pp->buf);
    free(pp);
  }
}

// One end of a pipe as an open file description.
static struct file *pipe_file(struct inode *ino, int flags) {
  struct file *f = calloc(1, sizeof(*f));
  if (!f)
    return NULL;
  f->ino = ino;
  f->flags = flags;
  f->refs = 1;
  inode_get(ino);
  if ((flags & O_ACCMODE) == O_RDONLY)
    ino->pipe->readers++;
  else
    ino->pipe->writers++;
  return f;
}

// The last descriptor of one end closed: one reader or writer fewer.
void pipe_release(struct file *f) {
  (*f->ino->pipe->events)++;
  if ((f->flags & O_ACCMODE) == O_RDONLY)
    f->ino->pipe->readers--;
  else
    f->ino->pipe->writers--;
}

// Read up to n bytes: -EAGAIN if empty while a writer exists, 0 at end of file.
int64_t pipe_read(struct pipe *pp, uint8_t *buf, uint64_t n) {
  if (!pp->len)
    return pp->writers ? -EAGAIN : 0;
  if (n > pp->len)
    n = pp->len;
  uint64_t first = PIPE_SIZE - pp->head < n ? PIPE_SIZE - pp->head : n;
  memcpy(buf, pp->buf + pp->head, first);
  memcpy(buf + first, pp->buf, n - first);
  pp->head = (pp->head + n) % PIPE_SIZE;
  pp->len -= n;
  (*pp->events)++;
  return (int64_t)n;
}

// Write up to n bytes: -EPIPE without readers; -EAGAIN when full, or when a write of at most
// PIPE_BUF bytes does not fit whole; otherwise as much as fits.
int64_t pipe_write(struct pipe *pp, const uint8_t *buf, uint64_t n) {
  if (!pp->readers)
    return -EPIPE;
  uint64_t space = PIPE_SIZE - pp->len;
  if (!space || (n <= PIPE_BUF_ATOMIC && space < n))
    return -EAGAIN;
  if (n > space)
    n = space;
  uint64_t tail = (pp->head + pp->len) % PIPE_SIZE;
  uint64_t first = PIPE_SIZE - tail < n ? PIPE_SIZE - tail : n;
  memcpy(pp->buf + tail, buf, first);
  memcpy(pp->buf, buf + first, n - first);
  pp->len += n;
  (*pp->events)++;
  return (int64_t)n;
}

// What a poll of this end of the pipe sees. compare Linux pipe_poll(): the read end is
// readable while bytes wait and hangs up once no writer is left; the write end is writable
// while a PIPE_BUF write fits and in error once no reader is left.
unsigned pipe_poll(const struct file *f) {
  const struct pipe *pp = f->ino->pipe;
  if ((f->flags & O_ACCMODE) == O_RDONLY)
    return (pp->len ? POLLIN | POLLRDNORM : 0) | (pp->writers ? 0 : POLLHUP);
  return (PIPE_SIZE - pp->len >= PIPE_BUF_ATOMIC ? POLLOUT | POLLWRNORM : 0) |
         (pp->readers ? 0 : POLLERR);
}

// Pipe reads, writes and closes so far (the trio layer wakes parked waiters when it moved).
uint64_t sfd_pipe_events(struct kernel *k) { return k->pipe_events; }

// pipe2(2): fds[0] the read end, fds[1] the write end. flags: O_CLOEXEC, O_NONBLOCK.
static int do_pipe2(struct kernel *k, struct proc *p, int flags, int *fds) {
  if (flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT))
    return -EINVAL;
  struct inode *ino = pipe_inode_new(k);
  if (!ino)
    return -ENOMEM;
  struct file *r = pipe_file(ino, O_RDONLY | (flags & O_NONBLOCK));
  struct file *w = r ? pipe_file(ino, O_WRONLY | (flags & O_NONBLOCK)) : NULL;
  int err = -ENOMEM;
  if (!r || !w || (fds[0] = fdt_alloc(&p->fds, 0, r, flags & O_CLOEXEC)) < 0) {
    err = r && w ? fds[0] : -ENOMEM;
    goto fail;
  }
  if ((fds[1] = fdt_alloc(&p->fds, 0, w, flags & O_CLOEXEC)) < 0) {
    err = fds[1];
    p->fds.fd[fds[0]] = NULL;
    goto fail;
  }
  return 0;
fail:
  if (w)
    file_put(k, w);
  if (r)
    file_put(k, r);
  if (!r)
    inode_put_new(k, ino);
  return err;
}

int sfd_pipe2(struct kernel *k, int pid, int flags, int *fds) {
  struct proc *p;
  ENTER(k, pid, p);
  return LEAVE(k, do_pipe2(k, p, flags, fds));
}

// Bytes waiting in the pipe behind fd (FIONREAD); -EINVAL if fd is not a pipe.
int sfd_pipe_avail(struct kernel *k, int pid, int fd, uint64_t *avail, int *peers) {
  struct proc *p;
  ENTER(k, pid, p);
  struct file *f = fdt_get(&p->fds, fd);
  if (!f)
    return -EBADF;
  if (f->ino->kind != IK_PIPE)
    return -EINVAL;
  *avail = f->ino->pipe->len;
  *peers = (f->flags & O_ACCMODE) == O_RDONLY ? (int)f->ino->pipe->writers
                                               : (int)f->ino->pipe->readers;
  return 0;
}
