// exec.c — execve as Linux fs/binfmt_elf.c does it, on real ELF files: map the program's
// PT_LOAD segments (bss zero-filled, the partial page cleared), map its PT_INTERP (ld.so) at
// the top-down mmap base, build the SysV x86-64 initial stack (strings, AT_RANDOM, argc,
// argv, envp, auxv) in simulated memory, close close-on-exec descriptors, and start at the
// interpreter's entry. The new address space is built completely before the old one is
// dropped, so a failing exec leaves the caller untouched.
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fs/fs.h"
#include "kernel/kernel.h"  // up: ENTER; execve releases a vfork parent (proc_get_any)

#define ELF_ET_DYN_BASE 0x555555554000ULL  // (DEFAULT_MAP_WINDOW / 3 * 2), page aligned
#define STACK_EXPAND (128 * 1024ULL)        // setup_arg_pages(): stack_expand
#define MAX_PHNUM (65536 / sizeof(Elf64_Phdr))

struct elf {
  struct inode *ino;      // the file
  Elf64_Ehdr eh;          // its header
  Elf64_Phdr *ph;         // its program headers (eh.e_phnum)
};

// Read n bytes at off of a file completely; -ENOEXEC if the file is too short.
static int read_exact(struct kernel *k, struct inode *ino, uint64_t off, void *buf, uint64_t n) {
  int got = inode_read(k, ino, off, buf, n);
  if (got < 0)
    return got;
  return (uint64_t)got == n ? 0 : -ENOEXEC;
}

// Parse and check the ELF header and program headers. compare elf_read_implies_exec() and
// the checks at the top of load_elf_binary(): -ENOEXEC for anything not an x86-64 ELF.
static int elf_open(struct kernel *k, struct inode *ino, struct elf *e) {
  memset(e, 0, sizeof(*e));
  e->ino = ino;
  int err = read_exact(k, ino, 0, &e->eh, sizeof(e->eh));
  if (err)
    return err;
  Elf64_Ehdr *h = &e->eh;
  if (memcmp(h->e_ident, ELFMAG, SELFMAG) || h->e_ident[EI_CLASS] != ELFCLASS64 ||
      h->e_ident[EI_DATA] != ELFDATA2LSB || h->e_machine != EM_X86_64 ||
      (h->e_type != ET_EXEC && h->e_type != ET_DYN) || h->e_phentsize != sizeof(Elf64_Phdr) ||
      h->e_phnum < 1 || h->e_phnum > MAX_PHNUM)
    return -ENOEXEC;
  if (!(e->ph = malloc(h->e_phnum * sizeof(Elf64_Phdr))))
    return -ENOMEM;
  if ((err = read_exact(k, ino, h->e_phoff, e->ph, h->e_phnum * sizeof(Elf64_Phdr)))) {
    free(e->ph);
    e->ph = NULL;
  }
  return err;
}

static void elf_close(struct elf *e) { free(e->ph); }

// mmap protection of a segment's p_flags.
static int seg_prot(const Elf64_Phdr *ph) {
  return ((ph->p_flags & PF_R) ? PROT_READ : 0) | ((ph->p_flags & PF_W) ? PROT_WRITE : 0) |
         ((ph->p_flags & PF_X) ? PROT_EXEC : 0);
}

// Bytes from the first PT_LOAD's page to the end of the last one. compare total_mapping_size().
static uint64_t elf_span(const struct elf *e) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 0; i < e->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &e->ph[i];
    if (ph->p_type != PT_LOAD)
      continue;
    if ((ph->p_vaddr & PAGE_MASK) < lo)
      lo = ph->p_vaddr & PAGE_MASK;
    if (ph->p_vaddr + ph->p_memsz > hi)  // no wrap: elf_check_load
      hi = ph->p_vaddr + ph->p_memsz;
  }
  return hi > lo ? hi - lo : 0;
}

// A PT_LOAD segment the address space can hold, its file offset congruent to its address:
// -EINVAL otherwise, before anything wraps. compare the p_memsz/TASK_SIZE check of
// load_elf_binary() and the offset_in_page() check of do_mmap().
static int elf_check_load(const Elf64_Phdr *ph) {
  if (ph->p_filesz > ph->p_memsz || ph->p_memsz > TASK_SIZE || ph->p_vaddr > TASK_SIZE ||
      TASK_SIZE - ph->p_memsz < ph->p_vaddr ||
      ((ph->p_offset - ph->p_vaddr) & (PAGE_SIZE - 1)))
    return -EINVAL;
  return 0;
}

// Map one PT_LOAD segment at bias: the file part, the zeroed tail of its last page, and an
// anonymous mapping for the rest of the bss. compare elf_map() + elf_load() (Linux 6.7+).
// With total (the first segment of a relocatable object placed by the kernel), the whole
// span is reserved first and the part past this segment unmapped again; *bias is then set.
static int elf_load(struct proc *p, struct file *f, const Elf64_Phdr *ph, uint64_t *bias,
                    uint64_t total, int fixed) {
  uint64_t pgoff = ph->p_vaddr & (PAGE_SIZE - 1), out;
  uint64_t addr = (*bias + ph->p_vaddr) & PAGE_MASK;
  uint64_t size = PAGE_ROUND_UP(ph->p_filesz + pgoff);
  int prot = seg_prot(ph), err = 0;
  if (ph->p_filesz) {
    uint64_t len = total ? PAGE_ROUND_UP(total) : size;
    int flags = MAP_PRIVATE | (fixed ? MAP_FIXED_NOREPLACE : 0);
    if ((err = mm_mmap(p, addr, len, prot, flags, f, ph->p_offset - pgoff, &out)))
      return err;
    if (total) {
      *bias = out - (ph->p_vaddr & PAGE_MASK);
      if (len > size && (err = mm_munmap(p->mm, out + size, len - size)))
        return err;
    }
    addr = out;
  }
  if (ph->p_memsz > ph->p_filesz) {
    uint64_t zero_start = addr + pgoff + ph->p_filesz, zero_end = addr + pgoff + ph->p_memsz;
    uint64_t pad = PAGE_ROUND_UP(zero_start) - zero_start;
    if (ph->p_filesz && pad && (prot & PROT_WRITE)) {  // padzero(): clear_user to page end
      static const uint8_t zeros[PAGE_SIZE];
      if ((err = mm_access(p->mm, zero_start, NULL, zeros, pad)))
        return err;
    }
    zero_start = PAGE_ROUND_UP(zero_start);
    zero_end = PAGE_ROUND_UP(zero_end);
    if (zero_end > zero_start)  // compare vm_brk_flags(): anonymous, rw (+x if the segment)
      err = mm_mmap(p, zero_start, zero_end - zero_start,
                    PROT_READ | PROT_WRITE | (prot & PROT_EXEC),
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, NULL, 0, &out);
  }
  return err;
}

// Map every PT_LOAD of e into p. A relocatable object (ET_DYN) goes at
// base (fixed) or, with base 0, wherever top-down placement puts its whole span; *bias
// receives the load bias. compare the PT_LOAD loop of load_elf_binary() / load_elf_interp().
// A program without PT_LOAD is mapped as nothing (Linux execs it); an interpreter without one
// is -EINVAL (load_elf_interp(): no total mapping size).
static int elf_map_all(struct proc *p, const struct elf *e, uint64_t base, uint64_t *bias,
                       int interp) {
  struct file f = {.ino = e->ino, .flags = O_RDONLY, .refs = 1};  // the kernel's own open
  int first = 1, dyn = e->eh.e_type == ET_DYN, err;
  *bias = dyn ? base : 0;
  for (int i = 0; i < e->eh.e_phnum; i++)
    if (e->ph[i].p_type == PT_LOAD && (err = elf_check_load(&e->ph[i])))
      return err;
  for (int i = 0; i < e->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &e->ph[i];
    if (ph->p_type != PT_LOAD)
      continue;
    uint64_t total = (first && dyn && !base) ? elf_span(e) : 0;
    if ((err = elf_load(p, &f, ph, bias, total, !total)))
      return err;
    first = 0;
  }
  return first && interp ? -EINVAL : 0;
}

// The run-time address of the program headers. compare load_elf_binary(): phdr_addr.
static uint64_t elf_phdr_addr(const struct elf *e, uint64_t bias) {
  for (int i = 0; i < e->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &e->ph[i];
    if (ph->p_type == PT_LOAD && ph->p_offset <= e->eh.e_phoff &&
        e->eh.e_phoff - ph->p_offset < ph->p_filesz)
      return bias + e->eh.e_phoff - ph->p_offset + ph->p_vaddr;
  }
  return 0;
}

// Resolve a file for execution in p. -ENOENT, -EACCES (not a regular file, no execute bit)
// are Linux's.
static int exec_open(struct kernel *k, struct proc *p, const char *path, struct inode **ino) {
  char norm[PATH_MAX];
  int err = path_normalise(p->cwd, path, norm, sizeof(norm));
  if (!err)
    err = vfs_lookup(k, norm, O_RDONLY, 0, ino);
  if (err)
    return err;
  if (((*ino)->kind != IK_HOST && (*ino)->kind != IK_TMPFS) || !((*ino)->mode & 0111))
    return -EACCES;
  return 0;
}

struct exec_args {
  const char *strings;    // argv strings then envp strings, each NUL-terminated
  uint64_t len;           // bytes in strings
  int argc, envc;         // how many of each
  const char *execfn;     // the path as given (AT_EXECFN)
  uint64_t seed;          // AT_RANDOM bytes are derived from it
};

// Check the argument sizes. compare bprm_stack_limits() and copy_strings(): -E2BIG.
static int exec_args_check(const struct exec_args *a) {
  uint64_t ptrs = ((uint64_t)(a->argc ? a->argc : 1) + (uint64_t)a->envc) * 8;
  if (a->argc < 0 || a->envc < 0 || ptrs >= ARG_LIMIT || a->len > ARG_LIMIT - ptrs)
    return -E2BIG;
  const char *s = a->strings, *end = a->strings + a->len;
  for (int i = 0; i < a->argc + a->envc; i++) {
    const char *nul = memchr(s, 0, (size_t)(end - s));
    if (!nul)
      return -EINVAL;
    if ((uint64_t)(nul - s) + 1 > MAX_ARG_STRLEN)
      return -E2BIG;
    s = nul + 1;
  }
  return 0;
}

// Push n bytes below *sp into the new stack.
static int push(struct mm *mm, uint64_t *sp, const void *buf, uint64_t n) {
  *sp -= n;
  return mm_access(mm, *sp, NULL, buf, n);
}

struct auxv_ctx {
  uint64_t phdr, phnum, base, entry, random, execfn, platform;
  const struct cred *cred;  // AT_UID.. AT_EGID, AT_SECURE
};

// Write the auxiliary vector (x86-64 order) into v; returns the number of words.
static int fill_auxv(uint64_t *v, const struct auxv_ctx *c) {
  int n = 0;
#define AUX(id, val) (v[n++] = (id), v[n++] = (val))
  AUX(AT_MINSIGSTKSZ, 3632);
  AUX(AT_HWCAP, 0x178bfbff);
  AUX(AT_PAGESZ, PAGE_SIZE);
  AUX(AT_CLKTCK, 100);
  AUX(AT_PHDR, c->phdr);
  AUX(AT_PHENT, sizeof(Elf64_Phdr));
  AUX(AT_PHNUM, c->phnum);
  AUX(AT_BASE, c->base);
  AUX(AT_FLAGS, 0);
  AUX(AT_ENTRY, c->entry);
  AUX(AT_UID, c->cred->uid);
  AUX(AT_EUID, c->cred->euid);
  AUX(AT_GID, c->cred->gid);
  AUX(AT_EGID, c->cred->egid);
  AUX(AT_SECURE, c->cred->uid != c->cred->euid || c->cred->gid != c->cred->egid);
  AUX(AT_RANDOM, c->random);
  AUX(AT_HWCAP2, 0x2);
  AUX(AT_EXECFN, c->execfn);
  AUX(AT_PLATFORM, c->platform);
  AUX(AT_NULL, 0);
#undef AUX
  return n;
}

// Copy the strings to the top of the stack, as copy_strings() does: the exec path first
// (highest), then argv's and envp's strings as one block (argv[0] lowest: where pushing each
// list last string first leaves them). Each string's address goes into words[] where the
// initial stack wants it: argv[i] at 1 + i, envp[i] at argc + 2 + i.
static int copy_strings(struct mm *mm, const struct exec_args *a, uint64_t *sp,
                        uint64_t *words, uint64_t *execfn) {
  int n = a->argc + a->envc;
  const char *c = a->strings;
  for (int i = 0; i < n; i++)  // terminated within len: exec_args_check
    c += strlen(c) + 1;
  int err = push(mm, sp, a->execfn, strlen(a->execfn) + 1);
  *execfn = *sp;
  if (err || (err = push(mm, sp, a->strings, (uint64_t)(c - a->strings))))
    return err;
  c = a->strings;
  for (int i = 0; i < n; i++) {
    words[i < a->argc ? 1 + i : 2 + i] = *sp + (uint64_t)(c - a->strings);
    c += strlen(c) + 1;
  }
  return 0;
}

// Build the initial stack: strings, platform, AT_RANDOM, then argc, argv, envp and auxv at a
// 16-byte aligned sp. compare create_elf_tables(). Returns the new sp via *sp. The table is
// built on the heap (its size is the caller's argc + envc); -ENOMEM if the host has no room.
static int create_elf_tables(struct mm *mm, const struct exec_args *a, struct auxv_ctx *aux,
                             uint64_t *sp) {
  uint64_t rnd[2], auxv[48], items, bytes;
  int naux = fill_auxv(auxv, aux), err;
  if (__builtin_add_overflow((uint64_t)a->argc + (uint64_t)a->envc, 3 + (uint64_t)naux,
                             &items) ||
      __builtin_mul_overflow(items, 8, &bytes))
    return -E2BIG;
  uint64_t *words = malloc(bytes);
  if (!words)
    return -ENOMEM;
  if ((err = copy_strings(mm, a, sp, words, &aux->execfn)))
    goto out;
  *sp &= ~15ULL;  // arch_align_stack() without randomisation
  if ((err = push(mm, sp, "x86_64", 7)))
    goto out;
  aux->platform = *sp;
  rnd[0] = a->seed * 0x9E3779B97F4A7C15ULL + 1;
  rnd[1] = rnd[0] * 0xBF58476D1CE4E5B9ULL + 2;
  if ((err = push(mm, sp, rnd, 16)))
    goto out;
  aux->random = *sp;
  naux = fill_auxv(auxv, aux);  // again: execfn, platform and random are known now
  *sp = (*sp - bytes) & ~15ULL;  // STACK_ROUND()
  words[0] = (uint64_t)a->argc;
  words[1 + a->argc] = 0;
  words[2 + (uint64_t)a->argc + (uint64_t)a->envc] = 0;
  memcpy(&words[3 + (uint64_t)a->argc + (uint64_t)a->envc], auxv, (size_t)naux * 8);
  err = mm_access(mm, *sp, NULL, (const uint8_t *)words, bytes);
out:
  free(words);
  return err;
}

// Where the stack vma starts: room for the strings and tables plus 128 KiB below.
static uint64_t stack_vma_start(const struct exec_args *a) {
  uint64_t need = PAGE_ROUND_UP(a->len + strlen(a->execfn) + 1 + 8 + 512 +
                                ((uint64_t)a->argc + a->envc) * 8 + 64 * 8);
  return STACK_TOP - need - STACK_EXPAND;
}

// The stack vma. compare setup_arg_pages() (no randomisation: the stack ends at STACK_TOP).
static int setup_stack_vma(struct proc *p, const struct exec_args *a) {
  uint64_t start = stack_vma_start(a), out;
  int err = mm_mmap(p, start, STACK_TOP - start, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, NULL, 0, &out);
  if (!err)
    p->mm->start_stack = STACK_TOP - 8;
  return err;
}

// Find and open the program's PT_INTERP. 0 with interp->ino NULL when there is none.
static int elf_interp(struct kernel *k, struct proc *p, const struct elf *prog,
                      struct elf *interp) {
  char path[PATH_MAX];
  struct inode *ino;
  memset(interp, 0, sizeof(*interp));
  for (int i = 0; i < prog->eh.e_phnum; i++) {
    const Elf64_Phdr *ph = &prog->ph[i];
    if (ph->p_type != PT_INTERP)
      continue;
    if (ph->p_filesz < 2 || ph->p_filesz > PATH_MAX)
      return -ENOEXEC;
    int got = inode_read(k, prog->ino, ph->p_offset, (uint8_t *)path, ph->p_filesz), err;
    if (got < 0 || (uint64_t)got != ph->p_filesz)
      return got < 0 ? got : -EIO;  // compare elf_read()
    if (path[ph->p_filesz - 1])
      return -ENOEXEC;
    if ((err = exec_open(k, p, path, &ino)) || (err = elf_open(k, ino, interp)))
      return err;
    if (interp->eh.e_type != ET_DYN) {
      elf_close(interp);
      interp->ino = NULL;
      return -ELIBBAD;
    }
    return 0;
  }
  return 0;
}

// A setuid (setgid) executable runs with its owner (group) as effective and saved id.
// compare Linux bprm_fill_uid(). Only execve does this, never a builder.
static void exec_setid(struct proc *p, const struct inode *ino) {
  if (ino->mode & S_ISUID)
    p->cred.euid = p->cred.suid = ino->uid;
  if ((ino->mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
    p->cred.egid = p->cred.sgid = ino->gid;
}

// The [stack] vma and the initial stack for p, as execve builds them (shared with the fd
// model's builder): returns the stack pointer in *sp.
int exec_build_stack(struct proc *p, const char *execfn, const char *strings, uint64_t len,
                     int argc, int envc, uint64_t seed, const struct stack_aux *sa,
                     uint64_t *sp) {
  struct exec_args a = {.strings = strings, .len = len, .argc = argc, .envc = envc,
                        .execfn = execfn, .seed = seed};
  struct auxv_ctx aux = {.phdr = sa->phdr, .phnum = sa->phnum, .base = sa->base,
                         .entry = sa->entry, .cred = &p->cred};
  int err = exec_args_check(&a);
  if (err)
    return err;
  // A builder step changes nothing when it fails: a stack vma it mapped into a free range
  // goes again (execve instead drops its whole new mm).
  uint64_t start = stack_vma_start(&a), old_start_stack = p->mm->start_stack;
  int fresh = vma_range_free(&p->mm->vmas, start, STACK_TOP);
  *sp = STACK_TOP - 8;
  if ((err = setup_stack_vma(p, &a)))
    return err;
  err = create_elf_tables(p->mm, &a, &aux, sp);
  if (err && fresh) {
    mm_munmap(p->mm, start, STACK_TOP - start);
    p->mm->start_stack = old_start_stack;
  }
  return err;
}

// Load program (and its interpreter) into p's fresh mm; returns the start registers.
static int exec_load(struct kernel *k, struct proc *p, struct elf *prog,
                     const struct exec_args *a, uint64_t *rip, uint64_t *rsp) {
  struct elf interp;
  uint64_t bias, ibias = 0, sp = STACK_TOP - 8;
  int err = elf_interp(k, p, prog, &interp);
  if (err)
    return err;
  int has_interp = interp.ino != NULL;
  uint64_t base = prog->eh.e_type == ET_DYN && has_interp ? ELF_ET_DYN_BASE : 0;
  err = elf_map_all(p, prog, base, &bias, 0);
  if (!err && has_interp)
    err = elf_map_all(p, &interp, 0, &ibias, 1);
  if (!err)
    err = setup_stack_vma(p, a);
  struct auxv_ctx aux = {.phdr = elf_phdr_addr(prog, bias), .phnum = prog->eh.e_phnum,
                         .base = ibias, .entry = bias + prog->eh.e_entry, .cred = &p->cred};
  if (!err)
    err = create_elf_tables(p->mm, a, &aux, &sp);
  *rip = has_interp ? ibias + interp.eh.e_entry : aux.entry;
  *rsp = sp;
  if (has_interp)
    elf_close(&interp);
  return err;
}

// execve(2) in p: on success p has a new address space, its close-on-exec descriptors are
// closed, and *rip/*rsp are the first thread's registers. On failure p is unchanged.
static int do_execve(struct kernel *k, struct proc *p, const char *path,
                     const struct exec_args *a, uint64_t *rip, uint64_t *rsp) {
  struct inode *ino;
  struct elf prog;
  int err = exec_args_check(a);
  if (err || (err = exec_open(k, p, path, &ino)) || (err = elf_open(k, ino, &prog)))
    return err;
  struct mm *old = p->mm, *mm = mm_create(k, &err);
  if (!mm) {
    elf_close(&prog);
    return err;
  }
  struct cred saved = p->cred;
  p->mm = mm;  // the loader works through p; the old mm is kept until the point of no return
  exec_setid(p, ino);
  err = exec_load(k, p, &prog, a, rip, rsp);
  elf_close(&prog);
  if (err) {
    p->mm = old;
    p->cred = saved;
    mm_destroy(mm);
    return err;
  }
  if (p->vfork_parent) {  // the borrowed mm goes back to the suspended parent
    struct proc *parent = proc_get_any(k, p->vfork_parent);
    if (parent && parent->vfork_child == p->pid)
      parent->vfork_child = 0;
    p->vfork_parent = 0;
  } else {
    mm_destroy(old);
  }
  fdt_close_on_exec(k, &p->fds);
  for (int i = 0; i < SIG_NSIG; i++)  // compare flush_signal_handlers(): caught -> SIG_DFL
    if (p->sig.action[i].handler > 1)   // SIG_DFL 0, SIG_IGN 1 stay
      memset(&p->sig.action[i], 0, sizeof(p->sig.action[i]));
  p->rip = *rip;
  p->rsp = *rsp;
  p->exec_gen++;  // a thread that ran the old program starts again at rip/rsp
  p->forknoexec = 0;  // compare begin_new_exec(): PF_FORKNOEXEC cleared
  memset(&p->sas, 0, sizeof(p->sas));  // no alternate signal stack in the new program
  p->sas.flags = SS_DISABLE;
  return 0;
}

int sfd_execve(struct kernel *k, int pid, const char *path, const char *strings, uint64_t len,
               int argc, int envc, uint64_t seed, uint64_t *rip, uint64_t *rsp) {
  struct proc *p;
  ENTER(k, pid, p);
  struct exec_args a = {.strings = strings, .len = len, .argc = argc, .envc = envc,
                        .execfn = path, .seed = seed};
  if (!path[0])
    return -ENOENT;
  return LEAVE(k, do_execve(k, p, path, &a, rip, rsp));
}

int sfd_regs(struct kernel *k, int pid, uint64_t *rip, uint64_t *rsp) {
  struct proc *p;
  ENTER_VIEW(k, pid, p);
  *rip = p->rip;
  *rsp = p->rsp;
  return 0;
}
