"""A database's shared buffer: many workers map one big file, with and without shared tables.

Run it: ``python examples/database_shared_tables.py [--quick]``

A parent creates ``/dev/shm/db`` (tmpfs, 1 GiB; ``--quick``: 128 MiB), maps it ``MAP_SHARED``
and populates it, as PostgreSQL's postmaster does with its shared buffers. Then 1, 8 and 64
workers start and each touches the whole file (``mm.populate``), on a kernel with
``share_pagetables=False`` and one with ``True``. Workers start two ways:

* ``fork`` -- forks of the parent, inheriting the mapping;
* ``embryo`` -- the fd model: ``process_create()``, the file mapped into the embryo through the
  builder (``Builder.mmap`` with the parent's descriptor), then ``launch()``.

Printed per case: the sum of the workers' page-table bytes as each address space reports them
(``mm.statistics().pagetable_bytes``), the part of that shared with other address spaces
(``shared_pagetable_bytes``), the page-table memory the whole machine really holds
(``k.statistics().pagetable_frames``), and the page faults the workers took. Without sharing
every worker builds its own 2 MiB of tables per GiB and faults every page in; with sharing a
worker attaches to the file's existing last-level tables, filled once by the parent.
"""

from __future__ import annotations

import mmap
import os
import sys
import time

import spawnfd

QUICK = "--quick" in sys.argv
SIZE = (128 << 20) if QUICK else (1 << 30)
WORKERS = (1, 8, 64)
RW = mmap.PROT_READ | mmap.PROT_WRITE


def faults(s: spawnfd.KernelStatistics) -> int:
    f = s.faults
    return f.anon + f.zero + f.file + f.shared + f.cow + f.wp_reuse + f.wp_shared


def run(share: bool, workers: int, how: str) -> str:
    with spawnfd.Kernel("4G", share_pagetables=share) as k:
        db = k.init.fork()  # the postmaster
        fd = db.open("/dev/shm/db", os.O_RDWR | os.O_CREAT, 0o600)
        db.ftruncate(fd, SIZE)
        buf = db.mm.mmap(SIZE, RW, mmap.MAP_SHARED, fd)
        db.mm.populate(buf, SIZE, write=True)
        s0 = k.statistics()
        t0 = time.perf_counter()
        procs = []
        for _ in range(workers):
            if how == "fork":
                w, addr = db.fork(), buf
            else:
                b = db.process_create()
                addr = b.mmap(SIZE, RW, mmap.MAP_SHARED, fd)  # fd: the parent's descriptor
                b.launch()
                w = b.process
            w.mm.populate(addr, SIZE)  # the worker reads every page of the buffer
            procs.append(w)
        elapsed = time.perf_counter() - t0
        s1 = k.statistics()
        stats = [w.mm.statistics() for w in procs]
        total = sum(s.pagetable_bytes for s in stats)
        shared = sum(s.shared_pagetable_bytes for s in stats)
        machine = s1.pagetable_frames * spawnfd.PAGE_SIZE
        for w in procs:
            w.exit(0)
            db.wait(w.pid)
        k.check()
    return (f"  {workers:>7} {how:<7} {total / 2**20:>12,.2f} {shared / 2**20:>12,.2f} "
            f"{machine / 2**20:>12,.2f} {faults(s1) - faults(s0):>12,} {elapsed * 1e3:>9.1f}")


def main() -> None:
    print(f"/dev/shm/db: {SIZE >> 20} MiB, MAP_SHARED, populated by the parent; every worker "
          f"touches all of it\n")
    header = (f"  {'workers':>7} {'start':<7} {'workers PT':>12} {'of it shared':>12} "
              f"{'machine PT':>12} {'faults':>12} {'ms':>9}")
    for share in (False, True):
        print(f"Kernel(share_pagetables={share})     (page tables in MiB)")
        print(header)
        print("  " + "-" * (len(header) - 2))
        for n in WORKERS:
            for how in ("fork", "embryo"):
                print(run(share, n, how))
        print()
    print("(workers PT: the sum over the workers of mm.statistics().pagetable_bytes, shared "
          "tables\n counted in every process that uses them; machine PT: page-table frames of "
          "the whole\n kernel, parent and init included; faults: taken while the workers "
          "started and touched the file)")


if __name__ == "__main__":
    main()
