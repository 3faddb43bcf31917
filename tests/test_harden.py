"""Hostile input (issue 16): no crash, hang, corruption or host-memory balloon; a clear errno
and nothing lost. Each test ends with ``k.check()``."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

PAGE = 4096


# ---- 1. map_cow with shared page tables ----

def _db(k: spawnfd.Kernel) -> tuple[spawnfd.Process, int]:
    p = k.init
    fd = p.open("/tmp/db", os.O_RDWR | os.O_CREAT, 0o644)
    p.ftruncate(fd, 4 << 20)
    a = p.mm.mmap(4 << 20, 3, mmap.MAP_SHARED, fd, 0)
    p.mm.populate(a, 4 << 20, True, stamp=0x1111)
    return p, a


def test_map_cow_partial_chunk_keeps_embryo_table() -> None:
    k = spawnfd.Kernel("64M", share_pagetables=True)
    p, a = _db(k)
    b = p.process_create()
    x = b.mmap(4096, 3, 0x22 | spawnfd.MAP_FIXED, addr=a + (1 << 20))
    b.write(x, b"mine")
    b.map_cow(p, a + 8192, 4096)
    assert b.read(x, 4) == b"mine"
    assert b.read(a + 8192, 2) == b"\x11\x11"
    k.check()
    b.abort()
    k.check()


def test_map_cow_one_page_of_shared_chunk() -> None:
    k = spawnfd.Kernel("64M", share_pagetables=True)
    p, a = _db(k)
    b = p.process_create()
    b.map_cow(p, a, 4096)
    k.check()
    assert b.read(a, 4) == b"\x11\x11\x00\x00"
    with pytest.raises(OSError) as e:
        b.read(a + 4096, 1)
    assert e.value.errno == errno.EFAULT
    k.check()
    # a whole chunk still shares, and the embryo reads the file's bytes
    b.map_cow(p, a + (2 << 20), 2 << 20)
    assert b.read(a + (3 << 20), 2) == b"\x11\x11"
    k.check()
    b.abort()
    k.check()


# ---- 2. close_range with huge descriptors ----

@pytest.mark.parametrize("first,last", [(2**31, 2**32 - 1), (2**32 - 1, 2**32 - 1),
                                        (2**31 - 1, 2**31), (1000, 2**32 - 1)])
def test_close_range_huge_first_closes_nothing(first: int, last: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    p.close_range(first, last)
    assert p.write(fd, b"ok") == 2
    k.check()


@pytest.mark.parametrize("first,last", [(-1, 5), (0, -1), (2**32, 2**32), (0, 2**64)])
def test_close_range_out_of_range_is_einval(first: int, last: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT, 0o644)
    with pytest.raises(OSError) as e:
        p.close_range(first, last)
    assert e.value.errno == errno.EINVAL
    assert p.write(fd, b"ok") == 2
    k.check()


# ---- 3. touch with a stride that wraps ----

@pytest.mark.parametrize("every", [2**52, 2**52 + 1, 2**63, 2**64 - 1])
def test_touch_huge_stride_touches_first_page(every: int) -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    a = p.mm.mmap(8192, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert p.mm.touch(a, 8192, every=every) == 1
    assert p.mm.statistics().rss_anon_bytes == PAGE
    k.check()


def test_touch_stride_near_end_of_address_space() -> None:
    k = spawnfd.Kernel("16M")
    p = k.init
    a = p.mm.mmap(3 * PAGE, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    assert p.mm.touch(a, 3 * PAGE, every=2) == 2
    for bad in (0, -1, 2**64):
        with pytest.raises(OSError) as e:
            p.mm.touch(a, PAGE, every=bad)
        assert e.value.errno == errno.EINVAL
    k.check()
