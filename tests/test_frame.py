"""Physical frames: sizes, lazy metadata, the buddy allocator, ENOMEM, content kinds."""

from __future__ import annotations

import errno
import gc
import mmap

import pytest

import spawnfd

from .helpers import ANON, PAGE, RW, frames, host_rss_kib, stamp_bytes


@pytest.mark.parametrize("size,expected", [
    ("1M", 1 << 20), ("512M", 512 << 20), ("64G", 64 << 30), ("1T", 1 << 40),
    (1 << 30, 1 << 30), ("2GiB", 2 << 30),
])
def test_memory_sizes(size: str | int, expected: int) -> None:
    with spawnfd.Kernel(size) as k:
        assert k.statistics().frames_total == expected // PAGE


@pytest.mark.parametrize("size,exc,code", [
    (0, ValueError, None), (4097 * 64, ValueError, None),
    ("17T", ValueError, None), ("128K", ValueError, None),
    ("lots", ValueError, None), (-4096, ValueError, None),
])
def test_bad_memory_sizes(size: str | int, exc: type[Exception], code: int | None) -> None:
    with pytest.raises(exc) as ei:
        spawnfd.Kernel(size)
    if code is not None:
        assert ei.value.errno == code  # type: ignore[attr-defined]


def test_terabyte_costs_nothing_until_touched() -> None:
    # What if a 1 TiB machine boots: does the host pay for its frame metadata up front?
    gc.collect()
    before = host_rss_kib()
    with spawnfd.Kernel("1T") as k:
        after = host_rss_kib()
        assert after - before < 32 * 1024, "booting 1 TiB touched more than 32 MiB of host RAM"
        p = k.init
        a = p.mm.mmap(64 << 20, RW, ANON)
        p.mm.populate(a, 64 << 20, write=True)
        assert k.statistics().anon_frames == (64 << 20) // PAGE


def test_out_of_frames_is_enomem_and_consistent() -> None:
    with spawnfd.Kernel("1M", overcommit=1) as k:  # 256 frames; mmap may promise more
        p = k.init
        a = p.mm.mmap(2 << 20, RW, ANON)
        with pytest.raises(OSError) as ei:
            p.mm.populate(a, 2 << 20, write=True)
        assert ei.value.errno == errno.ENOMEM
        st = k.statistics()
        assert st.frames_used == st.frames_total  # everything went to pages and tables
        k.check()
        # The pages populated before the failure are there and usable.
        populated = st.anon_frames
        assert populated > 200
        p.mm.write(a + (populated - 1) * PAGE, b"last")
        assert p.mm.read(a + (populated - 1) * PAGE, 4) == b"last"
        # Freeing gives everything back; the memory is usable again.
        p.mm.munmap(a, 2 << 20)
        assert k.statistics().frames_used == 2  # zero page + init's pgd
        b = p.mm.mmap(512 << 10, RW, ANON)
        p.mm.populate(b, 512 << 10, write=True)
        k.check()


def test_frames_are_reused_after_free(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(8 << 20, RW, ANON)
    p.mm.populate(a, 8 << 20, write=True)
    used = frames(kernel)
    p.mm.munmap(a, 8 << 20)
    b = p.mm.mmap(8 << 20, RW, ANON)
    p.mm.populate(b, 8 << 20, write=True)
    st = kernel.statistics()
    assert st.frames_used == used
    assert st.frames_allocated - st.frames_freed == used


def test_fault_injection_fails_the_nth_allocation_once(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(16 * PAGE, RW, ANON | spawnfd.MAP_FIXED, addr=0x40000000)
    kernel.fail_nth_allocation(5)  # 3 tables for the walk, then pages 0 and 1, then fail
    with pytest.raises(OSError) as ei:
        p.mm.populate(a, 16 * PAGE, write=True)
    assert ei.value.errno == errno.ENOMEM
    assert kernel.statistics().anon_frames == 1
    kernel.check()
    p.mm.populate(a, 16 * PAGE, write=True)  # fires once only
    assert kernel.statistics().anon_frames == 16


def test_content_kinds_zero_stamp_buffer(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(4 * PAGE, RW, ANON)
    assert p.mm.read(a, 4 * PAGE) == bytes(4 * PAGE)
    p.mm.populate(a, 4 * PAGE, write=True, stamp=0x0123456789ABCDEF)
    assert p.mm.read(a, 4 * PAGE) == stamp_bytes(0x0123456789ABCDEF, 4 * PAGE)
    assert kernel.statistics().buffers == 0  # stamps cost metadata, not buffers
    # A write into a stamped page materialises it, keeping the stamp around the write.
    p.mm.write(a + PAGE + 3, b"xyz")
    assert kernel.statistics().buffers == 1
    expect = bytearray(stamp_bytes(0x0123456789ABCDEF))
    expect[3:6] = b"xyz"
    assert p.mm.read(a + PAGE, PAGE) == bytes(expect)
    # An unaligned read of a stamped page rotates the pattern correctly.
    assert p.mm.read(a + 2 * PAGE + 5, 11) == stamp_bytes(0x0123456789ABCDEF, 16)[5:16]
    # populate without a stamp keeps content; a zero stamp is all-zero content.
    p.mm.populate(a, 4 * PAGE, write=True)
    assert p.mm.read(a + PAGE + 3, 3) == b"xyz"
    p.mm.populate(a, 4 * PAGE, write=True, stamp=0)
    assert p.mm.read(a, 4 * PAGE) == bytes(4 * PAGE)
    assert kernel.statistics().buffers == 0


def test_stamp_requires_write(proc: spawnfd.Process) -> None:
    a = proc.mm.mmap(PAGE, RW, ANON)
    with pytest.raises(OSError) as ei:
        proc.mm.populate(a, PAGE, write=False, stamp=1)
    assert ei.value.errno == errno.EINVAL


def test_buddy_merges_back_to_large_blocks() -> None:
    # What if memory is fragmented page by page and then freed: does it coalesce, so a
    # later allocation of everything still succeeds?
    with spawnfd.Kernel("4M") as k:
        p = k.init
        a = p.mm.mmap(3 << 20, RW, ANON)
        p.mm.populate(a, 3 << 20, write=True)
        for off in range(0, 3 << 20, 2 * PAGE):  # free every other page
            p.mm.madvise(a + off, PAGE, mmap.MADV_DONTNEED)
        k.check()
        p.mm.munmap(a, 3 << 20)
        k.check()
        b = p.mm.mmap(3 << 20, RW, ANON)
        p.mm.populate(b, 3 << 20, write=True)
        assert k.statistics().anon_frames == 768
