"""One page-numbered layout, built twice: in this test process on the real kernel (ctypes) and
in a simulated process. Tests run the same calls on both and compare the errno, the vma layout
(``/proc/self/maps`` against ``maps()``, relative to the base) and which pages are present
(``/proc/self/pagemap`` against ``translate``). Files are memfds on the host (tmpfs: the host's
/tmp may be ext4, which differs past the end of a file) and tmpfs files in the simulator."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pickle
from collections.abc import Callable
from typing import Any

import spawnfd

PAGE = 4096
NONE, RO, RW = 0, mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE
FIXED = 0x10
KINDS = {  # kind -> (mmap flags, which descriptor)
    "anon": (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, None),
    "shanon": (mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, None),
    "file": (mmap.MAP_SHARED, "rw"),
    "file-ro": (mmap.MAP_SHARED, "ro"),
    "file-priv": (mmap.MAP_PRIVATE, "rw"),
    "droppable": (0x08 | mmap.MAP_ANONYMOUS, None),  # MAP_DROPPABLE
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
for _n in ("mprotect", "madvise"):
    getattr(_libc, _n).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]


def _check(rc: int) -> None:
    if rc == -1 or rc == (1 << 64) - 1 or rc is None:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def outcome(fn: Any, *args: Any) -> str:
    """'ok' or the errno's name."""
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno or 0]


class HostWorld:
    """Pages [0, npages) from a reserved base in this process."""

    def __init__(self, npages: int = 64, file_pages: int = 16) -> None:
        self.npages = npages
        huge = 2 << 20  # a 2 MiB-aligned base, as the simulator's
        raw = _libc.mmap(None, npages * PAGE + huge, NONE, KINDS["anon"][0], -1, 0)
        _check(raw)
        _check(_libc.munmap(raw, npages * PAGE + huge))
        self.base = (raw + huge - 1) // huge * huge
        self.memfd = os.memfd_create("world")
        os.ftruncate(self.memfd, file_pages * PAGE)
        self.fds = {"rw": self.memfd,
                    "ro": os.open(f"/proc/self/fd/{self.memfd}", os.O_RDONLY)}

    def close(self) -> None:
        _libc.munmap(self.base, self.npages * PAGE)
        for fd in self.fds.values():
            os.close(fd)

    def page(self, i: int) -> int:
        return self.base + i * PAGE

    def map(self, first: int, n: int, prot: int, kind: str = "anon", fpage: int = 0) -> None:
        flags, fd = KINDS[kind]
        _check(_libc.mmap(self.page(first), n * PAGE, prot, flags | FIXED,
                          self.fds[fd] if fd else -1, fpage * PAGE))

    def munmap(self, first: int, n: int) -> None:
        _check(_libc.munmap(self.page(first), n * PAGE))

    def mprotect(self, first: int, n: int, prot: int) -> None:
        _check(_libc.mprotect(self.page(first), n * PAGE, prot))

    def madvise(self, first: int, n: int, advice: int) -> None:
        _check(_libc.madvise(self.page(first), n * PAGE, advice))

    def populate(self, first: int, n: int, write: bool = False) -> None:
        self.madvise(first, n, 23 if write else 22)

    def mremap(self, first: int, old_n: int, new_n: int, flags: int = 0,
               new_first: int | None = None) -> int:
        """mremap of pages; the page number of the result (relative to the base)."""
        ctypes.set_errno(0)
        new = self.page(new_first) if new_first is not None else 0
        r = _libc.mremap(self.page(first), old_n * PAGE, new_n * PAGE, flags, new)
        if r is None or r == (1 << 64) - 1:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return (r - self.base) // PAGE

    def read(self, first: int, n: int) -> bytes:
        return ctypes.string_at(self.page(first), n)

    def write(self, first: int, data: bytes) -> None:
        ctypes.memmove(self.page(first), data, len(data))

    def layout(self) -> list[tuple[int, int, str, int]]:
        out = []
        lo, hi = self.base, self.page(self.npages)
        with open("/proc/self/maps") as f:
            for line in f:
                span, perms, off = line.split()[:3]
                s, e = (int(x, 16) for x in span.split("-"))
                if e > lo and s < hi:
                    out.append(((s - lo) // PAGE, (e - lo) // PAGE, perms, int(off, 16)))
        return out

    def in_child(self, fn: Callable[[Any], Any]) -> Any:
        """fn(world) run in a forked child; its result."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(w, pickle.dumps(fn(self)))
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return pickle.loads(data)

    def present(self) -> list[int]:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(self.base // PAGE * 8)
            raw = f.read(8 * self.npages)
        return [i for i in range(self.npages)
                if int.from_bytes(raw[8 * i:8 * i + 8], "little") >> 63]


class SimWorld:
    """The same pages in init of a fresh simulated kernel."""

    BASE = 0x10000000

    def __init__(self, npages: int = 64, file_pages: int = 16, **kernel: Any) -> None:
        self.npages = npages
        self.k = spawnfd.Kernel(kernel.pop("memory", "256M"), **kernel)
        self.p = self.k.init
        self.mm = self.p.mm
        self.base = self.BASE
        rw = self.p.open("/tmp/world", os.O_RDWR | os.O_CREAT, 0o600)
        self.p.ftruncate(rw, file_pages * PAGE)
        self.fds = {"rw": rw, "ro": self.p.open("/tmp/world", os.O_RDONLY)}

    def close(self) -> None:
        self.k.check()
        self.k.close()

    def page(self, i: int) -> int:
        return self.base + i * PAGE

    def map(self, first: int, n: int, prot: int, kind: str = "anon", fpage: int = 0) -> None:
        flags, fd = KINDS[kind]
        self.mm.mmap(n * PAGE, prot, flags | FIXED, self.fds[fd] if fd else -1, fpage * PAGE,
                     addr=self.page(first))

    def munmap(self, first: int, n: int) -> None:
        self.mm.munmap(self.page(first), n * PAGE)

    def mprotect(self, first: int, n: int, prot: int) -> None:
        self.mm.mprotect(self.page(first), n * PAGE, prot)

    def madvise(self, first: int, n: int, advice: int) -> None:
        self.mm.madvise(self.page(first), n * PAGE, advice)

    def populate(self, first: int, n: int, write: bool = False) -> None:
        self.mm.populate(self.page(first), n * PAGE, write)

    def mremap(self, first: int, old_n: int, new_n: int, flags: int = 0,
               new_first: int | None = None) -> int:
        new = self.page(new_first) if new_first is not None else 0
        return (self.mm.mremap(self.page(first), old_n * PAGE, new_n * PAGE, flags, new)
                - self.base) // PAGE

    def read(self, first: int, n: int) -> bytes:
        return self.mm.read(self.page(first), n)

    def write(self, first: int, data: bytes) -> None:
        self.mm.write(self.page(first), data)

    def layout(self) -> list[tuple[int, int, str, int]]:
        out = []
        for line in self.mm.maps().splitlines():
            span, perms, off = line.split()[:3]
            s, e = (int(x, 16) for x in span.split("-"))
            if e > self.base and s < self.page(self.npages):
                out.append(((s - self.base) // PAGE, (e - self.base) // PAGE, perms,
                            int(off, 16)))
        return out

    def in_child(self, fn: Callable[[Any], Any]) -> Any:
        """fn(world) run in a forked child; its result."""
        child = self.p.fork()
        view = object.__new__(SimWorld)
        view.__dict__.update(self.__dict__, p=child, mm=child.mm)
        try:
            return fn(view)
        finally:
            child.exit(0)
            self.p.wait(child.pid)

    def present(self) -> list[int]:
        return [i for i in range(self.npages) if self.mm.translate(self.page(i)) & 1]
