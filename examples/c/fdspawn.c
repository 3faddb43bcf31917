/* fdspawn.c — posix_spawn(3) on the fd model's system calls: the ELF loading and the initial
 * stack that execve(2) does in the kernel, done here in the parent, into a zero-thread embryo
 * it holds a builder fd to. Only <spawnfd/abi.h> calls touch the child. See fdspawn.h.
 *
 * Built with -DFDSPAWN_MAIN it is a command: fdspawn [-l] [-C dir] [-u uid:gid] prog [arg...]
 * starts prog (-l: through ld.so alone), waits through the wait handle, and exits with the
 * child's status (128 + the signal that killed it).
 */
#define _GNU_SOURCE
#include "fdspawn.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawnfd/abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096ULL
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))
#define STACK_TOP 0x7ffffffff000ULL      /* the top of the user address space (no ASLR) */
#define STACK_EXPAND (128 * 1024ULL)     /* below the strings, as setup_arg_pages() */
#define ELF_ET_DYN_BASE 0x555555554000ULL /* where binfmt_elf puts a PIE with an interpreter */
#define MAX_PHDRS 128
#define MAX_STEPS (3 * MAX_PHDRS + 2)
#define ARG_LIMIT ((8ULL << 20) / 4)     /* _STK_LIM / 4: what execve accepts */
#define MAX_ARG_STRLEN (32 * PAGE)

/* An ELF file opened for loading. */
struct elf_file {
  int fd;
  Elf64_Ehdr eh;
  Elf64_Phdr ph[MAX_PHDRS];
  char interp[PATH_MAX]; /* PT_INTERP ("" if none) */
};

/* Where an ELF file was mapped in the embryo. */
struct loaded {
  uint64_t bias, entry, phdr, phnum;
};

/* Read exactly n bytes at off: a short file is ENOEXEC, a directory EACCES, as execve says.
 * compare elf_read() in binfmt_elf. */
static int pread_all(int fd, void *buf, size_t n, off_t off) {
  ssize_t r = pread(fd, buf, n, off);
  if (r < 0)
    return errno == EISDIR ? EACCES : errno;
  return (size_t)r == n ? 0 : ENOEXEC;
}

/* Open path and read its ELF and program headers, checking them as binfmt_elf does.
 * compare load_elf_binary()'s checks and load_elf_phdrs(). */
static int elf_open(const char *path, struct elf_file *e) {
  struct stat st;
  e->interp[0] = 0;
  if ((e->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
    return errno;
  int err = fstat(e->fd, &st) ? errno : 0;
  if (!err && !S_ISREG(st.st_mode))
    err = EACCES;
  if (!err)
    err = pread_all(e->fd, &e->eh, sizeof(e->eh), 0);
  if (!err && (memcmp(e->eh.e_ident, ELFMAG, SELFMAG) || e->eh.e_ident[EI_CLASS] != ELFCLASS64 ||
               e->eh.e_machine != EM_X86_64 ||
               (e->eh.e_type != ET_EXEC && e->eh.e_type != ET_DYN) ||
               e->eh.e_phentsize != sizeof(Elf64_Phdr) || !e->eh.e_phnum ||
               e->eh.e_phnum > MAX_PHDRS))
    err = ENOEXEC;
  if (!err)
    err = pread_all(e->fd, e->ph, e->eh.e_phnum * sizeof(Elf64_Phdr), (off_t)e->eh.e_phoff);
  for (int i = 0; !err && i < e->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &e->ph[i];
    if (ph->p_type == PT_INTERP) {
      if (ph->p_filesz < 2 || ph->p_filesz > PATH_MAX)
        err = ENOEXEC;
      else if (!(err = pread_all(e->fd, e->interp, ph->p_filesz, (off_t)ph->p_offset)) &&
               e->interp[ph->p_filesz - 1])
        err = ENOEXEC;
    } else if (ph->p_type == PT_LOAD &&
               (ph->p_filesz > ph->p_memsz || ((ph->p_offset - ph->p_vaddr) & (PAGE - 1)) ||
                ph->p_vaddr > STACK_TOP || ph->p_memsz > STACK_TOP - ph->p_vaddr)) {
      err = EINVAL;
    }
  }
  if (err) {
    close(e->fd);
    e->fd = -1;
  }
  return err;
}

/* PF_* to PROT_*. compare make_prot() in binfmt_elf. */
static int prot_of(uint32_t f) {
  return (f & PF_R ? PROT_READ : 0) | (f & PF_W ? PROT_WRITE : 0) | (f & PF_X ? PROT_EXEC : 0);
}

/* Append one loader step to v. */
static void step(struct spawnfd_mapv *v, int *n, int op, int rel, uint64_t addr, uint64_t len,
                 uint64_t off, int prot, int flags, int fd) {
  struct spawnfd_mapv s = {addr, len, off, op, rel, prot, flags, fd, 0, 0};
  v[(*n)++] = s;
}

/* Append the steps that map e's PT_LOAD segments: at bias `fixed` (a PIE with an
 * interpreter, or 0 for ET_EXEC), or, relative (ld.so, a static PIE), wherever the kernel
 * finds room for the whole span top-down (then the first step must be the call's first).
 * The file part of each segment, padzero() of its last page, the anonymous rest (bss).
 * compare elf_load() and load_elf_interp(). */
static int elf_steps(const struct elf_file *e, int relative, uint64_t fixed,
                     struct spawnfd_mapv *v, int *n) {
  const Elf64_Phdr *load[MAX_PHDRS];
  int nl = 0, rel = relative ? SPAWNFD_MAPV_REL : SPAWNFD_MAPV_ABS;
  uint64_t bias = relative ? 0 : fixed;
  for (int i = 0; i < e->eh.e_phnum; i++)
    if (e->ph[i].p_type == PT_LOAD)
      load[nl++] = &e->ph[i];
  if (!nl || (relative && (!load[0]->p_filesz || *n)))
    return ENOEXEC;
  for (int i = 0; i < nl; i++) {
    const Elf64_Phdr *ph = load[i];
    uint64_t pgoff = ph->p_vaddr & (PAGE - 1), at = bias + ph->p_vaddr - pgoff;
    uint64_t size = PAGE_UP(ph->p_filesz + pgoff);
    int prot = prot_of(ph->p_flags);
    if (ph->p_filesz) {
      if (relative && i == 0) { /* reserve the span, keep the first segment */
        uint64_t total = PAGE_UP(load[nl - 1]->p_vaddr + load[nl - 1]->p_memsz - at);
        step(v, n, SPAWNFD_MAPV_MMAP, SPAWNFD_MAPV_BIAS, at, total, ph->p_offset - pgoff, prot,
             MAP_PRIVATE, e->fd);
        if (total > size)
          step(v, n, SPAWNFD_MAPV_MUNMAP, SPAWNFD_MAPV_REL, at + size, total - size, 0, 0, 0, 0);
      } else {
        step(v, n, SPAWNFD_MAPV_MMAP, rel, at, size, ph->p_offset - pgoff, prot,
             MAP_PRIVATE | MAP_FIXED_NOREPLACE, e->fd);
      }
    }
    if (ph->p_memsz > ph->p_filesz) {
      uint64_t zs = at + pgoff + ph->p_filesz, ze = at + pgoff + ph->p_memsz;
      uint64_t pad = PAGE_UP(zs) - zs;
      if (ph->p_filesz && pad && (prot & PROT_WRITE)) /* padzero() */
        step(v, n, SPAWNFD_MAPV_ZERO, rel, zs, pad, 0, 0, 0, 0);
      if (PAGE_UP(ze) > PAGE_UP(zs))
        step(v, n, SPAWNFD_MAPV_MMAP, rel, PAGE_UP(zs), PAGE_UP(ze) - PAGE_UP(zs), 0,
             PROT_READ | PROT_WRITE | (prot & PROT_EXEC), MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1);
    }
  }
  return 0;
}

/* Where e is once its bias is known: entry point and program headers (AT_ENTRY, AT_PHDR). */
static void elf_loaded(const struct elf_file *e, uint64_t bias, struct loaded *out) {
  out->bias = bias;
  out->entry = bias + e->eh.e_entry;
  out->phnum = e->eh.e_phnum;
  out->phdr = 0;
  for (int i = 0; i < e->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &e->ph[i];
    if (ph->p_type == PT_LOAD && ph->p_offset <= e->eh.e_phoff &&
        e->eh.e_phoff < ph->p_offset + ph->p_filesz)
      out->phdr = bias + e->eh.e_phoff - ph->p_offset + ph->p_vaddr;
  }
}

/* What the stack's auxiliary vector says. */
struct aux {
  uint64_t phdr, phnum, base, entry;
  uid_t uid, euid;
  gid_t gid, egid;
};

/* The SysV x86-64 initial stack, laid out as the kernel's execve lays it out: the exec path
 * at the top, the argument and environment strings, "x86_64", 16 random bytes, then argc,
 * argv, envp and the auxiliary vector at a 16-byte aligned rsp; the stack vma below it grows
 * down. compare create_elf_tables() and setup_arg_pages(). */
struct stack {
  const char *execfn;
  char *const *argv, *const *envp;
  uint64_t argc, envc, slen, flen, naux;
  uint64_t fn_at, str_at, plat_at, rnd_at, sp, size, start;
  uint64_t seed; /* AT_RANDOM's bytes come from it (the child's pid) */
};
#define NAUX 40

/* The layout (E2BIG past execve's limits); stack_step() maps it, stack_write() fills it. */
static int stack_plan(struct stack *st, const char *execfn, char *const argv[],
                      char *const envp[]) {
  st->execfn = execfn, st->argv = argv, st->envp = envp;
  st->argc = st->envc = st->slen = 0;
  for (; argv && argv[st->argc]; st->argc++)
    st->slen += strlen(argv[st->argc]) + 1;
  for (; envp && envp[st->envc]; st->envc++)
    st->slen += strlen(envp[st->envc]) + 1;
  st->flen = strlen(execfn) + 1;
  if (st->slen + (st->argc + st->envc + 1) * 8 >= ARG_LIMIT || st->flen > MAX_ARG_STRLEN)
    return E2BIG;
  uint64_t words = st->argc + st->envc + 3 + NAUX;
  /* Addresses, from the top down, as exec.c's copy_strings() and create_elf_tables(). */
  st->fn_at = STACK_TOP - 8 - st->flen;
  st->str_at = st->fn_at - st->slen;
  st->plat_at = (st->str_at & ~15ULL) - 7;
  st->rnd_at = st->plat_at - 16;
  st->sp = (st->rnd_at - words * 8) & ~15ULL;
  st->size = STACK_TOP - 8 - st->sp;
  st->start = STACK_TOP -
              PAGE_UP(st->slen + st->flen + 8 + 512 + (st->argc + st->envc) * 8 + 64 * 8) -
              STACK_EXPAND;
  return 0;
}

static void stack_step(const struct stack *st, struct spawnfd_mapv *v, int *n) {
  step(v, n, SPAWNFD_MAPV_MMAP, SPAWNFD_MAPV_ABS, st->start, STACK_TOP - st->start, 0,
       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN,
       -1);
}

/* Fill the stack: one spawnfd_vm_writev of its whole image. */
static int stack_write(int bfd, const struct stack *st, const struct aux *a) {
  uint64_t auxv[NAUX] = {
      AT_MINSIGSTKSZ, 3632, AT_HWCAP, 0x178bfbff, AT_PAGESZ, PAGE, AT_CLKTCK, 100,
      AT_PHDR, a->phdr, AT_PHENT, sizeof(Elf64_Phdr), AT_PHNUM, a->phnum, AT_BASE, a->base,
      AT_FLAGS, 0, AT_ENTRY, a->entry, AT_UID, a->uid, AT_EUID, a->euid, AT_GID, a->gid,
      AT_EGID, a->egid, AT_SECURE, a->uid != a->euid || a->gid != a->egid,
      AT_RANDOM, st->rnd_at, AT_HWCAP2, 2, AT_EXECFN, st->fn_at, AT_PLATFORM, st->plat_at,
      AT_NULL, 0};
  uint8_t *img = calloc(1, st->size);
  if (!img)
    return ENOMEM;
  uint64_t *w = (uint64_t *)img, at = st->str_at, sp = st->sp;
  memcpy(img + (st->fn_at - sp), st->execfn, st->flen);
  w[0] = st->argc;
  for (uint64_t i = 0; i < st->argc + st->envc; i++) {
    const char *s = i < st->argc ? st->argv[i] : st->envp[i - st->argc];
    size_t l = strlen(s) + 1;
    memcpy(img + (at - sp), s, l);
    w[i < st->argc ? 1 + i : 2 + i] = at;
    at += l;
  }
  memcpy(img + (st->plat_at - sp), "x86_64", 7);
  uint64_t rnd[2] = {st->seed * 0x9E3779B97F4A7C15ULL + 1, 0}; /* AT_RANDOM: as exec.c */
  rnd[1] = rnd[0] * 0xBF58476D1CE4E5B9ULL + 2;
  memcpy(img + (st->rnd_at - sp), rnd, 16);
  memcpy(&w[st->argc + st->envc + 3], auxv, sizeof(auxv));
  int err = spawnfd_write(bfd, (void *)sp, img, st->size) ? errno : 0;
  free(img);
  return err;
}

/* Descriptors 0-2 of the caller (those that are open), then the ones asked for: the embryo
 * gets nothing else (where fork copies the table and exec closes the close-on-exec ones).
 * compare posix_spawn_file_actions_adddup2(). */
static int install_fds(int bfd, const struct fdspawn_attr *attr) {
  for (int fd = 0; fd < 3; fd++)
    if (spawnfd_install_fd(bfd, fd, fd, 0) < 0 && errno != EBADF)
      return errno;
  for (int i = 0; attr && i < attr->nfds; i++)
    if (spawnfd_install_fd(bfd, attr->fds[i].parent, attr->fds[i].child, 0) < 0)
      return errno;
  return 0;
}

int fdspawn(pid_t *pid, int *wait_fd, const char *path, const struct fdspawn_attr *attr,
            char *const argv[], char *const envp[]) {
  struct elf_file *prog = malloc(2 * sizeof(*prog)), *interp = prog + 1; /* big */
  struct spawnfd_handles h;
  struct loaded lp = {0}, li = {0};
  unsigned flags = attr ? attr->flags : 0;
  if (!prog)
    return ENOMEM;
  int err = access(path, X_OK) ? errno : elf_open(path, prog); /* execve's order */
  if (err) {
    free(prog);
    return err;
  }
  interp->fd = -1;
  if (prog->interp[0])
    err = elf_open(prog->interp, interp);
  if (!err && (flags & FDSPAWN_LDSO) && !prog->interp[0])
    err = ENOEXEC; /* a static program has no ld.so to load it */
  pid_t child = err ? -1 : spawnfd_create(&h, 0);
  if (!err && child < 0)
    err = errno;
  if (err)
    goto out;
  struct aux a = {0};
  uid_t suid;
  gid_t sgid;
  getresuid(&a.uid, &a.euid, &suid); /* the embryo's ids are ours until dropped */
  getresgid(&a.gid, &a.egid, &sgid);
  if (flags & FDSPAWN_SETIDS) {
    a.uid = a.euid = attr->uid;
    a.gid = a.egid = attr->gid;
  }
  const char *execfn = path;
  char *const *args = argv;
  char **ldargv = NULL;
  struct spawnfd_mapv *v = malloc((2 * MAX_STEPS + 1) * sizeof(*v)); /* not zeroed: 43 KiB */
  struct stack st = {0};
  int n = 0, dyn = prog->eh.e_type == ET_DYN;
  uint64_t fixed = dyn && prog->interp[0] ? ELF_ET_DYN_BASE : 0;
  if (!v)
    err = ENOMEM;
  if (!err && (flags & FDSPAWN_LDSO)) { /* ld.so --argv0 argv[0] path argv[1]...: ld.so loads it */
    size_t na = 0;
    while (argv[na])
      na++;
    if (!(ldargv = calloc(na + 4, sizeof(char *)))) {
      err = ENOMEM;
    } else {
      ldargv[0] = prog->interp;
      ldargv[1] = "--argv0";
      ldargv[2] = na ? argv[0] : (char *)path;
      ldargv[3] = (char *)path;
      for (size_t i = 1; i < na; i++)
        ldargv[3 + i] = argv[i];
      args = ldargv;
      execfn = prog->interp;
      err = elf_steps(interp, 1, 0, v, &n);
    }
  } else if (!err) { /* ld.so first: its span goes where the kernel finds room */
    if (prog->interp[0])
      err = elf_steps(interp, 1, 0, v, &n);
    if (!err)
      err = elf_steps(prog, dyn && !prog->interp[0], fixed, v, &n);
  }
  if (!err)
    err = stack_plan(&st, execfn, args, envp);
  st.seed = (uint64_t)child;
  if (!err) { /* the objects and the stack vma: one call */
    struct spawnfd_mapv_result res;
    stack_step(&st, v, &n);
    if (spawnfd_mmapv(h.builder_fd, v, (unsigned)n, &res) < 0) {
      err = errno;
    } else if (flags & FDSPAWN_LDSO) {
      elf_loaded(interp, res.bias, &li);
      a.phdr = li.phdr, a.phnum = li.phnum, a.base = 0, a.entry = li.entry;
    } else {
      if (prog->interp[0])
        elf_loaded(interp, res.bias, &li);
      elf_loaded(prog, prog->interp[0] || !dyn ? fixed : res.bias, &lp);
      a.phdr = lp.phdr, a.phnum = lp.phnum, a.base = li.bias, a.entry = lp.entry;
    }
  }
  uint64_t rsp = st.sp;
  if (!err)
    err = stack_write(h.builder_fd, &st, &a);
  free(ldargv);
  free(v);
  if (!err)
    err = install_fds(h.builder_fd, attr);
  if (!err && attr && attr->cwd && spawnfd_chdir(h.builder_fd, attr->cwd))
    err = errno;
  if (!err && (flags & FDSPAWN_SETIDS) &&
      (spawnfd_setresgid(h.builder_fd, attr->gid, attr->gid, attr->gid) ||
       spawnfd_setresuid(h.builder_fd, attr->uid, attr->uid, attr->uid)))
    err = errno;
  if (!err && spawnfd_setregs(h.builder_fd, (prog->interp[0] ? li.entry : lp.entry), rsp))
    err = errno;
  if (err) { /* destroy the embryo: it dies of SIGKILL, is reaped, no launch */
    spawnfd_kill(h.wait_fd, SIGKILL);
    spawnfd_wait(h.wait_fd);
    close(h.builder_fd);
    close(h.wait_fd);
    goto out;
  }
  if (spawnfd_launch(h.builder_fd)) /* close(2): the first thread starts */
    err = errno;
  *pid = child;
  *wait_fd = h.wait_fd;
out:
  close(prog->fd);
  if (interp->fd >= 0)
    close(interp->fd);
  free(prog);
  return err;
}

#ifdef FDSPAWN_MAIN
extern char **environ;

int main(int argc, char **argv) {
  struct fdspawn_attr attr = {0};
  int opt;
  while ((opt = getopt(argc, argv, "+lC:u:")) != -1) {
    if (opt == 'l') {
      attr.flags |= FDSPAWN_LDSO;
    } else if (opt == 'C') {
      attr.cwd = optarg;
    } else if (opt == 'u' && sscanf(optarg, "%u:%u", &attr.uid, &attr.gid) == 2) {
      attr.flags |= FDSPAWN_SETIDS;
    } else {
      fprintf(stderr, "usage: fdspawn [-l] [-C dir] [-u uid:gid] prog [arg...]\n");
      return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "usage: fdspawn [-l] [-C dir] [-u uid:gid] prog [arg...]\n");
    return 2;
  }
  pid_t pid;
  int wfd, err = fdspawn(&pid, &wfd, argv[optind], &attr, argv + optind, environ);
  if (err) {
    fprintf(stderr, "fdspawn: %s: %s\n", argv[optind], strerror(err));
    return 127;
  }
  int st = spawnfd_wait(wfd);
  close(wfd);
  if (st < 0) {
    perror("fdspawn: waitid");
    return 126;
  }
  return (st & 0x7f) ? 128 + (st & 0x7f) : (st >> 8) & 0xff;
}
#endif
