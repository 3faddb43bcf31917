"""Real programs on the simulated CPU against the same programs run natively.

    spawnfd bench cpu                 # 20 runs of each program
    spawnfd bench cpu --runs 5

Each program is built through the fd model on an ``open_kernel(cpu=True)`` machine (the
creator maps the program and ld.so, writes the stack, installs /dev/null as 0-2) and timed
from launch (closing the builder fd) to exit; the native figure is ``subprocess.run`` of the
same argv on this host. Instructions, TLB fills and flushes are the kernel's counters for one
run (deterministic); times are medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from typing import Any

import trio

PROGRAMS: tuple[tuple[str, ...], ...] = (
    ("/bin/true",), ("/bin/echo", "hi"), ("/bin/cat", "/etc/hostname"), ("/usr/bin/env",),
)
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


async def _one(k: Any, argv: tuple[str, ...]) -> tuple[float, dict[str, int], int]:
    sh = k.init
    s0 = k.statistics()
    async with sh.create_process() as child:
        prog = await child.load_elf(argv[0])
        ld = await child.load_elf(prog.interpreter)
        await child.setup_stack(list(argv), ENV, interpreter=ld, program=prog)
        for fd in (0, 1, 2):
            await child.install_fd(fd, fd)  # init's /dev/null
        t0 = time.perf_counter()
    status = await child.wait()
    dt = time.perf_counter() - t0
    s1 = k.statistics()
    counters = {f: getattr(s1, f) - getattr(s0, f)
                for f in ("cpu_instructions", "syscalls", "tlb_fills", "tlb_flushes")}
    return dt, counters, status


async def _run(runs: int) -> list[dict[str, Any]]:
    from ..sim.machine import open_kernel

    rows = []
    async with open_kernel("1G", cpu=True) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        for argv in PROGRAMS:
            await _one(k, argv)  # the page cache warm, as natively
            times = []
            for _ in range(runs):
                dt, counters, status = await _one(k, argv)
                times.append(dt)
            native = []
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run(argv, stdout=subprocess.DEVNULL, env=ENV, check=False)
                native.append(time.perf_counter() - t0)
            rows.append({"argv": " ".join(argv), "ms": statistics.median(times) * 1e3,
                         "native_ms": statistics.median(native) * 1e3, "status": status,
                         **counters})
        k.check()
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    head = (f"{'program':28} {'sim ms':>8} {'native ms':>10} {'instructions':>13} "
            f"{'M insn/s':>9} {'syscalls':>9} {'TLB fills':>10} {'flushes':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = r["cpu_instructions"] / r["ms"] / 1e3 if r["ms"] else 0.0
        lines.append(f"{r['argv']:28} {r['ms']:8.2f} {r['native_ms']:10.2f} "
                     f"{r['cpu_instructions']:13,} {rate:9.1f} {r['syscalls']:9} "
                     f"{r['tlb_fills']:10} {r['tlb_flushes']:8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench cpu",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    print(report(trio.run(_run, max(1, args.runs))))


__all__ = ["main", "report", "PROGRAMS"]
