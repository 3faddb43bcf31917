"""VMA merging as Linux does it, compared with the real kernel's /proc/self/maps: adjacent
anonymous vmas merge only when their anon_vmas allow it (one inherited at fork does not merge
with memory mapped afterwards; two written separately do not merge unless the second reused
the first's anon_vma), and an untouched private anonymous vma made read-only loses its commit
charge (VM_ACCOUNT) and so merges with a read-only neighbour."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from .linux_world import RO, RW, HostWorld, SimWorld

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host is Linux")
RWX = RW | 4


def fork_then_map_adjacent(w: Any) -> Any:
    # the reproducer: mmap(A, 0x5000), write, fork, child maps A + 0x5000
    w.map(0, 5, RW); w.write(0, b"x" * 5 * 4096)
    def child(c: Any) -> Any:
        c.map(5, 0xEB, RW)
        first = c.layout()
        c.write(5, b"y")
        return first, c.layout()
    return child_result(w, child)


def child_result(w: Any, fn: Callable[[Any], Any]) -> Any:
    return w.in_child(fn), w.layout()


def fork_untouched_then_map_adjacent(w: Any) -> Any:
    w.map(0, 5, RW)
    return child_result(w, lambda c: (c.map(5, 4, RW), c.layout())[1])


def fork_then_parent_maps_adjacent(w: Any) -> Any:
    w.map(0, 5, RW); w.write(0, b"x")
    w.in_child(lambda c: None)
    w.map(5, 4, RW)
    return w.layout()


def fork_then_child_splits_and_rejoins(w: Any) -> Any:
    w.map(0, 9, RW); w.write(0, b"x")
    def child(c: Any) -> Any:
        c.mprotect(2, 1, RO)
        mid = c.layout()
        c.mprotect(2, 1, RW)
        return mid, c.layout()
    return child_result(w, child)


def fork_of_split_vma_then_child_rejoins(w: Any) -> Any:
    # each child vma gets its own anon_vma at fork: the halves of one parent vma stay apart
    w.map(0, 8, RW); w.write(0, b"x"); w.mprotect(4, 4, RO)
    return child_result(w, lambda c: (c.mprotect(4, 4, RW), c.layout())[1])


def readonly_untouched_merges(w: Any) -> Any:
    w.map(0, 4, RO); w.map(4, 4, RW)
    w.mprotect(4, 4, RO)
    return w.layout()


def readonly_after_write_stays_apart(w: Any) -> Any:
    w.map(0, 4, RO); w.map(4, 4, RW); w.write(4, b"x")
    w.mprotect(4, 4, RO)
    return w.layout()


def readonly_then_writable_again(w: Any) -> Any:
    w.map(0, 4, RW); w.map(4, 4, RO); w.map(8, 4, RW)
    w.mprotect(8, 4, RO)
    first = w.layout()
    w.mprotect(4, 8, RW)
    return first, w.layout()


def second_vma_reuses_first_anon_vma(w: Any) -> Any:
    w.map(0, 4, RW); w.write(0, b"x"); w.map(4, 4, RWX); w.write(4, b"y")
    w.mprotect(4, 4, RW)
    return w.layout()


def separately_written_do_not_merge(w: Any) -> Any:
    w.map(0, 4, RW); w.write(0, b"x"); w.map(8, 4, RW); w.write(8, b"y")
    w.map(4, 4, RW)
    return w.layout()


SCENARIOS = [
    fork_then_map_adjacent, fork_untouched_then_map_adjacent, fork_then_parent_maps_adjacent,
    fork_then_child_splits_and_rejoins, fork_of_split_vma_then_child_rejoins, readonly_untouched_merges,
    readonly_after_write_stays_apart, readonly_then_writable_again,
    second_vma_reuses_first_anon_vma, separately_written_do_not_merge,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_merges_as_linux(scenario: Callable[[Any], Any]) -> None:
    host = HostWorld(npages=0x100)
    try:
        want = scenario(host)
    finally:
        host.close()
    sim = SimWorld(npages=0x100)
    try:
        assert scenario(sim) == want
    finally:
        sim.close()


ADVICE_6_18 = {"MERGEABLE": 12, "UNMERGEABLE": 13, "DONTDUMP": 16, "DODUMP": 17, "COLD": 20,
               "PAGEOUT": 21, "DONTNEED_LOCKED": 24}


@pytest.mark.parametrize("advice", sorted(ADVICE_6_18))
def test_advice_linux_accepts(advice: str) -> None:
    """Advice Linux 6.18 takes: the result and the vmas it splits off (a flag: MERGEABLE on
    private memory only, DONTDUMP everywhere; the hints change no vma)."""
    from .linux_world import outcome

    def scenario(w: Any) -> Any:
        out = []
        for i, kind in enumerate(("anon", "shanon", "file", "file-priv")):
            w.map(8 * i, 4, RW, kind, 0); w.populate(8 * i, 4, True)
            out.append(outcome(w.madvise, 8 * i + 1, 1, ADVICE_6_18[advice]))
            out.append(outcome(w.madvise, 8 * i + 2, 1, ADVICE_6_18[advice]))  # merges back
        return out, w.layout()
    host = HostWorld(npages=0x40)
    try:
        want = scenario(host)
    finally:
        host.close()
    sim = SimWorld(npages=0x40)
    try:
        assert scenario(sim) == want
    finally:
        sim.close()
