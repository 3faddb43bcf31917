"""MADV_REMOVE, MADV_GUARD_INSTALL/MADV_GUARD_REMOVE and MAP_DROPPABLE against the host kernel
(Linux 6.18): each scenario runs on the real kernel (in this process, memory read with
process_vm_readv so that a guard page is EFAULT instead of SIGSEGV) and in the simulator
under every fork policy; the errnos, the vma layout, the present pages and every byte read
must be the same, in the process and in a forked child."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

import spawnfd

from .linux_world import NONE, RO, RW, HostWorld, SimWorld, outcome

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host is Linux")

PAGE = 4096
MADV_DONTNEED, MADV_REMOVE, MADV_WIPEONFORK, MADV_KEEPONFORK = 4, 9, 18, 19
MADV_DODUMP = 17
GUARD, UNGUARD = spawnfd.MADV_GUARD_INSTALL, spawnfd.MADV_GUARD_REMOVE
assert spawnfd.MAP_DROPPABLE == 0x08


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                                   ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
_libc.process_vm_readv.restype = ctypes.c_ssize_t


def probe(w: Any, page: int) -> str:
    """The first four bytes of a page as hex, or the errno's name (a guard page: EFAULT)."""
    if isinstance(w, SimWorld):
        try:
            return w.mm.read(w.page(page), 4).hex()
        except OSError as e:
            return errno.errorcode[e.errno or 0]
    buf = ctypes.create_string_buffer(4)
    local, remote = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 4), _IoVec(w.page(page), 4)
    if _libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1,
                              0) != 4:
        return errno.errorcode[ctypes.get_errno()]
    return buf.raw.hex()


def probes(w: Any, first: int, n: int) -> list[str]:
    return [probe(w, i) for i in range(first, first + n)]


def fill(w: Any, first: int, n: int, byte: bytes) -> None:
    for i in range(first, first + n):
        w.write(i, byte * PAGE)


# ---- guard regions ----

def guard_anon(w: Any) -> list[Any]:
    w.map(0, 8, RW); fill(w, 0, 8, b"a")
    out: list[Any] = [outcome(w.madvise, 2, 2, GUARD), probes(w, 0, 6), w.layout(), w.present()]
    out.append(w.in_child(lambda c: probes(c, 0, 6)))
    out += [outcome(w.madvise, 0, 8, MADV_DONTNEED), probes(w, 1, 4)]   # markers stay
    out += [outcome(w.mprotect, 0, 8, RO), probes(w, 1, 4), w.layout()]  # markers stay
    out += [outcome(w.mprotect, 0, 8, RW), outcome(w.madvise, 3, 1, UNGUARD), probes(w, 1, 4)]
    out.append(w.in_child(lambda c: probes(c, 1, 4)))
    out += [outcome(w.populate, 0, 8, True), outcome(w.populate, 0, 2), w.present()]
    return out


def guard_reinstall_over_pages(w: Any) -> list[Any]:
    w.map(0, 4, RW); fill(w, 0, 4, b"b")
    out: list[Any] = [outcome(w.madvise, 0, 4, GUARD), outcome(w.madvise, 1, 2, GUARD)]
    out += [outcome(w.madvise, 0, 4, UNGUARD), probes(w, 0, 4), w.present()]
    return out


def guard_file_shared_fork(w: Any) -> list[Any]:
    w.map(0, 4, RW, "file"); fill(w, 0, 4, b"f")
    out: list[Any] = [outcome(w.madvise, 1, 1, GUARD), probes(w, 0, 3), w.layout()]
    out.append(w.in_child(lambda c: probes(c, 0, 3)))
    w.map(8, 4, RW, "file")   # another mapping of the file still sees the page
    out += [probes(w, 9, 1), outcome(w.madvise, 1, 1, UNGUARD), probes(w, 0, 3)]
    return out


def guard_file_private_and_readonly(w: Any) -> list[Any]:
    w.map(0, 4, RO, "file-ro"); w.map(4, 4, RW, "file-priv"); w.map(8, 4, RO, "shanon")
    out: list[Any] = [outcome(w.madvise, 0, 12, GUARD), probes(w, 0, 12)]
    out.append(w.in_child(lambda c: probes(c, 0, 12)))
    out += [outcome(w.madvise, 0, 12, UNGUARD), probes(w, 0, 12)]
    return out


def guard_wipeonfork_child_has_none(w: Any) -> list[Any]:
    w.map(0, 4, RW); fill(w, 0, 4, b"w")
    out: list[Any] = [outcome(w.madvise, 0, 4, MADV_WIPEONFORK), outcome(w.madvise, 1, 1, GUARD)]
    out.append(w.in_child(lambda c: probes(c, 0, 3)))
    return out + [probes(w, 0, 3)]


def guard_over_hole_and_munmap(w: Any) -> list[Any]:
    w.map(0, 2, RW); w.map(3, 3, RW)
    out: list[Any] = [outcome(w.madvise, 0, 6, GUARD), probes(w, 0, 6), w.layout()]
    out += [outcome(w.munmap, 4, 1), probes(w, 3, 3)]
    w.map(4, 1, RW)   # a new mapping where a guard was: no marker
    out += [probes(w, 3, 3), outcome(w.madvise, 0, 6, UNGUARD), probes(w, 0, 6), w.layout()]
    return out


def guard_then_map_fixed_over(w: Any) -> list[Any]:
    w.map(0, 4, RW); w.madvise(1, 2, GUARD)
    w.map(1, 1, RW)
    return [probes(w, 0, 4), w.layout()]


def guard_merge_is_sticky(w: Any) -> list[Any]:
    w.map(0, 2, RW, "file"); w.madvise(0, 1, GUARD)
    w.map(2, 2, RW, "file", fpage=2)          # merges with the guarded vma
    w.map(6, 2, RW); w.madvise(6, 1, GUARD); w.madvise(6, 1, UNGUARD)
    w.map(8, 2, RW)
    return [w.layout(), probes(w, 0, 4), w.in_child(lambda c: probes(c, 0, 4))]


# ---- MADV_REMOVE ----

def remove_shared_file(w: Any) -> list[Any]:
    w.map(0, 4, RW, "file"); fill(w, 0, 4, b"A")
    w.map(4, 4, RW, "file"); w.map(8, 4, RW, "file-priv")
    w.write(10, b"P" * PAGE)                    # a private COW copy of file page 2
    out: list[Any] = [probes(w, 9, 1), outcome(w.madvise, 1, 2, MADV_REMOVE)]
    out += [probes(w, 0, 4), probes(w, 4, 4), probes(w, 8, 4), w.present()]
    out.append(w.in_child(lambda c: probes(c, 0, 4)))
    return out


def remove_errors(w: Any) -> list[Any]:
    w.map(0, 2, RW); w.map(2, 2, RW, "file-priv"); w.map(4, 2, RO, "file-ro")
    w.map(6, 2, RO, "file", fpage=6); w.map(8, 2, RW, "shanon"); fill(w, 8, 2, b"s")
    w.map(10, 2, RW, "file", fpage=10); w.map(12, 2, RW); w.map(15, 1, RW, "file", fpage=15)
    fill(w, 10, 2, b"t"); w.write(15, b"u" * PAGE)
    out = [outcome(w.madvise, 0, 1, MADV_REMOVE), outcome(w.madvise, 2, 1, MADV_REMOVE),
           outcome(w.madvise, 4, 1, MADV_REMOVE), outcome(w.madvise, 6, 1, MADV_REMOVE),
           outcome(w.madvise, 8, 1, MADV_REMOVE), probes(w, 8, 2),
           outcome(w.madvise, 10, 4, MADV_REMOVE), probes(w, 10, 2),   # stops at the anon vma
           outcome(w.madvise, 14, 2, MADV_REMOVE), probes(w, 15, 1)]   # a hole: ENOMEM after
    return out


# ---- MAP_DROPPABLE ----

def droppable(w: Any) -> list[Any]:
    w.map(0, 4, RW, "droppable"); fill(w, 0, 4, b"d")
    w.map(4, 4, RW)
    out: list[Any] = [w.layout(), probes(w, 0, 2)]
    out += [outcome(w.madvise, 0, 1, MADV_KEEPONFORK), outcome(w.madvise, 0, 1, MADV_DODUMP),
            outcome(w.madvise, 0, 1, MADV_WIPEONFORK),
            outcome(w.madvise, 0, 1, MADV_REMOVE), outcome(w.madvise, 1, 1, GUARD), w.layout()]
    out.append(w.in_child(lambda c: probes(c, 0, 6)))     # wiped on fork
    return out + [probes(w, 0, 6)]


SCENARIOS: list[Callable[[Any], list[Any]]] = [
    guard_anon, guard_reinstall_over_pages, guard_file_shared_fork,
    guard_file_private_and_readonly, guard_wipeonfork_child_has_none, guard_over_hole_and_munmap,
    guard_then_map_fixed_over, guard_merge_is_sticky, remove_shared_file, remove_errors,
    droppable]

POLICIES = [{"fork_mode": "copy"}, {"fork_mode": "cow-pt"}, {"fork_mode": "cow-pt-eager"},
            {"fork_mode": "cow-pt", "share_pagetables": True, "thp": "always"}]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_same_as_the_host(scenario: Callable[[Any], list[Any]]) -> None:
    host = HostWorld()
    try:
        want = scenario(host)
    finally:
        host.close()
    for kw in POLICIES:
        sim = SimWorld(**kw)
        try:
            assert scenario(sim) == want, kw
        finally:
            sim.close()


# ---- mmap errnos for MAP_DROPPABLE ----

_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_LOCKED, MAP_GROWSDOWN, MAP_HUGETLB, MAP_NORESERVE = 0x2000, 0x100, 0x40000, 0x4000
ANON = mmap.MAP_ANONYMOUS


@pytest.mark.parametrize("flags", [
    0x08 | ANON, 0x08 | ANON | MAP_NORESERVE, 0x08 | ANON | mmap.MAP_POPULATE,
    0x08 | ANON | MAP_LOCKED, 0x08 | ANON | MAP_GROWSDOWN, 0x08 | ANON | MAP_HUGETLB,
    0x08, 0x04 | ANON, 0x09 | ANON, 0x03 | ANON, 0x00 | ANON, 0x00 | ANON | MAP_HUGETLB,
    0x03 | ANON | MAP_HUGETLB, mmap.MAP_SHARED | ANON | MAP_HUGETLB],
    ids=hex)
def test_mmap_type_errno_as_host(flags: int) -> None:
    fd = os.memfd_create("t") if not flags & ANON else -1
    try:
        if fd >= 0:
            os.ftruncate(fd, 4 * PAGE)
        r = _libc.mmap(None, 4 * PAGE, RW, flags, fd, 0)
        host = "ok" if r not in (None, (1 << 64) - 1) else errno.errorcode[ctypes.get_errno()]
        if host == "ok":
            _libc.munmap(r, 4 * PAGE)
    finally:
        if fd >= 0:
            os.close(fd)
    with spawnfd.Kernel("64M") as k:
        p = k.init
        sfd = -1
        if not flags & ANON:
            sfd = p.open("/tmp/t", os.O_RDWR | os.O_CREAT, 0o600)
            p.ftruncate(sfd, 4 * PAGE)
        assert outcome(p.mm.mmap, 4 * PAGE, RW, flags, sfd) == host
        assert k.statistics().committed_as == 0   # droppable memory is never charged
        k.check()


# ---- shmem and commit accounting ----

def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def _host_overcommit() -> int:
    with open("/proc/sys/vm/overcommit_memory") as f:
        return int(f.read())


@pytest.mark.skipif(_host_overcommit() != 0, reason="the host's heuristic overcommit is compared")
@pytest.mark.parametrize(("prot", "flags"), [
    (RW, mmap.MAP_SHARED | ANON), (RO, mmap.MAP_SHARED | ANON),
    (RW, mmap.MAP_SHARED | ANON | MAP_NORESERVE), (RW, mmap.MAP_PRIVATE | ANON),
    (NONE, mmap.MAP_SHARED | ANON)])
def test_shared_anonymous_larger_than_memory_as_host(prot: int, flags: int) -> None:
    mem = _host_memory() // PAGE * PAGE
    size = mem + (mem >> 2)                      # 30 GiB on a 24 GiB host
    r = _libc.mmap(None, size, prot, flags, -1, 0)
    host = "ok" if r not in (None, (1 << 64) - 1) else errno.errorcode[ctypes.get_errno()]
    if host == "ok":
        _libc.munmap(r, size)
    with spawnfd.Kernel(mem) as k:
        assert outcome(k.init.mm.mmap, size, prot, flags) == host
        assert outcome(k.init.mm.mmap, mem >> 1, prot, flags) == "ok"
        k.check()
