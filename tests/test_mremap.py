"""mremap(2) as Linux 6.18 has it. Each scenario runs on the real kernel (in this process, through
ctypes) and in the simulator; the results and errnos, the vma layout (``/proc/self/maps``
relative to a base), the present pages and the bytes read back must be the same. Then what the
host cannot show: pages keep their identity, COW after fork under every fork mode, shared page
tables, huge pages, commit accounting, injected ENOMEM, and a real program whose realloc moves
its buffer with mremap."""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spawnfd
from spawnfd.sim.machine import open_kernel

from .linux_world import NONE, RO, RW, HostWorld, SimWorld

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host is Linux")

PAGE = 4096
PMD = 2 << 20
MAYMOVE, FIXED, DONTUNMAP = spawnfd.MREMAP_MAYMOVE, spawnfd.MREMAP_FIXED, spawnfd.MREMAP_DONTUNMAP
ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS


def r(w: Any, *args: Any) -> str:
    """The result of w.mremap: the page it returned (inside the world), 'away' (outside: a
    free area the kernel chose), or the errno's name."""
    try:
        page = w.mremap(*args)
    except OSError as e:
        return errno.errorcode[e.errno or 0]
    return str(page) if 0 <= page < w.npages else "away"


A = lambda w: w.map(0, 4, RW)  # noqa: E731


def two(w: Any) -> None:
    w.map(0, 4, RW); w.map(4, 4, RO)


def sc(setup: Callable[[Any], Any], *calls: tuple[Any, ...], read: tuple[int, int] | None = None
       ) -> Callable[[Any], list[str]]:
    def run(w: Any) -> list[str]:
        setup(w)
        out = [r(w, *c) for c in calls]
        if read:
            out.append(repr(w.read(*read)))
        return out
    return run


def fill(w: Any, first: int, n: int, kind: str = "anon", tag: bytes = b"p") -> None:
    w.map(first, n, RW, kind)
    for i in range(n):
        w.write(first + i, tag + bytes([65 + i]) * 7)


SCENARIOS: dict[str, Callable[[Any], list[str]]] = {
    # errno rules (check_mremap_params, then the vma)
    "new_len_0": sc(A, (0, 4, 0)),
    "bad_flags": sc(A, (0, 4, 4, 8)),
    "fixed_without_maymove": sc(A, (0, 4, 4, FIXED, 20)),
    "dontunmap_without_maymove": sc(A, (0, 4, 4, DONTUNMAP)),
    "dontunmap_resizing": sc(A, (0, 4, 5, DONTUNMAP | MAYMOVE)),
    "overlap": sc(A, (0, 4, 4, MAYMOVE | FIXED, 2), (0, 4, 4, MAYMOVE | FIXED, 0),
                  (0, 4, 8, MAYMOVE | FIXED, 3), (0, 4, 2, MAYMOVE | FIXED, 3)),
    "unmapped": sc(A, (10, 4, 4), (10, 4, 2), (10, 4, 6), (10, 4, 6, MAYMOVE)),
    "einval_before_efault": sc(A, (10, 4, 0), (10, 4, 4, FIXED, 20),
                               (10, 4, 4, MAYMOVE | FIXED, 11), (10, 4, 5, MAYMOVE | DONTUNMAP)),
    "across_end": sc(A, (2, 4, 6), (2, 4, 6, MAYMOVE), (2, 4, 6, MAYMOVE | FIXED, 20)),
    "across_two_vmas": sc(two, (0, 8, 10), (0, 8, 10, MAYMOVE)),
    "grow_blocked": sc(two, (0, 4, 6)),
    "grow_inside_vma": sc(lambda w: w.map(0, 8, RW), (0, 4, 6), (2, 2, 3)),
    "old_len_0_private": sc(A, (0, 0, 4, MAYMOVE), (0, 0, 4)),
    # shrink, no change, grow in place
    "shrink": sc(A, (0, 4, 2)),
    "shrink_middle": sc(A, (1, 2, 1)),
    "shrink_across_end": sc(A, (2, 4, 1)),
    "shrink_across_vmas": sc(two, (0, 8, 2)),
    "same_size": sc(two, (0, 4, 4), (2, 4, 4), (0, 8, 8), (0, 4, 4, MAYMOVE, 30)),
    "grow_in_place": sc(lambda w: fill(w, 0, 4), (0, 4, 6), read=(0, 4 * PAGE)),
    "grow_prot_none": sc(lambda w: w.map(0, 4, NONE), (0, 4, 6)),
    "grow_merges_next": sc(lambda w: (w.map(0, 4, RW), w.map(6, 4, RW)), (0, 4, 6)),
    "grow_next_faulted": sc(lambda w: (w.map(0, 4, RW), w.map(6, 4, RW), w.populate(6, 4, True)),
                            (0, 4, 6)),
    "grow_both_faulted": sc(lambda w: (w.map(0, 4, RW), w.map(6, 4, RW), w.populate(0, 4, True),
                                       w.populate(6, 4, True)), (0, 4, 6)),
    "grow_file": sc(lambda w: w.map(0, 4, RW, "file"), (0, 4, 6)),
    "grow_file_past_eof": sc(lambda w: w.map(0, 4, RW, "file", 10), (0, 4, 10)),
    "grow_shared_anon": sc(lambda w: w.map(0, 4, RW, "shanon"), (0, 4, 6)),
    # moves
    "move_populated": sc(lambda w: fill(w, 0, 4), (0, 4, 4, MAYMOVE | FIXED, 20),
                         read=(20, 4 * PAGE)),
    "move_and_grow": sc(lambda w: fill(w, 0, 4), (0, 4, 6, MAYMOVE | FIXED, 20),
                        read=(20, 6 * PAGE)),
    "move_and_shrink": sc(lambda w: fill(w, 0, 4), (0, 4, 2, MAYMOVE | FIXED, 20),
                          read=(20, 2 * PAGE)),
    "move_read_only": sc(lambda w: (w.map(0, 4, RO), w.populate(0, 2)),
                         (0, 4, 6, MAYMOVE | FIXED, 20)),
    "move_middle": sc(lambda w: fill(w, 0, 8), (2, 2, 2, MAYMOVE | FIXED, 20),
                      read=(20, 2 * PAGE)),
    "move_middle_grow": sc(lambda w: w.map(0, 8, RW), (2, 2, 3, MAYMOVE | FIXED, 20)),
    "move_over_mapping": sc(lambda w: (fill(w, 0, 4), w.map(20, 4, RO)),
                            (0, 4, 6, MAYMOVE | FIXED, 18), read=(18, 4 * PAGE)),
    "move_beside_old_tail": sc(A, (0, 2, 4, MAYMOVE | FIXED, 3)),
    "grow_must_move": sc(lambda w: (fill(w, 0, 4), w.map(4, 4, RO)), (0, 4, 6, MAYMOVE)),
    "move_unfaulted_merges": sc(lambda w: (w.map(0, 4, RW), w.map(20, 4, RW)),
                                (0, 4, 4, MAYMOVE | FIXED, 24), (24, 4, 4, MAYMOVE | FIXED, 16)),
    "move_faulted_no_merge": sc(lambda w: (w.map(0, 4, RW), w.map(20, 4, RW),
                                           w.populate(0, 4, True)),
                                (0, 4, 4, MAYMOVE | FIXED, 24)),
    "move_unfaulted_beside_faulted": sc(lambda w: (w.map(0, 4, RW), w.map(20, 4, RW),
                                                   w.populate(20, 4, True)),
                                        (0, 4, 4, MAYMOVE | FIXED, 24)),
    "move_there_and_back": sc(lambda w: (fill(w, 0, 8)), (4, 4, 4, MAYMOVE | FIXED, 24),
                              (24, 4, 4, MAYMOVE | FIXED, 4), read=(0, 8 * PAGE)),
    "move_file": sc(lambda w: fill(w, 0, 4, "file"), (1, 2, 3, MAYMOVE | FIXED, 20),
                    read=(20, 3 * PAGE)),
    "move_file_private": sc(lambda w: fill(w, 0, 4, "file-priv"), (0, 4, 4, MAYMOVE | FIXED, 20),
                            read=(20, 4 * PAGE)),
    "move_shared_anon": sc(lambda w: fill(w, 0, 4, "shanon"), (0, 4, 4, MAYMOVE | FIXED, 20),
                           read=(20, 4 * PAGE)),
    "old_len_0_shared": sc(lambda w: fill(w, 0, 4, "shanon"), (1, 0, 2, MAYMOVE | FIXED, 20),
                           (1, 0, 2), read=(20, 2 * PAGE)),
    "old_len_0_file": sc(lambda w: fill(w, 0, 4, "file"), (1, 0, 2, MAYMOVE | FIXED, 20),
                         read=(20, 2 * PAGE)),
    # several vmas in one pure move (Linux 6.17)
    "multi_move": sc(two, (0, 8, 8, MAYMOVE | FIXED, 20)),
    "multi_move_gap": sc(lambda w: (w.map(0, 4, RW), w.map(6, 4, RO)),
                         (0, 10, 10, MAYMOVE | FIXED, 20)),
    "multi_move_trailing_gap": sc(lambda w: (w.map(0, 4, RW), w.map(4, 2, RO)),
                                  (0, 10, 10, MAYMOVE | FIXED, 20)),
    "multi_move_leading_gap": sc(lambda w: (w.map(0, 4, RW), w.map(6, 4, RO)),
                                 (4, 6, 6, MAYMOVE | FIXED, 20), (10, 4, 4, MAYMOVE | FIXED, 20)),
    "multi_move_across_end": sc(A, (2, 4, 4, MAYMOVE | FIXED, 20)),
    "multi_move_resizing": sc(two, (0, 8, 6, MAYMOVE | FIXED, 20)),
    "multi_move_kinds": sc(lambda w: (fill(w, 0, 4), fill(w, 4, 4, "shanon", b"s")),
                           (0, 8, 8, MAYMOVE | FIXED, 20), read=(20, 8 * PAGE)),
    "multi_move_not_fixed": sc(two, (0, 8, 8, MAYMOVE)),
    # MREMAP_DONTUNMAP
    "dontunmap_anon": sc(lambda w: fill(w, 0, 4), (0, 4, 4, MAYMOVE | DONTUNMAP | FIXED, 20),
                         read=(20, 4 * PAGE)),
    "dontunmap_old_reads_zero": sc(lambda w: fill(w, 0, 4),
                                   (0, 4, 4, MAYMOVE | DONTUNMAP | FIXED, 20), read=(0, PAGE)),
    "dontunmap_hint": sc(A, (0, 4, 4, MAYMOVE | DONTUNMAP, 30)),
    "dontunmap_partial": sc(lambda w: fill(w, 0, 4), (1, 2, 2, MAYMOVE | DONTUNMAP | FIXED, 20),
                            read=(0, 4 * PAGE)),
    "dontunmap_shared": sc(lambda w: fill(w, 0, 4, "shanon"),
                           (0, 4, 4, MAYMOVE | DONTUNMAP | FIXED, 20), read=(0, 4 * PAGE)),
    "dontunmap_file": sc(lambda w: fill(w, 0, 4, "file"),
                         (0, 4, 4, MAYMOVE | DONTUNMAP | FIXED, 20), read=(0, 4 * PAGE)),
    "dontunmap_over_mapping": sc(lambda w: (A(w), w.map(20, 4, RO)),
                                 (0, 4, 4, MAYMOVE | DONTUNMAP | FIXED, 20)),
    "dontunmap_multi": sc(two, (0, 8, 8, MAYMOVE | FIXED | DONTUNMAP, 20)),
}


def run(world: Any, scenario: Callable[[Any], list[str]]) -> tuple[Any, ...]:
    results = scenario(world)
    return results, world.layout(), world.present()


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_as_linux(name: str) -> None:
    host = HostWorld()
    try:
        want = run(host, SCENARIOS[name])
    finally:
        host.close()
    sim = SimWorld()
    try:
        assert run(sim, SCENARIOS[name]) == want
    finally:
        sim.close()


def test_errno_of_silly_lengths_and_addresses() -> None:
    k = spawnfd.Kernel("64M")
    mm = k.init.mm
    a = mm.mmap(4 * PAGE, RW, ANON)
    cases = [(a + 1, PAGE, 2 * PAGE, 0, 0), (a, 1 << 63, 4 * PAGE, 0, 0),
             (a, 2**64 - PAGE, 4 * PAGE, 0, 0), (a, 4 * PAGE, 2**64 - PAGE, 0, 0),
             (a, 4 * PAGE, 2**64 - 1, MAYMOVE, 0), (a, 4 * PAGE, 4 * PAGE, 3, a + (64 << 20) + 1),
             (a, 4 * PAGE, 4 * PAGE, 3, 0x7ffffffff000 - PAGE), (a, 4 * PAGE, 1 << 52, 0, 0)]
    for args in cases:
        with pytest.raises(OSError) as e:
            mm.mremap(*args)
        assert e.value.errno == errno.EINVAL, args
    assert mm.mremap(a, 4 * PAGE, 5 * PAGE - 7) == a  # lengths round up to pages
    assert len(mm.maps().splitlines()) == 1
    k.check()


# ---- identity, COW, sharing, huge pages ----

def _pfns(mm: Any, addr: int, n: int) -> list[int]:
    return [mm.translate(addr + i * PAGE) >> 12 & ((1 << 40) - 1) for i in range(n)]


@pytest.mark.parametrize("mode", ["copy", "cow-pt", "cow-pt-eager"])
@pytest.mark.parametrize("dest", [PMD, PMD + 5 * PAGE])
def test_move_keeps_frames_and_cow_after_fork(mode: str, dest: int) -> None:
    k = spawnfd.Kernel("256M", fork_mode=mode, thp="never")
    p = k.init
    a = p.mm.mmap(3 * PMD, RW, ANON | spawnfd.MAP_FIXED, addr=0x40000000)
    p.mm.populate(a, 3 * PMD, write=True, stamp=0x1234)
    p.mm.write(a + 5 * PAGE, b"parent")
    c = p.fork()
    before = _pfns(p.mm, a, 8)
    used = k.statistics().frames_used
    new = p.mm.mremap(a, 2 * PMD, 2 * PMD, MAYMOVE | FIXED, 0x80000000 + dest)
    k.check()
    assert _pfns(p.mm, new, 8) == before  # the same frames, nothing copied
    assert k.statistics().frames_used <= used + 8  # a broken table or two, no pages
    assert p.mm.read(new + 5 * PAGE, 6) == b"parent"
    p.mm.write(new + 5 * PAGE, b"moved!")  # COW: the child keeps its copy
    assert c.mm.read(a + 5 * PAGE, 6) == b"parent"
    c.mm.write(a + 6 * PAGE, b"child")
    assert p.mm.read(new + 6 * PAGE, 5) == (0x1234).to_bytes(8, "little")[:5]
    with pytest.raises(OSError) as e:
        p.mm.read(a, 1)
    assert e.value.errno == errno.EFAULT
    k.check()
    c.exit(0)
    p.wait(c.pid)
    k.check()


@pytest.mark.parametrize("aligned", [True, False])
def test_move_huge_pages(aligned: bool) -> None:
    k = spawnfd.Kernel("256M", thp="always")
    p = k.init
    a = p.mm.mmap(4 * PMD, RW, ANON | spawnfd.MAP_FIXED, addr=0x40000000)
    p.mm.populate(a, 4 * PMD, write=True, stamp=77)
    p.mm.write(a + PMD + 3, b"huge")
    assert p.mm.statistics().anon_huge_bytes == 4 * PMD
    dest = 0x80000000 + (0 if aligned else 3 * PAGE)
    new = p.mm.mremap(a, 4 * PMD, 4 * PMD, MAYMOVE | FIXED, dest)
    k.check()
    assert p.mm.read(new + PMD + 3, 4) == b"huge"
    st = p.mm.statistics()
    assert st.anon_huge_bytes == (4 * PMD if aligned else 0)  # moved whole, or split
    assert st.rss_anon_bytes == 4 * PMD
    # a part of a huge page: split, the rest stays huge
    new2 = p.mm.mremap(new + PMD + 16 * PAGE, 8 * PAGE, 8 * PAGE, MAYMOVE | FIXED, 0xc0000000)
    assert p.mm.read(new2 + 0, 8) == (77).to_bytes(8, "little")
    k.check()


def test_move_under_shared_page_tables() -> None:
    k = spawnfd.Kernel("256M", share_pagetables=True)
    p = k.init
    fd = p.open("/tmp/db", os.O_RDWR | os.O_CREAT, 0o644)
    p.ftruncate(fd, 4 * PMD)
    a = p.mm.mmap(4 * PMD, RW, mmap.MAP_SHARED, fd)
    p.mm.populate(a, 4 * PMD, True, stamp=0x55)
    c = p.fork()
    assert c.mm.statistics().shared_pagetable_bytes > 0
    new = c.mm.mremap(a + PMD, 2 * PMD, 2 * PMD, MAYMOVE | FIXED, 0x90000000)
    k.check()
    c.mm.write(new, b"child")
    assert p.mm.read(a + PMD, 5) == b"child"  # still one file
    p.mm.write(a + 2 * PMD, b"parent")
    assert c.mm.read(new + PMD, 6) == b"parent"
    grown = c.mm.mremap(new, 2 * PMD, 3 * PMD, MAYMOVE)
    assert c.mm.read(grown + PMD, 6) == b"parent"
    k.check()


def test_commit_charge_follows_growth() -> None:
    k = spawnfd.Kernel("64M", overcommit=2)
    p = k.init
    before = k.statistics().committed_as
    a = p.mm.mmap(4 * PAGE, RW, ANON)
    assert k.statistics().committed_as == before + 4 * PAGE
    a = p.mm.mremap(a, 4 * PAGE, 8 * PAGE, MAYMOVE)
    assert k.statistics().committed_as == before + 8 * PAGE
    b = p.mm.mremap(a, 8 * PAGE, 8 * PAGE, MAYMOVE | DONTUNMAP)  # the old one loses its charge
    assert k.statistics().committed_as == before + 8 * PAGE
    p.mm.mremap(b, 8 * PAGE, 2 * PAGE)
    assert k.statistics().committed_as == before + 2 * PAGE
    k.check()
    limit = k.statistics().commit_limit
    with pytest.raises(OSError) as e:
        p.mm.mremap(b, 2 * PAGE, limit, MAYMOVE)
    assert e.value.errno == errno.ENOMEM
    assert k.statistics().committed_as == before + 2 * PAGE
    k.check()


@pytest.mark.parametrize("mode", ["copy", "cow-pt", "cow-pt-eager"])
def test_injected_enomem_leaves_the_mm_as_before(mode: str) -> None:
    # the n-th allocation fails inside mremap, for every n until it succeeds: ENOMEM, the maps
    # and content unchanged, check() passing
    calls = [
        lambda mm, a: mm.mremap(a, 3 * PMD, 3 * PMD, MAYMOVE | FIXED, 0x90000000 + 5 * PAGE),
        lambda mm, a: mm.mremap(a + PAGE, PMD, PMD + 8 * PAGE, MAYMOVE | FIXED, 0xa0000000),
        lambda mm, a: mm.mremap(a, 2 * PMD, 4 * PMD, MAYMOVE),  # not at the end: moves
        lambda mm, a: mm.mremap(a + PMD, 4 * PAGE, 4 * PAGE, MAYMOVE | DONTUNMAP, 0xb0000000),
    ]
    for call in calls:
        for n in itertools.count(1):
            k = spawnfd.Kernel("256M", fork_mode=mode, thp="always")
            p = k.init
            a = p.mm.mmap(3 * PMD, RW, ANON | spawnfd.MAP_FIXED, addr=0x40000000)
            p.mm.populate(a, PMD, write=True, stamp=9)
            p.mm.populate(a + PMD, 2 * PMD - 64 * PAGE, write=True, stamp=10)
            p.mm.write(a + 5, b"five")
            c = p.fork()
            maps, committed = p.mm.maps(), k.statistics().committed_as
            k.fail_nth_allocation(n)
            try:
                call(p.mm, a)
            except OSError as e:
                assert e.errno == errno.ENOMEM
                k.fail_nth_allocation(0)
                assert p.mm.maps() == maps
                assert k.statistics().committed_as == committed
                assert p.mm.read(a + 5, 4) == b"five"
                assert p.mm.read(a + PMD + 8, 8) == (10).to_bytes(8, "little")
                k.check()
                c.mm.write(a + 5, b"kid")
                assert p.mm.read(a + 5, 4) == b"five"
                k.check()
                k.close()
                continue
            k.fail_nth_allocation(0)
            k.check()
            k.close()
            assert n > 1
            break


# ---- a real program: glibc's realloc of a large block is mremap ----

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
  size_t small = 1 << 20, big = 64 << 20;
  unsigned char *p = malloc(small);
  if (!p) return 1;
  for (size_t i = 0; i < small; i++) p[i] = (unsigned char)(i * 7 + 3);
  unsigned char *q = realloc(p, big);
  if (!q) return 2;
  unsigned long sum = 0;
  for (size_t i = 0; i < small; i++) {
    if (q[i] != (unsigned char)(i * 7 + 3)) { printf("bad byte %zu\n", i); return 3; }
    sum += q[i];
  }
  memset(q + small, 0xab, big - small);
  printf("ok %lu %d %s\n", sum, q[big - 1], q == p ? "same" : "moved");
  free(q);
  return 0;
}
"""


@pytest.fixture(scope="module")
def realloc_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    d = tmp_path_factory.mktemp("mremap")
    (d / "realloc.c").write_text(PROGRAM)
    subprocess.run(["gcc", "-O1", "-o", str(d / "realloc"), str(d / "realloc.c")], check=True)
    return d / "realloc"


def test_realloc_program_same_output_and_calls_mremap(realloc_program: Path) -> None:
    import trio
    native = subprocess.run([str(realloc_program)], capture_output=True, check=True)

    async def main() -> Any:
        async with open_kernel("2G", cpu=True) as kernel:
            kernel.trace_syscalls()
            result = await spawnfd.run_process([str(realloc_program)], capture_stdout=True,
                                               kernel=kernel)
            trace = kernel.syscall_trace()
            assert kernel.statistics().syscalls_unknown == 0
            kernel.check()
            return result, trace

    result, trace = trio.run(main)
    assert result.returncode == 0
    assert result.stdout == native.stdout
    assert b"moved" in native.stdout
    mremaps = [t for t in trace if t[1] == 25]  # x86-64 mremap
    assert mremaps and all(t[2] > 0 for t in mremaps)
