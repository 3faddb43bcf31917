"""The fault path: anonymous, zero page, private and shared file faults, do_wp_page, EFAULT."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

from .helpers import ANON, PAGE, PTE_W, RW, pte_pfn

LDSO = "/lib64/ld-linux-x86-64.so.2"


def tmpfile(p: spawnfd.Process, name: str, data: bytes) -> int:
    fd = p.open(f"/tmp/{name}", os.O_RDWR | os.O_CREAT)
    p.write(fd, data)
    return fd


def test_read_then_write_replaces_zero_page(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(PAGE, RW, ANON)
    assert p.mm.read(a, 8) == bytes(8)
    zero = pte_pfn(p.mm.translate(a))
    p.mm.write(a + 100, b"data")
    pfn = pte_pfn(p.mm.translate(a))
    assert pfn != zero and kernel.frame_info(pfn) == (1, "anon")
    assert p.mm.read(a + 98, 8) == b"\0\0data\0\0"
    f = kernel.statistics().faults
    assert (f.zero, f.anon, f.cow) == (1, 1, 0)
    assert p.mm.statistics().rss_anon_bytes == PAGE


def test_private_file_mapping_reads_real_bytes_and_copies_on_write(
        kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    with open(LDSO, "rb") as f:
        host = f.read(3 * PAGE)
    fd = p.open(LDSO, os.O_RDONLY)
    a = p.mm.mmap(3 * PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    assert p.mm.read(a, 3 * PAGE) == host
    pc = pte_pfn(p.mm.translate(a))
    assert kernel.frame_info(pc) == (2, "pagecache")  # the cache's reference + this pte
    p.mm.write(a, b"\x7fFOO")
    assert p.mm.read(a, 4) == b"\x7fFOO"
    assert p.pread(fd, 4, 0) == host[:4]  # MAP_PRIVATE writes never reach the file
    assert kernel.frame_info(pc) == (1, "pagecache")
    st = kernel.statistics()
    assert st.pages_copied == 1 and st.faults.cow == 1
    mst = p.mm.statistics()
    assert mst.rss_anon_bytes == PAGE and mst.rss_file_bytes == 2 * PAGE


def test_two_mappings_share_page_cache_frames(proc: spawnfd.Process) -> None:
    fd = proc.open(LDSO, os.O_RDONLY)
    a = proc.mm.mmap(PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, PAGE)
    b = proc.mm.mmap(2 * PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    assert proc.mm.read(a, PAGE) == proc.mm.read(b + PAGE, PAGE)
    assert pte_pfn(proc.mm.translate(a)) == pte_pfn(proc.mm.translate(b + PAGE))


def test_shared_file_writes_reach_the_file_both_ways(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    fd = tmpfile(p, "shared", b"A" * 2 * PAGE)
    a = p.mm.mmap(2 * PAGE, RW, mmap.MAP_SHARED, fd, 0)
    b = p.mm.mmap(2 * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    p.mm.write(a + PAGE - 2, b"xyzw")  # spans two pages
    assert p.pread(fd, 6, PAGE - 3) == b"Axyzw" + b"A"
    assert p.mm.read(b + PAGE - 2, 4) == b"xyzw"
    p.lseek(fd, 10, os.SEEK_SET)
    p.write(fd, b"via-write")
    assert p.mm.read(a + 10, 9) == b"via-write"
    assert kernel.statistics().faults.shared >= 2
    assert p.mm.statistics().rss_shmem_bytes == 4 * PAGE


def test_private_mapping_sees_file_changes_until_it_writes(proc: spawnfd.Process) -> None:
    # What does a MAP_PRIVATE view read after the file changes: the new bytes until its own
    # first write to that page, its private copy afterwards (as Linux).
    fd = tmpfile(proc, "priv", b"1" * 2 * PAGE)
    a = proc.mm.mmap(2 * PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    assert proc.mm.read(a, 1) == b"1"
    proc.lseek(fd, 0, os.SEEK_SET)
    proc.write(fd, b"2")
    assert proc.mm.read(a, 1) == b"2"
    proc.mm.write(a + PAGE, b"p")
    proc.lseek(fd, PAGE, os.SEEK_SET)
    proc.write(fd, b"3")
    assert proc.mm.read(a + PAGE, 2) == b"p1"
    assert proc.pread(fd, 2, PAGE) == b"31"


def test_write_fault_dispatch_order(kernel: spawnfd.Kernel) -> None:
    # do_wp_page: shared -> writable in place; sole anon owner -> reuse; otherwise copy.
    p = kernel.init
    fd = tmpfile(p, "wp", b"s" * PAGE)
    shared = p.mm.mmap(PAGE, RW, mmap.MAP_SHARED, fd, 0)
    anon = p.mm.mmap(PAGE, RW, ANON)
    private = p.mm.mmap(PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    for a in (shared, anon, private):
        p.mm.populate(a, PAGE, write=True)
        p.mm.mprotect(a, PAGE, mmap.PROT_READ)
        p.mm.mprotect(a, PAGE, RW)
    before = kernel.statistics()
    p.mm.write(shared, b"S")
    p.mm.write(anon, b"A")
    p.mm.write(private, b"P")
    f = kernel.statistics().faults
    # shared regained W at mprotect (no fault), anon reused, the private copy is anon: reused.
    assert f.wp_reuse - before.faults.wp_reuse == 2
    assert kernel.statistics().frames_allocated == before.frames_allocated
    assert p.pread(fd, 1, 0) == b"S"
    assert all(p.mm.translate(a) & PTE_W for a in (shared, anon, private))


@pytest.mark.parametrize("prot,write", [
    (spawnfd.PROT_NONE, False), (spawnfd.PROT_NONE, True), (mmap.PROT_READ, True),
    (mmap.PROT_EXEC, True),
])
def test_access_against_protection_is_efault(proc: spawnfd.Process, prot: int,
                                              write: bool) -> None:
    a = proc.mm.mmap(PAGE, prot, ANON)
    with pytest.raises(OSError) as ei:
        proc.mm.write(a, b"x") if write else proc.mm.read(a, 1)
    assert ei.value.errno == errno.EFAULT
    assert proc.mm.statistics().rss_bytes == 0


def test_exec_and_write_only_mappings_are_readable(proc: spawnfd.Process) -> None:
    # x86: PROT_WRITE and PROT_EXEC imply PROT_READ.
    for prot in (mmap.PROT_WRITE, mmap.PROT_EXEC):
        a = proc.mm.mmap(PAGE, prot, ANON)
        assert proc.mm.read(a, 4) == bytes(4)


def test_access_straddling_mapping_end_faults_after_copying_the_mapped_part(
        proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(PAGE, RW, ANON, addr=0x30000000)
    with pytest.raises(OSError) as ei:
        proc.mm.write(a + PAGE - 2, b"abcd")
    assert ei.value.errno == errno.EFAULT
    assert proc.mm.read(a + PAGE - 2, 2) == b"ab"  # like a partial copy_to_user


def test_file_mapping_past_eof_faults(proc: spawnfd.Process) -> None:
    fd = tmpfile(proc, "short", b"x" * 100)
    a = proc.mm.mmap(3 * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert proc.mm.read(a, 101) == b"x" * 100 + b"\0"  # the rest of the last page is zero
    with pytest.raises(OSError) as ei:
        proc.mm.read(a + PAGE, 1)  # SIGBUS on Linux
    assert ei.value.errno == errno.EFAULT


def test_dontneed_semantics_per_mapping_kind(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    fd = tmpfile(p, "dn", b"F" * PAGE)
    anon = p.mm.mmap(PAGE, RW, ANON)
    private = p.mm.mmap(PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    shared = p.mm.mmap(PAGE, RW, mmap.MAP_SHARED, fd, 0)
    p.mm.write(anon, b"a")
    p.mm.write(private, b"p")
    assert p.mm.read(shared, 1) == b"F"
    for a in (anon, private, shared):
        p.mm.madvise(a, PAGE, mmap.MADV_DONTNEED)
        assert p.mm.translate(a) == 0
    assert p.mm.read(anon, 1) == b"\0"      # private anonymous: zero-fill again
    assert p.mm.read(private, 1) == b"F"    # private file: the file's bytes again
    p.mm.write(shared, b"s")
    p.mm.madvise(shared, PAGE, mmap.MADV_DONTNEED)
    assert p.mm.read(shared, 1) == b"s"     # shared: the page cache keeps it
    assert kernel.statistics().anon_frames == 0


def test_shared_anonymous_is_shmem(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(2 * PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    assert p.mm.read(a, 4) == bytes(4)  # read fault allocates a shmem page, not the zero page
    p.mm.write(a + PAGE, b"shm")
    assert p.mm.read(a + PAGE, 3) == b"shm"
    assert kernel.statistics().pagecache_frames == 2
    assert p.mm.statistics().rss_shmem_bytes == 2 * PAGE
    p.mm.munmap(a, 2 * PAGE)
    assert kernel.statistics().pagecache_frames == 0  # the unnamed inode died with its vma


def test_map_populate_prefaults(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(8 * PAGE, RW, ANON | mmap.MAP_POPULATE)
    assert p.mm.statistics().rss_anon_bytes == 8 * PAGE
    r = p.mm.mmap(8 * PAGE, mmap.PROT_READ, ANON | mmap.MAP_POPULATE)
    assert kernel.statistics().zero_page_maps == 8
    assert all(p.mm.translate(x + i * PAGE) for x in (a, r) for i in range(8))


def test_populate_errors(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(4 * PAGE, mmap.PROT_READ, ANON)
    with pytest.raises(OSError) as ei:
        proc.mm.populate(a, 4 * PAGE, write=True)
    assert ei.value.errno == errno.EINVAL  # as MADV_POPULATE_WRITE says
    w = proc.mm.mmap(PAGE, mmap.PROT_WRITE, ANON)
    with pytest.raises(OSError) as ei:
        proc.mm.populate(w, PAGE)  # no PROT_READ: MADV_POPULATE_READ refuses
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        proc.mm.populate(a, 8 * PAGE)
    assert ei.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as ei:
        proc.mm.populate(a + 1, PAGE)
    assert ei.value.errno == errno.EINVAL
