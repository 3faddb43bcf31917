"""Fork benchmark: the three fork policies by populated size, and the database workload.

    spawnfd bench fork                    # 1, 8 and 64 GiB; database up to 256 processes
    spawnfd bench fork --sizes 1 8 --db-procs 1 4 16 --db-gib 1
    spawnfd bench fork --json out.json

Every figure is measured in this run: wall time of the single C call that forks (median of
``--repeat`` forks, each child exiting before the next), and the kernel's deterministic
counters (PTEs copied, tables shared, child page-table bytes).
"""

from __future__ import annotations

import argparse
import json
import mmap
import statistics
import time
from typing import Any

from ..sim.kernel import Kernel

GIB = 1 << 30
PAGE = 4096
RW = mmap.PROT_READ | mmap.PROT_WRITE
MODES = ("copy", "cow-pt", "cow-pt-eager")
# The 2022 COW page-table RFC: a child of a 1 GiB process had ~2096 kB of page tables with
# classic fork and ~44 kB with COW page tables.
RFC_1GIB_CHILD_KB = {"copy": 2096, "cow-pt": 44}
# The mshare authors' case: 300 GB shared by 1500 processes costs ~878 GB of page tables.
MSHARE_GB, MSHARE_PROCS, MSHARE_TABLES_GB = 300, 1500, 878


def fork_row(gib: int, mode: str, repeat: int) -> dict[str, Any]:
    """Fork a process with ``gib`` GiB populated under ``mode``; figures of the median fork."""
    size = gib * GIB
    k = Kernel(f"{2 * gib + 2}G", fork_mode=mode)
    p = k.init
    a = p.mm.mmap(size, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    p.mm.populate(a, size, write=True)
    times, exits = [], []
    for _ in range(repeat):
        before = k.statistics()
        t = time.perf_counter()
        c = p.fork()
        times.append(time.perf_counter() - t)
        after = k.statistics()
        child = c.mm.statistics()
        t = time.perf_counter()
        c.exit(0)
        exits.append(time.perf_counter() - t)
        p.wait(c.pid)
    k.check()
    k.close()
    fork_s = statistics.median(times)
    return {
        "gib": gib, "mode": mode, "fork_s": fork_s, "exit_s": statistics.median(exits),
        "ptes_copied": after.ptes_copied - before.ptes_copied,
        "tables_shared": after.tables_shared - before.tables_shared,
        "child_pagetable_bytes": child.pagetable_bytes,
        "child_private_pagetable_bytes": child.pagetable_bytes - child.shared_pagetable_bytes,
        "ptes_per_s": (after.ptes_copied - before.ptes_copied) / fork_s,
    }


def db_row(procs: int, gib: int, share: bool) -> dict[str, Any]:
    """``procs`` processes map the same ``gib`` GiB file MAP_SHARED and touch all of it."""
    size = gib * GIB
    k = Kernel(f"{gib + 1 + (procs * gib * 2 + 1023) // 1024 + 1}G", share_pagetables=share)
    p = k.init
    fd = p.open("/tmp/db", 0o102)  # O_RDWR | O_CREAT
    p.ftruncate(fd, size)
    workers = [p.fork("copy") for _ in range(procs)]
    t = time.perf_counter()
    for w in workers:
        a = w.mm.mmap(size, RW, mmap.MAP_SHARED, fd, 0)
        w.mm.populate(a, size)
    elapsed = time.perf_counter() - t
    st = k.statistics()
    tables = sum(w.mm.statistics().pagetable_bytes for w in workers)
    row = {
        "procs": procs, "gib": gib, "share": share, "seconds": elapsed,
        "pagetable_frames_bytes": st.pagetable_frames * PAGE,
        "sum_of_mm_pagetable_bytes": tables,
        "faults": st.faults.shared,
    }
    k.check()
    k.close()
    return row


def mshare_extrapolation(db: list[dict[str, Any]]) -> dict[str, float]:
    """Page-table bytes per mapped GiB (one process, no sharing) from the run, scaled to the
    mshare case, and the shared-table equivalent (one set of leaf tables + upper levels)."""
    one = next(r for r in db if r["procs"] == 1 and not r["share"])
    shared = max((r for r in db if r["share"]), key=lambda r: r["procs"])
    per_gib = (one["pagetable_frames_bytes"] - 2 * PAGE) / one["gib"]  # minus init's tables
    upper_per_gib = (shared["pagetable_frames_bytes"] - per_gib * shared["gib"]) / (
        shared["procs"] * shared["gib"])
    gib = MSHARE_GB * 1e9 / GIB
    return {
        "pagetable_bytes_per_gib": per_gib,
        "unshared_total_gb": per_gib * gib * MSHARE_PROCS / 1e9,
        "shared_total_gb": (per_gib * gib + max(upper_per_gib, 0) * gib * MSHARE_PROCS) / 1e9,
        "published_gb": MSHARE_TABLES_GB,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench fork", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 8, 64], help="GiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db-procs", type=int, nargs="*", default=[1, 2, 4, 16, 64, 256])
    ap.add_argument("--db-gib", type=int, default=4)
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)

    rows = [fork_row(g, m, args.repeat) for g in args.sizes for m in MODES]
    print("fork of a process with N GiB populated (median of %d)" % args.repeat)
    print(f"{'GiB':>4} {'mode':<13} {'fork ms':>9} {'exit ms':>8} {'PTEs copied':>12} "
          f"{'M PTE/s':>8} {'tables shared':>13} {'child tables kB':>15} {'private kB':>10}")
    for r in rows:
        print(f"{r['gib']:>4} {r['mode']:<13} {r['fork_s'] * 1e3:>9.3f} {r['exit_s'] * 1e3:>8.3f} "
              f"{r['ptes_copied']:>12,} {r['ptes_per_s'] / 1e6:>8.0f} {r['tables_shared']:>13,} "
              f"{r['child_pagetable_bytes'] // 1024:>15,} "
              f"{r['child_private_pagetable_bytes'] // 1024:>10,}")
    by = {(r["gib"], r["mode"]): r for r in rows}
    for g in args.sizes:
        ratio = by[(g, "copy")]["fork_s"] / by[(g, "cow-pt")]["fork_s"]
        eager = by[(g, "copy")]["fork_s"] / by[(g, "cow-pt-eager")]["fork_s"]
        print(f"  {g} GiB: cow-pt forks {ratio:.0f}x faster than copy; cow-pt-eager {eager:.1f}x")
    if 1 in args.sizes:
        print("  1 GiB child page tables: copy %d kB (RFC: %d kB), cow-pt private %d kB "
              "(RFC: %d kB)" % (by[(1, "copy")]["child_pagetable_bytes"] // 1024,
                                RFC_1GIB_CHILD_KB["copy"],
                                by[(1, "cow-pt")]["child_private_pagetable_bytes"] // 1024,
                                RFC_1GIB_CHILD_KB["cow-pt"]))

    db = [db_row(n, args.db_gib, s) for s in (False, True) for n in args.db_procs]
    print(f"\ndatabase: N processes map one {args.db_gib} GiB file MAP_SHARED and touch it all")
    print(f"{'procs':>5} {'shared tables':>13} {'page tables MiB':>15} {'faults':>12} "
          f"{'seconds':>8}")
    for r in db:
        print(f"{r['procs']:>5} {str(r['share']):>13} "
              f"{r['pagetable_frames_bytes'] / 2**20:>15.1f} {r['faults']:>12,} "
              f"{r['seconds']:>8.2f}")
    ms = mshare_extrapolation(db)
    print(f"  mshare case ({MSHARE_GB} GB x {MSHARE_PROCS} processes): "
          f"{ms['unshared_total_gb']:.0f} GB of page tables without sharing "
          f"(published: ~{MSHARE_TABLES_GB} GB), {ms['shared_total_gb']:.1f} GB with")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"fork": rows, "database": db, "mshare": ms}, f, indent=2)


if __name__ == "__main__":
    main()
