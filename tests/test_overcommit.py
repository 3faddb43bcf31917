"""vm.overcommit_memory as Kernel(overcommit=0|1|2, overcommit_ratio=50): private writable
memory is charged to Committed_AS (k.statistics().committed_as) when mapped or made writable,
and given back on munmap, on mprotect of untouched memory to read-only, and at exit.

Measured on this host (Linux 6.18, overcommit_memory 0, 24 GiB, no swap): a 30 GiB private
writable mapping is ENOMEM, 20 GiB is granted, 30 GiB with MAP_NORESERVE or read-only is
granted, mprotect of the read-only one to writable is ENOMEM; mapping 1 GiB adds exactly 1 GiB
to Committed_AS and munmap takes it back."""

from __future__ import annotations

import errno
import mmap

import pytest

import spawnfd

from .helpers import ANON, PAGE, RW

M = 1 << 20
NORESERVE = 0x4000


def committed(k: spawnfd.Kernel) -> int:
    return k.statistics().committed_as


def test_heuristic_refuses_one_mapping_larger_than_memory() -> None:
    with spawnfd.Kernel("1G") as k:
        mm = k.init.mm
        with pytest.raises(OSError) as ei:
            mm.mmap(2 << 30, RW, ANON)
        assert ei.value.errno == errno.ENOMEM
        assert committed(k) == 0
        for flags, prot in ((ANON | NORESERVE, RW), (ANON, mmap.PROT_READ),
                            (mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, mmap.PROT_READ)):
            a = mm.mmap(2 << 30, prot, flags)
            mm.munmap(a, 2 << 30)
        a = mm.mmap(2 << 30, mmap.PROT_READ, ANON)
        with pytest.raises(OSError) as ei:
            mm.mprotect(a, 2 << 30, RW)
        assert ei.value.errno == errno.ENOMEM
        assert committed(k) == 0
        k.check()


def test_commit_charge_follows_the_mappings() -> None:
    with spawnfd.Kernel("1G") as k:
        p = k.init
        a = p.mm.mmap(512 * M, RW, ANON)
        assert committed(k) == 512 * M
        p.mm.munmap(a, 128 * M)
        assert committed(k) == 384 * M
        # an untouched vma made read-only gives its charge back; a written one keeps it
        b = p.mm.mmap(64 * M, RW, ANON, addr=1 << 32)  # apart from a: no merge
        assert committed(k) == 448 * M
        p.mm.write(a + 128 * M, b"x")
        p.mm.mprotect(b, 64 * M, mmap.PROT_READ)
        assert committed(k) == 384 * M
        p.mm.mprotect(a + 448 * M, 64 * M, mmap.PROT_READ)
        assert committed(k) == 384 * M
        p.mm.mprotect(b, 64 * M, RW)              # writable again: charged again
        assert committed(k) == 448 * M
        p.mm.munmap(b, 64 * M)
        # MAP_FIXED over charged memory charges only the difference
        p.mm.mmap(256 * M, RW, ANON | spawnfd.MAP_FIXED, addr=a + 256 * M)
        assert committed(k) == 384 * M
        c = p.fork()                              # the child's copy is charged too
        assert committed(k) == 768 * M
        k.check()
        c.exit(0); p.wait(c.pid)
        assert committed(k) == 384 * M
        p.mm.munmap(a, 512 * M)
        assert committed(k) == 0
        assert k.statistics().commit_limit == 512 * M
        k.check()


def test_always_grants() -> None:
    with spawnfd.Kernel("1G", overcommit=1) as k:
        a = k.init.mm.mmap(1 << 40, RW, ANON)
        assert committed(k) == 1 << 40
        k.init.mm.munmap(a, 1 << 40)
        assert committed(k) == 0


def test_strict_keeps_the_total_under_commit_limit() -> None:
    with spawnfd.Kernel("1G", overcommit=2, overcommit_ratio=50) as k:
        p = k.init
        assert k.statistics().commit_limit == 512 * M
        with pytest.raises(OSError) as ei:
            p.mm.mmap(600 * M, RW, ANON)
        assert ei.value.errno == errno.ENOMEM
        a = p.mm.mmap(400 * M, RW, ANON)
        with pytest.raises(OSError) as ei:
            p.mm.mmap(200 * M, RW, ANON)
        assert ei.value.errno == errno.ENOMEM
        with pytest.raises(OSError) as ei:        # fork would double the charge
            p.fork()
        assert ei.value.errno == errno.ENOMEM
        assert committed(k) == 400 * M
        p.mm.munmap(a, 400 * M)
        p.mm.mmap(500 * PAGE, RW, ANON)
        k.check()
    with spawnfd.Kernel("1G", overcommit=2, overcommit_ratio=200) as k:
        assert k.statistics().commit_limit == 2 << 30
        k.init.mm.mmap(1536 * M, RW, ANON)


@pytest.mark.parametrize(("kw", "exc", "name"), [
    ({"overcommit": 3}, ValueError, "overcommit"),
    ({"overcommit": -1}, ValueError, "overcommit"),
    ({"overcommit": True}, TypeError, "overcommit"),
    ({"overcommit": "2"}, TypeError, "overcommit"),
    ({"overcommit_ratio": -1}, ValueError, "overcommit_ratio"),
    ({"overcommit_ratio": 2**32}, ValueError, "overcommit_ratio"),
    ({"overcommit_ratio": 50.0}, TypeError, "overcommit_ratio"),
])
def test_bad_options_are_refused_by_name(kw: dict[str, object], exc: type, name: str) -> None:
    with pytest.raises(exc, match=f"^{name} must"):
        spawnfd.Kernel("1G", **kw)  # type: ignore[arg-type]
