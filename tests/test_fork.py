"""Fork under the three policies, copy-on-write page tables, and shared file page tables.

Content is the oracle, as in Linux's selftests/mm/cow.c: one side writes, the other must
still read what it had. Counters then show *how* the kernel got there.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os

import pytest

import spawnfd

from .helpers import ANON, PAGE, PTE_W, RW, pte_pfn, stamp_bytes

MODES = ("copy", "cow-pt", "cow-pt-eager")
COW_PT = ("cow-pt", "cow-pt-eager")
PMD = 2 << 20
FIXED = ANON | spawnfd.MAP_FIXED
BASE = 0x40000000  # 1 GiB: 2 MiB-aligned, so chunk boundaries are where tests expect them


def setup(mode: str, memory: str = "1G", pages: int = 1024) -> tuple[spawnfd.Kernel,
                                                                     spawnfd.Process, int]:
    """A kernel whose init has ``pages`` pages at BASE, each stamped with its index + 1."""
    k = spawnfd.Kernel(memory, fork_mode=mode)
    p = k.init
    a = p.mm.mmap(pages * PAGE, RW, FIXED, addr=BASE)
    for i in range(0, pages, 256):
        n = min(256, pages - i)
        p.mm.populate(a + i * PAGE, n * PAGE, write=True, stamp=0x1000 + i)
    return k, p, a


def stamp_at(i: int) -> bytes:
    return stamp_bytes(0x1000 + (i // 256) * 256, 8)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---- for every policy -------------------------------------------------------------------

def test_parent_writes_child_keeps_old_and_reverse(mode: str) -> None:
    k, p, a = setup(mode)
    c = p.fork()
    p.mm.write(a + 10 * PAGE, b"parent")
    c.mm.write(a + 600 * PAGE, b"child!")
    assert c.mm.read(a + 10 * PAGE, 8) == stamp_at(10)
    assert p.mm.read(a + 600 * PAGE, 8) == stamp_at(600)
    assert p.mm.read(a + 10 * PAGE, 6) == b"parent"
    assert c.mm.read(a + 600 * PAGE, 6) == b"child!"
    # Untouched pages are still shared: the same frame in both.
    assert pte_pfn(p.mm.translate(a + 300 * PAGE)) == pte_pfn(c.mm.translate(a + 300 * PAGE))
    k.check()


def test_after_mprotect_round_trip(mode: str) -> None:
    # What if the parent drops and restores write permission after the fork: does the next
    # write still copy instead of reusing a page the child maps?
    k, p, a = setup(mode)
    c = p.fork()
    p.mm.mprotect(a, 1024 * PAGE, mmap.PROT_READ)
    p.mm.mprotect(a, 1024 * PAGE, RW)
    c.mm.mprotect(a, 1024 * PAGE, mmap.PROT_READ)
    c.mm.mprotect(a, 1024 * PAGE, RW)
    p.mm.write(a, b"P")
    c.mm.write(a + PAGE, b"C")
    assert c.mm.read(a, 1) == stamp_at(0)[:1]
    assert p.mm.read(a + PAGE, 1) == stamp_at(1)[:1]
    assert (p.mm.read(a, 1), c.mm.read(a + PAGE, 1)) == (b"P", b"C")


def test_chained_forks_each_sees_only_its_own(mode: str) -> None:
    k, p, a = setup(mode)
    c = p.fork()
    g = c.fork()  # before anyone writes
    procs = {"p": p, "c": c, "g": g}
    for name, proc in procs.items():
        proc.mm.write(a + 5 * PAGE, name.encode() * 4)
    for name, proc in procs.items():
        assert proc.mm.read(a + 5 * PAGE, 4) == name.encode() * 4
        assert proc.mm.read(a + 6 * PAGE, 8) == stamp_at(6)
    k.check()
    g.exit(0)
    assert c.wait(g.pid) == 0
    c.exit(3)
    status = p.wait(c.pid)
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3


def test_sole_owner_reuses_after_child_exits(mode: str) -> None:
    k, p, a = setup(mode)
    c = p.fork()
    before = k.statistics()
    p.mm.write(a + 3 * PAGE, b"x")  # shared: exactly one new page frame
    mid = k.statistics()
    assert mid.anon_frames - before.anon_frames == 1
    assert mid.pages_copied - before.pages_copied == 1
    c.exit(0)
    p.wait(c.pid)
    before = k.statistics()
    p.mm.write(a + 700 * PAGE, b"y")  # sole owner again: no frame at all
    after = k.statistics()
    assert after.frames_allocated == before.frames_allocated
    assert after.pages_copied == before.pages_copied
    assert p.mm.read(a + 700 * PAGE, 1) == b"y"


def test_fork_of_more_than_half_of_memory(mode: str) -> None:
    # What if the parent holds more than half of simulated memory: fork copies tables, not
    # pages, so it must succeed, and the child's exit must give back everything it took.
    with spawnfd.Kernel("256M", fork_mode=mode) as k:
        p = k.init
        size = 160 << 20
        a = p.mm.mmap(size, RW, FIXED, addr=BASE)
        p.mm.populate(a, size, write=True, stamp=42)
        used = k.statistics().frames_used
        c = p.fork()
        assert c.mm.read(a + size - 8, 8) == stamp_bytes(42, 8)
        k.check()
        c.exit(0)
        p.wait(c.pid)
        assert k.statistics().frames_used == used
        k.check()


def test_private_file_mapping_never_changes_the_file(mode: str) -> None:
    k = spawnfd.Kernel("256M", fork_mode=mode)
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT)
    p.write(fd, b"F" * 4 * PAGE)
    priv = p.mm.mmap(4 * PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    view = p.mm.mmap(4 * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    p.mm.write(priv, b"before")
    c = p.fork()
    c.mm.write(priv + PAGE, b"child")
    p.mm.write(priv + 2 * PAGE, b"parent")
    for proc in (p, c):
        assert proc.mm.read(view, 4 * PAGE) == b"F" * 4 * PAGE
    assert p.pread(fd, 4 * PAGE, 0) == b"F" * 4 * PAGE
    assert c.mm.read(priv, 6) == b"before"
    assert c.mm.read(priv + 2 * PAGE, 1) == b"F"
    assert p.mm.read(priv + PAGE, 1) == b"F"
    k.check()


def test_shared_mappings_are_visible_both_ways(mode: str) -> None:
    k = spawnfd.Kernel("256M", fork_mode=mode)
    p = k.init
    anon = p.mm.mmap(4 * PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    fd = p.open("/tmp/s", os.O_RDWR | os.O_CREAT)
    p.ftruncate(fd, 4 * PAGE)
    file = p.mm.mmap(4 * PAGE, RW, mmap.MAP_SHARED, fd, 0)
    p.mm.write(anon, b"pre")
    c = p.fork()
    c.mm.write(anon + PAGE, b"from child")
    p.mm.write(file + 2 * PAGE, b"from parent")
    assert p.mm.read(anon + PAGE, 10) == b"from child"
    assert c.mm.read(file + 2 * PAGE, 11) == b"from parent"
    assert c.mm.read(anon, 3) == b"pre"
    assert p.pread(fd, 11, 2 * PAGE) == b"from parent"
    k.check()


def test_shared_mapping_without_anon_pages_is_refaulted_lazily(mode: str) -> None:
    # compare Linux vma_needs_copy(): fork copies no pte of a shared mapping.
    k = spawnfd.Kernel("256M", fork_mode=mode)
    p = k.init
    a = p.mm.mmap(64 * PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    p.mm.populate(a, 64 * PAGE, write=True, stamp=9)
    copied = k.statistics().ptes_copied
    c = p.fork()
    assert k.statistics().ptes_copied == copied
    assert c.mm.translate(a) == 0
    faults = k.statistics().faults.shared
    assert c.mm.read(a + 5 * PAGE, 8) == stamp_bytes(9, 8)
    assert k.statistics().faults.shared == faults + 1


def test_dontfork_and_wipeonfork(mode: str) -> None:
    k, p, a = setup(mode)
    p.mm.madvise(a, 16 * PAGE, mmap.MADV_DONTFORK)
    p.mm.madvise(a + 512 * PAGE, 16 * PAGE, spawnfd.MADV_WIPEONFORK)
    c = p.fork()
    g = c.fork()
    for proc in (c, g):
        with pytest.raises(OSError) as ei:
            proc.mm.read(a, 1)  # absent in the child
        assert ei.value.errno == errno.EFAULT
        assert proc.mm.read(a + 512 * PAGE, 16 * PAGE) == bytes(16 * PAGE)  # wiped
        assert proc.mm.read(a + 528 * PAGE, 8) == stamp_at(528)  # the rest is inherited
    assert p.mm.read(a, 8) == stamp_at(0)
    assert p.mm.read(a + 512 * PAGE, 8) == stamp_at(512)
    assert len(c.mm.maps().splitlines()) == 3  # the wiped range keeps its own vma
    k.check()


def test_fork_inherits_descriptors_sharing_offsets(mode: str) -> None:
    k = spawnfd.Kernel("64M", fork_mode=mode)
    p = k.init
    fd = p.open("/tmp/o", os.O_RDWR | os.O_CREAT)
    p.write(fd, b"0123456789")
    p.lseek(fd, 0, os.SEEK_SET)
    c = p.fork()
    assert c.read(fd, 4) == b"0123"
    assert p.read(fd, 4) == b"4567"  # one open file description, one offset
    c.close(fd)
    assert p.read(fd, 2) == b"89"


def test_injected_enomem_rolls_fork_back(mode: str) -> None:
    # What if the n-th frame allocation of a fork fails, for every n until one succeeds: is the
    # parent unchanged and nothing leaked each time?
    k = spawnfd.Kernel("256M", fork_mode=mode)
    p = k.init
    a = p.mm.mmap(4 * PMD, RW, FIXED, addr=BASE)
    p.mm.populate(a, 4 * PMD, write=True, stamp=5)
    p.mm.write(a + PMD + 8, b"marker")
    b = p.mm.mmap(8 * PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    p.mm.write(b, b"shm")
    maps, used = p.mm.maps(), k.statistics().frames_used
    failures = 0
    for n in itertools.count(1):
        k.fail_nth_allocation(n)
        try:
            c = p.fork()
        except OSError as e:
            assert e.errno == errno.ENOMEM
            failures += 1
            assert p.mm.maps() == maps
            assert k.statistics().frames_used == used
            assert p.mm.read(a + PMD + 8, 6) == b"marker"
            assert p.mm.read(b, 3) == b"shm"
            k.check()
            continue
        k.fail_nth_allocation(0)
        break
    assert failures >= 3  # pgd, pud, pmd at least
    assert c.mm.read(a + PMD + 8, 6) == b"marker"
    p.mm.write(a, b"after")
    assert c.mm.read(a, 8) == stamp_bytes(5, 8)


def test_fork_rejects_unknown_mode(proc: spawnfd.Process) -> None:
    with pytest.raises(ValueError):
        proc.fork("clone")


def test_wait_semantics(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    c = p.fork()
    assert p.wait(c.pid, nohang=True) is None
    with pytest.raises(BlockingIOError):
        p.wait(c.pid)
    g = c.fork()
    with pytest.raises(ChildProcessError):
        p.wait(g.pid)  # a grandchild is not p's child
    c.exit(7)
    with pytest.raises(ProcessLookupError):
        c.mm.read(0x10000, 1)  # a zombie has no memory
    assert os.WEXITSTATUS(p.wait(-1) or 0) == 7
    g.exit(0)  # orphaned: reparented to init
    assert p.wait(g.pid) == 0
    with pytest.raises(ChildProcessError):
        p.wait(-1)
    with pytest.raises(PermissionError):
        p.exit(0)  # init may not exit


# ---- copy-on-write page tables ---------------------------------------------------------

@pytest.fixture(params=COW_PT)
def cow_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def shared_fork(cow_mode: str) -> tuple[spawnfd.Kernel, spawnfd.Process, spawnfd.Process, int]:
    """init with 2 chunks (1024 pages) at BASE, forked: both chunks' tables shared."""
    k, p, a = setup(cow_mode)
    c = p.fork()
    st = k.statistics()
    assert st.tables_shared == 2 and st.ptes_copied == 0
    assert p.mm.statistics().shared_pagetable_bytes == 2 * PAGE
    assert c.mm.statistics().shared_pagetable_bytes == 2 * PAGE
    return k, p, c, a


def test_cow_pt_fork_copies_no_pte_and_accounts_pages(cow_mode: str) -> None:
    k, p, a = setup(cow_mode)
    before = k.statistics()
    c = p.fork()
    after = k.statistics()
    assert after.ptes_copied == 0
    assert after.tables_allocated - before.tables_allocated == 3  # child pgd, pud, pmd
    assert c.mm.statistics().rss_anon_bytes == 1024 * PAGE
    assert c.mm.statistics().pagetable_bytes == 5 * PAGE  # 3 own + 2 shared
    # Deferred: page refcounts untouched; eager: raised at fork.
    ref, _ = k.frame_info(pte_pfn(p.mm.translate(a)))
    assert ref == (1 if cow_mode == "cow-pt" else 2)


def test_cow_pt_write_fault_breaks_by_copy_then_reuse(cow_mode: str) -> None:
    k, p, c, a = shared_fork(cow_mode)
    c.mm.write(a, b"c")
    st = k.statistics()
    assert (st.tables_copied, st.tables_reused, st.ptes_copied) == (1, 0, 512)
    assert p.mm.read(a, 8) == stamp_at(0)
    p.mm.write(a + PAGE, b"p")  # the parent is now the table's only user: reuse in place
    st = k.statistics()
    assert (st.tables_copied, st.tables_reused) == (1, 1)
    assert c.mm.read(a + PAGE, 8) == stamp_at(1)
    assert (c.mm.read(a, 1), p.mm.read(a + PAGE, 1)) == (b"c", b"p")


def test_cow_pt_read_fault_filling_empty_entry_breaks(cow_mode: str) -> None:
    k, p, a = setup(cow_mode, pages=512)
    p.mm.munmap(a + 511 * PAGE, PAGE)
    p.mm.mmap(PAGE, RW, FIXED, addr=a + 511 * PAGE)  # empty entry, same chunk...
    p.mm.write(a + 511 * PAGE, b"w")  # ...with an anonymous page, so the chunk is shareable
    p.mm.madvise(a + 511 * PAGE, PAGE, mmap.MADV_DONTNEED)
    c = p.fork()
    assert k.statistics().tables_shared == 1
    assert c.mm.read(a + 511 * PAGE, 1) == b"\0"  # a read that fills an empty entry
    assert k.statistics().tables_copied == 1
    assert p.mm.translate(a + 511 * PAGE) == 0  # the parent's table did not change


def test_cow_pt_reads_of_present_pages_do_not_break(cow_mode: str) -> None:
    k, p, c, a = shared_fork(cow_mode)
    c.mm.read(a, 1024 * PAGE)
    p.mm.read(a, 1024 * PAGE)
    st = k.statistics()
    assert st.tables_copied == st.tables_reused == 0


@pytest.mark.parametrize("op", [
    "munmap-part", "mprotect-part", "mprotect-all", "dontneed", "dontfork", "split", "merge",
])
def test_cow_pt_table_changes_break_first(cow_mode: str, op: str) -> None:
    # What if the child changes part of a shared table without writing: does the parent's
    # view stay intact, and does the child's table stop being shared?
    k, p, a = setup(cow_mode)
    if op == "merge":  # two vmas in the first chunk, both with pages: the table is shared
        p.mm.mprotect(a + 200 * PAGE, 56 * PAGE, RW | mmap.PROT_EXEC)
    c = p.fork()
    assert k.statistics().tables_shared == 2
    if op == "merge":
        # the protections match again, but each child vma got its own anon_vma at fork: as
        # on Linux they stay apart (tests/test_vma_merge_linux.py)
        c.mm.mprotect(a + 200 * PAGE, 56 * PAGE, RW)
        assert len(c.mm.maps().splitlines()) == 3
    elif op == "munmap-part":
        c.mm.munmap(a + 10 * PAGE, PAGE)
    elif op == "mprotect-part":
        c.mm.mprotect(a, 4 * PAGE, mmap.PROT_READ)
    elif op == "mprotect-all":
        c.mm.mprotect(a, PMD, mmap.PROT_READ)
    elif op == "dontneed":
        c.mm.madvise(a + 10 * PAGE, PAGE, mmap.MADV_DONTNEED)
    elif op == "dontfork":
        c.mm.madvise(a + 10 * PAGE, PAGE, mmap.MADV_DONTFORK)
    elif op == "split":
        c.mm.mprotect(a + 100 * PAGE, PAGE, RW | mmap.PROT_EXEC)
    st = k.statistics()
    assert st.tables_copied == 1
    assert c.mm.statistics().shared_pagetable_bytes == PAGE  # the other chunk still shared
    for i in (0, 10, 100, 511):
        assert p.mm.read(a + i * PAGE, 8) == stamp_at(i)
        assert p.mm.translate(a + i * PAGE) & 1
    if op in ("munmap-part", "dontneed"):
        assert c.mm.translate(a + 10 * PAGE) == 0
    if op == "dontneed":
        assert c.mm.read(a + 10 * PAGE, 8) == bytes(8)
    k.check()


def test_cow_pt_munmap_of_whole_chunk_drops_without_copy(cow_mode: str) -> None:
    k, p, c, a = shared_fork(cow_mode)
    c.mm.munmap(a, PMD)
    st = k.statistics()
    assert st.tables_copied == 0
    assert p.mm.read(a, 8) == stamp_at(0)
    assert p.mm.statistics().shared_pagetable_bytes == PAGE
    p.mm.write(a, b"mine")  # sole owner now: reuse, no copy
    assert k.statistics().tables_reused == 1 and k.statistics().pages_copied == 0


def test_cow_pt_refcount_three_exits_in_every_order(cow_mode: str) -> None:
    for order in itertools.permutations(range(3)):
        k, init, a = setup(cow_mode, memory="128M", pages=512)
        p = init.fork("copy")  # a parent that may exit (init may not)
        init.mm.munmap(a, 512 * PAGE)
        c1 = p.fork()
        c2 = p.fork()
        procs = [p, c1, c2]
        assert k.statistics().tables_shared == 2  # one table, shared twice (refcount 3)
        for n, i in enumerate(order):
            live = [procs[j] for j in order[n + 1:]]
            procs[i].exit(0)
            for q in live:
                assert q.mm.read(a + 7 * PAGE, 8) == stamp_at(7)
            k.check()
            if live:
                live[0].mm.write(a + 8 * PAGE, b"w")
                assert all(q.mm.read(a + 8 * PAGE, 8) == stamp_at(8) for q in live[1:])
                k.check()
        for q in (c1, c2):
            init.wait(q.pid)
        init.wait(p.pid)
        assert k.statistics().anon_frames == 0
        k.check()
        k.close()


def test_cow_pt_table_spanned_by_two_vmas_is_shared_once(cow_mode: str) -> None:
    k, p, a = setup(cow_mode, pages=512)
    p.mm.mprotect(a + 256 * PAGE, 256 * PAGE, RW | mmap.PROT_EXEC)  # two vmas, one table
    c = p.fork()
    st = k.statistics()
    assert st.tables_shared == 1 and st.ptes_copied == 0
    assert c.mm.statistics().shared_pagetable_bytes == PAGE
    c.mm.write(a + 300 * PAGE, b"x")
    assert p.mm.read(a + 300 * PAGE, 8) == stamp_at(300)


def test_cow_pt_chunk_with_a_dontfork_vma_is_copied_not_shared(cow_mode: str) -> None:
    k, p, a = setup(cow_mode, pages=512)
    p.mm.madvise(a + 256 * PAGE, 256 * PAGE, mmap.MADV_DONTFORK)
    c = p.fork()
    st = k.statistics()
    assert st.tables_shared == 0 and st.ptes_copied == 256
    with pytest.raises(OSError):
        c.mm.read(a + 300 * PAGE, 1)


def test_cow_pt_exit_of_child_leaves_parent_pages_alone(cow_mode: str) -> None:
    k, p, c, a = shared_fork(cow_mode)
    c.exit(0)
    p.wait(c.pid)
    assert p.mm.statistics().shared_pagetable_bytes == 0
    assert p.mm.read(a + 1023 * PAGE, 8) == stamp_at(1023)
    ref, _ = k.frame_info(pte_pfn(p.mm.translate(a)))
    assert ref == 1
    before = k.statistics()
    p.mm.write(a, b"mine")  # sole owner: the table is reused, the page too
    after = k.statistics()
    assert after.frames_allocated == before.frames_allocated
    assert after.tables_reused == before.tables_reused + 1


# ---- shared page tables for MAP_SHARED ---------------------------------------------------

def db_kernel() -> tuple[spawnfd.Kernel, spawnfd.Process, int]:
    k = spawnfd.Kernel("512M", share_pagetables=True)
    p = k.init
    fd = p.open("/tmp/db", os.O_RDWR | os.O_CREAT)
    p.ftruncate(fd, 8 * PMD)
    return k, p, fd


def test_shared_tables_across_fork_and_fault_fills_for_all() -> None:
    k, p, fd = db_kernel()
    a = p.mm.mmap(4 * PMD, RW, mmap.MAP_SHARED, fd, 0)
    assert a % PMD == 0  # placed congruent to the file offset
    p.mm.populate(a, PMD, write=True, stamp=3)
    c = p.fork()
    assert c.mm.statistics().shared_pagetable_bytes == PAGE
    faults = k.statistics().faults.shared
    assert c.mm.read(a + 100 * PAGE, 8) == stamp_bytes(3, 8)  # no fault: the table is shared
    assert k.statistics().faults.shared == faults
    c.mm.write(a + PMD + 5, b"child")  # fills chunk 1's table, created on this fault
    assert p.mm.read(a + PMD + 5, 5) == b"child"
    assert k.statistics().faults.shared == faults + 1
    assert p.mm.statistics().shared_pagetable_bytes == 2 * PAGE
    k.check()


def test_unrelated_processes_attach_at_fault_time() -> None:
    k, p, fd = db_kernel()
    q = p.fork()
    mine = p.mm.mmap(2 * PMD, RW, mmap.MAP_SHARED, fd, 2 * PMD)
    p.mm.populate(mine, 2 * PMD, write=True)
    qfd = q.open("/tmp/db", os.O_RDWR)
    theirs = q.mm.mmap(2 * PMD, RW, mmap.MAP_SHARED, qfd, 2 * PMD)
    before = k.statistics()
    q.mm.read(theirs, 1)
    after = k.statistics()
    assert after.tables_shared == before.tables_shared + 1
    assert after.tables_allocated == before.tables_allocated + 2  # q's pud+pmd, no pte table
    q.mm.populate(theirs, 2 * PMD)
    assert q.mm.statistics().shared_pagetable_bytes == 2 * PAGE
    assert q.mm.statistics().rss_shmem_bytes == 2 * PMD


@pytest.mark.parametrize("case", ["misaligned", "partial", "offset", "prot", "private"])
def test_each_sharing_condition_falls_back_to_a_private_table(case: str) -> None:
    k, p, fd = db_kernel()
    base = 0x100000000
    p.mm.mmap(PMD, RW, mmap.MAP_SHARED | spawnfd.MAP_FIXED, fd, 0, addr=base)
    p.mm.populate(base, PMD, write=True)
    q = p.fork("copy")
    qbase = base + 64 * PMD
    flags, prot, off, addr, length = mmap.MAP_SHARED, RW, 0, qbase, PMD
    if case == "misaligned":
        addr = qbase + PAGE  # va and file offset disagree modulo 2 MiB
    elif case == "partial":
        length = PMD - PAGE  # does not cover the whole chunk
    elif case == "offset":
        off = PAGE
    elif case == "prot":
        prot = mmap.PROT_READ
    elif case == "private":
        flags = mmap.MAP_PRIVATE
    m = q.mm.mmap(length, prot, flags | spawnfd.MAP_FIXED, fd, off, addr=addr)
    q.mm.populate(m, length)
    assert q.mm.statistics().shared_pagetable_bytes == PAGE  # only the inherited chunk
    assert q.mm.read(m, 1) == b"\0"
    k.check()


def test_detach_of_one_sharer_keeps_the_others() -> None:
    k, p, fd = db_kernel()
    a = p.mm.mmap(PMD, RW, mmap.MAP_SHARED, fd, 0)
    p.mm.populate(a, PMD, write=True, stamp=11)
    c1, c2 = p.fork(), p.fork()
    c1.mm.munmap(a + 4 * PAGE, PAGE)  # detaches c1 from the chunk; its rest refaults
    assert c1.mm.statistics().shared_pagetable_bytes == 0
    assert p.mm.statistics().shared_pagetable_bytes == PAGE
    assert c1.mm.read(a, 8) == stamp_bytes(11, 8)
    for q in (p, c2):
        assert q.mm.read(a + 4 * PAGE, 8) == stamp_bytes(11, 8)
    c2.exit(0)
    p.wait(c2.pid)
    c1.mm.munmap(a, PMD)
    p.mm.munmap(a, PMD)  # the last sharer frees the table
    assert k.statistics().pagetable_frames == sum(
        q.mm.statistics().pagetable_bytes for q in (p, c1)) // PAGE
    k.check()


def test_mprotect_by_one_sharer_leaves_the_others_permissions() -> None:
    k, p, fd = db_kernel()
    a = p.mm.mmap(PMD, RW, mmap.MAP_SHARED, fd, 0)
    p.mm.populate(a, PMD, write=True)
    c = p.fork()
    c.mm.mprotect(a, PMD, mmap.PROT_READ)
    with pytest.raises(OSError) as ei:
        c.mm.write(a, b"no")
    assert ei.value.errno == errno.EFAULT
    p.mm.write(a, b"yes")
    assert c.mm.read(a, 3) == b"yes"
    assert p.mm.translate(a) & PTE_W
    assert not c.mm.translate(a) & PTE_W
    k.check()


def test_database_page_tables_stay_flat_with_sharing() -> None:
    # N processes map the same 8 MiB MAP_SHARED and touch all of it.
    totals = {}
    for share in (False, True):
        k = spawnfd.Kernel("512M", share_pagetables=share)
        p = k.init
        fd = p.open("/tmp/db", os.O_RDWR | os.O_CREAT)
        p.ftruncate(fd, 4 * PMD)
        procs = [p] + [p.fork() for _ in range(7)]
        for q in procs:
            a = q.mm.mmap(4 * PMD, RW, mmap.MAP_SHARED, fd, 0)
            q.mm.populate(a, 4 * PMD)
        totals[share] = k.statistics().pagetable_frames
        k.check()
        k.close()
    assert totals[True] < totals[False] / 2


def test_table_left_by_a_cow_pt_child_can_be_shared_eagerly_later() -> None:
    # What if a cow-pt child exited and the parent forks again with the eager policy: the
    # tables are the parent's alone again, so they must be shared, not copied.
    k, p, a = setup("cow-pt", pages=512)
    c = p.fork("cow-pt")
    c.exit(0)
    p.wait(c.pid)
    before = k.statistics()
    c2 = p.fork("cow-pt-eager")
    after = k.statistics()
    assert after.tables_shared - before.tables_shared == 1
    assert after.ptes_copied == before.ptes_copied
    ref, _ = k.frame_info(pte_pfn(p.mm.translate(a)))
    assert ref == 2  # eager: one reference per sharer
    c2.mm.write(a, b"x")
    assert p.mm.read(a, 8) == stamp_at(0)
    k.check()
