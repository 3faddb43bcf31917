"""Files: host files read-only and lazily, tmpfs, devices, descriptors, truncate, unlink."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import spawnfd

from .helpers import PAGE, RW

TRUE = "/bin/true"


def test_host_file_bytes_are_real_and_read_lazily(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    with open(TRUE, "rb") as f:
        host = f.read()
    fd = p.open(TRUE, os.O_RDONLY)
    assert p.fstat_size(fd) == len(host)
    assert kernel.statistics().pagecache_frames == 0  # nothing read at open
    assert p.pread(fd, 100, 5000) == host[5000:5100]
    assert kernel.statistics().pagecache_frames == 1  # one page, on demand
    assert p.read(fd, len(host) + 10) == host
    assert p.read(fd, 10) == b""


def test_host_files_are_read_only(proc: spawnfd.Process) -> None:
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(OSError) as ei:
            proc.open(TRUE, flags)
        assert ei.value.errno == errno.EROFS
    with pytest.raises(OSError) as ei:
        proc.open("/etc/spawnfd-does-not-exist", os.O_RDWR | os.O_CREAT)
    assert ei.value.errno == errno.EROFS
    with pytest.raises(FileNotFoundError):
        proc.open("/etc/spawnfd-does-not-exist", os.O_RDONLY)
    with pytest.raises(IsADirectoryError):
        proc.open("/etc", os.O_RDWR)
    with pytest.raises(NotADirectoryError):
        proc.open(TRUE, os.O_RDONLY | os.O_DIRECTORY)
    fd = proc.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(IsADirectoryError):
        proc.read(fd, 10)


def test_tmpfs_create_write_seek_append_truncate(proc: spawnfd.Process) -> None:
    fd = proc.open("/tmp/f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with pytest.raises(FileExistsError):
        proc.open("/tmp/f", os.O_RDWR | os.O_CREAT | os.O_EXCL)
    assert proc.write(fd, b"hello world") == 11
    assert proc.lseek(fd, 0, os.SEEK_CUR) == 11
    assert proc.lseek(fd, -5, os.SEEK_END) == 6
    assert proc.read(fd, 100) == b"world"
    assert proc.lseek(fd, 3 * PAGE, os.SEEK_SET) == 3 * PAGE
    proc.write(fd, b"!")  # a hole reads as zeroes
    assert proc.pread(fd, 4, 3 * PAGE - 2) == b"\0\0!"
    ap = proc.open("/tmp/f", os.O_WRONLY | os.O_APPEND)
    proc.write(ap, b"END")
    assert proc.pread(fd, 4, 3 * PAGE) == b"!END"
    proc.ftruncate(fd, 5)
    assert proc.pread(fd, 100, 0) == b"hello"
    assert proc.open("/tmp/f", os.O_RDWR | os.O_TRUNC) >= 0
    assert proc.fstat_size(fd) == 0
    with pytest.raises(OSError) as ei:
        proc.lseek(fd, -1, os.SEEK_SET)
    assert ei.value.errno == errno.EINVAL


def test_relative_paths_and_dotdot(proc: spawnfd.Process) -> None:
    fd = proc.open("tmp/../tmp/./rel", os.O_RDWR | os.O_CREAT)  # cwd is /
    proc.write(fd, b"r")
    assert proc.pread(proc.open("/tmp/rel", os.O_RDONLY), 1, 0) == b"r"


def test_devices(proc: spawnfd.Process) -> None:
    null = proc.open("/dev/null", os.O_RDWR)
    zero = proc.open("/dev/zero", os.O_RDWR)
    assert proc.read(null, 10) == b""
    assert proc.write(null, b"gone") == 4
    assert proc.read(zero, 10) == bytes(10)
    with pytest.raises(OSError) as ei:
        proc.mm.mmap(PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE, null, 0)
    assert ei.value.errno == errno.ENODEV
    a = proc.mm.mmap(PAGE, RW, mmap.MAP_PRIVATE, zero, 0)  # private /dev/zero: anonymous
    proc.mm.write(a, b"z")
    assert proc.mm.read(a, 2) == b"z\0"


def test_dup_shares_the_offset_dup2_replaces(proc: spawnfd.Process) -> None:
    fd = proc.open("/tmp/d", os.O_RDWR | os.O_CREAT)
    proc.write(fd, b"0123456789")
    proc.lseek(fd, 0, os.SEEK_SET)
    d = proc.dup(fd)
    assert d == fd + 1
    assert proc.read(fd, 3) == b"012"
    assert proc.read(d, 3) == b"345"  # one open file description, one offset
    other = proc.open("/dev/zero", os.O_RDONLY)
    assert proc.dup2(fd, other) == other
    assert proc.read(other, 2) == b"67"
    assert proc.dup2(fd, fd) == fd
    proc.close(fd)
    assert proc.read(d, 2) == b"89"  # still open through the duplicate
    with pytest.raises(OSError) as ei:
        proc.close(fd)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(OSError) as ei:
        proc.dup2(fd, 50)
    assert ei.value.errno == errno.EBADF


def test_unlink_while_mapped_keeps_the_data(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    fd = p.open("/tmp/u", os.O_RDWR | os.O_CREAT)
    p.ftruncate(fd, 2 * PAGE)
    a = p.mm.mmap(2 * PAGE, RW, mmap.MAP_SHARED, fd, 0)
    p.mm.write(a, b"kept")
    p.close(fd)
    p.unlink("/tmp/u")
    with pytest.raises(FileNotFoundError):
        p.open("/tmp/u", os.O_RDONLY)
    assert p.mm.read(a, 4) == b"kept"
    assert p.mm.maps().splitlines()[0].endswith("/tmp/u (deleted)")
    p.mm.munmap(a, 2 * PAGE)
    assert kernel.statistics().pagecache_frames == 0  # last user gone: the inode is freed
    with pytest.raises(OSError) as ei:
        p.unlink(TRUE)
    assert ei.value.errno == errno.EROFS


def test_truncate_unmaps_pages_past_the_end(kernel: spawnfd.Kernel) -> None:
    # What if a mapped file shrinks: do mapped pages past the new end go away (SIGBUS), and
    # does the tail of the last page read as zero?
    p = kernel.init
    fd = p.open("/tmp/t", os.O_RDWR | os.O_CREAT)
    p.write(fd, b"x" * 3 * PAGE)
    a = p.mm.mmap(3 * PAGE, RW, mmap.MAP_SHARED, fd, 0)
    b = p.mm.mmap(3 * PAGE, RW, mmap.MAP_PRIVATE, fd, 0)
    p.mm.populate(a, 3 * PAGE, write=True)
    p.mm.write(b + 2 * PAGE, b"private")
    p.ftruncate(fd, PAGE + 10)
    assert p.mm.read(a + PAGE, 12) == b"x" * 10 + b"\0\0"
    for addr in (a + 2 * PAGE, b + 2 * PAGE):
        with pytest.raises(OSError) as ei:
            p.mm.read(addr, 1)
        assert ei.value.errno == errno.EFAULT
    assert kernel.statistics().pagecache_frames == 2
    p.ftruncate(fd, 3 * PAGE)  # grows back with zeroes
    assert p.mm.read(a + 2 * PAGE, 2) == b"\0\0"


def test_descriptor_limit(proc: spawnfd.Process) -> None:
    fds = [proc.open("/dev/null", os.O_RDONLY) for _ in range(1024)]
    assert sorted(fds) == list(range(1024))
    with pytest.raises(OSError) as ei:
        proc.open("/dev/null", os.O_RDONLY)
    assert ei.value.errno == errno.EMFILE
    for fd in fds:
        proc.close(fd)
