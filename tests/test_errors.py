"""Bad input to every synchronous system call: the exact errno, and nothing changed.

Each case runs one bad call against a simulated process laid out like this (pages from
``BASE``), then checks that the kernel state is what it was: ``maps()``, the kernel and mm
statistics, the descriptor table, the tmpfs namespace, and the bytes of every mapping and of
the file, and that ``check()`` still passes.

    page 0-3    anonymous private rw-, written
    page 4      hole
    page 5      anonymous private r--, populated (zero page)
    page 6      anonymous private ---
    page 7      hole
    page 8-9    file shared r--  (fd opened O_RDONLY, offset 0)
    page 10-11  file private rw- (same fd, offset 0), page 10 written (a private copy)
    page 12     anonymous shared rw-, written
    page 13-15  file private r-- (same fd, offset 0): page 15 is past the end of the file
    page 16-    hole

Where the call is one the real kernel can run (mmap, munmap, mprotect, madvise with
MADV_POPULATE_* for ``populate``, process_vm_readv/writev for memory access, and the fd calls
on a tmpfs file), the ``host`` column runs the very same call against the same layout built in
this test process with ctypes, and the expected errno must be the host kernel's too.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

import spawnfd

PAGE = 4096
BASE = 0x10000000
NPAGES = 16                       # pages of the layout that the host reserves and releases
U64 = 1 << 64
RW = mmap.PROT_READ | mmap.PROT_WRITE
PRIV_ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
PROT_NONE = 0                     # the mmap module does not export these two
MAP_NORESERVE = 0x4000
MAP_SYNC = 0x80000
MAP_UNDEFINED = 0x200000          # no x86-64 mmap flag has this bit
MAP_GROWSDOWN = 0x100
MAP_HUGETLB = 0x40000
HUGE = 2 << 20
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
FILE_DATA = bytes((i * 7 + i // 4096) & 0xFF for i in range(2 * PAGE))
ANON_DATA = bytes((i * 13 + 1) & 0xFF for i in range(4 * PAGE))
PRIV_FILE_DATA = b"private copy " * 50
SHM_DATA = b"shared anon " * 40
HOST_FILE = os.path.realpath(os.__file__)  # a read-only host file for the simulator


class World(Protocol):
    """The layout above and its descriptors, on the simulator or on the host."""

    base: int
    ro: int       # the file, O_RDONLY (mapped at pages 8-15)
    wo: int       # the file, O_WRONLY
    rw: int       # the file, O_RDWR
    app: int      # the file, O_RDWR | O_APPEND
    dir: int      # a directory, O_RDONLY
    null: int     # /dev/null, O_RDWR
    closed: int   # a descriptor number that is not open

    def page(self, i: int) -> int: ...
    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int: ...
    def munmap(self, addr: int, length: int) -> None: ...
    def mprotect(self, addr: int, length: int, prot: int) -> None: ...
    def madvise(self, addr: int, length: int, advice: int) -> None: ...
    def populate(self, addr: int, length: int, write: bool = False) -> None: ...
    def read_mem(self, addr: int, n: int) -> bytes: ...
    def write_mem(self, addr: int, data: bytes) -> None: ...
    def read(self, fd: int, n: int) -> bytes: ...
    def pread(self, fd: int, n: int, offset: int) -> bytes: ...
    def write(self, fd: int, data: bytes) -> int: ...
    def lseek(self, fd: int, offset: int, whence: int) -> int: ...
    def ftruncate(self, fd: int, length: int) -> None: ...
    def dup(self, fd: int) -> int: ...
    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int: ...
    def close(self, fd: int) -> None: ...


# ---------------------------------------------------------------------------------------------
# The simulated world


class SimWorld:
    """The layout in a fresh 1 GiB simulated machine."""

    def __init__(self) -> None:
        self.k = spawnfd.Kernel("1G")
        self.p = self.k.init
        self.mm = self.p.mm
        self.base = BASE
        p, mm = self.p, self.mm
        self.rw = p.open("/tmp/data", os.O_RDWR | os.O_CREAT, 0o600)
        assert p.write(self.rw, FILE_DATA) == len(FILE_DATA)
        self.ro = p.open("/tmp/data", os.O_RDONLY)
        self.wo = p.open("/tmp/data", os.O_WRONLY)
        self.app = p.open("/tmp/data", os.O_RDWR | os.O_APPEND)
        self.dir = p.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
        self.null = p.open("/dev/null", os.O_RDWR)
        self.closed = p.open("/dev/zero", os.O_RDONLY)
        p.close(self.closed)
        fixed = spawnfd.MAP_FIXED_NOREPLACE
        assert mm.mmap(4 * PAGE, RW, PRIV_ANON | fixed, addr=self.page(0)) == self.page(0)
        mm.write(self.page(0), ANON_DATA)
        mm.mmap(PAGE, mmap.PROT_READ, PRIV_ANON | fixed, addr=self.page(5))
        mm.populate(self.page(5), PAGE)
        mm.mmap(PAGE, PROT_NONE, PRIV_ANON | fixed, addr=self.page(6))
        mm.mmap(2 * PAGE, mmap.PROT_READ, mmap.MAP_SHARED | fixed, self.ro, addr=self.page(8))
        mm.populate(self.page(8), 2 * PAGE)
        mm.mmap(2 * PAGE, RW, mmap.MAP_PRIVATE | fixed, self.ro, addr=self.page(10))
        mm.write(self.page(10), PRIV_FILE_DATA)
        mm.populate(self.page(11), PAGE)
        mm.mmap(PAGE, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | fixed, addr=self.page(12))
        mm.write(self.page(12), SHM_DATA)
        mm.mmap(3 * PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE | fixed, self.ro, addr=self.page(13))
        mm.populate(self.page(13), 2 * PAGE)

    def page(self, i: int) -> int:
        return self.base + i * PAGE

    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        return self.mm.mmap(length, prot, flags, fd, offset, addr)

    def munmap(self, addr: int, length: int) -> None:
        self.mm.munmap(addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.mm.mprotect(addr, length, prot)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self.mm.madvise(addr, length, advice)

    def populate(self, addr: int, length: int, write: bool = False) -> None:
        self.mm.populate(addr, length, write)

    def read_mem(self, addr: int, n: int) -> bytes:
        return self.mm.read(addr, n)

    def write_mem(self, addr: int, data: bytes) -> None:
        self.mm.write(addr, data)

    def read(self, fd: int, n: int) -> bytes:
        return self.p.read(fd, n)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return self.p.pread(fd, n, offset)

    def write(self, fd: int, data: bytes) -> int:
        return self.p.write(fd, data)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return self.p.lseek(fd, offset, whence)

    def ftruncate(self, fd: int, length: int) -> None:
        self.p.ftruncate(fd, length)

    def dup(self, fd: int) -> int:
        return self.p.dup(fd)

    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int:
        return self.p.dup2(fd, fd2, inheritable)

    def close(self, fd: int) -> None:
        self.p.close(fd)

    # ---- what must not change ----
    NAMES = ("/tmp/data", "/tmp/absent", "/tmp/new", "/etc/spawnfd-new", "/dev/shm/new")

    def snapshot(self) -> dict[str, Any]:
        """Everything a failed call must leave alone, read without side effects."""
        fds = []
        for fd in range(16):
            try:
                fds.append((fd, self.p.fstat_size(fd), self.p.lseek(fd, 0, os.SEEK_CUR)))
            except OSError as e:
                assert e.errno == errno.EBADF
        return {"maps": self.mm.maps(), "kstats": self.k.statistics(),
                "mmstats": self.mm.statistics(), "fds": fds}

    def names(self) -> dict[str, int | None]:
        """Which probe names resolve (0) or the errno (opens and closes a descriptor)."""
        out: dict[str, int | None] = {}
        for name in self.NAMES:
            try:
                self.p.close(self.p.open(name, os.O_RDONLY))
                out[name] = 0
            except OSError as e:
                out[name] = e.errno
        return out

    def assert_content_intact(self) -> None:
        """Every mapping and the file still hold the bytes the setup gave them."""
        mm = self.mm
        assert mm.read(self.page(0), 4 * PAGE) == ANON_DATA
        assert mm.read(self.page(5), PAGE) == bytes(PAGE)
        assert mm.read(self.page(8), 2 * PAGE) == FILE_DATA
        priv = PRIV_FILE_DATA + FILE_DATA[len(PRIV_FILE_DATA):]
        assert mm.read(self.page(10), 2 * PAGE) == priv
        assert mm.read(self.page(12), PAGE) == SHM_DATA + bytes(PAGE - len(SHM_DATA))
        assert mm.read(self.page(13), 2 * PAGE) == FILE_DATA
        assert self.p.pread(self.ro, 3 * PAGE, 0) == FILE_DATA


# ---------------------------------------------------------------------------------------------
# The host world: the same layout in this test process, through libc


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
for _name in ("munmap", "mprotect", "madvise"):
    getattr(_libc, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    getattr(_libc, _name).restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
for _name in ("process_vm_readv", "process_vm_writev"):
    getattr(_libc, _name).argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                                      ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
    getattr(_libc, _name).restype = ctypes.c_ssize_t
_MAP_FAILED = U64 - 1


def _host_check(rc: int) -> int:
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def _signed(v: int) -> int:
    """An unsigned 64-bit argument as the C long ctypes wants."""
    return v - U64 if v >= 1 << 63 else v


class HostWorld:
    """The layout in this process's own address space, on a file in the host's tmpfs."""

    def __init__(self, tmpdir: str) -> None:
        self._extra_maps: list[tuple[int, int]] = []
        self._extra_fds: list[int] = []
        path = os.path.join(tmpdir, "data")
        self.rw = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.write(self.rw, FILE_DATA)
        self.ro = os.open(path, os.O_RDONLY)
        self.wo = os.open(path, os.O_WRONLY)
        self.app = os.open(path, os.O_RDWR | os.O_APPEND)
        self.dir = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY)
        self.null = os.open("/dev/null", os.O_RDWR)
        self.closed = 1019
        with pytest.raises(OSError):  # the number must really be free
            os.fstat(self.closed)
        self.base = self._raw_mmap(0, NPAGES * PAGE, PROT_NONE,
                                   PRIV_ANON | MAP_NORESERVE, -1, 0)
        fx = spawnfd.MAP_FIXED
        ro = self.ro
        for first, n, prot, flags, fd in [
                (0, 4, RW, PRIV_ANON, -1), (5, 1, mmap.PROT_READ, PRIV_ANON, -1),
                (6, 1, PROT_NONE, PRIV_ANON, -1), (8, 2, mmap.PROT_READ, mmap.MAP_SHARED, ro),
                (10, 2, RW, mmap.MAP_PRIVATE, ro),
                (12, 1, RW, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1),
                (13, 3, mmap.PROT_READ, mmap.MAP_PRIVATE, ro)]:
            self._raw_mmap(self.page(first), n * PAGE, prot, flags | fx, fd, 0)
        for hole in (4, 7):
            _host_check(_libc.munmap(self.page(hole), PAGE))
        ctypes.memmove(self.page(0), ANON_DATA, len(ANON_DATA))

    def _raw_mmap(self, addr: int, length: int, prot: int, flags: int, fd: int,
                  offset: int) -> int:
        r = _libc.mmap(addr, length, prot, flags, fd, _signed(offset))
        if r is None or r == _MAP_FAILED:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return int(r)

    def page(self, i: int) -> int:
        return self.base + i * PAGE

    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        r = self._raw_mmap(addr, length, prot, flags, fd, offset)
        self._extra_maps.append((r, length))  # an unexpected success: undone in close_all
        return r

    def munmap(self, addr: int, length: int) -> None:
        _host_check(_libc.munmap(addr, length))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        _host_check(_libc.mprotect(addr, length, prot))

    def madvise(self, addr: int, length: int, advice: int) -> None:
        _host_check(_libc.madvise(addr, length, advice))

    def populate(self, addr: int, length: int, write: bool = False) -> None:
        self.madvise(addr, length, MADV_POPULATE_WRITE if write else MADV_POPULATE_READ)

    def _vm_rw(self, fn: Any, addr: int, buf: Any, n: int) -> int:
        local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), n)
        remote = _IoVec(addr, n)
        return _host_check(fn(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))

    def read_mem(self, addr: int, n: int) -> bytes:
        buf = ctypes.create_string_buffer(n)
        got = self._vm_rw(_libc.process_vm_readv, addr, buf, n)
        return buf.raw[:got]

    def write_mem(self, addr: int, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        self._vm_rw(_libc.process_vm_writev, addr, buf, len(data))

    def read(self, fd: int, n: int) -> bytes:
        return os.read(fd, n)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        return os.pread(fd, n, offset)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return os.lseek(fd, offset, whence)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def dup(self, fd: int) -> int:
        nfd = os.dup(fd)
        self._extra_fds.append(nfd)
        return nfd

    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int:
        nfd = os.dup2(fd, fd2, inheritable)
        self._extra_fds.append(nfd)
        return nfd

    def close(self, fd: int) -> None:
        os.close(fd)

    def close_all(self) -> None:
        """Give back the region, whatever an unexpected success mapped, and the fds."""
        for addr, length in self._extra_maps:
            if not self.base <= addr < self.page(NPAGES):
                _libc.munmap(addr, length)
        _libc.munmap(self.base, NPAGES * PAGE)
        for fd in {self.rw, self.ro, self.wo, self.app, self.dir, self.null, *self._extra_fds}:
            try:
                os.close(fd)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# The cases


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad call: ``act`` on a world must raise ``err``; ``host``: run it on the host too."""

    id: str
    act: Callable[[Any], object]
    err: int
    host: bool = False
    host_err: int | None = None   # the host's errno where the simulator documents another


def C(id: str, act: Callable[[Any], object], err: int, host: bool = False,
      host_err: int | None = None) -> Any:
    return pytest.param(Case(id, act, err, host, host_err), id=id)


P = mmap.PROT_READ
SH = mmap.MAP_SHARED
PR = mmap.MAP_PRIVATE
FIXED = spawnfd.MAP_FIXED
NOREPLACE = spawnfd.MAP_FIXED_NOREPLACE
VALIDATE = spawnfd.MAP_SHARED_VALIDATE
ABOVE_TASK = 0x800000000000       # just above the x86-64 4-level user address limit
TOP_PAGE = U64 - PAGE             # the last page of the 64-bit space: addr + len wraps

CASES = [
    # ---- mmap: arguments ----
    # Does a zero length fail before anything else?
    C("mmap-len-zero", lambda w: w.mmap(0, RW, PRIV_ANON), errno.EINVAL, host=True),
    # Is a MAP_FIXED address that is not page aligned refused?
    C("mmap-fixed-unaligned", lambda w: w.mmap(PAGE, RW, PRIV_ANON | FIXED, addr=w.page(4) + 1),
      errno.EINVAL, host=True),
    C("mmap-noreplace-unaligned",
      lambda w: w.mmap(PAGE, RW, PRIV_ANON | NOREPLACE, addr=w.page(4) + 8), errno.EINVAL,
      host=True),
    # Is a file offset that is not page aligned refused?
    C("mmap-offset-unaligned", lambda w: w.mmap(PAGE, P, PR, w.ro, offset=100), errno.EINVAL,
      host=True),
    # Neither MAP_SHARED nor MAP_PRIVATE?
    C("mmap-type-neither", lambda w: w.mmap(PAGE, RW, mmap.MAP_ANONYMOUS), errno.EINVAL,
      host=True),
    C("mmap-type-neither-file", lambda w: w.mmap(PAGE, P, 0, w.ro), errno.EINVAL, host=True),
    # A mapping type that does not exist (0x4)?
    C("mmap-type-undefined", lambda w: w.mmap(PAGE, RW, 0x4 | mmap.MAP_ANONYMOUS),
      errno.EINVAL, host=True),
    # MAP_SHARED|MAP_PRIVATE is MAP_SHARED_VALIDATE, which anonymous memory does not take.
    C("mmap-validate-anon", lambda w: w.mmap(PAGE, RW, VALIDATE | mmap.MAP_ANONYMOUS),
      errno.EINVAL, host=True),
    # MAP_SHARED_VALIDATE with a flag no kernel knows?
    C("mmap-validate-unknown-flag", lambda w: w.mmap(PAGE, P, VALIDATE | MAP_UNDEFINED, w.ro),
      errno.EOPNOTSUPP, host=True),
    # MAP_FIXED_NOREPLACE is not a legacy flag: MAP_SHARED_VALIDATE refuses it (Linux does).
    C("mmap-validate-noreplace",
      lambda w: w.mmap(PAGE, P, VALIDATE | NOREPLACE, w.ro, addr=w.page(4)), errno.EOPNOTSUPP,
      host=True),
    # ... but only once the place is known to be free: EEXIST comes first.
    C("mmap-validate-noreplace-taken",
      lambda w: w.mmap(PAGE, P, VALIDATE | NOREPLACE, w.ro, addr=w.page(0)), errno.EEXIST,
      host=True),
    # EEXIST also comes before the descriptor's access checks.
    C("mmap-noreplace-taken-rdonly-fd",
      lambda w: w.mmap(PAGE, RW, SH | NOREPLACE, w.ro, addr=w.page(0)), errno.EEXIST,
      host=True),
    # MAP_SYNC is only for DAX files; tmpfs is not one.
    C("mmap-validate-sync-tmpfs", lambda w: w.mmap(PAGE, P, VALIDATE | MAP_SYNC, w.ro),
      errno.EOPNOTSUPP, host=True),
    # MAP_GROWSDOWN is for private anonymous memory only.
    C("mmap-growsdown-shared-anon",
      lambda w: w.mmap(PAGE, RW, SH | mmap.MAP_ANONYMOUS | MAP_GROWSDOWN), errno.EINVAL,
      host=True),
    C("mmap-growsdown-file", lambda w: w.mmap(PAGE, P, PR | MAP_GROWSDOWN, w.ro), errno.EINVAL,
      host=True),
    # MAP_HUGETLB: a file that is not on hugetlbfs is EINVAL; anonymous memory needs huge
    # pages in the pool (vm.nr_hugepages, 0 on the host and in the simulator): ENOMEM.
    C("mmap-hugetlb-file", lambda w: w.mmap(PAGE, P, PR | MAP_HUGETLB, w.ro), errno.EINVAL,
      host=True),
    C("mmap-hugetlb-anon", lambda w: w.mmap(HUGE, RW, PRIV_ANON | MAP_HUGETLB), errno.ENOMEM,
      host=True),
    # Does MAP_FIXED_NOREPLACE refuse to replace a whole mapping?
    C("mmap-noreplace-over-mapping",
      lambda w: w.mmap(PAGE, RW, PRIV_ANON | NOREPLACE, addr=w.page(0)), errno.EEXIST,
      host=True),
    # ... and a range that only touches one page of it, starting in a hole?
    C("mmap-noreplace-partial",
      lambda w: w.mmap(2 * PAGE, RW, PRIV_ANON | NOREPLACE, addr=w.page(4)), errno.EEXIST,
      host=True),
    # Below vm.mmap_min_addr without CAP_SYS_RAWIO (the host test runs as root: no oracle).
    C("mmap-fixed-below-min-addr", lambda w: w.mmap(PAGE, RW, PRIV_ANON | FIXED, addr=0x1000),
      errno.EPERM),
    # A fixed mapping past the end of the user address space?
    C("mmap-fixed-past-task-size",
      lambda w: w.mmap(2 * PAGE, RW, PRIV_ANON | FIXED, addr=TOP_PAGE - PAGE), errno.ENOMEM,
      host=True),
    # A length bigger than the address space, and one that wraps to 0 when rounded up?
    C("mmap-len-too-big", lambda w: w.mmap(U64 - PAGE, RW, PRIV_ANON), errno.ENOMEM, host=True),
    C("mmap-len-wraps", lambda w: w.mmap(U64 - 1, RW, PRIV_ANON), errno.ENOMEM, host=True),
    # A file offset so large that offset + length passes the largest file size?
    C("mmap-offset-past-max-file-size", lambda w: w.mmap(2 * PAGE, P, PR, w.ro, offset=TOP_PAGE),
      errno.EOVERFLOW, host=True),
    # ---- mmap: the file ----
    C("mmap-fd-minus-one", lambda w: w.mmap(PAGE, P, PR, -1), errno.EBADF, host=True),
    C("mmap-fd-closed", lambda w: w.mmap(PAGE, P, SH, w.closed), errno.EBADF, host=True),
    # Writable shared mapping through a read-only descriptor?
    C("mmap-shared-write-rdonly-fd", lambda w: w.mmap(PAGE, RW, SH, w.ro), errno.EACCES,
      host=True),
    # Any mapping (even private, read-only) through a write-only descriptor?
    C("mmap-private-wronly-fd", lambda w: w.mmap(PAGE, P, PR, w.wo), errno.EACCES, host=True),
    C("mmap-shared-wronly-fd", lambda w: w.mmap(PAGE, P, SH, w.wo), errno.EACCES, host=True),
    C("mmap-directory", lambda w: w.mmap(PAGE, P, PR, w.dir), errno.ENODEV, host=True),
    C("mmap-dev-null", lambda w: w.mmap(PAGE, P, SH, w.null), errno.ENODEV, host=True),
    # ---- munmap ----
    C("munmap-unaligned", lambda w: w.munmap(w.page(0) + 1, PAGE), errno.EINVAL, host=True),
    C("munmap-len-zero", lambda w: w.munmap(w.page(0), 0), errno.EINVAL, host=True),
    C("munmap-len-wraps", lambda w: w.munmap(w.page(0), U64 - 1), errno.EINVAL, host=True),
    C("munmap-past-task-size", lambda w: w.munmap(TOP_PAGE, PAGE), errno.EINVAL, host=True),
    # ---- mprotect ----
    C("mprotect-unaligned", lambda w: w.mprotect(w.page(0) + 4, PAGE, P), errno.EINVAL,
      host=True),
    C("mprotect-unknown-prot-bit", lambda w: w.mprotect(w.page(0), PAGE, 0x10), errno.EINVAL,
      host=True),
    # GROWSDOWN and GROWSUP together?
    C("mprotect-grows-both", lambda w: w.mprotect(w.page(0), PAGE,
                                                 P | PROT_GROWSDOWN | PROT_GROWSUP),
      errno.EINVAL, host=True),
    # PROT_GROWSDOWN on a mapping that does not grow down?
    C("mprotect-growsdown-plain", lambda w: w.mprotect(w.page(0), PAGE, P | PROT_GROWSDOWN),
      errno.EINVAL, host=True),
    # Only a hole?
    C("mprotect-hole", lambda w: w.mprotect(w.page(4), PAGE, P), errno.ENOMEM, host=True),
    # A range that starts in a hole and then covers mappings?
    C("mprotect-hole-first", lambda w: w.mprotect(w.page(4), 3 * PAGE, P), errno.ENOMEM,
      host=True),
    # Mapped, then a hole: ENOMEM (Linux changes the part before the hole, which here has the
    # protection already; tests/test_partial_effects.py covers the change).
    C("mprotect-hole-in-middle", lambda w: w.mprotect(w.page(0), 6 * PAGE, RW), errno.ENOMEM,
      host=True),
    C("mprotect-past-task-size", lambda w: w.mprotect(TOP_PAGE, PAGE, P), errno.ENOMEM,
      host=True),
    C("mprotect-len-wraps", lambda w: w.mprotect(w.page(0), U64 - 1, P), errno.ENOMEM,
      host=True),
    # Write permission for a shared mapping of a read-only descriptor?
    C("mprotect-write-shared-rdonly-fd", lambda w: w.mprotect(w.page(8), 2 * PAGE, RW),
      errno.EACCES, host=True),
    # ... where only the second page of the range is such a mapping?
    C("mprotect-write-partly-shared-rdonly-fd", lambda w: w.mprotect(w.page(9), 2 * PAGE, RW),
      errno.EACCES, host=True),
    # ---- madvise ----
    C("madvise-unknown-advice", lambda w: w.madvise(w.page(0), PAGE, 12345), errno.EINVAL,
      host=True),
    C("madvise-unaligned", lambda w: w.madvise(w.page(0) + 1, PAGE, mmap.MADV_DONTNEED),
      errno.EINVAL, host=True),
    C("madvise-len-wraps", lambda w: w.madvise(w.page(0), U64 - 1, mmap.MADV_NORMAL),
      errno.EINVAL, host=True),
    C("madvise-addr-wraps", lambda w: w.madvise(TOP_PAGE, 2 * PAGE, mmap.MADV_NORMAL),
      errno.EINVAL, host=True),
    # Above the user address space, without wrapping: nothing is mapped there.
    C("madvise-above-task-size", lambda w: w.madvise(ABOVE_TASK, PAGE, mmap.MADV_NORMAL),
      errno.ENOMEM, host=True),
    C("madvise-hole", lambda w: w.madvise(w.page(4), PAGE, mmap.MADV_DONTNEED), errno.ENOMEM,
      host=True),
    C("madvise-hint-over-hole", lambda w: w.madvise(w.page(3), 3 * PAGE, mmap.MADV_NORMAL),
      errno.ENOMEM, host=True),
    # WIPEONFORK is for private anonymous memory only: file (private or shared), shared anon.
    C("madvise-wipeonfork-private-file",
      lambda w: w.madvise(w.page(10), PAGE, spawnfd.MADV_WIPEONFORK), errno.EINVAL, host=True),
    C("madvise-wipeonfork-shared-file",
      lambda w: w.madvise(w.page(8), PAGE, spawnfd.MADV_WIPEONFORK), errno.EINVAL, host=True),
    C("madvise-wipeonfork-shared-anon",
      lambda w: w.madvise(w.page(12), PAGE, spawnfd.MADV_WIPEONFORK), errno.EINVAL, host=True),
    # ... and a range whose later pages are shared anon and file mappings?
    C("madvise-wipeonfork-file-then-shared",
      lambda w: w.madvise(w.page(11), 3 * PAGE, spawnfd.MADV_WIPEONFORK), errno.EINVAL,
      host=True),
    C("madvise-free-file", lambda w: w.madvise(w.page(10), PAGE, mmap.MADV_FREE), errno.EINVAL,
      host=True),
    # ---- populate (the host runs MADV_POPULATE_READ / _WRITE) ----
    # Protection: EINVAL ("incompatible permissions"), as MADV_POPULATE_READ/WRITE say.
    C("populate-unaligned", lambda w: w.populate(w.page(0) + 1, PAGE), errno.EINVAL, host=True),
    C("populate-hole", lambda w: w.populate(w.page(3), 2 * PAGE), errno.ENOMEM, host=True),
    C("populate-write-readonly", lambda w: w.populate(w.page(5), PAGE, write=True),
      errno.EINVAL, host=True),
    C("populate-read-prot-none", lambda w: w.populate(w.page(6), PAGE), errno.EINVAL,
      host=True),
    C("populate-write-shared-readonly-file", lambda w: w.populate(w.page(8), PAGE, write=True),
      errno.EINVAL, host=True),
    # Past the end of the file: the fault would be SIGBUS.
    C("populate-past-eof", lambda w: w.populate(w.page(13), 3 * PAGE), errno.EFAULT, host=True),
    C("populate-above-task-size", lambda w: w.populate(ABOVE_TASK, PAGE), errno.ENOMEM,
      host=True),
    C("populate-addr-wraps", lambda w: w.populate(TOP_PAGE, 2 * PAGE), errno.EINVAL, host=True),
    C("populate-stamp-without-write",
      lambda w: w.mm.populate(w.page(0), PAGE, write=False, stamp=7), errno.EINVAL),
    # ---- reading and writing memory (host: process_vm_readv / writev on itself) ----
    C("read-mem-hole", lambda w: w.read_mem(w.page(4), 8), errno.EFAULT, host=True),
    C("read-mem-prot-none", lambda w: w.read_mem(w.page(6) + 100, 8), errno.EFAULT, host=True),
    C("read-mem-past-eof", lambda w: w.read_mem(w.page(15), 8), errno.EFAULT, host=True),
    C("read-mem-above-task-size", lambda w: w.read_mem(ABOVE_TASK, 8), errno.EFAULT, host=True),
    # Does a read that starts mapped and runs into a hole fail as a whole?
    C("read-mem-into-hole", lambda w: w.mm.read(w.page(4) - 10, 20), errno.EFAULT),
    # Does addr + len wrapping past 2**64 fail rather than read low memory?
    C("read-mem-wraps", lambda w: w.mm.read(U64 - 8, 16), errno.EFAULT),
    C("write-mem-hole", lambda w: w.write_mem(w.page(7), b"x"), errno.EFAULT, host=True),
    C("write-mem-readonly", lambda w: w.write_mem(w.page(5), b"x"), errno.EFAULT, host=True),
    C("write-mem-prot-none", lambda w: w.write_mem(w.page(6), b"x"), errno.EFAULT, host=True),
    C("write-mem-shared-readonly-file", lambda w: w.write_mem(w.page(9) + 5, b"xyz"),
      errno.EFAULT, host=True),
    # A write that starts in a read-only page and continues into a PROT_NONE one?
    C("write-mem-readonly-then-none", lambda w: w.write_mem(w.page(6) - 2, b"abcd"),
      errno.EFAULT, host=True),
    # ---- open ----
    C("open-missing-tmpfs", lambda w: w.p.open("/tmp/absent", os.O_RDONLY), errno.ENOENT),
    C("open-missing-host", lambda w: w.p.open("/nonexistent/x", os.O_RDONLY), errno.ENOENT),
    C("open-empty-path", lambda w: w.p.open("", os.O_RDONLY), errno.ENOENT),
    # A name longer than NAME_MAX (255), even where it would be created (Linux: ENAMETOOLONG).
    C("open-name-too-long", lambda w: w.p.open("/tmp/" + "a" * 256, os.O_CREAT | os.O_RDWR),
      errno.ENAMETOOLONG),
    C("open-dir-name-too-long",
      lambda w: w.p.open("/tmp/" + "d" * 256 + "/../data", os.O_RDONLY), errno.ENAMETOOLONG),
    C("open-creat-outside-tmpfs",
      lambda w: w.p.open("/etc/spawnfd-new", os.O_CREAT | os.O_WRONLY), errno.EROFS),
    # O_CREAT where the parent directory does not exist: ENOENT comes before EROFS.
    C("open-creat-missing-parent",
      lambda w: w.p.open("/nonexistent/new", os.O_CREAT | os.O_RDWR), errno.ENOENT),
    C("open-write-host-file", lambda w: w.p.open(HOST_FILE, os.O_WRONLY), errno.EROFS),
    C("open-trunc-host-file", lambda w: w.p.open(HOST_FILE, os.O_RDONLY | os.O_TRUNC),
      errno.EROFS),
    C("open-directory-flag-on-file", lambda w: w.p.open("/tmp/data", os.O_RDONLY | os.O_DIRECTORY),
      errno.ENOTDIR),
    C("open-excl-existing", lambda w: w.p.open("/tmp/data", os.O_CREAT | os.O_EXCL | os.O_RDWR),
      errno.EEXIST),
    C("open-write-directory", lambda w: w.p.open("/tmp", os.O_WRONLY), errno.EISDIR),
    # ---- read / write / lseek / ftruncate on descriptors ----
    C("read-wronly-fd", lambda w: w.read(w.wo, 10), errno.EBADF, host=True),
    C("read-closed-fd", lambda w: w.read(w.closed, 10), errno.EBADF, host=True),
    C("read-directory", lambda w: w.read(w.dir, 10), errno.EISDIR, host=True),
    C("pread-negative-offset", lambda w: w.pread(w.rw, 10, -1), errno.EINVAL, host=True),
    C("pread-offset-2-63", lambda w: w.pread(w.rw, 10, 1 << 63), errno.EINVAL),
    C("write-rdonly-fd", lambda w: w.write(w.ro, b"x"), errno.EBADF, host=True),
    C("write-closed-fd", lambda w: w.write(w.closed, b"x"), errno.EBADF, host=True),
    C("lseek-negative", lambda w: w.lseek(w.rw, -1, os.SEEK_SET), errno.EINVAL, host=True),
    C("lseek-cur-before-start", lambda w: w.lseek(w.rw, -3 * PAGE, os.SEEK_CUR), errno.EINVAL,
      host=True),
    C("lseek-end-before-start", lambda w: w.lseek(w.rw, -3 * PAGE, os.SEEK_END), errno.EINVAL,
      host=True),
    C("lseek-bad-whence", lambda w: w.lseek(w.rw, 0, 99), errno.EINVAL, host=True),
    C("lseek-closed-fd", lambda w: w.lseek(w.closed, 0, os.SEEK_SET), errno.EBADF, host=True),
    # Does SEEK_END + a huge offset overflow into a negative position?
    C("lseek-end-overflow", lambda w: w.lseek(w.rw, (1 << 63) - 1, os.SEEK_END), errno.EINVAL,
      host=True),
    C("ftruncate-negative", lambda w: w.ftruncate(w.rw, -1), errno.EINVAL, host=True),
    C("ftruncate-rdonly-fd", lambda w: w.ftruncate(w.ro, 0), errno.EINVAL, host=True),
    C("ftruncate-directory", lambda w: w.ftruncate(w.dir, 0), errno.EINVAL, host=True),
    C("ftruncate-dev-null", lambda w: w.ftruncate(w.null, 0), errno.EINVAL, host=True),
    C("ftruncate-closed-fd", lambda w: w.ftruncate(w.closed, 0), errno.EBADF, host=True),
    # Past the simulated tmpfs's 8 TiB limit (the host's tmpfs allows more: no oracle).
    C("ftruncate-too-big", lambda w: w.ftruncate(w.rw, 1 << 44), errno.EFBIG),
    # ---- dup / dup2 / close / unlink ----
    C("dup-closed-fd", lambda w: w.dup(w.closed), errno.EBADF, host=True),
    C("dup-negative", lambda w: w.dup(-1), errno.EBADF, host=True),
    C("dup2-closed-old", lambda w: w.dup2(w.closed, w.rw), errno.EBADF, host=True),
    C("dup2-negative-new", lambda w: w.dup2(w.rw, -1), errno.EBADF, host=True),
    C("dup2-new-past-limit", lambda w: w.dup2(w.rw, 1024), errno.EBADF),
    # dup3(fd, fd, O_CLOEXEC) is EINVAL, unlike dup2(fd, fd).
    C("dup3-same-fd", lambda w: w.dup2(w.rw, w.rw, inheritable=False), errno.EINVAL, host=True),
    C("close-closed-fd", lambda w: w.close(w.closed), errno.EBADF),
    C("close-negative", lambda w: w.close(-1), errno.EBADF, host=True),
    C("unlink-missing-tmpfs", lambda w: w.p.unlink("/tmp/absent"), errno.ENOENT),
    C("unlink-missing-host", lambda w: w.p.unlink("/nonexistent/x"), errno.ENOENT),
    C("unlink-host-file", lambda w: w.p.unlink(HOST_FILE), errno.EROFS),
    C("unlink-directory", lambda w: w.p.unlink("/tmp"), errno.EISDIR),
    # ---- negative Python ints where the kernel takes unsigned values ----
    C("negative-mmap-length", lambda w: w.mm.mmap(-PAGE, RW, PRIV_ANON), errno.EINVAL),
    C("negative-mmap-offset", lambda w: w.mm.mmap(PAGE, P, PR, w.ro, -PAGE), errno.EINVAL),
    C("negative-munmap-addr", lambda w: w.mm.munmap(-PAGE, PAGE), errno.EINVAL),
    C("negative-mprotect-length", lambda w: w.mm.mprotect(w.page(0), -PAGE, P), errno.EINVAL),
    C("negative-madvise-addr", lambda w: w.mm.madvise(-PAGE, PAGE, mmap.MADV_DONTNEED),
      errno.EINVAL),
    C("negative-populate-stamp",
      lambda w: w.mm.populate(w.page(0), PAGE, write=True, stamp=-1), errno.EINVAL),
    C("negative-read-length", lambda w: w.mm.read(w.page(0), -1), errno.EINVAL),
    C("negative-write-addr", lambda w: w.mm.write(-1, b"x"), errno.EINVAL),
    C("negative-fd-read-length", lambda w: w.p.read(w.rw, -1), errno.EINVAL),
    C("negative-pread-offset", lambda w: w.p.pread(w.rw, 1, -PAGE), errno.EINVAL),
]


@pytest.fixture
def host_world() -> Iterator[HostWorld]:
    """The layout in this process, on a scratch file in the host's tmpfs; all undone after."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        w = HostWorld(d)
        try:
            yield w
        finally:
            w.close_all()


def _expect(world: Any, case: Case, where: str) -> OSError:
    """Run the case's call; it must raise exactly the OSError subclass of its errno."""
    with pytest.raises(OSError) as info:
        result = case.act(world)
        pytest.fail(f"{case.id}: {where} did not fail (returned {result!r})")
    want = type(OSError(case.err, "x"))
    got = info.value
    assert (got.errno, type(got)) == (case.err, want), (
        f"{case.id}: {where} gave {errno.errorcode.get(got.errno or 0)} ({type(got).__name__}), "
        f"want {errno.errorcode[case.err]} ({want.__name__})")
    return got


@pytest.mark.parametrize("case", CASES)
def test_bad_call_fails_and_changes_nothing(case: Case, request: pytest.FixtureRequest) -> None:
    """The simulator gives the errno (the host's too, where it can run the call) and the
    simulated machine is exactly as it was."""
    if case.host:
        hw = request.getfixturevalue("host_world")
        _expect(hw, dataclasses.replace(case, err=case.host_err or case.err), "host")
    w = SimWorld()
    try:
        names = w.names()
        before = w.snapshot()
        _expect(w, case, "simulator")
        after = w.snapshot()
        assert after["maps"] == before["maps"]
        assert after["kstats"] == before["kstats"]
        assert after["mmstats"] == before["mmstats"]
        assert after["fds"] == before["fds"]
        assert w.names() == names
        w.assert_content_intact()
        w.k.check()
    finally:
        w.k.close()


def test_case_table_is_big_and_unique() -> None:
    """At least 40 cases, ids unique, most of them checked against the host."""
    cases = [p.values[0] for p in CASES]
    assert len({c.id for c in cases}) == len(cases) >= 40
    assert sum(c.host for c in cases) >= 40
    assert all(c.host for c in cases if c.host_err is not None)


# ---------------------------------------------------------------------------------------------
# Calls that look wrong but that the host accepts: the simulator must accept them too


def _map_append_fd_and_write(w: Any) -> bytes:
    # O_APPEND does not forbid a writable shared mapping (only the inode's append-only
    # attribute, chattr +a, does): do writes through it reach the file?
    addr = w.mmap(PAGE, RW, SH, w.app)
    w.write_mem(addr + 5, b"Z")
    w.munmap(addr, PAGE)
    return bytes(w.pread(w.rw, 8, 0))


def _map_validate_file(w: Any) -> bytes:
    # MAP_SHARED_VALIDATE with only legacy flags is a plain shared file mapping.
    addr = w.mmap(PAGE, P, VALIDATE | mmap.MAP_POPULATE, w.ro)
    data = bytes(w.read_mem(addr, 8))
    w.munmap(addr, PAGE)
    return data


def _mprotect_prot_sem(w: Any) -> bytes:
    # PROT_SEM (0x8) is a valid protection bit on x86 (arch_validate_prot); it changes nothing.
    w.mprotect(w.page(0), PAGE, P | 0x8)
    w.mprotect(w.page(0), PAGE, RW)
    return bytes(w.read_mem(w.page(0), 8))


def _mprotect_len_zero_bad_prot(w: Any) -> bytes:
    # Linux returns 0 for an empty range before it looks at the protection bits.
    w.mprotect(w.page(0), 0, 0x10)
    return bytes(w.read_mem(w.page(0), 8))


def _map_sync_without_validate(w: Any) -> bytes:
    # MAP_SYNC is only checked under MAP_SHARED_VALIDATE; plain MAP_SHARED drops it.
    addr = w.mmap(PAGE, P, SH | MAP_SYNC, w.ro)
    data = bytes(w.read_mem(addr, 8))
    w.munmap(addr, PAGE)
    return data


ACCEPTED = [
    pytest.param(_mprotect_len_zero_bad_prot, ANON_DATA[:8], id="mprotect-len-zero-bad-prot"),
    pytest.param(_map_sync_without_validate, FILE_DATA[:8], id="mmap-sync-without-validate"),
    pytest.param(_map_append_fd_and_write, FILE_DATA[:5] + b"Z" + FILE_DATA[6:8],
                 id="mmap-shared-write-append-fd"),
    pytest.param(_map_validate_file, FILE_DATA[:8], id="mmap-validate-file"),
    pytest.param(_mprotect_prot_sem, ANON_DATA[:8], id="mprotect-prot-sem"),
]


@pytest.mark.parametrize(("act", "want"), ACCEPTED)
def test_host_accepts_so_must_simulator(act: Callable[[Any], bytes], want: bytes,
                                        host_world: HostWorld) -> None:
    """The host runs the call and gets ``want``; the simulator must do the same."""
    assert act(host_world) == want
    w = SimWorld()
    try:
        assert act(w) == want
        w.k.check()
    finally:
        w.k.close()


# ---------------------------------------------------------------------------------------------
# Out of simulated memory: state legitimately changes (pages populated before the failure stay)


def test_populate_out_of_memory_keeps_what_it_populated() -> None:
    """What if populate runs out of frames halfway? ENOMEM; the pages it got hold the stamp,
    the rest still read as zero, and unmapping gives every frame back."""
    with spawnfd.Kernel("1M", overcommit=1) as k:  # mmap may promise more than memory
        mm = k.init.mm
        free_before = k.statistics().frames_total - k.statistics().frames_used
        length = 2 * free_before * PAGE           # twice what is left
        addr = mm.mmap(length, RW, PRIV_ANON)
        stamp = 0x1122334455667788
        with pytest.raises(OSError) as info:  # ENOMEM has no subclass: plain OSError
            mm.populate(addr, length, write=True, stamp=stamp)
        assert (type(info.value), info.value.errno) == (OSError, errno.ENOMEM)
        k.check()
        st = k.statistics()
        assert st.frames_used == st.frames_total
        present = [a for a in range(addr, addr + length, PAGE) if mm.translate(a) & 1]
        tables = st.pagetable_frames
        # every frame is the zero page, a table, or one of the populated pages
        assert len(present) == st.frames_total - 1 - tables == st.anon_frames > 0
        assert present == list(range(addr, addr + len(present) * PAGE, PAGE))
        word = stamp.to_bytes(8, "little") * (PAGE // 8)
        for a in present:
            assert mm.read(a, PAGE) == word
        after = addr + len(present) * PAGE
        assert mm.read(after, 64) == bytes(64)  # a read maps the zero page: no frame needed
        k.check()
        mm.munmap(addr, length)
        k.check()
        assert k.statistics().anon_frames == 0
        assert k.statistics().frames_total - k.statistics().frames_used == free_before


def test_write_out_of_memory_on_private_file_copy() -> None:
    """What if the copy-on-write of a private file page cannot get a frame? ENOMEM, the file
    page stays mapped read-only with the file's bytes, and the file is untouched."""
    with spawnfd.Kernel("1G") as k:
        p = k.init
        fd = p.open("/tmp/f", os.O_RDWR | os.O_CREAT)
        p.write(fd, FILE_DATA)
        addr = p.mm.mmap(2 * PAGE, RW, PR, fd)
        p.mm.populate(addr, 2 * PAGE)
        before = (p.mm.maps(), k.statistics().frames_used, p.mm.statistics())
        k.fail_nth_allocation(1)
        with pytest.raises(OSError) as info:
            p.mm.write(addr + 10, b"new")
        assert (type(info.value), info.value.errno) == (OSError, errno.ENOMEM)
        k.fail_nth_allocation(0)
        assert (p.mm.maps(), k.statistics().frames_used, p.mm.statistics()) == before
        assert p.mm.read(addr, 2 * PAGE) == FILE_DATA
        assert p.pread(fd, 2 * PAGE, 0) == FILE_DATA
        k.check()
        p.mm.write(addr + 10, b"new")  # and once memory is there again, it works
        assert p.mm.read(addr, 16) == FILE_DATA[:10] + b"new" + FILE_DATA[13:16]
        assert p.pread(fd, 16, 0) == FILE_DATA[:16]
        k.check()
