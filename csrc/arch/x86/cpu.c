// cpu.c — the CPU: a Unicorn x86-64 engine per address space, in virtual-TLB mode.
//
// The simulated frames are Unicorn's physical memory, mapped once: the flat content region
// of mm/frame.c (frame pfn at physical address pfn * 4 KiB). Unicorn asks for a translation
// on every TLB miss; the fill hook walks the process's own page tables through the kernel's
// fault path (mm_fault_translate: demand fault, COW break, breaking a COW-shared table, THP
// split, shared-table attach), materialises the frame's content into its slot and answers
// with the frame and what the pte allows now. The memory manager flushes this TLB through
// the mmu notifier wherever Linux flushes. System calls trap to syscall_64.c.
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/arch.h"

#define X86_EXCP_DE 0   // divide error
#define X86_EXCP_BP 3   // int3
#define X86_EXCP_UD 6   // invalid opcode
#define X86_EXCP_GP 13  // general protection
#define X86_EXCP_PF 14  // page fault

// compare Linux flush_tlb_mm_range(): this first version drops the whole TLB. A change the
// fill hook itself makes (its own COW break) needs none: Unicorn replaces that entry.
static void cpu_invalidate(struct mm *mm, uint64_t start, uint64_t end) {
  struct cpu *c = mm->mn_data;
  (void)start;
  (void)end;
  if (c->in_fill)
    return;
  uc_ctl_flush_tlb(c->uc);
  c->k->st.tlb_flushes++;
}

// compare Linux mmu_notifier_release(): the mm is going away (exit, exec); so is its CPU.
static void cpu_release(struct mm *mm) {
  struct cpu *c = mm->mn_data;
  mm->mn_ops = NULL;
  mm->mn_data = NULL;
  uc_close(c->uc);
  free(c);
}

static const struct mmu_notifier_ops cpu_mn_ops = {
    .invalidate = cpu_invalidate,
    .release = cpu_release,
};

// Translated code may be stale after [start, end) changed (munmap, mprotect of executable
// memory): drop it before the next instruction (the run loop does it between slices: Unicorn
// cannot flush translation blocks from inside one).
void cpu_request_tb_flush(struct cpu *c, uint64_t start, uint64_t end) {
  (void)start;
  (void)end;
  c->tb_flush = 1;
  uc_emu_stop(c->uc);
}

// The TLB-fill hook: a user access to vaddr missed. compare Linux do_user_addr_fault(),
// then the hardware's walk of the tables the fault left. false: a page fault (SIGSEGV).
static bool cpu_tlb_fill(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *e,
                         void *data) {
  struct cpu *c = data;
  struct kernel *k = c->k;
  int access = type == UC_MEM_WRITE ? MM_WRITE : type == UC_MEM_FETCH ? MM_FETCH : MM_READ;
  pfn_t pfn;
  int perms;
  (void)uc;
  k->st.tlb_fills++;
  c->in_fill = 1;
  int err = mm_fault_translate(c->mm, vaddr, access, &pfn, &perms);
  c->in_fill = 0;
  if (err) {  // the exception Unicorn raises next ends the run: SIGSEGV at the first one
    if (!c->fault_addr)
      c->fault_addr = vaddr;
    return false;
  }
  if (pfn != k->fr.zero_pfn && k->fr.f[pfn].ctype != CT_BUF)
    frame_materialise(&k->fr, pfn);  // the CPU reads and writes the slot itself
  e->paddr = (uint64_t)pfn << PAGE_SHIFT;
  e->perms = ((perms & MM_PERM_R) ? UC_PROT_READ : 0) | ((perms & MM_PERM_W) ? UC_PROT_WRITE : 0) |
             ((perms & MM_PERM_X) ? UC_PROT_EXEC : 0);
  return true;
}

// The syscall instruction. compare Linux entry_SYSCALL_64 -> do_syscall_64().
static void cpu_syscall(uc_engine *uc, void *data) {
  (void)uc;
  syscall_dispatch(data);
}

// An invalid instruction: SIGILL at its address. compare Linux exc_invalid_op().
static bool cpu_invalid_insn(uc_engine *uc, void *data) {
  struct cpu *c = data;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  c->stop = CPU_KILLED;
  c->status = SIGILL;
  c->fault_addr = rip;
  return false;
}

// A CPU exception a hook sees: the signal Linux's trap handlers would send. compare do_trap(),
// exc_page_fault(), exc_invalid_op().
static void cpu_interrupt(uc_engine *uc, uint32_t intno, void *data) {
  struct cpu *c = data;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  c->stop = CPU_KILLED;
  switch (intno) {
  case X86_EXCP_PF:
    c->status = SIGSEGV;
    break;
  case X86_EXCP_UD:
    c->status = SIGILL;
    c->fault_addr = rip;
    break;
  case X86_EXCP_DE:
    c->status = SIGFPE;
    c->fault_addr = rip;
    break;
  case X86_EXCP_BP:
    c->status = SIGTRAP;
    c->fault_addr = rip;
    break;
  default:
    c->status = SIGSEGV;
    c->fault_addr = rip;
  }
  uc_emu_stop(uc);
}

// The instructions in the translated block at addr: a small direct-mapped cache in front
// of Unicorn's own table (uc_ctl_request_cache finds the block being entered).
static uint32_t cpu_block_icount(struct cpu *c, uint64_t addr) {
  struct icount_slot *e = &c->icache[(addr ^ (addr >> 12)) & (CPU_ICACHE - 1)];
  if (e->addr == addr && e->icount)
    return e->icount;
  uc_tb tb;
  if (uc_ctl_request_cache(c->uc, addr, &tb) != UC_ERR_OK)
    return 1;
  e->addr = addr;
  e->icount = tb.icount ? tb.icount : 1;
  return e->icount;
}

// A block is entered: count its instructions; end the slice before one that would pass
// the budget (it runs first on the next slice).
static void cpu_count(uc_engine *uc, uint64_t addr, uint32_t size, void *data) {
  struct cpu *c = data;
  (void)size;
  uint32_t n = cpu_block_icount(c, addr);
  if (c->insns && c->insns + n > c->budget && c->stop == CPU_RUNNING) {
    c->stop = CPU_SLICE;
    uc_emu_stop(uc);
    return;
  }
  c->insns += n;
}

// A CPU for p's address space, at the registers execve or the builder left: the frames
// mapped once as physical memory, the hooks installed, the notifier registered on its mm.
static int cpu_create(struct kernel *k, struct proc *p, struct cpu **out) {
  struct cpu *c = calloc(1, sizeof(*c));
  uc_hook h;
  int err = -ENOMEM;
  if (!c)
    return -ENOMEM;
  c->k = k;
  c->mm = p->mm;
  c->pid = p->pid;
  c->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)p->serial << 17);
  c->trace = getenv("SPAWNFD_STRACE") != NULL;
  if (uc_open(UC_ARCH_X86, UC_MODE_64, &c->uc) != UC_ERR_OK)
    goto err_free;
  if (uc_ctl_tlb_mode(c->uc, UC_TLB_VIRTUAL) != UC_ERR_OK ||
      uc_mem_map_ptr(c->uc, 0, k->fr.mem_bytes, UC_PROT_ALL, k->fr.mem) != UC_ERR_OK ||
      uc_hook_add(c->uc, &h, UC_HOOK_TLB_FILL, (void *)cpu_tlb_fill, c, 1, 0) != UC_ERR_OK ||
      uc_hook_add(c->uc, &h, UC_HOOK_INSN, (void *)cpu_syscall, c, 1, 0,
                  UC_X86_INS_SYSCALL) != UC_ERR_OK ||
      uc_hook_add(c->uc, &h, UC_HOOK_INTR, (void *)cpu_interrupt, c, 1, 0) != UC_ERR_OK ||
      uc_hook_add(c->uc, &h, UC_HOOK_INSN_INVALID, (void *)cpu_invalid_insn, c, 1, 0) !=
          UC_ERR_OK ||
      uc_hook_add(c->uc, &h, UC_HOOK_BLOCK, (void *)cpu_count, c, 1, 0) != UC_ERR_OK)
    goto err_close;
  uint64_t rip = p->rip, rsp = p->rsp, rflags = 0x202;
  uc_reg_write(c->uc, UC_X86_REG_RIP, &rip);
  uc_reg_write(c->uc, UC_X86_REG_RSP, &rsp);
  uc_reg_write(c->uc, UC_X86_REG_EFLAGS, &rflags);
  p->mm->mn_ops = &cpu_mn_ops;
  p->mm->mn_data = c;
  *out = c;
  return 0;
err_close:
  uc_close(c->uc);
  err = -EINVAL;
err_free:
  free(c);
  return err;
}

// The CPU serving p's address space, NULL if none was created yet.
struct cpu *cpu_of(struct proc *p) {
  return p->mm && p->mm->mn_ops == &cpu_mn_ops ? p->mm->mn_data : NULL;
}

// Run pid's thread for at most max_insns instructions: until it exits, is killed by a CPU
// exception, blocks in a system call (out->fd: the descriptor), or the slice is over. A
// blocked system call is retried first on the next run. compare Linux's return to user
// mode loop (exit_to_user_mode_loop()) driven by the trio layer as the scheduler.
int sfd_cpu_run(struct kernel *k, int pid, uint64_t max_insns, struct sfd_cpu_exit *out) {
  struct proc *p;
  struct cpu *c;
  int err = 0;
  ENTER(k, pid, p);
  memset(out, 0, sizeof(*out));
  if (!max_insns)
    return -EINVAL;
  if (!(c = cpu_of(p)) && (err = cpu_create(k, p, &c)))
    return err;
  uint64_t rip;
  c->stop = CPU_RUNNING;
  c->fault_addr = 0;
  c->insns = 0;
  c->budget = max_insns;
  if (c->pending) {  // compare -ERESTARTSYS: the call that blocked runs again
    c->pending = 0;
    syscall_resume(c);
    if (c->stop != CPU_RUNNING)
      goto out;
  }
  for (;;) {
    uc_reg_read(c->uc, UC_X86_REG_RIP, &rip);
    uc_err ue = uc_emu_start(c->uc, rip, ~0ULL, 0, 0);
    if (c->tb_flush) {
      c->tb_flush = 0;
      uc_ctl_flush_tb(c->uc);
      memset(c->icache, 0, sizeof(c->icache));
      k->st.tb_flushes++;
    }
    if (c->stop != CPU_RUNNING)
      break;
    if (ue == UC_ERR_OK)
      continue;  // stopped for a translation flush
    // An exception no hook took: a page fault the fill hook refused (Unicorn reports
    // UC_ERR_EXCEPTION), or another trap. No IDT: it is never delivered to the program.
    c->stop = CPU_KILLED;
    c->status = ue == UC_ERR_INSN_INVALID ? SIGILL : SIGSEGV;
    if (!c->fault_addr)
      c->fault_addr = rip;
    break;
  }
out:
  k->st.cpu_instructions += c->insns;
  out->reason = c->stop;
  out->status = c->status;
  out->fd = c->block_fd;
  out->addr = c->stop == CPU_KILLED ? c->fault_addr : c->stop == CPU_SLEEP ? c->sleep_ns : 0;
  out->insns = c->insns;
  return LEAVE(k, 0);
}
