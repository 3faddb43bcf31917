"""Spawn-and-reap latency of /bin/true from a Python parent holding N GiB of touched memory.

Every method runs in the same process; at each size the ones that do not copy the parent are
interleaved in rotating order, so their ratios compare like with like on a busy machine:

  fork+exec           os.fork() + os.execv() + os.waitpid()      (copies the parent's page tables)
  subprocess.run      subprocess.run()                           (CPython's vfork path)
  posix_spawn         os.posix_spawn() + os.waitpid()
  trio.run_process    trio.run_process()                         (Popen in a worker thread)
  spawnfd.run_process spawnfd.host.run_process()                 (clone(CLONE_VM|CLONE_VFORK|
                                                                   CLONE_PIDFD), trio-waited pidfd)

plus, for reference, spawnfd.host.run_process(method="posix_spawn") and (method="fork-exec").
The memory is an anonymous mapping with MADV_NOHUGEPAGE (4 KiB pages, as most Python heaps
are), one byte written per page. Then 1,000 concurrent /bin/true children run under one
nursery; the check reports the wall time, descriptors and zombies left over.

Usage: python -m spawnfd.bench.host [--sizes 0,1,4,8] [--repeats 30] [--cpu N] [--quick] [--json F]
(also benchmarks/bench_host.py; `spawnfd bench host` runs it as one scenario of the suite)

--cpu pins the parent (and so every child) to one CPU: on a machine shared with other work it
keeps the scheduler from parking the vfork child behind a busy CPU, which otherwise adds
millisecond outliers to whichever method it happens to hit.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable

import trio

import spawnfd.host

TRUE = "/bin/true"
GIB = 1 << 30


def fork_exec() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execv(TRUE, ["true"])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def subprocess_run() -> None:
    subprocess.run([TRUE], check=True)


def posix_spawn() -> None:
    pid = os.posix_spawn(TRUE, ["true"], os.environ)
    os.waitpid(pid, 0)


async def trio_run_process() -> None:
    await trio.run_process([TRUE])


async def spawnfd_run_process() -> None:
    await spawnfd.host.run_process([TRUE])


async def spawnfd_posix_spawn() -> None:
    await spawnfd.host.run_process([TRUE], method="posix_spawn")


async def spawnfd_fork_exec() -> None:
    await spawnfd.host.run_process([TRUE], method="fork-exec")


Method = Callable[[], object]
METHODS: dict[str, tuple[bool, Method]] = {  # name: (is_async, function)
    "fork+exec": (False, fork_exec),
    "subprocess.run": (False, subprocess_run),
    "posix_spawn": (False, posix_spawn),
    "trio.run_process": (True, trio_run_process),
    "spawnfd.run_process": (True, spawnfd_run_process),
    "spawnfd[posix_spawn]": (True, spawnfd_posix_spawn),
    "spawnfd[fork-exec]": (True, spawnfd_fork_exec),
}


def hold_memory(nbytes: int, thp: bool) -> mmap.mmap | None:
    """An anonymous mapping of nbytes with every 4 KiB page written once."""
    if nbytes == 0:
        return None
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if not thp and hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    view = memoryview(m)
    chunk = 256 << 20
    for off in range(0, nbytes, chunk):
        part = view[off : off + chunk]
        part[::4096] = b"\x01" * ((len(part) + 4095) // 4096)
        part.release()
    view.release()
    return m


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def time_once(is_async: bool, fn: Method) -> float:
    t0 = time.perf_counter()
    if is_async:
        await fn()  # type: ignore[misc]
    else:
        fn()
    return time.perf_counter() - t0


FORKING = ("fork+exec", "spawnfd[fork-exec]")


async def measure_size(gib: float, repeats: int, thp: bool, names: list[str],
                       verbose: bool = True) -> dict[str, list[float]]:
    """Samples per method at one size. The methods that do not copy the parent run first,
    interleaved in rotating order; the forking ones (100x slower, and they leave the kernel
    busy tearing down copied page tables) run after them, fewer times."""
    mem = hold_memory(int(gib * GIB), thp)
    samples: dict[str, list[float]] = {n: [] for n in names}
    flat = [n for n in names if n not in FORKING]
    forking = [n for n in names if n in FORKING]
    try:
        for _ in range(3):  # warm-up: imports, thread pools, page cache, after the allocation
            for n in flat:
                await time_once(*METHODS[n])
        for r in range(repeats):
            order = flat[r % len(flat) :] + flat[: r % len(flat)] if flat else []
            for n in order:
                samples[n].append(await time_once(*METHODS[n]))
        for r in range(max(5, repeats // 3) if forking else 0):
            for n in forking:
                samples[n].append(await time_once(*METHODS[n]))
        if verbose:
            print(f"  {gib:g} GiB held (RSS {rss_mib():.0f} MiB): done", file=sys.stderr)
    finally:
        if mem is not None:
            mem.close()
    return samples


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def zombies() -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            count += 1
    return count


async def concurrent_children(n: int, run: Callable[..., Awaitable[object]]) -> dict[str, object]:
    before = open_fds()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(run, [TRUE])
    elapsed = time.perf_counter() - t0
    leaked = sorted(open_fds() - before, key=int)
    return {"children": n, "seconds": round(elapsed, 3), "leaked_fds": leaked, "zombies": zombies()}


def table(results: dict[float, dict[str, list[float]]], names: list[str]) -> str:
    head = ["GiB"] + names + ["spawnfd/posix_spawn", "spawnfd/trio"]
    rows = [head]
    for gib, samples in results.items():
        med = {n: statistics.median(samples[n]) * 1e3 for n in names}
        row = [f"{gib:g}"] + [f"{med[n]:.3f}" for n in names]
        ours = med.get("spawnfd.run_process")
        row.append(f"{ours / med['posix_spawn']:.2f}x" if ours and "posix_spawn" in med else "-")
        row.append(f"{ours / med['trio.run_process']:.2f}x" if ours and "trio.run_process" in med else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, object]:
    names = [n for n in METHODS if n in args.methods]
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # children inherit it
    results: dict[float, dict[str, list[float]]] = {}
    for gib in args.sizes:
        results[gib] = await measure_size(gib, args.repeats, args.thp, names)
    load = os.getloadavg()[0]
    print(f"\nmedian latency of spawning and reaping {TRUE}, ms ({args.repeats} interleaved runs per method;"
          f" forking methods {max(5, args.repeats // 3)} runs; load average {load:.2f} on {os.cpu_count()} CPUs"
          + (f"; pinned to CPU {args.cpu})" if args.cpu is not None else ")"))
    print(table(results, names))
    out: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
            "pinned_cpu": args.cpu,
        },
        "repeats": args.repeats,
        "median_ms": {
            str(g): {n: statistics.median(s[n]) * 1e3 for n in names} for g, s in results.items()
        },
    }
    if args.children:
        conc = {
            "spawnfd.run_process": await concurrent_children(args.children, spawnfd.host.run_process),
            "trio.run_process": await concurrent_children(args.children, trio.run_process),
        }
        print(f"\n{args.children} concurrent {TRUE} children under one nursery")
        for name, c in conc.items():
            print(f"  {name:20} {c['seconds']:.2f} s, leaked fds: {c['leaked_fds'] or 'none'}, zombies: {c['zombies']}")
        out["concurrent"] = conc
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="0,1,4,8", help="GiB of touched memory held by the parent (comma list)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per method and size")
    p.add_argument("--children", type=int, default=1000, help="concurrent children for the leak check (0: skip)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of: " + ", ".join(METHODS))
    p.add_argument("--cpu", type=int, default=None, help="pin the parent and its children to this CPU (steadier on a busy machine)")
    p.add_argument("--thp", action="store_true", help="allow transparent huge pages in the held memory")
    p.add_argument("--quick", action="store_true", help="small sizes and few runs (0 and 0.25 GiB, 10 runs, 200 children)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.children = "0,0.25", 10, 200
    args.sizes = [float(s) for s in str(args.sizes).split(",")]
    args.methods = str(args.methods).split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods: {', '.join(sorted(unknown))}")
    return args


def cli(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # os.fork() with threads, on 3.12+
    result = trio.run(main, options)
    if options.json:
        with open(options.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    cli()
