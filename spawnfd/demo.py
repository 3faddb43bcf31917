"""``spawnfd demo``: a short tour of the simulated memory manager.

Boots a 64 GiB machine, maps and touches memory, maps a real host binary, shares a tmpfs
file, splits and merges mappings, and prints maps and the kernel's counters along the way.
"""

from __future__ import annotations

import mmap
import os
import time

from ._constants import PAGE_SIZE
from ._core import Kernel, Process

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


def run() -> None:
    """Print the tour."""
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
    from .sim import ldso

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
