"""Partial effects on error, as Linux has them: mprotect and madvise go vma by vma and stop
at the first failure, leaving the part before it changed (and the vmas split there);
MADV_POPULATE_READ/WRITE keeps the pages it faulted before the error. Each scenario runs on
the real kernel (in this process) and in the simulator; the errno, the vma layout and the
present pages must be the same."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

import spawnfd

from .linux_world import NONE, RO, RW, HostWorld, SimWorld, outcome

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host is Linux")

MADV_DONTNEED, MADV_DONTFORK, MADV_WIPEONFORK = 4, 10, 18
MADV_POPULATE_READ, MADV_POPULATE_WRITE = 22, 23


def mprotect_hole(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(6, 4, RW)
    return [outcome(w.mprotect, 2, 6, RO), outcome(w.mprotect, 4, 4, NONE)]


def mprotect_eacces(w: Any) -> list[str]:
    w.map(0, 4, RO); w.map(4, 4, RO, "file-ro"); w.map(8, 4, RO)
    return [outcome(w.mprotect, 2, 8, RW)]


def mprotect_hole_then_eacces(w: Any) -> list[str]:
    w.map(0, 4, RO); w.map(6, 4, RO, "file-ro")
    return [outcome(w.mprotect, 0, 10, RW)]


def mprotect_prefix_merges(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(4, 4, RO); w.map(8, 4, RO, "file-ro")
    return [outcome(w.mprotect, 4, 8, RW)]


def madvise_wipeonfork_then_shared(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(4, 4, RW, "shanon"); w.map(8, 4, RW)
    return [outcome(w.madvise, 2, 8, MADV_WIPEONFORK)]


def madvise_wipeonfork_hole_then_file(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(6, 4, RW, "file")
    return [outcome(w.madvise, 2, 8, MADV_WIPEONFORK)]


def madvise_dontfork_over_hole(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(6, 4, RW)
    return [outcome(w.madvise, 2, 6, MADV_DONTFORK)]


def madvise_dontneed_over_hole(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(6, 4, RW); w.populate(0, 4, True); w.populate(6, 4, True)
    return [outcome(w.madvise, 0, 12, MADV_DONTNEED)]


def populate_over_prot_none(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(4, 4, NONE); w.map(8, 4, RW)
    return [outcome(w.populate, 0, 12), outcome(w.populate, 8, 4, True),
            outcome(w.populate, 0, 12, True)]


def populate_over_hole(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(6, 4, RW); w.map(12, 2, RW)
    return [outcome(w.populate, 0, 10, True), outcome(w.populate, 11, 3, True)]


def populate_past_eof(w: Any) -> list[str]:
    # the file has 16 pages: a mapping at file page 14 has two pages past the end
    w.map(0, 4, RW); w.map(4, 4, RW, "file", 14); w.map(8, 4, RW, "file-priv", 14)
    w.map(12, 4, RW)
    return [outcome(w.populate, 0, 16), outcome(w.populate, 10, 6, True),
            outcome(w.populate, 12, 4, True)]


def madvise_populate_write(w: Any) -> list[str]:
    w.map(0, 4, RW); w.map(4, 2, RO)
    return [outcome(w.madvise, 0, 6, MADV_POPULATE_WRITE),
            outcome(w.madvise, 4, 2, MADV_POPULATE_READ)]


SCENARIOS: list[Callable[[Any], list[str]]] = [
    mprotect_hole, mprotect_eacces, mprotect_hole_then_eacces, mprotect_prefix_merges,
    madvise_wipeonfork_then_shared, madvise_wipeonfork_hole_then_file,
    madvise_dontfork_over_hole, madvise_dontneed_over_hole, populate_over_prot_none,
    populate_over_hole, populate_past_eof, madvise_populate_write,
]


def run(world: Any, scenario: Callable[[Any], list[str]]) -> tuple[Any, ...]:
    results = scenario(world)
    return results, world.layout(), world.present()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_same_partial_effects_as_linux(scenario: Callable[[Any], list[str]]) -> None:
    host = HostWorld()
    try:
        want = run(host, scenario)
    finally:
        host.close()
    assert want[0] != ["ok"] * len(want[0]), "the scenario must fail somewhere"
    sim = SimWorld()
    try:
        assert run(sim, scenario) == want
    finally:
        sim.close()


def test_wipeonfork_prefix_is_wiped_in_a_forked_child() -> None:
    """madvise(anon + shared, WIPEONFORK) fails with EINVAL, but the anonymous part before the
    shared vma is marked: a child forked afterwards reads zeroes there (Linux does)."""
    w = SimWorld()
    try:
        w.map(0, 4, RW); w.map(4, 4, RW, "shanon")
        w.write(0, b"A" * 4 * 4096)
        with pytest.raises(OSError):
            w.madvise(2, 6, MADV_WIPEONFORK)
        child = w.p.fork()
        assert child.mm.read(w.page(1), 1) == b"A"
        assert child.mm.read(w.page(2), 1) == b"\0"
        child.exit(0); w.p.wait(child.pid)
    finally:
        w.close()
