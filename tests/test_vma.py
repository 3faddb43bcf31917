"""VMAs: placement, split and merge, MAP_FIXED variants, maps() format, limits."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

from .helpers import ANON, PAGE, RW

MMAP_BASE = 0x7FFFF7FFF000
FIXED = ANON | spawnfd.MAP_FIXED


def ranges(p: spawnfd.Process) -> list[tuple[int, int, str]]:
    out = []
    for line in p.mm.maps().splitlines():
        span, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in span.split("-"))
        out.append((lo, hi, perms))
    return out


def test_top_down_placement_below_mmap_base(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(3 * PAGE, RW, ANON)
    b = proc.mm.mmap(PAGE, mmap.PROT_READ, ANON)
    assert a == MMAP_BASE - 3 * PAGE
    assert b == a - PAGE
    # A hole left by munmap is reused by the next fitting mapping, highest first.
    proc.mm.munmap(a + PAGE, PAGE)
    c = proc.mm.mmap(PAGE, mmap.PROT_READ, ANON)
    assert c == a + PAGE


def test_hint_is_used_when_free_and_ignored_when_not(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(PAGE, RW, ANON, addr=0x10000000)
    assert a == 0x10000000
    b = proc.mm.mmap(PAGE, RW, ANON, addr=0x10000000)
    assert b != a and b == MMAP_BASE - PAGE
    c = proc.mm.mmap(PAGE, RW, ANON, addr=0x20000123)  # rounded up to a page
    assert c == 0x20001000


def test_mprotect_splits_and_merges_back(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(3 * PAGE, RW, ANON)
    proc.mm.write(a, b"A" * 3 * PAGE)
    proc.mm.mprotect(a + PAGE, PAGE, mmap.PROT_READ)
    assert ranges(proc) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"),
                            (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]
    assert proc.mm.statistics().vma_count == 3
    proc.mm.mprotect(a + PAGE, PAGE, RW)
    assert ranges(proc) == [(a, a + 3 * PAGE, "rw-p")]
    assert proc.mm.read(a, 3 * PAGE) == b"A" * 3 * PAGE


def test_adjacent_anonymous_mappings_merge(proc: spawnfd.Process) -> None:
    base = 0x50000000
    proc.mm.mmap(PAGE, RW, FIXED, addr=base)
    proc.mm.mmap(PAGE, RW, FIXED, addr=base + 2 * PAGE)
    assert len(ranges(proc)) == 2
    proc.mm.mmap(PAGE, RW, FIXED, addr=base + PAGE)
    assert ranges(proc) == [(base, base + 3 * PAGE, "rw-p")]
    proc.mm.mmap(PAGE, mmap.PROT_READ, FIXED, addr=base + 3 * PAGE)  # different prot
    assert len(ranges(proc)) == 2


def test_file_mappings_merge_only_with_contiguous_offsets(proc: spawnfd.Process) -> None:
    fd = proc.open("/tmp/m", os.O_RDWR | os.O_CREAT)
    proc.ftruncate(fd, 16 * PAGE)
    base = 0x60000000
    flags = mmap.MAP_SHARED | spawnfd.MAP_FIXED
    proc.mm.mmap(PAGE, RW, flags, fd, 0, addr=base)
    proc.mm.mmap(PAGE, RW, flags, fd, PAGE, addr=base + PAGE)  # contiguous: merges
    proc.mm.mmap(PAGE, RW, flags, fd, 5 * PAGE, addr=base + 2 * PAGE)  # not contiguous
    assert [(lo, hi) for lo, hi, _ in ranges(proc)] == [
        (base, base + 2 * PAGE), (base + 2 * PAGE, base + 3 * PAGE)]


def test_map_fixed_replaces_and_noreplace_refuses(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(4 * PAGE, RW, ANON)
    proc.mm.write(a, b"old" * 100)
    with pytest.raises(FileExistsError):
        proc.mm.mmap(PAGE, RW, ANON | spawnfd.MAP_FIXED_NOREPLACE, addr=a + PAGE)
    assert proc.mm.read(a, 3) == b"old"
    b = proc.mm.mmap(PAGE, mmap.PROT_READ, FIXED, addr=a)
    assert b == a
    assert proc.mm.read(a, 3) == bytes(3)  # fresh anonymous memory replaced the old
    assert ranges(proc) == [(a, a + PAGE, "r--p"), (a + PAGE, a + 4 * PAGE, "rw-p")]


def test_maps_format_matches_proc_pid_maps(proc: spawnfd.Process) -> None:
    fd = proc.open("/lib64/ld-linux-x86-64.so.2", os.O_RDONLY)
    real = os.path.realpath("/lib64/ld-linux-x86-64.so.2")
    st = os.stat(real)
    a = proc.mm.mmap(2 * PAGE, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_PRIVATE, fd, PAGE)
    b = proc.mm.mmap(PAGE, RW, ANON)
    s = proc.mm.mmap(PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    lines = proc.mm.maps().splitlines()
    head = (f"{a:08x}-{a + 2 * PAGE:08x} r-xp {PAGE:08x} "
            f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x} {st.st_ino}")
    assert f"{head:<72} {real}" in lines
    assert f"{b:08x}-{b + PAGE:08x} rw-p 00000000 00:00 0" in lines
    shm = [line for line in lines if line.startswith(f"{s:08x}")]
    assert shm and shm[0].endswith(" /dev/zero (deleted)") and " rw-s " in shm[0]
    assert len(lines) == 3


def test_many_vmas_lookup_and_map_count_limit() -> None:
    # What if a process approaches vm.max_map_count (65530): is lookup right everywhere, and
    # is the split that would pass the limit refused with ENOMEM, changing nothing?
    with spawnfd.Kernel("1G") as k:
        p = k.init
        holes = 32764  # each mprotect of one inner page adds two areas: 2 * holes + 1 = 65529
        a = p.mm.mmap((2 * holes + 4) * PAGE, mmap.PROT_READ, ANON)
        for i in range(holes):
            p.mm.mprotect(a + (2 * i + 1) * PAGE, PAGE, RW)
        assert p.mm.statistics().vma_count == 2 * holes + 1
        last = a + 2 * holes * PAGE  # the last area: 4 read-only pages
        rx = mmap.PROT_READ | mmap.PROT_EXEC
        maps = p.mm.maps()
        with pytest.raises(OSError) as ei:  # needs two splits: 65531 areas
            p.mm.mprotect(last + PAGE, PAGE, rx)
        assert ei.value.errno == errno.ENOMEM
        assert p.mm.maps() == maps
        p.mm.mprotect(last, PAGE, rx)  # one split: exactly 65530 areas is allowed
        assert p.mm.statistics().vma_count == 65530
        with pytest.raises(OSError) as ei:
            p.mm.mprotect(last + 2 * PAGE, PAGE, rx)
        assert ei.value.errno == errno.ENOMEM
        for i in (0, 1, holes // 2, holes - 1):
            p.mm.write(a + (2 * i + 1) * PAGE, b"w")
            assert p.mm.read(a + (2 * i + 1) * PAGE, 1) == b"w"
            with pytest.raises(OSError) as ei:
                p.mm.write(a + 2 * i * PAGE, b"w")
            assert ei.value.errno == errno.EFAULT
        # Unmapping whole areas needs no split and always works at the limit.
        p.mm.munmap(a + PAGE, PAGE)
        assert p.mm.statistics().vma_count == 65529
        # mmap refuses only once the count is past the limit (Linux do_mmap(): map_count >
        # max_map_count; measured on Linux 6.18: the 65,531st vma is the last mmap makes).
        far = 0x200000000
        for i in range(2):
            p.mm.mmap(PAGE, mmap.PROT_READ if i else RW, ANON | spawnfd.MAP_FIXED,
                      addr=far + 2 * i * PAGE)
        assert p.mm.statistics().vma_count == 65531
        with pytest.raises(OSError) as ei:
            p.mm.mmap(PAGE, RW, ANON, addr=far + 8 * PAGE)
        assert ei.value.errno == errno.ENOMEM
        k.check()


def test_free_hint_is_honoured_for_big_shared_file_mappings_with_shared_tables() -> None:
    # Linux (shmem_get_unmapped_area) returns a free hint as it is; only without a usable
    # hint does the simulator pick an address congruent to the file offset modulo 2 MiB.
    with spawnfd.Kernel("64M", share_pagetables=True) as k:
        p = k.init
        fd = p.open("/tmp/big", os.O_RDWR | os.O_CREAT, 0o600)
        p.ftruncate(fd, 8 << 20)
        hint = 0x10003000
        assert p.mm.mmap(4 << 20, RW, mmap.MAP_SHARED, fd, 0, addr=hint) == hint
        a = p.mm.mmap(4 << 20, RW, mmap.MAP_SHARED, fd, 0x1000)
        assert a % (2 << 20) == 0x1000
        k.check()


def test_dev_zero_takes_any_offset(proc: spawnfd.Process) -> None:
    # Linux limits file offsets to MAX_LFS_FILESIZE for regular files only; a character
    # device such as /dev/zero takes any (measured: offset 2**63 - 4096 maps).
    fd = proc.open("/dev/zero", os.O_RDWR)
    a = proc.mm.mmap(2 * PAGE, RW, mmap.MAP_PRIVATE, fd, (1 << 63) - PAGE)
    assert proc.mm.read(a, 2 * PAGE) == bytes(2 * PAGE)
