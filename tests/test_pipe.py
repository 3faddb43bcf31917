"""Pipes: a 64 KiB ring, EOF when writers are gone, EPIPE when readers are, atomic small
writes, and their descriptors across dup and fork."""

from __future__ import annotations

import errno
import os

import pytest

import spawnfd


def test_bytes_flow_in_order_through_the_ring(proc: spawnfd.Process) -> None:
    r, w = proc.pipe()
    sent = bytearray()
    got = bytearray()
    for i in range(40):  # 40 x 5000 bytes: wraps the 64 KiB ring several times
        chunk = bytes([i]) * 5000
        assert proc.write(w, chunk) == 5000
        sent += chunk
        got += proc.read(r, 3000 + 100 * i)
    while len(got) < len(sent):
        got += proc.read(r, 65536)
    assert got == sent
    with pytest.raises(BlockingIOError):
        proc.read(r, 1)  # empty, a writer is left: a blocking read would wait


def test_full_pipe_and_atomic_writes(proc: spawnfd.Process) -> None:
    r, w = proc.pipe()
    assert proc.write(w, b"a" * 70000) == 65536  # a big write takes what fits
    with pytest.raises(BlockingIOError):
        proc.write(w, b"b")
    assert len(proc.read(r, 100)) == 100
    with pytest.raises(BlockingIOError):
        proc.write(w, b"c" * 4096)  # PIPE_BUF bytes are written whole or not at all
    assert proc.write(w, b"d" * 100) == 100


def test_eof_after_the_last_writer_closes(proc: spawnfd.Process) -> None:
    r, w = proc.pipe()
    w2 = proc.dup(w)
    proc.write(w, b"tail")
    proc.close(w)
    assert proc.read(r, 10) == b"tail"
    with pytest.raises(BlockingIOError):
        proc.read(r, 1)  # the dup still writes
    proc.close(w2)
    assert proc.read(r, 10) == b""


def test_epipe_without_readers(proc: spawnfd.Process) -> None:
    r, w = proc.pipe()
    proc.close(r)
    with pytest.raises(BrokenPipeError):
        proc.write(w, b"x")


def test_fork_shares_both_ends(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    r, w = p.pipe()
    c = p.fork()
    c.write(w, b"from child")
    c.close(w)
    assert p.read(r, 100) == b"from child"
    p.close(w)  # the last writer
    assert p.read(r, 1) == b""
    c.exit(0)
    p.wait(c.pid)


@pytest.mark.parametrize("call,err", [
    (lambda p, r, w: p.lseek(r, 0, os.SEEK_SET), errno.ESPIPE),
    (lambda p, r, w: p.pread(r, 1, 0), errno.ESPIPE),
    (lambda p, r, w: p.read(w, 1), errno.EBADF),
    (lambda p, r, w: p.write(r, b"x"), errno.EBADF),
    (lambda p, r, w: p.mm.mmap(4096, 1, 2, r, 0), errno.ENODEV),
    (lambda p, r, w: p.mm.mmap(4096, 1, 2, w, 0), errno.EACCES),
    (lambda p, r, w: p.ftruncate(w, 0), errno.EINVAL),
    (lambda p, r, w: p.pipe(0x4000000), errno.EINVAL),
])
def test_bad_calls_on_pipes(proc: spawnfd.Process, call: object, err: int) -> None:
    r, w = proc.pipe()
    with pytest.raises(OSError) as ei:
        call(proc, r, w)  # type: ignore[operator]
    assert ei.value.errno == err


def test_pipe_close_on_exec_and_descriptor_limit(proc: spawnfd.Process) -> None:
    r, w = proc.pipe(os.O_CLOEXEC)
    c = proc.fork()
    c.execve("/bin/true", ["true"])
    with pytest.raises(OSError):
        c.read(r, 1)
    fds = [proc.open("/dev/null", os.O_RDONLY) for _ in range(1024 - 3)]
    with pytest.raises(OSError) as ei:
        proc.pipe()  # one slot left, a pipe needs two
    assert ei.value.errno == errno.EMFILE
    for fd in fds:
        proc.close(fd)


def test_mmap_of_a_pipe_with_prot_exec_is_eperm(proc: spawnfd.Process) -> None:
    # Linux: pipefs is noexec, checked before the missing mmap operation (ENODEV).
    import mmap
    r, _ = proc.pipe()
    for prot, err in ((mmap.PROT_READ | mmap.PROT_EXEC, errno.EPERM),
                      (mmap.PROT_READ, errno.ENODEV)):
        with pytest.raises(OSError) as ei:
            proc.mm.mmap(4096, prot, mmap.MAP_SHARED, r)
        assert ei.value.errno == err
