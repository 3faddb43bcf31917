"""Transparent huge pages: content first, as in Linux's selftests/mm/cow.c.

Every page of a region gets its own stamp; every write is mirrored into a bytearray per
process; after every step each process must read back exactly its own bytes and the kernel
must pass ``check()``. The THP shapes of cow.c are covered (a pmd-mapped huge page, one already
split into ptes, a single pte left of one, one only partly shared by fork) under every fork
policy and both COW policies; then counters pin down *how* the kernel got there (a split COW
costs one frame and one table, copy-huge 512 frames, a sole owner reuses in place, fork copies
one entry per 2 MiB), and the edges: partial munmap/mprotect/madvise, eligibility (thp= modes,
MADV_(NO)HUGEPAGE, unaligned vma ends), fallback when no aligned 2 MiB block is free, cow-pt
sharing of tables that came from a split, map_cow, exit.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator

import pytest

import spawnfd
from spawnfd.sim.kernel import FORK_MODES

from .helpers import ANON, PAGE, PTE_W, RW, pte_pfn, stamp_bytes

PMD = 2 << 20
NR = 512                          # pages per huge page
BASE = 0x40000000                 # 1 GiB: 2 MiB aligned
PS = 1 << 7                       # the pmd leaf bit translate() reports for a subpage
FIXED = ANON | spawnfd.MAP_FIXED
COW = ("split", "copy-huge")
SHAPES = ("pmd-mapped", "pte-mapped", "single-pte", "partly-shared")
SEED = 0x5EED0000
MAP_NORESERVE = 0x4000


def boot(thp: str = "always", cow: str = "split", memory: str = "256M",
         mode: str = "copy") -> tuple[spawnfd.Kernel, spawnfd.Process]:
    k = spawnfd.Kernel(memory, fork_mode=mode, thp=thp, thp_cow=cow)
    return k, k.init


def content(npages: int, seed: int = SEED) -> bytearray:
    """What a region stamped by :func:`stamp` reads as: page i holds seed + i."""
    return bytearray(b"".join(stamp_bytes(seed + i) for i in range(npages)))


def stamp(p: spawnfd.Process, a: int, npages: int, seed: int = SEED) -> bytearray:
    """Fault [a, a + npages) in for writing (huge pages where eligible), then give every page
    its own stamp; returns the bytes the region must read as."""
    p.mm.populate(a, npages * PAGE, write=True)
    for i in range(npages):
        p.mm.populate(a + i * PAGE, PAGE, write=True, stamp=seed + i)
    return content(npages, seed)


def region(chunks: int = 1, **kw: str) -> tuple[spawnfd.Kernel, spawnfd.Process, int,
                                                bytearray]:
    """A kernel whose init has ``chunks`` huge pages at BASE, every page stamped."""
    k, p = boot(**kw)
    a = p.mm.mmap(chunks * PMD, RW, FIXED, addr=BASE)
    want = stamp(p, a, chunks * NR)
    assert p.mm.statistics().anon_huge_bytes == chunks * PMD
    k.check()
    return k, p, a, want


def same(p: spawnfd.Process, a: int, want: bytes | bytearray) -> None:
    """p reads exactly want at a (the first differing page named, not a 2 MiB diff)."""
    got = p.mm.read(a, len(want))
    if got != want:
        i = next(i for i in range(0, len(want), PAGE) if got[i:i + PAGE] != want[i:i + PAGE])
        j = next(j for j in range(i, i + PAGE) if got[j] != want[j])
        raise AssertionError(f"pid {p.pid}: byte {j - i} of page {i // PAGE} ({a + j:#x}) "
                             f"reads {got[j:j + 8].hex()}, want {want[j:j + 8].hex()}")


def put(p: spawnfd.Process, want: bytearray, a: int, off: int, data: bytes) -> None:
    """Write data at a + off in p and in its mirror."""
    p.mm.write(a + off, data)
    want[off:off + len(data)] = data


def huge(p: spawnfd.Process, addr: int) -> bool:
    """Whether addr is mapped by a pmd leaf in p."""
    return bool(p.mm.translate(addr) & PS)


def pfn(p: spawnfd.Process, addr: int) -> int:
    return pte_pfn(p.mm.translate(addr))


def delta(k: spawnfd.Kernel, before: spawnfd.KernelStatistics, *names: str) -> tuple[int, ...]:
    after = k.statistics()
    return tuple(getattr(after, n) - getattr(before, n) for n in names)


def mapped_pages(p: spawnfd.Process, a: int, npages: int) -> Iterator[int]:
    """The translate() entries of [a, a + npages) that map an anonymous frame (not the
    shared zero page)."""
    for i in range(npages):
        e = p.mm.translate(a + i * PAGE)
        if e & 1 and p.kernel.frame_info(pte_pfn(e))[1] == "anon":
            yield e


def accounting_agrees(p: spawnfd.Process, a: int, npages: int) -> None:
    """rss_anon_bytes and anon_huge_bytes are what translate() shows mapped (all of p's
    anonymous memory lies in [a, a + npages))."""
    entries = list(mapped_pages(p, a, npages))
    st = p.mm.statistics()
    assert st.anon_huge_bytes == sum(1 for e in entries if e & PS) * PAGE
    assert st.rss_anon_bytes == len(entries) * PAGE


@pytest.fixture(params=FORK_MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=COW)
def cow(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---- the shapes of cow.c ---------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_cow_shapes_each_side_reads_only_its_own_bytes(shape: str, mode: str, cow: str) -> None:
    k, p, a, want = region(cow=cow)
    n = NR                      # pages the child inherits (from a)
    if shape == "pte-mapped":   # split into ptes, the huge page's frames still in place
        first = pfn(p, a)
        p.mm.mprotect(a + 7 * PAGE, PAGE, mmap.PROT_READ)
        k.check()
        p.mm.mprotect(a + 7 * PAGE, PAGE, RW)
        assert not huge(p, a) and p.mm.statistics().anon_huge_bytes == 0
        assert [pfn(p, a + i * PAGE) for i in range(NR)] == list(range(first, first + NR))
        assert len(p.mm.maps().splitlines()) == 1
    elif shape == "single-pte":  # all of the 2 MiB unmapped but one page
        p.mm.munmap(a + PAGE, PMD - PAGE)
        n = 1
        del want[PAGE:]
        assert not huge(p, a) and k.statistics().anon_frames == 1
    elif shape == "partly-shared":  # the other half stays with the parent (that splits it)
        p.mm.madvise(a + 256 * PAGE, 256 * PAGE, mmap.MADV_DONTFORK)
        n = 256
        assert not huge(p, a)
    k.check()
    same(p, a, want)
    c = p.fork(mode)
    k.check()
    mine = bytearray(want[:n * PAGE])
    same(c, a, mine)
    if shape == "partly-shared":
        with pytest.raises(OSError) as ei:
            c.mm.read(a + 256 * PAGE, 1)
        assert ei.value.errno == errno.EFAULT
    last = (n - 1) * PAGE
    steps = [
        (p, want, 100, b"parent's first write"),
        (c, mine, 200, b"child's first write"),
        (p, want, last + PAGE - 5, b"P-end"),           # the last shared page, to its end
        (c, mine, last + 8, b"child, last page"),
        (p, want, (n // 2) * PAGE - 3, b"across a page"),  # two pages at once (n > 1)
        (c, mine, (n // 2) * PAGE + 1, b"C" * 3000),
        (p, want, 100, b"parent again"),                # its own copy now
        (c, mine, 0, b"child again"),
    ]
    if shape == "partly-shared":                        # the parent's own half, too
        steps.append((p, want, 300 * PAGE + 5, b"not shared"))
    for proc, mirror, off, data in steps:
        off = max(off, 0)
        if off + len(data) > len(mirror):
            data = data[:len(mirror) - off]
        put(proc, mirror, a, off, data)
        k.check()
        same(p, a, want)
        same(c, a, mine)
    if shape == "pmd-mapped":
        # split: each side's first write split its own leaf (the other still mapped the
        # page); copy-huge gave the parent a new huge page, then the child reused the old one
        assert huge(p, a) == (cow == "copy-huge")
        assert huge(c, a) == (cow == "copy-huge")
        assert k.statistics().thp_copied == (1 if cow == "copy-huge" else 0)
    c.exit(0)
    p.wait(c.pid)
    k.check()
    put(p, want, a, last, b"alone")
    same(p, a, want)
    accounting_agrees(p, a, NR)


@pytest.mark.parametrize("shape", SHAPES)
def test_cow_shapes_child_writes_first_then_grandchild(shape: str, cow: str) -> None:
    # The other order, one level deeper: the child writes before the parent, and a
    # grandchild forked from the half-copied child must see the child's bytes.
    k, p, a, want = region(cow=cow)
    base = a
    if shape == "pte-mapped":
        p.mm.mprotect(a, PAGE, mmap.PROT_READ)
        p.mm.mprotect(a, PAGE, RW)
    elif shape == "single-pte":
        p.mm.munmap(a, PMD - PAGE)    # this time the last page survives
        a += PMD - PAGE
        del want[:PMD - PAGE]
    elif shape == "partly-shared":
        p.mm.madvise(a, 256 * PAGE, mmap.MADV_DONTFORK)
        a += 256 * PAGE
        del want[:256 * PAGE]
    c = p.fork()
    mine = bytearray(want)
    put(c, mine, a, 10, b"child")
    g = c.fork("cow-pt")
    theirs = bytearray(mine)
    put(g, theirs, a, len(theirs) - 7, b"grand!!")
    put(p, want, a, 10, b"paren")
    put(c, mine, a, len(mine) - 7, b"child!!")
    for proc, mirror in ((p, want), (c, mine), (g, theirs)):
        same(proc, a, mirror)
    k.check()
    c.exit(0)
    p.wait(c.pid)
    same(g, a, theirs)
    put(g, theirs, a, 0, b"orphan")
    same(g, a, theirs)
    same(p, a, want)
    k.check()
    g.exit(0)
    p.wait(g.pid)   # reparented to init
    k.check()
    accounting_agrees(p, base, NR)


# ---- exact counters ------------------------------------------------------------------

def test_split_policy_first_write_costs_one_frame_and_one_table(mode: str) -> None:
    k, p, a, want = region(chunks=2, cow="split")
    c = p.fork(mode)
    before = k.statistics()
    put(p, want, a, PMD + 5 * PAGE + 9, b"w")
    assert delta(k, before, "frames_allocated", "tables_allocated", "thp_split_pmd",
                 "pages_copied", "thp_copied") == (2, 1, 1, 1, 0)
    assert not huge(p, a + PMD) and huge(p, a) and huge(c, a + PMD)
    assert p.mm.statistics().anon_huge_bytes == PMD
    assert p.mm.translate(a + PMD + 5 * PAGE) & PTE_W
    assert not p.mm.translate(a + PMD + 6 * PAGE) & PTE_W  # the other subpages: still shared
    assert pfn(p, a + PMD + 6 * PAGE) == pfn(c, a + PMD + 6 * PAGE)
    k.check()
    before = k.statistics()
    put(p, want, a, PMD + 6 * PAGE, b"x")  # next page: just one more frame, no table
    assert delta(k, before, "frames_allocated", "tables_allocated", "thp_split_pmd",
                 "pages_copied") == (1, 0, 0, 1)
    same(p, a, want)
    same(c, a, content(2 * NR))
    k.check()


def test_copy_huge_policy_copies_512_pages(mode: str) -> None:
    k, p, a, want = region(chunks=2, cow="copy-huge")
    c = p.fork(mode)
    before = k.statistics()
    put(p, want, a, 77, b"w")
    assert delta(k, before, "frames_allocated", "tables_allocated", "thp_split_pmd",
                 "pages_copied", "thp_copied") == (NR, 0, 0, NR, 1)
    assert huge(p, a) and huge(c, a) and pfn(p, a) != pfn(c, a)
    assert p.mm.translate(a) & PTE_W
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    k.check()
    before = k.statistics()
    mine = content(2 * NR)
    put(c, mine, a, 0, b"c")  # the child is now the old huge page's only user
    assert delta(k, before, "frames_allocated", "pages_copied") == (0, 0)
    assert k.statistics().faults.wp_reuse == before.faults.wp_reuse + 1
    same(p, a, want)
    same(c, a, mine)
    k.check()


def test_sole_owner_reuses_the_huge_page_after_the_child_exits(mode: str, cow: str) -> None:
    k, p, a, want = region(chunks=2, cow=cow)
    c = p.fork(mode)
    c.exit(0)
    p.wait(c.pid)
    k.check()
    leaf = pfn(p, a)
    assert not p.mm.translate(a) & PTE_W  # fork write-protected it
    before = k.statistics()
    huge_before = p.mm.statistics().anon_huge_bytes
    put(p, want, a, 3 * PAGE, b"mine")
    assert delta(k, before, "frames_allocated", "pages_copied", "thp_copied",
                 "thp_split_pmd") == (0, 0, 0, 0)
    assert k.statistics().faults.wp_reuse == before.faults.wp_reuse + 1
    assert p.mm.statistics().anon_huge_bytes == huge_before == 2 * PMD
    assert huge(p, a) and pfn(p, a) == leaf and p.mm.translate(a) & PTE_W
    same(p, a, want)


def test_fork_copies_a_leaf_as_one_entry(mode: str) -> None:
    k, p, a, want = region(chunks=4)
    before = k.statistics()
    c = p.fork(mode)
    # one entry per 2 MiB; the child gets a pgd, a pud and a pmd table, no pte table
    assert delta(k, before, "ptes_copied", "tables_allocated", "tables_shared",
                 "frames_allocated") == (4, 3, 0, 3)
    assert c.mm.statistics().anon_huge_bytes == 4 * PMD
    assert c.mm.statistics().pagetable_bytes == 3 * PAGE
    for i in range(4):
        assert pfn(c, a + i * PMD) == pfn(p, a + i * PMD)
        assert not p.mm.translate(a + i * PMD) & PTE_W
    same(c, a, want)
    accounting_agrees(c, a, 4 * NR)


# ---- splitting only what changes -------------------------------------------------------

def test_partial_munmap_splits_only_the_affected_chunk() -> None:
    k, p, a, want = region(chunks=3)
    before = k.statistics()
    p.mm.munmap(a + PMD + 100 * PAGE, PAGE)
    assert delta(k, before, "thp_split_pmd", "frames_used", "anon_frames",
                 "pagetable_frames") == (1, 0, -1, 1)
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    assert huge(p, a) and not huge(p, a + PMD) and huge(p, a + 2 * PMD)
    assert p.mm.translate(a + PMD + 100 * PAGE) == 0
    same(p, a, want[:PMD + 100 * PAGE])
    same(p, a + PMD + 101 * PAGE, want[PMD + 101 * PAGE:])
    accounting_agrees(p, a, 3 * NR)
    k.check()


def test_partial_mprotect_splits_only_the_affected_chunk() -> None:
    k, p, a, want = region(chunks=3)
    before = k.statistics()
    p.mm.mprotect(a + 2 * PMD - PAGE, 2 * PAGE, mmap.PROT_READ)  # across chunks 1 and 2
    assert delta(k, before, "thp_split_pmd", "anon_frames") == (2, 0)
    assert p.mm.statistics().anon_huge_bytes == PMD
    assert huge(p, a) and not huge(p, a + PMD) and not huge(p, a + 2 * PMD)
    for addr in (a + 2 * PMD - PAGE, a + 2 * PMD):
        assert not p.mm.translate(addr) & PTE_W
        with pytest.raises(OSError) as ei:
            p.mm.write(addr, b"x")
        assert ei.value.errno == errno.EFAULT
    assert p.mm.translate(a + 2 * PMD - 2 * PAGE) & PTE_W
    same(p, a, want)
    put(p, want, a, 2 * PMD - 2 * PAGE, b"still writable")
    same(p, a, want)
    accounting_agrees(p, a, 3 * NR)
    k.check()


def test_whole_chunk_munmap_frees_all_512_frames() -> None:
    k, p, a, want = region(chunks=3)
    used = k.statistics().frames_used
    before = k.statistics()
    p.mm.munmap(a + PMD, PMD)
    assert k.statistics().frames_used == used - NR
    assert delta(k, before, "thp_split_pmd", "frames_freed") == (0, NR)
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    same(p, a, want[:PMD])
    same(p, a + 2 * PMD, want[2 * PMD:])
    k.check()
    p.mm.munmap(a, 3 * PMD)
    assert k.statistics().anon_frames == 0
    k.check()


def test_whole_chunk_mprotect_keeps_the_leaf() -> None:
    k, p, a, want = region(chunks=2)
    before = k.statistics()
    p.mm.mprotect(a, PMD, mmap.PROT_READ)
    assert huge(p, a) and not p.mm.translate(a) & PTE_W
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    with pytest.raises(OSError):
        p.mm.write(a + 5, b"x")
    p.mm.mprotect(a, PMD, RW | mmap.PROT_EXEC)
    assert not p.mm.translate(a) & (1 << 63)  # NX cleared on the leaf
    p.mm.mprotect(a, PMD, RW)
    assert p.mm.translate(a) & (1 << 63)
    put(p, want, a, 5, b"x")  # the only user: made writable in place
    assert delta(k, before, "thp_split_pmd", "frames_allocated", "pages_copied") == (0, 0, 0)
    assert huge(p, a) and p.mm.translate(a) & PTE_W
    same(p, a, want)
    k.check()


def test_madvise_dontneed_of_part_and_of_all_of_a_leaf() -> None:
    k, p, a, want = region(chunks=2)
    before = k.statistics()
    p.mm.madvise(a + 10 * PAGE, 10 * PAGE, mmap.MADV_DONTNEED)
    assert delta(k, before, "thp_split_pmd", "anon_frames") == (1, -10)
    want[10 * PAGE:20 * PAGE] = bytes(10 * PAGE)
    same(p, a, want)
    assert p.mm.statistics().anon_huge_bytes == PMD
    k.check()
    before = k.statistics()
    p.mm.madvise(a + PMD, PMD, mmap.MADV_DONTNEED)  # the whole leaf: 512 frames go
    assert delta(k, before, "thp_split_pmd", "anon_frames") == (0, -NR)
    assert p.mm.statistics().anon_huge_bytes == 0 and p.mm.translate(a + PMD) == 0
    k.check()
    before = k.statistics()
    want[PMD:] = bytes(PMD)
    put(p, want, a, PMD + 3, b"again")  # the empty chunk gets a new huge page
    assert delta(k, before, "thp_fault_alloc", "anon_frames") == (1, NR)
    same(p, a, want)
    accounting_agrees(p, a, 2 * NR)
    k.check()


def test_dontneed_in_a_child_leaves_the_parents_huge_page(cow: str) -> None:
    k, p, a, want = region(chunks=1, cow=cow)
    c = p.fork()
    c.mm.madvise(a + PAGE, PAGE, mmap.MADV_DONTNEED)
    c.mm.madvise(a + PMD - PAGE, PAGE, spawnfd.MADV_WIPEONFORK)
    mine = bytearray(want)
    mine[PAGE:2 * PAGE] = bytes(PAGE)
    same(c, a, mine)
    assert huge(p, a)
    same(p, a, want)
    g = c.fork()
    mine_g = bytearray(mine)
    mine_g[PMD - PAGE:] = bytes(PAGE)
    same(g, a, mine_g)
    put(p, want, a, PAGE, b"parent")
    for proc, m in ((p, want), (c, mine), (g, mine_g)):
        same(proc, a, m)
    k.check()


# ---- eligibility -----------------------------------------------------------------------

@pytest.mark.parametrize("thp, advice, expect", [
    ("never", None, False),
    ("never", mmap.MADV_HUGEPAGE, False),
    ("madvise", None, False),
    ("madvise", mmap.MADV_HUGEPAGE, True),
    ("madvise", mmap.MADV_NOHUGEPAGE, False),
    ("always", None, True),
    ("always", mmap.MADV_NOHUGEPAGE, False),
    ("always", mmap.MADV_HUGEPAGE, True),
])
def test_thp_modes_and_madvise(thp: str, advice: int | None, expect: bool) -> None:
    k, p = boot(thp=thp)
    a = p.mm.mmap(2 * PMD, RW, FIXED, addr=BASE)
    if advice is not None:
        p.mm.madvise(a, 2 * PMD, advice)
    want = stamp(p, a, 2 * NR)
    st = k.statistics()
    assert st.thp_fault_alloc == (2 if expect else 0)
    assert st.thp_fault_fallback == 0
    assert p.mm.statistics().anon_huge_bytes == (2 * PMD if expect else 0)
    assert huge(p, a) == expect
    same(p, a, want)
    accounting_agrees(p, a, 2 * NR)
    k.check()


def test_hugepage_advice_on_half_a_mapping_and_later_changes() -> None:
    k, p = boot(thp="madvise")
    a = p.mm.mmap(4 * PMD, RW, FIXED, addr=BASE)
    p.mm.madvise(a + 2 * PMD, 2 * PMD, mmap.MADV_HUGEPAGE)
    assert len(p.mm.maps().splitlines()) == 2  # the flag splits the vma
    want = stamp(p, a, 4 * NR)
    assert [huge(p, a + i * PMD) for i in range(4)] == [False, False, True, True]
    # NOHUGEPAGE later keeps the huge pages there (as Linux does); only new faults change
    p.mm.madvise(a + 2 * PMD, 2 * PMD, mmap.MADV_NOHUGEPAGE)
    assert huge(p, a + 2 * PMD)
    p.mm.madvise(a + 3 * PMD, PMD, mmap.MADV_DONTNEED)
    want[3 * PMD:] = bytes(PMD)
    put(p, want, a, 3 * PMD, b"refault")
    assert not huge(p, a + 3 * PMD)
    p.mm.madvise(a, PMD, mmap.MADV_HUGEPAGE)  # a chunk with 4 KiB pages stays as it is
    put(p, want, a, 9, b"x")
    assert not huge(p, a)
    same(p, a, want)
    accounting_agrees(p, a, 4 * NR)
    k.check()


def test_unaligned_vma_ends_get_small_pages() -> None:
    k, p = boot()
    a = p.mm.mmap(3 * PMD, RW, FIXED, addr=BASE + PAGE)  # [BASE+4K, BASE+6M+4K)
    want = stamp(p, a, 3 * NR)
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    assert not huge(p, a) and not huge(p, BASE + PMD - PAGE)
    assert huge(p, BASE + PMD) and huge(p, BASE + 2 * PMD)
    assert not huge(p, BASE + 3 * PMD)
    same(p, a, want)
    accounting_agrees(p, a, 3 * NR)
    k.check()


def test_mmap_places_big_anonymous_mappings_on_2mib_boundaries() -> None:
    k, p = boot()
    small = p.mm.mmap(3 * PAGE, RW, ANON)
    big = p.mm.mmap(PMD + PAGE, RW, ANON)
    assert small % PMD != 0 and big % PMD == 0
    shared = p.mm.mmap(PMD, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    p.mm.populate(big, PMD + PAGE, write=True)
    p.mm.populate(shared, PMD, write=True)
    assert huge(p, big) and not huge(p, big + PMD)
    assert not huge(p, shared)  # shared memory has no huge pages
    assert p.mm.statistics().anon_huge_bytes == PMD
    k.check()
    hinted = p.mm.mmap(PMD, RW, ANON, addr=BASE + PAGE)  # a free hint is taken as it is
    assert hinted == BASE + PAGE
    again = p.mm.mmap(PMD, RW, ANON, addr=BASE + PAGE)  # taken: top-down, aligned
    assert again != hinted and again % PMD == 0
    k2, q = boot(thp="never")
    q.mm.mmap(3 * PAGE, RW, ANON)
    assert q.mm.mmap(PMD, RW, ANON) % PMD != 0  # never: no alignment
    k2.check()


def test_private_file_mappings_get_no_huge_pages() -> None:
    k, p = boot()
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT)
    p.ftruncate(fd, 2 * PMD)
    a = p.mm.mmap(2 * PMD, RW, mmap.MAP_PRIVATE | spawnfd.MAP_FIXED, fd, 0, addr=BASE)
    p.mm.populate(a, 2 * PMD, write=True, stamp=3)
    assert p.mm.statistics().anon_huge_bytes == 0 and k.statistics().thp_fault_alloc == 0
    assert p.mm.read(a + PMD, 8) == stamp_bytes(3, 8)
    k.check()


# ---- fallback --------------------------------------------------------------------------

def test_fallback_when_the_order9_allocation_fails() -> None:
    k, p = boot()
    a = p.mm.mmap(2 * PMD, RW, FIXED, addr=BASE)
    p.mm.write(a, b"first")  # the upper tables exist now: the next allocation is order 9
    before = k.statistics()
    k.fail_nth_allocation(1)
    p.mm.write(a + PMD + 5, b"small")
    k.fail_nth_allocation(0)
    assert delta(k, before, "thp_fault_fallback", "thp_fault_alloc", "anon_frames",
                 "tables_allocated") == (1, 0, 1, 1)
    assert not huge(p, a + PMD) and huge(p, a)
    k.check()
    want = bytearray(PMD)
    want[5:10] = b"small"
    same(p, a + PMD, want)
    want = stamp(p, a + PMD, NR, seed=77)  # the rest of the chunk: 4 KiB pages, no retry
    assert k.statistics().thp_fault_alloc == before.thp_fault_alloc
    assert p.mm.statistics().anon_huge_bytes == PMD
    same(p, a + PMD, want)
    accounting_agrees(p, a, 2 * NR)
    k.check()


def test_fallback_when_memory_is_fragmented() -> None:
    k, p = boot(memory="16M")
    size = 16 << 20
    a = p.mm.mmap(size, RW, ANON | MAP_NORESERVE)
    p.mm.madvise(a, size, mmap.MADV_NOHUGEPAGE)
    with pytest.raises(OSError) as ei:
        p.mm.populate(a, size, write=True, stamp=1)  # until memory runs out
    assert ei.value.errno == errno.ENOMEM
    assert k.statistics().thp_fault_alloc == 0
    assert k.statistics().frames_used == k.statistics().frames_total
    present = [i for i in range(size // PAGE) if p.mm.translate(a + i * PAGE) & 1]
    for i in present[::2]:  # every other page: single free frames, no aligned 2 MiB block
        p.mm.madvise(a + i * PAGE, PAGE, mmap.MADV_DONTNEED)
    k.check()
    free = k.statistics().frames_total - k.statistics().frames_used
    assert free >= NR * 2
    b = p.mm.mmap(PMD, RW, ANON)
    assert b % PMD == 0
    before = k.statistics()
    p.mm.write(b + 100, b"fragmented")
    assert delta(k, before, "thp_fault_fallback", "thp_fault_alloc") == (1, 0)
    assert not huge(p, b)
    want = bytearray(PMD)
    want[100:110] = b"fragmented"
    same(p, b, want)
    for i in present[1::2][:50]:  # the pages left alone kept their stamp
        assert p.mm.read(a + i * PAGE, 8) == stamp_bytes(1, 8)
    k.check()
    # what was freed coalesces again: unmap everything and a huge page fits
    p.mm.munmap(a, size)
    p.mm.munmap(b, PMD)
    c = p.mm.mmap(PMD, RW, ANON)
    p.mm.write(c, b"huge again")
    assert huge(p, c)
    k.check()


def test_copy_huge_falls_back_to_split_when_no_block_is_free() -> None:
    k, p, a, want = region(chunks=1, cow="copy-huge")
    c = p.fork()
    before = k.statistics()
    k.fail_nth_allocation(1)
    put(p, want, a, 0, b"split instead")
    k.fail_nth_allocation(0)
    assert delta(k, before, "thp_copied", "thp_split_pmd", "pages_copied") == (0, 1, 1)
    same(p, a, want)
    same(c, a, content(NR))
    k.check()


@pytest.mark.parametrize("nth", [1, 2])
def test_out_of_memory_during_a_split_cow_changes_nothing(nth: int) -> None:
    # split: allocation 1 is the page table of the split, 2 the copied page
    k, p, a, want = region(chunks=1, cow="split")
    c = p.fork()
    k.fail_nth_allocation(nth)
    with pytest.raises(OSError) as ei:
        p.mm.write(a + 9, b"no memory")
    k.fail_nth_allocation(0)
    assert ei.value.errno == errno.ENOMEM
    k.check()
    same(p, a, want)
    same(c, a, want)
    put(p, want, a, 9, b"now it fits")
    same(p, a, want)
    same(c, a, content(NR))
    k.check()


# ---- cow-pt, map_cow, exit -------------------------------------------------------------

@pytest.mark.parametrize("cow_mode", ["cow-pt", "cow-pt-eager"])
def test_cow_pt_shares_tables_that_came_from_a_split(cow_mode: str, cow: str) -> None:
    k, p, a, want = region(chunks=3, cow=cow)
    for i in (0, 1):  # chunks 0 and 1 split into tables, chunk 2 stays a leaf
        p.mm.mprotect(a + i * PMD + 3 * PAGE, PAGE, mmap.PROT_READ)
        p.mm.mprotect(a + i * PMD + 3 * PAGE, PAGE, RW)
    assert p.mm.statistics().anon_huge_bytes == PMD
    before = k.statistics()
    c = p.fork(cow_mode)
    assert delta(k, before, "tables_shared", "ptes_copied") == (2, 1)
    assert c.mm.statistics().shared_pagetable_bytes == 2 * PAGE
    k.check()
    mine = bytearray(want)
    put(c, mine, a, 5 * PAGE, b"child in a shared table")
    put(p, want, a, PMD + 5 * PAGE, b"parent in the other")
    put(p, want, a, 2 * PMD + 5 * PAGE, b"parent in the leaf")
    put(c, mine, a, 2 * PMD + 6 * PAGE, b"child in the leaf")
    put(p, want, a, 5 * PAGE + 1, b"parent after the child")
    for proc, m in ((p, want), (c, mine)):
        same(proc, a, m)
    k.check()
    c.exit(0)
    p.wait(c.pid)
    k.check()
    same(p, a, want)
    accounting_agrees(p, a, 3 * NR)


def test_map_cow_copies_whole_leaves_and_splits_partial_ones(cow: str) -> None:
    k, p, a, want = region(chunks=4, cow=cow)
    lo, hi = a + 256 * PAGE, a + 3 * PMD + 256 * PAGE  # half of 0, all of 1 and 2, half of 3
    before = k.statistics()
    b = p.process_create()
    b.map_cow(p, lo, hi - lo)
    assert delta(k, before, "thp_split_pmd") == (2,)
    assert [huge(p, a + i * PMD) for i in range(4)] == [False, True, True, False]
    e = b.process
    assert [huge(e, lo)] + [huge(e, a + i * PMD) for i in (1, 2)] + [huge(e, hi - PAGE)] == \
        [False, True, True, False]
    assert e.mm.statistics().anon_huge_bytes == 2 * PMD
    k.check()
    mine = bytearray(want[lo - a:hi - a])
    assert b.read(lo, len(mine)) == mine
    b.write(lo + PMD, b"embryo writes")
    mine[PMD:PMD + 13] = b"embryo writes"
    put(p, want, a, PMD + 256 * PAGE, b"creator writes")
    put(p, want, a, 256 * PAGE, b"creator, split chunk")
    k.check()
    assert b.read(lo, len(mine)) == mine
    same(p, a, want)
    b.launch()
    put(e, mine, lo, len(mine) - 4, b"last")
    same(e, lo, mine)
    same(p, a, want)
    e.exit(0)
    b.wait()
    k.check()
    same(p, a, want)


def test_exit_releases_every_huge_page(cow: str) -> None:
    k, p = boot(cow=cow)
    baseline = k.statistics().frames_used
    a = p.mm.mmap(4 * PMD, RW, FIXED, addr=BASE)
    want = stamp(p, a, 4 * NR)
    p.mm.munmap(a + PMD + PAGE, PAGE)  # one chunk split, one page gone
    want[PMD + PAGE:PMD + 2 * PAGE] = bytes(PAGE)  # (not read back: unmapped)
    kids = []
    for mode in FORK_MODES:
        c = p.fork(mode)
        c.mm.write(a + 7, mode.encode())
        c.mm.write(a + 2 * PMD + PAGE, mode.encode())
        g = c.fork()
        g.mm.write(a + 3 * PMD, b"g")
        kids.append((c, g))
    k.check()
    put(p, want, a, 0, b"parent")
    for c, g in kids:
        g.exit(0)
        c.wait(g.pid)
        k.check()
        c.exit(0)
        p.wait(c.pid)
        k.check()
    same(p, a, want[:PMD + PAGE])
    same(p, a + PMD + 2 * PAGE, want[PMD + 2 * PAGE:])
    st, mine = k.statistics(), p.mm.statistics()  # what is left is all the parent's
    assert st.anon_frames == mine.rss_anon_bytes // PAGE
    assert st.pagetable_frames == mine.pagetable_bytes // PAGE
    accounting_agrees(p, a, 4 * NR)
    p.mm.munmap(a, 4 * PMD)
    assert k.statistics().frames_used == baseline
    k.check()


def test_exit_in_either_order_of_two_sharers_of_huge_pages() -> None:
    # A child that still maps every huge page at exit (never wrote): nothing may be freed
    # early nor leak, whichever of the two exits first.
    for first in ("parent", "child"):
        k, init = boot()
        baseline = k.statistics().frames_used
        p = init.fork()
        a = p.mm.mmap(2 * PMD, RW, FIXED, addr=BASE)
        want = stamp(p, a, 2 * NR)
        c = p.fork()
        order = (p, c) if first == "parent" else (c, p)
        order[0].exit(0)
        k.check()
        same(order[1], a, want)
        put(order[1], want, a, 1, b"survivor")
        same(order[1], a, want)
        order[1].exit(0)
        init.wait(-1)
        init.wait(-1)
        assert k.statistics().frames_used == baseline
        k.check()


# ---- more ways in and out ------------------------------------------------------------

def test_populate_write_of_a_shared_huge_page(cow: str) -> None:
    # MADV_POPULATE_WRITE over a whole shared chunk: split copies 512 pages one by one (and
    # one table), copy-huge one huge page; the child keeps the old bytes either way.
    k, p, a, want = region(chunks=1, cow=cow)
    c = p.fork()
    before = k.statistics()
    p.mm.populate(a, PMD, write=True, stamp=0xABC)
    if cow == "split":
        assert delta(k, before, "pages_copied", "thp_split_pmd", "tables_allocated",
                     "frames_allocated") == (NR, 1, 1, NR + 1)
    else:
        assert delta(k, before, "pages_copied", "thp_copied", "tables_allocated",
                     "frames_allocated") == (NR, 1, 0, NR)
    same(p, a, stamp_bytes(0xABC, PMD))
    same(c, a, want)
    k.check()


def test_fork_out_of_memory_part_way_keeps_the_huge_pages() -> None:
    k, p, a, want = region(chunks=3)
    p.mm.munmap(a + PMD + 8 * PAGE, PAGE)  # one chunk as a table, two as leaves
    want[PMD + 8 * PAGE:PMD + 9 * PAGE] = bytes(PAGE)
    p.mm.mmap(PAGE, RW, FIXED, addr=a + PMD + 8 * PAGE)  # zero again, refaulted
    maps, used = p.mm.maps(), k.statistics().frames_used
    huge_bytes = 2 * PMD
    for mode in FORK_MODES:
        failures = 0
        for n in range(1, 20):
            k.fail_nth_allocation(n)
            try:
                c = p.fork(mode)
            except OSError as e:
                assert e.errno == errno.ENOMEM
                failures += 1
                assert p.mm.maps() == maps and k.statistics().frames_used == used
                assert p.mm.statistics().anon_huge_bytes == huge_bytes
                k.check()
                continue
            finally:
                k.fail_nth_allocation(0)
            break
        assert failures >= 3
        same(c, a, want)
        snap = bytes(want)
        put(p, want, a, 2 * PMD + 1, mode.encode())
        same(c, a, snap)
        c.exit(0)
        p.wait(c.pid)
        used = k.statistics().frames_used
        huge_bytes = p.mm.statistics().anon_huge_bytes
        k.check()
    assert huge_bytes == PMD  # the parent's write split chunk 2 (shared with the child)
    same(p, a, want)


@pytest.mark.parametrize("op", ["munmap", "mprotect", "dontneed", "dontfork", "map-fixed"])
def test_out_of_memory_for_the_split_changes_nothing(op: str) -> None:
    k, p, a, want = region(chunks=2)
    used = k.statistics().frames_used
    k.fail_nth_allocation(1)  # the page table a split needs
    with pytest.raises(OSError) as ei:
        if op == "munmap":
            p.mm.munmap(a + PMD + PAGE, PAGE)
        elif op == "mprotect":
            p.mm.mprotect(a + PMD + PAGE, PAGE, mmap.PROT_READ)
        elif op == "dontneed":
            p.mm.madvise(a + PMD + PAGE, PAGE, mmap.MADV_DONTNEED)
        elif op == "dontfork":
            p.mm.madvise(a + PMD + PAGE, PAGE, mmap.MADV_DONTFORK)
        else:
            p.mm.mmap(PAGE, RW, FIXED, addr=a + PMD + PAGE)
    k.fail_nth_allocation(0)
    assert ei.value.errno == errno.ENOMEM
    assert k.statistics().frames_used == used
    assert p.mm.statistics().anon_huge_bytes == 2 * PMD
    assert len(p.mm.maps().splitlines()) == 1
    k.check()
    same(p, a, want)


def test_map_fixed_over_part_of_a_leaf_and_over_all_of_one() -> None:
    k, p, a, want = region(chunks=2)
    p.mm.mmap(4 * PAGE, RW, FIXED, addr=a + 100 * PAGE)
    want[100 * PAGE:104 * PAGE] = bytes(4 * PAGE)
    used = k.statistics().frames_used
    p.mm.mmap(PMD, RW, FIXED, addr=a + PMD)  # the whole second leaf: 512 frames freed
    assert k.statistics().frames_used == used - NR
    want[PMD:] = bytes(PMD)
    assert p.mm.statistics().anon_huge_bytes == 0
    put(p, want, a, PMD + 5, b"new")
    assert huge(p, a + PMD)  # the new vma covers the chunk: a new huge page
    same(p, a, want)
    accounting_agrees(p, a, 2 * NR)
    k.check()


def test_wipeonfork_and_dontfork_of_whole_chunks() -> None:
    k, p, a, want = region(chunks=3)
    p.mm.madvise(a, PMD, spawnfd.MADV_WIPEONFORK)
    p.mm.madvise(a + 2 * PMD, PMD, mmap.MADV_DONTFORK)
    assert p.mm.statistics().anon_huge_bytes == 3 * PMD  # flags only: no split
    c = p.fork()
    assert c.mm.statistics().anon_huge_bytes == PMD
    mine = bytearray(PMD) + want[PMD:2 * PMD]
    same(c, a, mine)
    with pytest.raises(OSError):
        c.mm.read(a + 2 * PMD, 1)
    put(c, mine, a, 9, b"wiped, then written")
    assert huge(c, a)
    same(p, a, want)
    same(c, a, mine)
    k.check()


def test_map_cow_out_of_memory_rolls_back(cow: str) -> None:
    k, p, a, want = region(chunks=3, cow=cow)
    lo, hi = a + 100 * PAGE, a + 3 * PMD
    for n in range(1, 12):
        b = p.process_create()
        k.fail_nth_allocation(n)
        try:
            b.map_cow(p, lo, hi - lo)
        except OSError as e:
            assert e.errno == errno.ENOMEM
            assert b.process.mm.maps() == ""
            k.check()
            same(p, a, want)
            b.abort()
            continue
        finally:
            k.fail_nth_allocation(0)
        assert b.read(lo, hi - lo) == want[lo - a:]
        b.abort()
        break
    else:
        raise AssertionError("map_cow never fitted")
    k.check()
    same(p, a, want)
