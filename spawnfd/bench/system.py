"""system("true") on the simulator: fork+exec (copy), fork+exec (cow-pt), vfork+exec.

    spawnfd bench system                     # parents of 0, 1, 8 and 64 GiB
    spawnfd bench system --sizes 0 1 --repeat 5

The parent (init) holds N GiB of populated private memory and runs ``/bin/sh -c true`` (which
runs ``/bin/true``) through each method; per call: wall time (median), PTEs copied and page
tables allocated (deterministic counters). Also: spawns per second of ``/bin/true`` from an
empty parent through the async API.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import time
from typing import Any

import trio

from ..sim.runtime import open_kernel

GIB = 1 << 30
METHODS = {"fork+exec (copy)": ("copy", "copy"), "fork+exec (cow-pt)": ("cow-pt", "cow-pt"),
           "vfork+exec": ("copy", "vfork-exec")}


async def _system(k: Any, line: str, how: str) -> int:
    sh = k.init
    if how == "vfork-exec":
        child = await sh.vfork_exec("/bin/sh", ["sh", "-c", line], {"PATH": "/usr/bin:/bin"})
    else:
        child = await sh.fork_exec("/bin/sh", ["sh", "-c", line], {"PATH": "/usr/bin:/bin"},
                                   fork_mode=how)
    return int(await child.wait())


async def _row(gib: int, label: str, repeat: int) -> dict[str, Any]:
    fork_mode, how = METHODS[label]
    async with open_kernel(f"{2 * gib + 2}G", fork_mode=fork_mode) as k:
        k.shell_method = how  # the shell starts true the same way
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        if gib:
            a = p.mm.mmap(gib * GIB, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            p.mm.populate(a, gib * GIB, write=True)
        await _system(k, "true", how)  # warm the page cache: ld.so, libc, sh, true
        times, ptes, tables = [], [], []
        for _ in range(repeat):
            before = k.statistics()
            t = time.perf_counter()
            status = await _system(k, "true", how)
            times.append(time.perf_counter() - t)
            after = k.statistics()
            assert status == 0
            ptes.append(after.ptes_copied - before.ptes_copied)
            tables.append(after.tables_allocated - before.tables_allocated)
        k.check()
    return {"gib": gib, "method": label, "seconds": statistics.median(times),
            "ptes_copied": statistics.median(ptes), "tables_allocated": statistics.median(tables)}


async def _spawn_rate(seconds: float) -> float:
    async with open_kernel("1G") as k:
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            child = await p.vfork_exec("/bin/true", ["true"])
            await child.wait()
            n += 1
        return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench system",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[0, 1, 8, 64], help="GiB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)

    async def run() -> tuple[list[dict[str, Any]], float]:
        rows = [await _row(g, m, args.repeat) for g in args.sizes for m in METHODS]
        return rows, await _spawn_rate(2.0)

    rows, rate = trio.run(run)
    print('system("true") = sh -c true, from a parent with N GiB populated (median of %d)'
          % args.repeat)
    print(f"{'GiB':>4} {'method':<20} {'ms per call':>11} {'PTEs copied':>12} "
          f"{'tables allocated':>16}")
    for r in rows:
        print(f"{r['gib']:>4} {r['method']:<20} {r['seconds'] * 1e3:>11.2f} "
              f"{r['ptes_copied']:>12,.0f} {r['tables_allocated']:>16,.0f}")
    print(f"spawns of /bin/true per second (vfork+exec, empty parent, async API): {rate:,.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"system": rows, "spawns_per_second": rate}, f, indent=2)


if __name__ == "__main__":
    main()
