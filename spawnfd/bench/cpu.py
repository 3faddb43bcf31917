"""Real programs on the simulated CPU against the same programs run natively
(``spawnfd bench cpu``).

Each program is built through the fd model on an ``open_kernel(cpu=True)`` machine (the
creator maps the program and ld.so, writes the stack, installs /dev/null as 0-2) and timed
from launch (closing the builder fd) to exit; the native figure is ``subprocess.run`` of the
same argv on this host. ``sha256sum`` of a 64 MiB file (in the simulated tmpfs; natively in
a host temporary directory) is the long-running loop whose instructions per second show the
CPU's speed. Instructions, system calls, TLB fills and flushes are the kernel's counters for
one run (deterministic); times are medians. The last figure is the host memory each running
real process costs beyond its simulated frames: many ``cat`` processes blocked reading a pipe
at once, the growth of this process's resident memory divided among them.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from typing import Any

import trio
import trio.testing

BIG = "/tmp/spawnfd-bench-64M"  #: the file sha256sum reads (simulated tmpfs)
BIG_BYTES = 64 << 20
PROGRAMS: tuple[tuple[str, ...], ...] = (
    ("/bin/true",), ("/bin/echo", "hi"), ("/bin/cat", "/etc/hostname"), ("/usr/bin/env",),
    ("/usr/bin/python3.11", "-c", "pass"), ("/usr/bin/sha256sum", BIG),
)
LONG = ("/usr/bin/python3.11", "/usr/bin/sha256sum")  #: run fewer times: seconds each
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
COUNTERS = ("cpu_instructions", "syscalls", "tlb_fills", "tlb_flushes")


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
    return dt, {f: getattr(s1, f) - getattr(s0, f) for f in COUNTERS}, status


def _native(argv: tuple[str, ...], big: str, runs: int) -> float:
    argv = tuple(big if a == BIG else a for a in argv)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=ENV, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def _host_bytes_per_process(k: Any, n: int) -> float:
    """n real ``cat`` processes blocked reading a pipe at once: the growth of this process's
    resident memory beyond their simulated frames' content, per process."""
    sh = k.init
    r, w = sh.pipe(os.O_CLOEXEC)
    rss0, buf0 = _rss_bytes(), k.statistics().buffers
    children = []
    for _ in range(n):
        async with sh.create_process() as child:
            prog = await child.load_elf("/bin/cat")
            ld = await child.load_elf(prog.interpreter)
            await child.setup_stack(["cat"], ENV, interpreter=ld, program=prog)
            await child.install_fd(0, r)
            await child.install_fd(1, 1)
        children.append(child)
    await trio.testing.wait_all_tasks_blocked()  # every cat is parked in read(2)
    grown: int = _rss_bytes() - rss0 - (k.statistics().buffers - buf0) * 4096
    sh.close(r)
    sh.close(w)
    for child in children:
        await child.wait()
    return grown / n


async def _run(runs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from ..sim.machine import open_kernel

    rows = []
    chunk = os.urandom(1 << 20)
    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "64M")
        with open(big, "wb") as f:
            for _ in range(BIG_BYTES // len(chunk)):
                f.write(chunk)
        async with open_kernel("2G", cpu=True) as k:
            sh = k.init
            for _ in range(3):
                sh.open("/dev/null", os.O_RDWR)
            fd = sh.open(BIG, os.O_CREAT | os.O_WRONLY, 0o644)
            for _ in range(BIG_BYTES // len(chunk)):
                sh.write(fd, chunk)
            sh.close(fd)
            for argv in PROGRAMS:
                n = max(1, runs // 5) if argv[0] in LONG else runs
                await _one(k, argv)  # the page cache warm and the code translated, as natively
                times = []
                for _ in range(n):
                    dt, counters, status = await _one(k, argv)
                    times.append(dt)
                rows.append({"argv": " ".join(argv), "ms": statistics.median(times) * 1e3,
                             "native_ms": _native(argv, big, n) * 1e3, "status": status,
                             **counters})
            per_process = await _host_bytes_per_process(k, 100)
            k.check()
    return rows, {"host_bytes_per_process": per_process, "processes": 100}


__all__ = ["PROGRAMS", "BIG"]
