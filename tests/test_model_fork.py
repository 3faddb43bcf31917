"""Random trees of processes, forked under every policy, against the pure-Python model.

The machine of ``test_model.py`` (mmap, munmap, mprotect, madvise, populate, read, write, the
file's write(2)) runs here in a tree of up to five live processes: each call is made by a
process drawn from the tree. More rules grow and prune the tree: fork (the policy drawn per
call from ``copy``, ``cow-pt``, ``cow-pt-eager`` or the kernel's default, itself drawn, so one
tree mixes them), fork right after marking pages DONTFORK/WIPEONFORK/..., fork that runs out of
memory part-way (``ENOMEM``, nothing changes), exit of a leaf (a zombie refuses every call; its
own zombies go to init), and wait by the parent.

The model of a forked child is a copy of its parent's pages (:meth:`Space.forked`):
``DONTFORK`` pages absent, ``WIPEONFORK`` pages zero (the flag kept), private bytes its own; the
file and the shared anonymous regions stay one object for the whole tree. Every read in any
process must equal its model byte for byte, and after every step the kernel must pass
``check()`` and every live process's ``maps()`` must be its model's.

Mappings go around two 2 MiB boundaries, often starting or ending on one, sometimes covering a
whole 2 MiB chunk: under ``cow-pt`` one last-level table then holds several vmas, and a vma
spans several tables, so a call in one process must break the share without the others seeing.

:class:`ThpForkModel` grows the same trees on kernels with transparent huge pages, with the
whole-chunk mappings of ``ThpMemoryModel``: fork copies pmd leaves, and whoever writes first
splits or copies them (``thp_cow``) or reuses them alone.
"""

from __future__ import annotations

import errno
import mmap
import os

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import initialize, precondition, rule

from spawnfd.sim.kernel import FORK_MODES

from .helpers import examples

from .test_model import (ADVICE, HUGE_AT, PAGE, THP_DRAWS, WINDOW, MemoryModel, Space,
                         ThpMemoryModel)

MAX_LIVE = 5
CHUNK = 512                                  # pages per last-level table (2 MiB)
BOUNDARIES = (WINDOW + CHUNK, WINDOW + 2 * CHUNK)
RW = mmap.PROT_READ | mmap.PROT_WRITE
NEAR = 24                                    # pages either side of a boundary


class Node(Space):
    """A process of the tree: its model, its parent, its live children, its unreaped ones."""

    def __init__(self, space: Space, parent: Node | None) -> None:
        super().__init__(space.p, space.shared, space.rw, space.ro, space.pages)
        self.parent = parent
        self.children: list[Node] = []
        self.zombies: dict[int, int] = {}    # pid -> exit code


class ForkModel(MemoryModel):
    """The memory machine over a tree of processes: every rule acts in one drawn process."""

    def __init__(self) -> None:
        super().__init__()
        self.live: list[Node] = []
        self.steps = 0

    def teardown(self) -> None:
        event(f"steps: {self.steps // 10 * 10}+, processes at the end: {len(self.live)}")
        super().teardown()

    # ---- where the rules act ----

    def pick(self, data: st.DataObject) -> Node:
        self.steps += 1
        return data.draw(st.sampled_from(self.live), label="process")

    def spaces(self) -> list[Space]:
        return list(self.live)

    def windows(self) -> list[range]:
        return [range(b - NEAR, b + NEAR) for b in BOUNDARIES]

    def draw_at(self, data: st.DataObject, npages: int) -> tuple[int, int]:
        """Near a boundary; often starting or ending on it; sometimes a whole chunk and more."""
        b = data.draw(st.sampled_from(BOUNDARIES), label="boundary")
        how = data.draw(st.sampled_from(["near"] * 3 + ["starts", "ends", "chunk"]), label="how")
        if how == "starts":
            return b, npages
        if how == "ends":
            return b - npages, npages
        if how == "chunk":   # from just below the first boundary to past the second
            return BOUNDARIES[0] - npages, CHUNK + 2 * npages
        return data.draw(st.integers(b - NEAR, b + NEAR - 1), label="at"), npages

    # ---- the tree ----

    @initialize(data=st.data(), count=st.integers(2, 6), fork_mode=st.sampled_from(FORK_MODES))
    def fill_window(self, data: st.DataObject, count: int, fork_mode: str) -> None:
        """A kernel with a drawn default policy; init starts with a few mappings."""
        self.live = [Node(self.boot("256M", fork_mode), None)]
        self.fill(data, count)

    def spawn(self, parent: Node, mode: str | None) -> Node:
        """fork() in the kernel and in the model."""
        child = Node(parent.forked(parent.p.fork(mode)), parent)
        parent.children.append(child)
        self.live.append(child)
        return child

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(data=st.data(), mode=st.sampled_from([None, *FORK_MODES]))
    def fork(self, data: st.DataObject, mode: str | None) -> None:
        """Fork a drawn process; sometimes read every page on both sides at once."""
        parent = self.pick(data)
        child = self.spawn(parent, mode)
        event(f"fork: {mode or 'default'}")
        if data.draw(st.booleans(), label="verify both"):
            for s in (parent, child):
                s.check_pages(sorted(s.pages))

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(data=st.data(), advice=st.sampled_from(["WIPEONFORK", "DONTFORK", "KEEPONFORK",
                                                  "DOFORK"]),
          mode=st.sampled_from([None, *FORK_MODES]), payload=st.binary(min_size=1, max_size=64))
    def advise_and_fork(self, data: st.DataObject, advice: str, mode: str | None,
                        payload: bytes) -> None:
        """Does the child get what the fork flags say? Mark a run of private anonymous pages
        (written first, so a wipe shows), fork, and read the run on both sides."""
        s = self.pick(data)
        anon = [pg for pg, m in sorted(s.pages.items()) if m.obj < 0 and not s.fault(pg, True)]
        if not anon:
            return
        start = data.draw(st.sampled_from(anon), label="start")
        n = 1
        while start + n in s.pages and s.pages[start + n].obj < 0 and n < 16:
            n += 1
        n = data.draw(st.integers(1, n), label="n")
        s.mm.write(start * PAGE, payload)
        s.store(start, 0, payload)
        s.mm.madvise(start * PAGE, n * PAGE, ADVICE[advice])
        for pg in range(start, start + n):
            if advice in ("DONTFORK", "DOFORK"):
                s.pages[pg].dontfork = advice == "DONTFORK"
            else:
                s.pages[pg].wipe = advice == "WIPEONFORK"
        child = self.spawn(s, mode)
        event(f"advise_and_fork: {advice}")
        for t in (s, child):
            t.check_pages(range(start - 1, start + n + 1))

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(data=st.data(), mode=st.sampled_from([None, *FORK_MODES]), nth=st.integers(1, 12))
    def fork_out_of_memory(self, data: st.DataObject, mode: str | None, nth: int) -> None:
        """What if memory runs out part-way through a fork? ENOMEM, and the parent reads and
        maps as it did (the reads and the maps invariant after this step tell)."""
        s = self.pick(data)
        assert self.k is not None
        self.k.fail_nth_allocation(nth)
        try:
            self.spawn(s, mode)
            event("fork_out_of_memory: it fitted")
        except OSError as e:
            # Not frames_used == before: a copy fork of a process whose tables a cow-pt child
            # shares unshares them in the parent first, and the parent keeps its own copies.
            assert e.errno == errno.ENOMEM
            event("fork_out_of_memory: ENOMEM")
        finally:
            self.k.fail_nth_allocation(0)

    @precondition(lambda self: any(not s.children for s in self.live[1:]))
    @rule(data=st.data(), code=st.integers(0, 255), reap=st.booleans())
    def exit(self, data: st.DataObject, code: int, reap: bool) -> None:
        """A leaf exits: a zombie refuses every call; its unreaped children go to init."""
        s = data.draw(st.sampled_from([s for s in self.live[1:] if not s.children]),
                      label="leaf")
        parent = s.parent
        assert parent is not None
        s.p.exit(code)
        self.live.remove(s)
        parent.children.remove(s)
        parent.zombies[s.p.pid] = code
        self.live[0].zombies.update(s.zombies)
        for call in (lambda: s.mm.read(BOUNDARIES[0] * PAGE, 1),
                     lambda: s.mm.mmap(PAGE, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS),
                     lambda: s.p.fork()):
            with pytest.raises(ProcessLookupError):
                call()
        event(f"exit: {'reaped now' if reap else 'zombie'}")
        if reap:
            self.reap_one(parent, s.p.pid)

    @precondition(lambda self: any(s.zombies for s in self.live))
    @rule(data=st.data())
    def wait(self, data: st.DataObject) -> None:
        """A parent reaps one of its zombies (by pid, or any when it has only one)."""
        s = data.draw(st.sampled_from([s for s in self.live if s.zombies]), label="parent")
        pid = data.draw(st.sampled_from(sorted(s.zombies)), label="zombie")
        event("wait")
        self.reap_one(s, pid if len(s.zombies) > 1 or data.draw(st.booleans()) else -1)

    def reap_one(self, s: Node, pid: int) -> None:
        """wait(pid) returns the exit status; a running child cannot be waited for."""
        for c in s.children:
            assert s.p.wait(c.p.pid, nohang=True) is None
        status = s.p.wait(pid)
        got = next(iter(s.zombies)) if pid == -1 else pid
        assert status is not None and os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == s.zombies.pop(got)
        with pytest.raises(ChildProcessError):
            s.p.wait(got)

    @rule()
    def read_every_process(self) -> None:
        """Every page of every live process reads as its model says: what one process wrote
        privately shows nowhere else, what it wrote to shared memory shows everywhere."""
        for s in self.live:
            s.check_pages(sorted(s.pages))


# 400 examples of up to 50 steps, about 25 s. Model mistakes planted one at a time were each
# caught within the first 150 examples: WIPEONFORK not zeroing, the WIPEONFORK flag not
# inherited, DONTFORK pages kept, private bytes shared by parent and child, the pages dict
# shared, shared memory and the file copied at fork, private file pages frozen at fork.
ForkModel.TestCase.settings = settings(
    max_examples=examples(400), stateful_step_count=50, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestForkModel = ForkModel.TestCase



class ThpForkModel(ForkModel, ThpMemoryModel):
    """The tree on a kernel with huge pages (``thp`` and ``thp_cow`` drawn with the default
    fork policy), with ThpMemoryModel's whole-chunk mappings and chunk-aimed ranges: leaves
    copied by fork, then written, split, copied whole or reused by whichever process gets
    there first, and torn down by exits in any order."""

    @initialize(data=st.data(), count=st.integers(2, 6), fork_mode=st.sampled_from(FORK_MODES),
                thp=st.sampled_from(THP_DRAWS))
    def fill_window(self, data: st.DataObject, count: int, fork_mode: str,
                    thp: tuple[str, str]) -> None:
        self.live = [Node(self.boot("256M", fork_mode, *thp), None)]
        event(f"thp={thp[0]} thp_cow={thp[1]}")
        self.fill(data, count)
        if data.draw(st.booleans(), label="fork at start"):
            self.fork_and_write_a_chunk(
                data=data, mode=data.draw(st.sampled_from([None, *FORK_MODES])),
                first=data.draw(st.sampled_from(["parent", "child"])),
                payloads=data.draw(st.lists(st.binary(min_size=1, max_size=64), min_size=3,
                                            max_size=3)))

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(data=st.data(), mode=st.sampled_from([None, *FORK_MODES]),
          first=st.sampled_from(["parent", "child"]),
          payloads=st.lists(st.binary(min_size=1, max_size=64), min_size=3, max_size=3))
    def fork_and_write_a_chunk(self, data: st.DataObject, mode: str | None, first: str,
                               payloads: list[bytes]) -> None:
        """Fork a process with a whole writable private anonymous chunk (a huge page, when
        the kernel made one), then both write into that chunk, one of them twice (who first is
        drawn), and each must read the whole chunk as its model: every way a leaf shared by
        fork is split, copied or reused."""
        s = self.pick(data)
        chunks = [c for c in range(HUGE_AT, HUGE_AT + 3 * CHUNK, CHUNK)
                  if all(pg in s.pages and s.pages[pg].obj < 0 and not s.fault(pg, True)
                         for pg in range(c, c + CHUNK))]
        if not chunks:
            return
        c = data.draw(st.sampled_from(chunks), label="chunk")
        child = self.spawn(s, mode)
        event(f"fork_and_write_a_chunk: {first} first")
        a, b = (s, child) if first == "parent" else (child, s)
        for t, payload in zip((a, b, a), payloads):
            pg = c + data.draw(st.integers(0, CHUNK - 1), label="page")
            off = data.draw(st.integers(0, PAGE - len(payload)), label="offset")
            t.mm.write(pg * PAGE + off, payload)
            t.store(pg, off, payload)
        for t in (s, child):
            t.check_pages(range(c, c + CHUNK))


# Fewer examples than the tree without huge pages (about 11 s). Kernel mistakes planted one at
# a time were caught: a sole-user check that ignores pte mappings of the subpages, a fork
# that leaves the parent's leaf writable.
ThpForkModel.TestCase.settings = settings(
    max_examples=examples(120), stateful_step_count=50, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestThpForkModel = ThpForkModel.TestCase
