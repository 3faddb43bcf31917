"""system() from a big parent: fork+exec, vfork+exec and the fd model, side by side.

Run it: ``python examples/system_replacement.py [--quick]``

The parent (init of a simulated machine) holds 2 GiB of populated anonymous memory
(``--quick``: 128 MiB), like a big Python service that shells out now and then. It runs
``await spawnfd.system("echo hi | wc -c", kernel=k, method=m)`` with each method. The machine
is ``open_kernel(cpu=False)``: its ``/bin/sh`` is the simulated shell, which starts ``echo``
and ``wc`` with the same method (the real dash of a default kernel forks them itself):

* ``fork-exec`` -- fork under the kernel's policy (classic ``copy``): every PTE of the 2 GiB is
  copied, only for exec to throw the copy away;
* ``cow-pt`` -- fork+exec with copy-on-write page tables, for comparison;
* ``vfork-exec`` -- what glibc's ``posix_spawn`` does: the child borrows the parent's memory
  until exec;
* ``spawnfd`` -- the fd model: an empty embryo, ld.so and the program mapped through the
  builder fd, launched by closing it.

Printed: the output the command wrote to the parent's stdout (a simulated pipe), its exit
status, the kernel's counters for one call (PTEs copied, page tables and frames allocated:
deltas of ``k.statistics()``, the same in every run) and the median wall time of a few calls.
"""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import time

import trio

import spawnfd

QUICK = "--quick" in sys.argv
PARENT_BYTES = (128 << 20) if QUICK else (2 << 30)
RUNS = 3 if QUICK else 7
COMMAND = "echo hi | wc -c"
METHODS = ("fork-exec", "cow-pt", "vfork-exec", "spawnfd")


async def one_call(k: spawnfd.Kernel, method: str, out_r: int) -> tuple[bytes, int]:
    status = await spawnfd.system(COMMAND, kernel=k, method=method)
    return await k.init.sys.read(out_r, 4096), status  # what the command wrote to our fd 1


async def main() -> None:
    async with spawnfd.open_kernel(memory="8G", fork_mode="copy", cpu=False) as k:
        init = k.init
        heap = init.mm.mmap(PARENT_BYTES, mmap.PROT_READ | mmap.PROT_WRITE,
                            mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        init.mm.populate(heap, PARENT_BYTES, write=True)
        for _ in range(3):  # init starts with an empty table: give it 0, 1 and 2
            init.open("/dev/null", os.O_RDWR)
        out_r, out_w = init.pipe(os.O_CLOEXEC)
        init.dup2(out_w, 1)  # our stdout, which system() shares with the shell: a pipe
        init.close(out_w)
        pt = init.mm.statistics().pagetable_bytes
        print(f"parent (init): {PARENT_BYTES >> 20:,} MiB populated, {pt // 1024:,} KiB of page "
              f"tables")
        print(f'await spawnfd.system("{COMMAND}", kernel=k, method=m)   '
              f"(counters: one call; wall: median of {RUNS})\n")
        for m in METHODS:  # warm-up: the page cache gets sh's, echo's, wc's and libc's pages
            await one_call(k, m, out_r)
        header = (f"  {'method':<11} {'output':>7} {'exit':>5} {'PTEs copied':>12}  "
                  f"{'tables alloc':>12}  {'frames alloc':>12} {'wall ms':>9}")
        print(header)
        print("  " + "-" * (len(header) - 2))
        for m in METHODS:
            times, counters = [], set()
            for _ in range(RUNS):
                s0 = k.statistics()
                t0 = time.perf_counter()
                out, status = await one_call(k, m, out_r)
                times.append(time.perf_counter() - t0)
                s1 = k.statistics()
                counters.add((s1.ptes_copied - s0.ptes_copied,
                              s1.tables_allocated - s0.tables_allocated,
                              s1.frames_allocated - s0.frames_allocated))
            assert len(counters) == 1, f"{m}: counters differ between calls: {counters}"
            ptes, tables, frames = counters.pop()
            print(f"  {m:<11} {out.decode().strip():>7} {os.waitstatus_to_exitcode(status):>5} "
                  f"{ptes:>12,}  {tables:>12,}  {frames:>12,} "
                  f"{statistics.median(times) * 1e3:>9.2f}")
        k.check()


if __name__ == "__main__":
    trio.run(main)
