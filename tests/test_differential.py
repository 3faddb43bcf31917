"""Random sequences of memory calls on the real kernel and on the simulator, side by side.

Each seed draws a sequence of mmap (anonymous private and shared, shared tmpfs file mappings
read-write and through a read-only descriptor, private file mappings, some past the end of
the file), munmap, mprotect, madvise and MADV_POPULATE_READ/WRITE over random page ranges,
so that many calls cover holes and vmas of different kinds and fail in the middle of a range.
The host runs them in this process (the file is a memfd: tmpfs, as the simulator's /tmp);
the simulator runs them in a fresh kernel per configuration (plain, share_pagetables=True,
thp="always"). After every step the errno, the vma layout (/proc/self/maps against maps(),
relative to the base) and, in the plain configuration, the present anonymous pages must be
equal (huge pages fault in whole chunks; a shared table is detached, ptes and all, by a
change to part of it; Linux maps file pages around a faulted one), and check() passes.
Forks are covered by test_fork_differential.py.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from .helpers import examples
from .linux_world import NONE, RO, RW, HostWorld, SimWorld, outcome

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host is Linux")

NPAGES = 1024                 # 4 MiB: two 2 MiB chunks, for THP and shared tables
FILE_PAGES = 600
KINDS = ["anon", "anon", "shanon", "file", "file-ro", "file-priv"]
PROTS = [NONE, RO, RW, RW, RW | 4]
ADVICE = [4, 4, 10, 11, 18, 19, 16, 17, 12, 13, 22, 23]  # DONTNEED ... POPULATE_*
CONFIGS = {"plain": {}, "share-pagetables": {"share_pagetables": True},
           "thp": {"thp": "always"}}
SEEDS = range(examples(40))
STEPS = 40


def draw_range(rng: random.Random) -> tuple[int, int]:
    if rng.random() < 0.2:   # whole 2 MiB chunks, for THP and shared tables
        first = rng.choice([0, 512])
        return first, rng.choice([512, 1024 - first])
    first = rng.randrange(NPAGES - 1)
    return first, rng.randint(1, min(96, NPAGES - first))


def generate(seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(STEPS):
        first, n = draw_range(rng)
        r = rng.random()
        if r < 0.3:
            kind = rng.choice(KINDS)
            prot = rng.choice(PROTS)
            if kind == "file-ro" and prot & 2:
                prot = RO
            fpage = rng.choice([0, rng.randrange(FILE_PAGES), FILE_PAGES - n // 2])
            ops.append(("map", first, n, prot, kind, max(0, fpage) if "file" in kind else 0))
        elif r < 0.4:
            ops.append(("munmap", first, n))
        elif r < 0.6:
            ops.append(("mprotect", first, n, rng.choice(PROTS)))
        elif r < 0.8:
            ops.append(("madvise", first, n, rng.choice(ADVICE)))
        else:
            ops.append(("populate", first, n, rng.random() < 0.5))
    return ops


def step(w: Any, op: tuple[Any, ...]) -> str:
    name, *args = op
    return outcome(getattr(w, name), *args)


def anon_pages(ops: list[tuple[Any, ...]]) -> list[set[int]]:
    """After each op, the pages last mapped anonymous private (Linux's fault-around maps file
    pages around the one faulted; the simulator maps only that one: compare anonymous)."""
    kind: dict[int, str] = {}
    out = []
    for op in ops:
        if op[0] in ("map", "munmap"):
            for pg in range(op[1], op[1] + op[2]):
                kind[pg] = op[4] if op[0] == "map" else ""
        out.append({pg for pg, k in kind.items() if k == "anon"})
    return out


def host_trace(ops: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    w = HostWorld(NPAGES, FILE_PAGES)
    try:
        return [(op, step(w, op), w.layout(), w.present()) for op in ops]
    finally:
        w.close()


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", SEEDS)
def test_same_as_linux(seed: int, config: str) -> None:
    ops = generate(seed)
    want = host_trace(ops)
    w = SimWorld(NPAGES, FILE_PAGES, memory="64M", **CONFIGS[config])
    try:
        for i, ((op, result, layout, present), anon) in enumerate(zip(want, anon_pages(ops))):
            got = step(w, op)
            w.k.check()
            where = f"seed {seed} step {i} {op}"
            assert got == result, where
            assert w.layout() == layout, where
            if config == "plain":  # THP and shared tables fault in whole chunks or detach
                assert [pg for pg in w.present() if pg in anon] == \
                    [pg for pg in present if pg in anon], where
    finally:
        w.close()
