"""A zygote: N apps started from one template process, three ways, with exact counters.

Run it: ``python examples/zygote.py [--quick]``

The template (the "zygote", a child of init) maps and populates a 256 MiB anonymous heap
(``--quick``: 64 MiB) and maps libc read-only, as Android's Zygote preloads classes and
libraries. Then N = 20 apps start from it, each one:

* ``fork (copy)`` -- classic fork: every PTE of the heap is copied and write-protected;
* ``fork (cow-pt)`` -- fork with copy-on-write page tables: the heap's last-level tables are
  shared and copied only when an app writes through them;
* ``map_cow (no fork)`` -- the fd model: the zygote creates an embryo with
  ``process_create()`` and maps its own heap and libc into it with ``Builder.map_cow`` (the
  same addresses, copy-on-write, whole 2 MiB last-level tables shared), then launches it. No
  fork at all: the app gets only what was mapped, nothing else of the zygote (no fds, no
  other mappings).

Each app then writes 1 % of the heap's pages, either clustered (one contiguous run) or spread
(every 100th page: one write in every last-level table). Per method the script prints the
median time to start an app (``time.perf_counter``), page-table bytes per app right after the
start and after the writes (``mm.statistics().pagetable_bytes``, and the part not shared with
another process), and the kernel's counters for the 20 starts and writes together: PTEs copied,
tables shared, pages copied, frames allocated. All from the synchronous API (``Kernel``,
``Process``, ``Builder``): the caller drives every process itself, no trio involved.
"""

from __future__ import annotations

import mmap
import os
import statistics
import sys
import time

import spawnfd

QUICK = "--quick" in sys.argv
HEAP = (64 << 20) if QUICK else (256 << 20)
N = 20
PAGE = spawnfd.PAGE_SIZE
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
METHODS = ("fork (copy)", "fork (cow-pt)", "map_cow (no fork)")


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def make_zygote(k: spawnfd.Kernel) -> tuple[spawnfd.Process, tuple[int, int], tuple[int, int]]:
    """The template: a populated heap and libc mapped read-only; returns (zygote, heap, lib)."""
    z = k.init.fork()
    heap = z.mm.mmap(HEAP, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    z.mm.populate(heap, HEAP, write=True, stamp=0x5A5A5A5A)
    fd = z.open(LIBC, os.O_RDONLY)
    size = page_up(z.fstat_size(fd))
    lib = z.mm.mmap(size, mmap.PROT_READ, mmap.MAP_PRIVATE, fd)
    z.close(fd)  # the mapping keeps the file
    z.mm.populate(lib, size & ~(64 * PAGE - 1))  # fault libc in (all but the tail)
    return z, (heap, HEAP), (lib, size)


def start_app(z: spawnfd.Process, method: str, heap: tuple[int, int],
              lib: tuple[int, int]) -> spawnfd.Process:
    if method == "fork (copy)":
        return z.fork("copy")
    if method == "fork (cow-pt)":
        return z.fork("cow-pt")
    b = z.process_create()  # an embryo: zero threads, empty memory, empty fd table
    b.map_cow(z, *heap)
    b.map_cow(z, *lib)
    b.launch()  # close the builder fd (no runtime here: the caller drives the app)
    app: spawnfd.Process = b.process
    return app


def dirty_pages(heap: int, pattern: str) -> list[int]:
    pages = HEAP // PAGE
    if pattern == "clustered":
        return [heap + i * PAGE for i in range(pages // 100)]
    return [heap + i * PAGE for i in range(0, pages, 100)]


def run(method: str, pattern: str) -> str:
    with spawnfd.Kernel("2G") as k:
        z, heap, lib = make_zygote(k)
        s0 = k.statistics()
        starts, pt_start, pt_after = [], [], []
        apps = []
        for i in range(N):
            t0 = time.perf_counter()
            app = start_app(z, method, heap, lib)
            starts.append(time.perf_counter() - t0)
            pt_start.append(app.mm.statistics())
            for addr in dirty_pages(heap[0], pattern):
                app.mm.write(addr, i.to_bytes(8, "little"))
            pt_after.append(app.mm.statistics())
            apps.append(app)
        s1 = k.statistics()
        # Content, not just counters: an app sees its own write and the zygote's stamp.
        first = dirty_pages(heap[0], pattern)[0]
        assert apps[3].mm.read(first, 8) == (3).to_bytes(8, "little")
        assert z.mm.read(first, 8) == (0x5A5A5A5A).to_bytes(8, "little")
        for app in apps:
            app.exit(0)
            z.wait(app.pid)
        k.check()

    def kib(stats: list[spawnfd.MMStatistics]) -> str:
        total = statistics.median(s.pagetable_bytes for s in stats) / 1024
        private = statistics.median(s.pagetable_bytes - s.shared_pagetable_bytes
                                    for s in stats) / 1024
        return f"{total:>6,.0f} /{private:>5,.0f}"

    return (f"  {method:<18} {statistics.median(starts) * 1e3:>8.3f}  {kib(pt_start)}  "
            f"{kib(pt_after)} {s1.ptes_copied - s0.ptes_copied:>11,} "
            f"{s1.tables_shared - s0.tables_shared:>7,} {s1.pages_copied - s0.pages_copied:>7,}"
            f" {s1.frames_allocated - s0.frames_allocated:>8,}")


def main() -> None:
    pages = HEAP // PAGE
    print(f"zygote: {HEAP >> 20} MiB heap ({pages:,} pages) populated + libc mapped read-only; "
          f"{N} apps, each writing {pages // 100:,} heap pages (1 %)\n")
    h1 = (f"  {'':<18} {'start':>8}  {'page tables per app, KiB':>26} "
          f"{'':>11} {'tables':>7} {'pages':>7} {'frames':>8}")
    h2 = (f"  {'method':<18} {'ms':>8}  {'at start':>13}  {'after writes':>13}"
          f" {'PTEs copied':>11} {'shared':>7} {'copied':>7} {'alloc':>8}")
    run(METHODS[0], "spread")  # warm-up, not printed: the host's first touch of its memory
    for pattern in ("clustered", "spread"):
        what = "one contiguous run" if pattern == "clustered" else "every 100th page"
        print(f"writes {pattern} ({what}); page tables: total / not shared; "
              f"counters: all {N} apps")
        print(h1)
        print(h2)
        print("  " + "-" * (len(h2) - 2))
        for method in METHODS:
            print(run(method, pattern))
        print()
    with spawnfd.Kernel("2G") as k:
        _, (heap, size), _ = make_zygote(k)
    chunks = (heap + size - 1) // (2 << 20) - heap // (2 << 20) + 1
    print(f"(start: median over the apps; fork = one fork() call, map_cow = process_create + "
          f"2 map_cow +\n launch. frames alloc: page tables and copied pages together. The heap "
          f"at {heap:#x} spans\n {chunks} last-level tables; map_cow shares only those it covers "
          f"whole and copies the PTEs of the\n partial ones at its ends.)")


if __name__ == "__main__":
    main()
