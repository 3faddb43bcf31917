"""vfork: the child runs in its parent's address space until exec or exit; nothing is copied
and the parent is suspended meanwhile."""

from __future__ import annotations

import os

import pytest

import spawnfd

from .helpers import ANON, PAGE, RW


def test_vfork_exec_copies_nothing_and_resumes_the_parent(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(64 * PAGE, RW, ANON)
    p.mm.populate(a, 64 * PAGE, write=True, stamp=7)
    maps = p.mm.maps()
    before = kernel.statistics()
    c = p.vfork()
    mid = kernel.statistics()
    assert mid.ptes_copied == before.ptes_copied and mid.tables_shared == before.tables_shared
    assert mid.frames_used == before.frames_used  # not even a page table
    assert c.mm.maps() == maps  # the same address space
    with pytest.raises(BlockingIOError):
        p.mm.read(a, 1)  # the parent is suspended
    c.execve("/bin/true", ["true"])
    assert p.mm.maps() == maps and p.mm.read(a, 8) == (7).to_bytes(8, "little")
    assert "/bin/true" not in maps and os.path.realpath("/bin/true") in c.mm.maps()
    c.exit(0)
    assert p.wait(c.pid) == 0
    kernel.check()


def test_vfork_child_writes_land_in_the_parent(kernel: spawnfd.Kernel) -> None:
    # The child shares the memory, as in Linux: what it writes before exec, the parent sees.
    p = kernel.init
    a = p.mm.mmap(PAGE, RW, ANON)
    c = p.vfork()
    c.mm.write(a, b"from the child")
    kernel.check()
    c.exit(3)
    assert p.mm.read(a, 14) == b"from the child"
    assert os.WEXITSTATUS(p.wait(c.pid) or 0) == 3


def test_vfork_child_has_its_own_descriptor_table(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    fd = p.open("/dev/null", os.O_RDONLY)
    c = p.vfork()
    c.close(fd)
    c.execve("/bin/true", ["true"])
    assert p.read(fd, 1) == b""  # still open in the parent


def test_failed_exec_keeps_the_child_in_the_borrowed_mm(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(PAGE, RW, ANON)
    c = p.vfork()
    with pytest.raises(FileNotFoundError):
        c.execve("/nonexistent", ["x"])
    with pytest.raises(BlockingIOError):
        p.mm.read(a, 1)  # still suspended: exec failed
    c.exit(127)
    assert os.WEXITSTATUS(p.wait(c.pid) or 0) == 127
    kernel.check()


def test_teardown_with_a_vfork_child_still_running() -> None:
    k = spawnfd.Kernel("64M")
    p = k.init.fork()
    p.mm.mmap(PAGE, RW, ANON)
    p.vfork()
    k.check()
    k.close()  # frees the parent's mm once, not twice (ASan would tell)
