"""The Zygote comparison: a template process starts apps that each dirty 1 % of its heap.

    spawnfd bench zygote                        # 512 MiB template, 100 apps
    spawnfd bench zygote --apps 20 --size 128   # smaller (what --quick does)

A template process preloads ``--size`` MiB: real shared libraries of this host mapped
privately and read in (file-backed, up to a quarter of the size), the rest an anonymous heap
with every page written. Then it starts ``--apps`` apps, each writing one byte into 1 % of the
heap's pages, chosen at random (the same pages for every method). Five ways to start an app:

* ``fork, 4 KiB pages``       classic fork (copy), no huge pages
* ``fork, THP split``         the heap in 2 MiB pages; a write to a shared one splits the pmd
                              and copies the 4 KiB page written (what the 2022 thread proposed)
* ``fork, THP copy-huge``     the same, copying all 2 MiB on the first write
* ``cow-pt fork``             copy-on-write page tables, 4 KiB pages
* ``map_cow into embryos``    no fork: an empty embryo gets the template's memory through its
                              builder fd (last-level tables shared where aligned), then launches

Per app (median) and for all apps: time to start, page-table bytes, frames allocated (start and
writes), RSS and PSS after every app has written. Counters are deterministic; times are medians.
"""

from __future__ import annotations

import argparse
import glob
import json
import mmap
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..sim.kernel import Kernel, Process

MIB = 1 << 20
PAGE = 4096
RW = mmap.PROT_READ | mmap.PROT_WRITE
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")


@dataclass(frozen=True)
class Method:
    label: str
    thp: str
    thp_cow: str
    start: str  # "fork" (mode below) or "map_cow"
    fork_mode: str = "copy"


METHODS = (
    Method("fork, 4 KiB pages", "never", "split", "fork"),
    Method("fork, THP split", "always", "split", "fork"),
    Method("fork, THP copy-huge", "always", "copy-huge", "fork"),
    Method("cow-pt fork", "never", "split", "fork", "cow-pt"),
    Method("map_cow into embryos", "never", "split", "map_cow"),
)


def host_libraries(budget: int) -> list[str]:
    """Real shared libraries of this host, largest first, adding up to at most budget."""
    seen, out, total = set(), [], 0
    files = []
    for d in LIB_DIRS:
        for path in glob.glob(os.path.join(d, "*.so*")):
            real = os.path.realpath(path)
            if real in seen or not os.path.isfile(real):
                continue
            seen.add(real)
            files.append((os.path.getsize(real), real))
    for size, path in sorted(files, reverse=True):
        if total + size <= budget:
            out.append(path)
            total += size
    return sorted(out)


@dataclass
class AppFigures:
    start_seconds: float
    pagetable_bytes: int
    frames_allocated: int
    rss_bytes: int = 0
    pss_bytes: int = 0


def _template(k: Kernel, heap_bytes: int,
              libs: list[str]) -> tuple[Process, list[tuple[int, int]], int]:
    """The template (a child of init): libraries mapped and read, the heap written. Returns
    it, its (addr, length) ranges, and the heap's address."""
    z = k.init.fork()
    ranges = []
    for path in libs:
        fd = z.open(path, os.O_RDONLY)
        size = z.fstat_size(fd)
        length = (size + PAGE - 1) // PAGE * PAGE
        a = z.mm.mmap(length, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
        z.mm.populate(a, length)  # read in: page cache, mapped
        z.close(fd)
        ranges.append((a, length))
    heap = z.mm.mmap(heap_bytes, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    z.mm.populate(heap, heap_bytes, write=True, stamp=0x5A5A5A5A)
    ranges.append((heap, heap_bytes))
    return z, ranges, heap


def _start_app(k: Kernel, m: Method, z: Process, ranges: list[tuple[int, int]]) -> Process:
    if m.start == "fork":
        return z.fork(m.fork_mode)
    b = k.init.process_create()
    for addr, length in ranges:
        b.map_cow(z, addr, length)
    b.launch()
    app: Process = b.process
    return app


def run_method(m: Method, heap_bytes: int, libs: list[str], apps: int,
               pages: list[list[int]]) -> dict[str, Any]:
    lib_bytes = sum(os.path.getsize(p) for p in libs)
    # copy-huge may copy the whole heap for every app: room for that
    k = Kernel(f"{(heap_bytes * (apps + 2) + lib_bytes * 2) // MIB + 256}M", thp=m.thp,
               thp_cow=m.thp_cow)
    z, ranges, heap = _template(k, heap_bytes, libs)
    tz = z.mm.statistics()
    started: list[tuple[Process, AppFigures]] = []
    first_write: dict[str, int] = {}
    for i in range(apps):
        before = k.statistics()
        t = time.perf_counter()
        app = _start_app(k, m, z, ranges)
        dt = time.perf_counter() - t
        for n, page in enumerate(pages[i]):
            if i == 0 and n == 0:
                s0 = k.statistics()
            app.mm.write(heap + page * PAGE, b"\x01")
            if i == 0 and n == 0:
                s1 = k.statistics()
                first_write = {"frames_allocated": s1.frames_allocated - s0.frames_allocated,
                               "tables_allocated": s1.tables_allocated - s0.tables_allocated,
                               "pages_copied": s1.pages_copied - s0.pages_copied}
        after = k.statistics()
        started.append((app, AppFigures(dt, app.mm.statistics().pagetable_bytes,
                                        after.frames_allocated - before.frames_allocated)))
    for app, fig in started:  # after every app has written: who shares what
        st = app.mm.statistics()
        fig.rss_bytes, fig.pss_bytes = st.rss_bytes, app.mm.pss_bytes()
    figs = [f for _, f in started]
    stats = k.statistics()
    k.check()
    out = {
        "method": m.label,
        "template": {"rss_bytes": tz.rss_bytes, "anon_huge_bytes": tz.anon_huge_bytes,
                     "pagetable_bytes": tz.pagetable_bytes},
        "per_app_median": {f: statistics.median(getattr(x, f) for x in figs)
                           for f in ("start_seconds", "pagetable_bytes", "frames_allocated",
                                     "rss_bytes", "pss_bytes")},
        "total": {"start_seconds": sum(x.start_seconds for x in figs),
                  "pagetable_bytes": sum(x.pagetable_bytes for x in figs),
                  "frames_allocated": sum(x.frames_allocated for x in figs),
                  "pss_bytes": sum(x.pss_bytes for x in figs)},
        "first_write_of_first_app": first_write,
        "thp_split_pmd": stats.thp_split_pmd, "thp_copied": stats.thp_copied,
        "pages_copied": stats.pages_copied, "ptes_copied": stats.ptes_copied,
        "tables_shared": stats.tables_shared,
    }
    k.close()
    return out


def run(size_mib: int = 512, apps: int = 100, seed: int = 1,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every method on the same template and the same random pages; returns the figures."""
    libs = host_libraries(size_mib * MIB // 4)
    lib_bytes = sum(os.path.getsize(p) for p in libs)
    heap_bytes = (size_mib * MIB - lib_bytes) // (2 * MIB) * (2 * MIB)
    npages = heap_bytes // PAGE
    rng = random.Random(seed)
    pages = [rng.sample(range(npages), max(1, npages // 100)) for _ in range(apps)]
    rows = []
    for m in METHODS:
        if progress:
            progress(m.label)
        rows.append(run_method(m, heap_bytes, libs, apps, pages))
    return {"size_mib": size_mib, "apps": apps, "heap_bytes": heap_bytes,
            "library_bytes": lib_bytes, "libraries": len(libs),
            "pages_written_per_app": len(pages[0]), "methods": rows}


def _kib(n: float) -> str:
    return f"{n / 1024:,.0f}"


def report(res: dict[str, Any]) -> str:
    lines = [f"Zygote: template of {res['size_mib']} MiB ({res['library_bytes'] / MIB:.0f} MiB in "
             f"{res['libraries']} host libraries, {res['heap_bytes'] / MIB:.0f} MiB heap); "
             f"{res['apps']} apps, each writing {res['pages_written_per_app']} random heap pages "
             "(1 %)",
             "",
             "per app (median)       start ms   page tables KiB  frames alloc   RSS MiB   PSS MiB",
             "-" * 86]
    for r in res["methods"]:
        a = r["per_app_median"]
        lines.append(f"{r['method']:<22} {a['start_seconds'] * 1e3:>8.3f} "
                     f"{_kib(a['pagetable_bytes']):>17} {a['frames_allocated']:>13,.0f} "
                     f"{a['rss_bytes'] / MIB:>9.1f} {a['pss_bytes'] / MIB:>9.2f}")
    lines += ["", f"all {res['apps']} apps          start ms   page tables MiB  frames alloc"
              "  PSS MiB   split pmds  2M copies",
              "-" * 98]
    for r in res["methods"]:
        t = r["total"]
        lines.append(f"{r['method']:<22} {t['start_seconds'] * 1e3:>8.1f} "
                     f"{t['pagetable_bytes'] / MIB:>17.1f} {t['frames_allocated']:>13,} "
                     f"{t['pss_bytes'] / MIB:>8.1f} {r['thp_split_pmd']:>12,} "
                     f"{r['thp_copied']:>10,}")
    lines.append("")
    lines.append("first write of the first app (frames / page tables / pages copied):")
    for r in res["methods"]:
        f = r["first_write_of_first_app"]
        lines.append(f"  {r['method']:<22} {f['frames_allocated']:>5} / {f['tables_allocated']:>3}"
                     f" / {f['pages_copied']:>3}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench zygote",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="template size in MiB")
    ap.add_argument("--apps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="128 MiB, 20 apps")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.apps = 128, 20
    res = run(args.size, args.apps, args.seed,
              progress=lambda label: print(f"  running: {label}", flush=True))
    print(report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


__all__ = ["run", "report", "main", "METHODS", "AppFigures", "asdict"]
