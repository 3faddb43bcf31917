"""system("true") on the simulator: fork+exec (copy), fork+exec (cow-pt), vfork+exec, spawnfd.

    spawnfd bench system                     # parents of 0, 1, 8 and 64 GiB
    spawnfd bench system --sizes 0 1 --repeat 5

The parent (init) holds N GiB of populated private memory and runs ``/bin/sh -c true`` (which
runs ``/bin/true``) through each method — the sh starts true the same way; per call: wall time
(median), PTEs copied, page tables and frames allocated (deterministic counters), and each
method's growth from the smallest parent to the largest. Also: spawns per second of
``/bin/true`` from an empty parent through the async API (``async with create_process()``)
and through ``spawnfd.sim.spawn`` for every method.

Every kernel here is ``open_kernel(cpu=False)``: the programs are the Python stand-ins, so
the figures are the cost of the spawning mechanism itself, not of a real ld.so starting
(``spawnfd bench cpu`` measures that).
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

from ..sim.machine import open_kernel
from ..sim.spawn import spawn

GIB = 1 << 30
METHODS = {"fork+exec (copy)": ("copy", "copy"), "fork+exec (cow-pt)": ("cow-pt", "cow-pt"),
           "vfork+exec": ("copy", "vfork-exec"), "spawnfd": ("copy", "spawnfd")}
ENV = {"PATH": "/usr/bin:/bin"}


async def _system(k: Any, line: str, how: str) -> int:
    child = await spawn(k.init, "/bin/sh", ["sh", "-c", line], ENV, method=how)
    return int(await child.wait())


async def _row(gib: int, label: str, repeat: int) -> dict[str, Any]:
    fork_mode, how = METHODS[label]
    async with open_kernel(f"{2 * gib + 2}G", cpu=False, fork_mode=fork_mode) as k:
        k.shell_method = how  # the shell starts true the same way
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        if gib:
            a = p.mm.mmap(gib * GIB, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            p.mm.populate(a, gib * GIB, write=True)
        await _system(k, "true", how)  # warm the page cache: ld.so, libc, sh, true
        times: list[float] = []
        ptes: list[int] = []
        tables: list[int] = []
        frames: list[int] = []
        t_row = time.perf_counter()
        # at least `repeat` calls, and cheap calls for at least half a second: a median of
        # hundreds of sub-millisecond calls is what shows a few percent of growth, or none
        while len(times) < repeat or (time.perf_counter() - t_row < 0.5 and len(times) < 2000):
            before = k.statistics()
            t = time.perf_counter()
            status = await _system(k, "true", how)
            times.append(time.perf_counter() - t)
            after = k.statistics()
            assert status == 0
            ptes.append(after.ptes_copied - before.ptes_copied)
            tables.append(after.tables_allocated - before.tables_allocated)
            frames.append(after.frames_allocated - before.frames_allocated)
        k.check()
    return {"gib": gib, "method": label, "seconds": statistics.median(times), "calls": len(times),
            "ptes_copied": statistics.median(ptes), "tables_allocated": statistics.median(tables),
            "frames_allocated": statistics.median(frames)}


async def _true_builder(p: Any) -> int:
    # The async API exactly as a user writes it.
    async with p.create_process() as child:
        prog = await child.load_elf("/bin/true")
        ld = await child.load_elf(prog.interpreter)
        await child.setup_stack(["true"], ENV, interpreter=ld, program=prog)
        for fd in (0, 1, 2):
            await child.install_fd(fd, fd)
    return int(await child.wait())


#: The spawn-rate methods: label -> "builder" (the async API) or a ``spawn()`` method; the
#: last is the one the others' rates are compared with.
RATE_METHODS = {"spawnfd, async with create_process()": "builder",
                "spawnfd, sim.spawn()": "spawnfd", "fork+exec (copy)": "copy",
                "vfork+exec": "vfork-exec"}


async def _spawn_true(p: Any, how: str) -> None:
    if how == "builder":
        status = await _true_builder(p)
    else:
        status = await (await spawn(p, "/bin/true", ["true"], ENV, method=how)).wait()
    assert status == 0


async def spawn_rates(methods: dict[str, str], seconds: float) -> dict[str, dict[str, float]]:
    """Spawns (and reaps) of /bin/true per second from an empty parent, every method in one
    kernel, interleaved: rounds of 50 ms per method, so load on the machine hits them alike.
    Per method: the median wall-clock and CPU-time rates over the rounds, and the median of
    each round's ratio to the last method given (``ratio``)."""
    window, rounds = 0.05, max(3, round(seconds / 0.05 / len(methods)))
    async with open_kernel("1G", cpu=False) as k:
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        for how in methods.values():
            await _spawn_true(p, how)  # warm the page cache and the loader's plans
        wall: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(rounds):
            for label, how in methods.items():
                n, t0, c0 = 0, time.perf_counter(), time.process_time()
                while time.perf_counter() - t0 < window:
                    await _spawn_true(p, how)
                    n += 1
                wall[label].append(n / (time.perf_counter() - t0))
                cpu[label].append(n / max(time.process_time() - c0, 1e-9))
        k.check()
    last = list(methods)[-1]
    return {m: {"wall": statistics.median(wall[m]), "cpu": statistics.median(cpu[m]),
                "ratio": statistics.median(a / b for a, b in zip(wall[m], wall[last]))}
            for m in methods}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench system",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[0, 1, 8, 64], help="GiB")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--rate-seconds", type=float, default=3.0,
                    help="measuring time per spawn-rate figure")
    args = ap.parse_args(argv)

    async def run() -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
        rows = [await _row(g, m, args.repeat) for g in args.sizes for m in METHODS]
        return rows, await spawn_rates(RATE_METHODS, args.rate_seconds)

    rows, rates = trio.run(run)
    print('system("true") = sh -c true, from a parent with N GiB populated (median of at least '
          f'{args.repeat} calls and of 0.5 s of calls)')
    print(f"{'GiB':>4} {'method':<20} {'ms per call':>11} {'PTEs copied':>12} "
          f"{'tables allocated':>16} {'frames allocated':>16}")
    for r in rows:
        print(f"{r['gib']:>4} {r['method']:<20} {r['seconds'] * 1e3:>11.2f} "
              f"{r['ptes_copied']:>12,.0f} {r['tables_allocated']:>16,.0f} "
              f"{r['frames_allocated']:>16,.0f}")
    lo, hi = min(args.sizes), max(args.sizes)
    if hi > lo:
        print(f"growth from {lo} to {hi} GiB:")
        for m in METHODS:
            a = next(r for r in rows if r["method"] == m and r["gib"] == lo)
            b = next(r for r in rows if r["method"] == m and r["gib"] == hi)
            print(f"     {m:<20} time ×{b['seconds'] / a['seconds']:<8.2f} "
                  f"tables ×{b['tables_allocated'] / a['tables_allocated']:<8.2f} "
                  f"frames ×{b['frames_allocated'] / a['frames_allocated']:.2f}")
    print("spawns of /bin/true per second from an empty parent (interleaved rounds; "
          "ratio: to vfork+exec's rate, per round):")
    for label, rate in rates.items():
        print(f"     {label:<40} {rate['wall']:>8,.0f} wall {rate['cpu']:>8,.0f} CPU "
              f"×{rate['ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"system": rows, "spawns_per_second": rates}, f, indent=2)


if __name__ == "__main__":
    main()
