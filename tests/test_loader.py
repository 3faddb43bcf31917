"""The fd model's user-space ELF loader (`Builder.load_elf`): one ``sfd_spawn_mmapv`` call
per file, headers read once per version of the file's content.

What if the file changes between two loads, through write(2) or through a shared mapping?
What if a step in the middle of the batch fails, or the ELF's numbers overflow?
"""

from __future__ import annotations

import errno
import mmap
import os
import struct

import pytest

import spawnfd
from spawnfd.sim.builder import ELF_ET_DYN_BASE

RW = mmap.PROT_READ | mmap.PROT_WRITE
TRUE, ECHO = "/bin/true", "/bin/echo"


@pytest.fixture
def kernel() -> spawnfd.Kernel:
    return spawnfd.Kernel("1G")


def _host(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _put(p: spawnfd.Process, path: str, data: bytes) -> None:
    fd = p.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o755)
    p.write(fd, data)
    p.close(fd)


def _version(p: spawnfd.Process, path: str) -> int:
    fd = p.open(path, os.O_RDONLY)
    try:
        return p._c.fstat(p.pid, fd)[5]
    finally:
        p.close(fd)


def _reads(k: spawnfd.Kernel) -> int:
    # page-cache reads of file content show up as nothing else: count preads by proxy of the
    # plan cache (what load_elf stores per file version)
    return len(k._elf_plans)


def test_a_second_load_of_the_same_file_reuses_its_plan(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    b1, b2 = p.process_create(), p.process_create()
    e1 = b1.load_elf(TRUE)
    plans = dict(kernel._elf_plans)
    e2 = b2.load_elf(TRUE)
    assert kernel._elf_plans == plans  # nothing read or planned again
    assert e1 == e2 and e1.base == ELF_ET_DYN_BASE
    assert b1.process.mm.maps() == b2.process.mm.maps()
    b1.abort(), b2.abort()
    kernel.check()


def test_the_batch_maps_what_exec_maps(kernel: spawnfd.Kernel) -> None:
    # The loader's layout (PIE at ELF_ET_DYN_BASE, ld.so top-down) is the kernel's execve's.
    p = kernel.init
    b = p.process_create()
    prog = b.load_elf(ECHO)
    ld = b.load_elf(prog.interpreter)
    built = b.process.mm.maps()
    c = p.fork()
    c.execve(ECHO, ["echo"], {})
    execd = "\n".join(line for line in c.mm.maps().splitlines() if "[stack]" not in line)
    assert built.strip() == execd.strip()
    assert ld.start < ld.end <= 0x7ffff7fff000 and prog.phdr == prog.base + 64
    b.abort()
    c.exit(0)
    p.wait(c.pid)
    kernel.check()


def test_write_makes_a_new_version_and_the_loader_sees_it(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    _put(p, "/tmp/prog", _host(TRUE))
    v1 = _version(p, "/tmp/prog")
    b = p.process_create()
    first = b.load_elf("/tmp/prog")
    b.abort()
    _put(p, "/tmp/prog", _host(ECHO))  # another program, same inode
    v2 = _version(p, "/tmp/prog")
    assert v2 != v1 and v1 and v2
    b = p.process_create()
    second = b.load_elf("/tmp/prog")
    ref = p.process_create()
    echo = ref.load_elf(ECHO)
    assert second.entry - second.base == echo.entry - echo.base
    assert first.entry - first.base != echo.entry - echo.base
    b.abort(), ref.abort()
    kernel.check()


def test_host_files_keep_one_version(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    assert _version(p, TRUE) == _version(p, TRUE) != 0


def test_a_shared_writable_mapping_makes_the_file_unversioned(kernel: spawnfd.Kernel) -> None:
    # Writes through a shared mapping change the content without a write(2): the loader must
    # read the headers again on every load of such a file.
    p = kernel.init
    data = _host(TRUE)
    _put(p, "/tmp/prog", data)
    b = p.process_create()
    before = b.load_elf("/tmp/prog")
    b.abort()
    fd = p.open("/tmp/prog", os.O_RDWR)
    a = p.mm.mmap(4096, RW, mmap.MAP_SHARED, fd=fd)
    p.close(fd)
    assert _version(p, "/tmp/prog") == 0
    (entry,) = struct.unpack_from("<Q", data, 24)
    p.mm.write(a + 24, struct.pack("<Q", entry + 16))  # e_entry, changed in place
    b = p.process_create()
    after = b.load_elf("/tmp/prog")
    assert after.entry == before.entry + 16
    b.abort()
    p.mm.munmap(a, 4096)
    kernel.check()


def test_a_step_failing_in_the_middle_leaves_nothing_mapped(kernel: spawnfd.Kernel) -> None:
    # What if the third segment's place is taken? The batch stops there and unmaps what it
    # had mapped: the embryo's maps are what they were.
    p = kernel.init
    b = p.process_create()
    probe = p.process_create()
    e = probe.load_elf(TRUE)
    probe.abort()
    last_page = e.end - 4096
    b.mmap(4096, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | spawnfd.MAP_FIXED, addr=last_page)
    before = b.process.mm.maps()
    with pytest.raises(FileExistsError):
        b.load_elf(TRUE)
    assert b.process.mm.maps() == before
    b.abort()
    kernel.check()


def _elf(phdrs: list[tuple[int, int, int, int, int, int]], e_type: int = 3,
         entry: int = 0x1000) -> bytes:
    """A minimal x86-64 ELF: ``(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz)``."""
    eh = bytearray(64)
    eh[:16] = b"\x7fELF\x02\x01\x01" + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, e_type, 62, 1, entry, 64, 0, 0, 64, 56,
                     len(phdrs), 64, 0, 0)
    table = b"".join(struct.pack("<IIQQQQQQ", t, f, o, v, v, fs, ms, 4096)
                     for t, f, o, v, fs, ms in phdrs)
    body = bytes(eh) + table
    return body + bytes(max(0, 8192 - len(body)))


@pytest.mark.parametrize("vaddr,filesz,memsz", [
    (2**64 - 4096, 4096, 4096),           # the segment wraps past the top
    (0x1000, 4096, 2**64 - 1),            # a bss that wraps
    (2**63, 4096, 4096),                  # far beyond the user address space
])
def test_overflowing_segments_fail_cleanly(kernel: spawnfd.Kernel, vaddr: int, filesz: int,
                                           memsz: int) -> None:
    p = kernel.init
    _put(p, "/tmp/bad", _elf([(1, 6, 0, vaddr, filesz, memsz)], e_type=2))
    b = p.process_create()
    before = b.process.mm.maps()
    with pytest.raises(OSError) as e:
        b.load_elf("/tmp/bad")
    assert e.value.errno in (errno.EINVAL, errno.ENOMEM, errno.EPERM, errno.ENOEXEC)
    assert b.process.mm.maps() == before
    b.abort()
    kernel.check()


def test_too_many_program_headers_is_enoexec(kernel: spawnfd.Kernel) -> None:
    # Linux load_elf_phdrs(): a program header table over 64 KiB is refused.
    p = kernel.init
    _put(p, "/tmp/many", _elf([(1, 4, 0, 0x1000 * (i + 1), 16, 16) for i in range(1171)]))
    b = p.process_create()
    with pytest.raises(OSError) as e:
        b.load_elf("/tmp/many")
    assert e.value.errno == errno.ENOEXEC and e.value.filename == "/tmp/many"
    b.abort()
    kernel.check()


def test_many_segments_map_in_one_call(kernel: spawnfd.Kernel) -> None:
    # 1,000 PT_LOADs, each with a bss tail: about 3,000 loader steps in one batch.
    p = kernel.init
    n = 1000
    _put(p, "/tmp/wide", _elf([(1, 6, 0, 0x10000 * (i + 1), 100, 8192) for i in range(n)],
                              e_type=2))
    b = p.process_create()
    e = b.load_elf("/tmp/wide")
    assert len(b.process.mm.maps().splitlines()) >= n
    assert b.read(e.start + 100, 8) == bytes(8)  # padzero cleared the tail of the page
    b.abort()
    kernel.check()


@pytest.mark.parametrize("why,phdr", [
    ("file part larger than memory", (1, 6, 0, 0x10000, 8192, 4096)),
    ("offset not congruent to address", (1, 6, 0x100, 0x10000, 4096, 4096)),
    ("beyond the user address space", (1, 6, 0, 0x7FFFFFFFF000, 4096, 4096)),
])
def test_the_loader_refuses_what_exec_refuses(kernel: spawnfd.Kernel, why: str,
                                              phdr: tuple[int, ...]) -> None:
    # The fd model's loader and the kernel's execve check a PT_LOAD alike, before mapping.
    p = kernel.init
    _put(p, "/tmp/odd", _elf([phdr], e_type=2))  # type: ignore[list-item]
    b = p.process_create()
    with pytest.raises(OSError) as built:
        b.load_elf("/tmp/odd")
    assert b.process.mm.maps() == ""
    c = p.fork()
    with pytest.raises(OSError) as execd:
        c.execve("/tmp/odd", ["odd"], {})
    assert built.value.errno == execd.value.errno == errno.EINVAL, why
    b.abort()
    c.exit(0)
    p.wait(c.pid)
    kernel.check()
