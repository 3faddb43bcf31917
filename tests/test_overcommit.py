"""vm.overcommit_memory as Kernel(overcommit=0|1|2, overcommit_ratio=50): private writable
memory is charged to Committed_AS (k.statistics().committed_as) when mapped or made writable,
and given back on munmap, on mprotect of untouched memory to read-only, and at exit.

Measured on this host (Linux 6.18, overcommit_memory 0, 24 GiB, no swap): a 30 GiB private
writable mapping is ENOMEM, 20 GiB is granted, 30 GiB with MAP_NORESERVE or read-only is
granted, mprotect of the read-only one to writable is ENOMEM; mapping 1 GiB adds exactly 1 GiB
to Committed_AS and munmap takes it back. Shared anonymous memory (shmem) is charged for its
whole size at mmap, even read-only (a 30 GiB MAP_SHARED|MAP_ANONYMOUS is ENOMEM), and given
back when the last mapping goes (a partial munmap gives nothing back); with MAP_NORESERVE, and
for tmpfs/memfd files, each page is charged as it is allocated (read() of a hole allocates
nothing) and given back when punched, truncated or freed with the file."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

from .helpers import ANON, PAGE, RW

M = 1 << 20
NORESERVE = 0x4000
SHANON = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS


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
                            (SHANON | NORESERVE, RW)):
            a = mm.mmap(2 << 30, prot, flags)
            mm.munmap(a, 2 << 30)
        for prot in (RW, mmap.PROT_READ):          # shmem is charged for its size, as Linux
            with pytest.raises(OSError) as ei:
                mm.mmap(2 << 30, prot, SHANON)
            assert ei.value.errno == errno.ENOMEM
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


def test_shmem_is_charged_for_its_size_until_the_last_mapping_goes() -> None:
    with spawnfd.Kernel("1G") as k:
        p = k.init
        a = p.mm.mmap(256 * M, mmap.PROT_READ, SHANON)
        assert committed(k) == 256 * M
        p.mm.munmap(a, 128 * M)                   # the inode keeps its size: no change
        assert committed(k) == 256 * M
        c = p.fork()
        p.mm.munmap(a + 128 * M, 128 * M)
        assert committed(k) == 256 * M            # the child still maps it
        k.check()
        c.exit(0); p.wait(c.pid)
        assert committed(k) == 0
        z = p.open("/dev/zero", os.O_RDWR)        # a shared /dev/zero mapping is shmem too
        b = p.mm.mmap(64 * M, RW, mmap.MAP_SHARED, z)
        assert committed(k) == 64 * M
        p.mm.madvise(b, 64 * M, mmap.MADV_REMOVE)  # the size is charged, not the pages
        assert committed(k) == 64 * M
        p.mm.munmap(b, 64 * M)
        assert committed(k) == 0
        k.check()


def test_noreserve_shmem_and_tmpfs_are_charged_per_page() -> None:
    with spawnfd.Kernel("1G") as k:
        p = k.init
        a = p.mm.mmap(256 * M, RW, SHANON | NORESERVE)
        assert committed(k) == 0
        p.mm.populate(a, 16 * M, write=True)
        assert committed(k) == 16 * M
        k.check()
        p.mm.munmap(a, 256 * M)
        assert committed(k) == 0
        fd = p.open("/dev/shm/t", os.O_RDWR | os.O_CREAT, 0o600)
        p.ftruncate(fd, 256 * M)
        assert committed(k) == 0
        assert p.write(fd, b"x" * (4 * M)) == 4 * M
        assert committed(k) == 4 * M
        assert p.pread(fd, 4 * M, 128 * M) == bytes(4 * M)   # a hole: nothing allocated
        assert committed(k) == 4 * M
        f = p.mm.mmap(256 * M, RW, mmap.MAP_SHARED, fd)
        p.mm.read(f + 64 * M, 1)                  # a read fault allocates the page
        assert committed(k) == 4 * M + PAGE
        p.mm.madvise(f, 2 * M, mmap.MADV_REMOVE)
        assert committed(k) == 2 * M + PAGE
        k.check()
        p.ftruncate(fd, 3 * M)                     # the punched 2 MiB, then 1 MiB kept
        assert committed(k) == M
        p.mm.munmap(f, 256 * M)
        p.close(fd)
        assert committed(k) == M                  # still linked
        p.unlink("/dev/shm/t")
        assert committed(k) == 0
        k.check()


def test_strict_refuses_tmpfs_pages_past_the_limit_and_ignores_noreserve() -> None:
    with spawnfd.Kernel("64M", overcommit=2, overcommit_ratio=50) as k:
        p = k.init
        with pytest.raises(OSError) as ei:        # MAP_NORESERVE is honoured only in 0 and 1
            p.mm.mmap(40 * M, RW, ANON | NORESERVE)
        assert ei.value.errno == errno.ENOMEM
        fd = p.open("/tmp/t", os.O_RDWR | os.O_CREAT, 0o600)
        assert 0 < p.write(fd, b"x" * (40 * M)) < 32 * M   # short: the limit is reached
        with pytest.raises(OSError) as ei:        # shmem_inode_acct_blocks(): ENOSPC
            p.write(fd, b"x")
        assert ei.value.errno == errno.ENOSPC
        k.check()
