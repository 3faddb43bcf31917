"""``spawnfd demo``: system() four ways on one simulated machine, then the fd model.

The main job: ``system("true")`` (``/bin/sh -c true``) by fork+exec with classic copy, by
fork+exec with copy-on-write page tables, by vfork+exec (what posix_spawn does) and by the fd
model, from a parent whose populated memory grows, with the kernel's deterministic counters
side by side. Then one child built step by step through a builder fd. ``spawnfd demo --tour``
adds a tour of the memory manager (mmap, populate, fork policies, exec, COW, shared files).
"""

from __future__ import annotations

import mmap
import os
import statistics
import time
from typing import Any

from ._constants import PAGE_SIZE
from .sim.kernel import Kernel, Process

GIB = 1 << 30
RW = mmap.PROT_READ | mmap.PROT_WRITE
LDSO = "/lib64/ld-linux-x86-64.so.2"


def _kib(n: int) -> str:
    return f"{n // 1024:,} KiB"


def _section(title: str) -> None:
    print(f"\n== {title}")


def _maps(p: Process) -> None:
    for line in p.mm.maps().splitlines():
        print("   ", line)


SYSTEM_METHODS = (("fork+exec (copy)", "copy"), ("fork+exec (cow-pt)", "cow-pt"),
                  ("vfork+exec", "vfork-exec"), ("spawnfd", "spawnfd"))


async def _system_rows(sizes_gib: tuple[int, ...], repeat: int) -> list[tuple[Any, ...]]:
    from . import _dispatch
    from .sim.machine import open_kernel

    rows = []
    async with open_kernel(f"{sum(sizes_gib) + 4}G") as k:
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        held = 0
        for gib in sizes_gib:
            if gib > held:  # grow the parent to gib populated
                a = p.mm.mmap((gib - held) * GIB, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                p.mm.populate(a, (gib - held) * GIB, write=True)
                held = gib
            for label, method in SYSTEM_METHODS:
                await _dispatch.system("true", kernel=k, method=method)  # warm caches
                times, deltas = [], []
                for _ in range(repeat):
                    before = k.statistics()
                    t = time.perf_counter()
                    status = await _dispatch.system("true", kernel=k, method=method)
                    times.append(time.perf_counter() - t)
                    after = k.statistics()
                    assert status == 0, status
                    deltas.append((after.ptes_copied - before.ptes_copied,
                                   after.tables_allocated - before.tables_allocated,
                                   after.frames_allocated - before.frames_allocated))
                ptes, tables, frames = deltas[len(deltas) // 2]
                rows.append((gib, label, statistics.median(times), ptes, tables, frames))
        k.check()
    return rows


def system_comparison(sizes_gib: tuple[int, ...] = (0, 4, 32), repeat: int = 5) -> None:
    """Print system("true") by the four methods as the parent grows."""
    import trio

    _section('system("true") = /bin/sh -c true, four ways, on one simulated kernel')
    print("    the parent (init) holds N GiB of populated private memory; the shell starts")
    print(f"    true the same way; median of {repeat} calls; counters are per call")
    print("    (time: wall time of one call on the simulator; PTEs copied, tables alloc.,")
    print("    frames alloc.: page-table entries copied, page-table pages and 4 KiB frames")
    print("    allocated by the kernel for the call)\n")
    rows = trio.run(_system_rows, sizes_gib, repeat)
    print(f"    {'GiB':>4}  {'method':<19} {'time':>9}  {'PTEs copied':>11}  "
          f"{'tables alloc.':>13}  {'frames alloc.':>13}")
    for gib, label, sec, ptes, tables, frames in rows:
        print(f"    {gib:>4}  {label:<19} {sec * 1e3:>6.2f} ms  {ptes:>11,}  {tables:>13,}  "
              f"{frames:>13,}")
    from .bench.suite import ratio  # growth is printed one way everywhere: ×N

    lo, hi = min(sizes_gib), max(sizes_gib)
    by = {(g, m): (sec, tables) for g, m, sec, _, tables, _ in rows}
    print(f"\n    from {lo} to {hi} GiB, per call:")
    for label, _ in SYSTEM_METHODS:
        (t0, n0), (t1, n1) = by[(lo, label)], by[(hi, label)]
        print(f"      {label:<19} time {ratio(t1 / t0):>7}   page tables allocated "
              f"{n0:,} -> {n1:,}")
    print("    fork+exec (copy) copies every PTE of the parent only to throw them away at exec;")
    print("    cow-pt shares the last-level tables instead; vfork and spawnfd copy nothing.")


def builder_walkthrough() -> None:
    """One child built step by step through a builder fd, its maps before and after."""
    import trio

    from .sim.machine import open_kernel

    async def main() -> None:
        async with open_kernel("1G") as k:
            sh = k.init
            for _ in range(3):
                sh.open("/dev/null", os.O_RDWR)
            r, w = sh.pipe(os.O_CLOEXEC)
            _section("the fd model: a child with zero threads, built through its builder fd")
            async with sh.create_process() as child:
                prog = await child.load_elf("/bin/echo")
                ld = await child.load_elf(prog.interpreter or LDSO)
                await child.setup_stack(["echo", "hello from an embryo"], {"PATH": "/bin"},
                                        interpreter=ld, program=prog)
                await child.install_fd(1, w)
                await child.open("/dev/null", os.O_RDONLY, fd=0)
                print(f"    pid {child.pid}, before launch (echo and ld.so mapped by the "
                      "parent, the stack written):")
                for line in child.mm.maps().splitlines():
                    print("     ", line)
                try:
                    await child.open("/nonexistent", os.O_RDONLY, fd=3)
                except FileNotFoundError as e:
                    print("    a bad step fails at once, before anything runs: "
                          f"{type(e).__name__}: {e}")
            sh.close(w)
            out = await sh.sys.read(r, 100)
            status = await child.wait()
            print(f"    closing the builder fd launched it: it wrote {out!r}, "
                  f"exit status {os.WEXITSTATUS(status)}")
            k.check()

    trio.run(main)


def run(tour: bool = False) -> None:
    """Print the demo: the system() comparison, the builder, and (tour) the mm tour."""
    system_comparison()
    builder_walkthrough()
    if tour:
        mm_tour()


def mm_tour() -> None:
    """Print the tour of the memory manager."""
    t = time.perf_counter()
    k = Kernel("64G")
    boot_ms = (time.perf_counter() - t) * 1e3
    p = k.init
    _section(f"boot: Kernel(memory='64G') in {boot_ms:.2f} ms; init is pid {p.pid}")
    st = k.statistics()
    print(f"    frames: {st.frames_total:,} total, {st.frames_used} used "
          "(the zero page and init's pgd)")

    _section("mmap 1 GiB private anonymous, populate it (one C call)")
    a = p.mm.mmap(GIB, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t = time.perf_counter()
    p.mm.populate(a, GIB, write=True, stamp=0x5EED)
    dt = time.perf_counter() - t
    ms = p.mm.statistics()
    print(f"    {GIB // PAGE_SIZE:,} pages in {dt * 1e3:.1f} ms "
          f"({GIB // PAGE_SIZE / dt / 1e6:.1f} M pages/s)")
    print(f"    rss {_kib(ms.rss_bytes)}, page tables {_kib(ms.pagetable_bytes)} "
          "(Linux: ~2 MB per populated GiB)")
    print(f"    read back at +512 MiB: {p.mm.read(a + GIB // 2, 8).hex()} (the stamp)")

    _section("fork the 1 GiB process under each policy (the child exits again)")
    for mode in ("copy", "cow-pt", "cow-pt-eager"):
        before = k.statistics()
        t = time.perf_counter()
        child = p.fork(mode)
        dt = time.perf_counter() - t
        after = k.statistics()
        cs = child.mm.statistics()
        child.mm.write(a, b"child")  # copy-on-write: the parent keeps its bytes
        assert p.mm.read(a, 5) != b"child"
        child.exit(0)
        p.wait(child.pid)
        print(f"    {mode:<13} {dt * 1e3:7.3f} ms  PTEs copied {after.ptes_copied - before.ptes_copied:>9,}"
              f"  tables shared {after.tables_shared - before.tables_shared:>4}"
              f"  child's private page tables {_kib(cs.pagetable_bytes - cs.shared_pagetable_bytes)}")

    _section("exec /bin/cat in a child, then the simulated ld.so maps its libraries")
    child = p.fork()
    rip, rsp = child.execve("/bin/cat", ["cat"], {"PATH": "/bin"})
    from .sim.programs import ldso

    ldso.load_program(child)
    print(f"    first thread would start at {rip:#x} (ld.so's entry), stack at {rsp:#x}")
    _maps(child)
    child.exit(0)
    p.wait(child.pid)

    _section(f"map the real {LDSO} privately; write to it (copy-on-write)")
    fd = p.open(LDSO, os.O_RDONLY)
    b = p.mm.mmap(2 * PAGE_SIZE, RW, mmap.MAP_PRIVATE, fd, 0)
    print(f"    first bytes through the mapping: {p.mm.read(b, 4)!r}")
    p.mm.write(b, b"\x7fSIM")
    print(f"    after a write: mapping {p.mm.read(b, 4)!r}, file {p.pread(fd, 4, 0)!r}")

    _section("a shared tmpfs file: writes through the mapping reach the file")
    db = p.open("/tmp/db", os.O_RDWR | os.O_CREAT, 0o600)
    p.ftruncate(db, 4 * PAGE_SIZE)
    c = p.mm.mmap(4 * PAGE_SIZE, RW, mmap.MAP_SHARED, db, 0)
    p.mm.write(c + 100, b"shared bytes")
    print(f"    pread(/tmp/db, 12, 100) = {p.pread(db, 12, 100)!r}")

    _section("mprotect the middle page of the file mapping: one mapping becomes three")
    p.mm.mprotect(c + PAGE_SIZE, PAGE_SIZE, mmap.PROT_READ)
    _maps(p)

    _section("munmap the GiB: its frames and page tables go back")
    p.mm.munmap(a, GIB)
    ms = p.mm.statistics()
    print(f"    rss {_kib(ms.rss_bytes)}, page tables {_kib(ms.pagetable_bytes)}")

    st = k.statistics()
    _section("kernel counters")
    print(f"    frames used {st.frames_used:,}, allocated {st.frames_allocated:,}, "
          f"freed {st.frames_freed:,}; page tables allocated {st.tables_allocated:,}, "
          f"freed {st.tables_freed:,}")
    f = st.faults
    print(f"    faults: anon {f.anon:,}, zero {f.zero}, file {f.file}, shared {f.shared}, "
          f"cow {f.cow}, wp-reuse {f.wp_reuse}, wp-shared {f.wp_shared}; "
          f"pages copied {st.pages_copied}")
    t = time.perf_counter()
    k.check()
    print(f"\n check(): every refcount, table and rss recomputed from scratch and equal "
          f"({(time.perf_counter() - t) * 1e3:.1f} ms)")
    k.close()
