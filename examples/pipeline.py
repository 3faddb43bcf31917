"""A three-stage pipeline, started three ways on one simulated kernel, with its counters.

Run it: ``python examples/pipeline.py [--quick]``

The parent (init) first populates 1 GiB of private memory (``--quick``: 64 MiB), as a big
Python or Java process would hold. Then:

1. ``sh -c "echo hello world | cat | wc -c"`` with the shell itself and each of its children
   started by ``"spawnfd"``, ``"fork-exec"`` and ``"vfork-exec"`` (``k.shell_method``; the
   environment variable ``SPAWNFD_METHOD`` does the same for one shell).
2. The same pipeline without a shell. With ``"spawnfd"`` each stage is built directly through a
   ``ProcessBuilder``: ld.so and the program mapped, the stack written, and its fds 0 and 1
   installed from pipes -- nothing else, so no stray pipe end keeps a reader waiting for an
   EOF. The fork and vfork paths go through ``spawnfd.sim.spawn.spawn(..., fds={0: .., 1: ..})``,
   which rearranges the descriptors in the child before exec, as posix_spawn file actions do.

Every run prints the output and the kernel's own counters for it (deltas of
``k.statistics()``): PTEs copied, page tables allocated, frames allocated, and the wall time
(median of a few runs). A first, unprinted run fills the page cache (the programs' and libc's
pages), so every method is measured warm.
"""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import trio

import spawnfd
from spawnfd.sim.spawn import SpawnedProcess, spawn

QUICK = "--quick" in sys.argv
PARENT_BYTES = (64 << 20) if QUICK else (1 << 30)
RUNS = 3 if QUICK else 5
METHODS = ("spawnfd", "fork-exec", "vfork-exec")
ENV = {"PATH": "/usr/bin:/bin"}
LD_SO = "/lib64/ld-linux-x86-64.so.2"
STAGES = [["/bin/echo", "hello", "world"], ["/bin/cat"], ["/usr/bin/wc", "-c"]]


async def read_all(proc: spawnfd.Process, fd: int) -> bytes:
    out = b""
    while chunk := await proc.sys.read(fd, 4096):
        out += chunk
    return out


async def via_shell(k: spawnfd.Kernel, method: str) -> tuple[bytes, int]:
    """sh -c '...' with its stdout on our pipe; the shell starts its children by method."""
    parent = k.init
    k.shell_method = method
    r, w = parent.pipe(os.O_CLOEXEC)
    sh = await spawn(parent, "/bin/sh", ["sh", "-c", "echo hello world | cat | wc -c"], ENV,
                     method=method, fds={0: 0, 1: w, 2: 2})
    parent.close(w)
    out = await read_all(parent, r)
    parent.close(r)
    return out, await sh.wait()


async def build_stage(parent: spawnfd.Process, argv: list[str], stdin: int,
                      stdout: int) -> SpawnedProcess:
    """One stage through the builder fd: exactly fds 0 and 1, nothing inherited."""
    async with parent.create_process() as child:
        ld = await child.load_elf(LD_SO)
        prog = await child.load_elf(argv[0])
        await child.setup_stack([os.path.basename(argv[0]), *argv[1:]], ENV,
                                interpreter=ld, program=prog)
        await child.install_fd(0, stdin)
        await child.install_fd(1, stdout)
    launched: SpawnedProcess = child  # leaving the block closed the builder fd
    return launched


async def direct(k: spawnfd.Kernel, method: str) -> tuple[bytes, int]:
    """echo | cat | wc -c without a shell; returns the output and the last stage's status."""
    parent = k.init
    stdin = parent.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    out_r, out_w = parent.pipe(os.O_CLOEXEC)
    children = []
    for i, argv in enumerate(STAGES):
        last = i == len(STAGES) - 1
        r, w = (out_r, out_w) if last else parent.pipe(os.O_CLOEXEC)
        if method == "spawnfd":
            child = await build_stage(parent, argv, stdin, w)
        else:
            name = os.path.basename(argv[0])
            child = await spawn(parent, argv[0], [name, *argv[1:]], ENV, method=method,
                                fds={0: stdin, 1: w})
        children.append(child)
        parent.close(stdin)  # the child has its own reference now
        parent.close(w)
        stdin = r
    out = await read_all(parent, out_r)
    parent.close(out_r)
    statuses = [await c.wait() for c in children]
    return out, statuses[-1]


async def measure(k: spawnfd.Kernel, run: Callable[[spawnfd.Kernel, str], Awaitable[
        tuple[bytes, int]]], method: str) -> str:
    times, deltas = [], []
    out, status = b"", 0
    for _ in range(RUNS):
        s0 = k.statistics()
        t0 = time.perf_counter()
        out, status = await run(k, method)
        times.append(time.perf_counter() - t0)
        s1 = k.statistics()
        deltas.append((s1.ptes_copied - s0.ptes_copied,
                       s1.tables_allocated - s0.tables_allocated,
                       s1.frames_allocated - s0.frames_allocated,
                       s1.frames_used - s0.frames_used))
    assert all(d == deltas[0] for d in deltas), f"counters differ between runs: {deltas}"
    ptes, tables, frames, held = deltas[0]
    return (f"  {method:<11} {out.decode().strip():>6} {os.waitstatus_to_exitcode(status):>5}"
            f" {ptes:>12,} {tables:>9,} {frames:>9,} {held:>+6} "
            f"{statistics.median(times) * 1e3:>9.2f}")


async def main() -> None:
    async with spawnfd.open_kernel(memory="4G") as k:
        parent = k.init
        for _ in range(3):  # init starts with an empty table: 0, 1, 2 on /dev/null
            parent.open("/dev/null", os.O_RDWR)
        heap = parent.mm.mmap(PARENT_BYTES, mmap.PROT_READ | mmap.PROT_WRITE,
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        parent.mm.populate(heap, PARENT_BYTES, write=True)
        pt = parent.mm.statistics().pagetable_bytes
        print(f"parent (init): {PARENT_BYTES >> 20} MiB populated, {pt // 1024:,} KiB of page "
              f"tables\n")
        for m in METHODS:  # warm-up: the page cache gets the programs' and libc's pages
            await via_shell(k, m)
            await direct(k, m)
        header = (f"  {'method':<11} {'output':>6} {'exit':>5} {'PTEs copied':>12} "
                  f"{'tables':>9} {'frames':>9} {'held':>6} {'wall ms':>9}")
        rule = "  " + "-" * (len(header) - 2)
        print('sh -c "echo hello world | cat | wc -c"   (counters: one run; wall: median of '
              f'{RUNS})')
        print(header)
        print(rule)
        for m in METHODS:
            print(await measure(k, via_shell, m))
        print("\necho hello world | cat | wc -c, each stage started directly")
        print(header)
        print(rule)
        for m in METHODS:
            print(await measure(k, direct, m))
        k.check()
    print("\n(tables: page tables allocated; frames: all frames allocated, page tables "
          "included;\n held: frames still in use after the run, once every process was reaped)")


if __name__ == "__main__":
    trio.run(main)
