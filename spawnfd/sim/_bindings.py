"""The one module that imports the cffi extension ``spawnfd.sim._kernel``.

It owns the C kernel's lifetime (``ffi.gc``), turns every negative errno into the ``OSError``
subclass the :mod:`os` module would raise, turns the kernel's panic into
:class:`KernelPanic`, and copies bytes and records across the boundary. Nothing above this
layer sees ``ffi`` or ``lib``.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

from ._kernel import ffi, lib

_KPANIC = 1000  # -_KPANIC: the kernel has panicked (csrc/spawnfd.h)

FAULT_KINDS = ("anon", "zero", "file", "shared", "cow", "wp_reuse", "wp_shared")
KSTAT_FIELDS = tuple(
    name for name, _ in ffi.typeof("struct kstats").fields if name != "faults"
)
MMSTAT_FIELDS = tuple(name for name, _ in ffi.typeof("struct mmstats").fields)


class KernelPanic(RuntimeError):
    """The simulated kernel found a broken invariant; it refuses every later call."""


def _raise(handle: "CKernel", rc: int, filename: object = None) -> NoReturn:
    if -rc == _KPANIC:
        raise KernelPanic(ffi.string(lib.sfd_panic_message(handle.ptr)).decode())
    err = -rc
    if filename is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), filename)


def _path(path: str | bytes | os.PathLike[Any]) -> bytes:
    p = os.fsencode(path)
    if b"\0" in p:
        raise ValueError("embedded null byte")
    return p


class CKernel:
    """A booted C kernel. Methods mirror ``csrc/spawnfd.cdef`` with Python types."""

    __slots__ = ("_ptr",)

    def __init__(self, memory_bytes: int) -> None:
        out = ffi.new("struct kernel **")
        rc = lib.sfd_kernel_new(memory_bytes, out)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        self._ptr = ffi.gc(out[0], lib.sfd_kernel_free)

    @property
    def ptr(self) -> Any:
        if self._ptr is None:
            raise ValueError("the kernel is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        if self._ptr is not None:
            ffi.release(self._ptr)
            self._ptr = None

    def _call(self, rc: int, filename: object = None) -> int:
        if rc < 0:
            _raise(self, rc, filename)
        return rc

    # ---- kernel ----
    def kstats(self) -> dict[str, Any]:
        s = ffi.new("struct kstats *")
        self._call(lib.sfd_kstats(self.ptr, s))
        out: dict[str, Any] = {name: getattr(s, name) for name in KSTAT_FIELDS}
        out["faults"] = {kind: s.faults[i] for i, kind in enumerate(FAULT_KINDS)}
        return out

    def check(self) -> None:
        msg = ffi.new("char[]", 512)
        rc = lib.sfd_check(self.ptr, msg, 512)
        if rc == -_KPANIC:
            raise KernelPanic(ffi.string(msg).decode())
        self._call(rc)

    def fail_alloc_after(self, n: int) -> None:
        self._call(lib.sfd_fail_alloc_after(self.ptr, n))

    def set_overcommit(self, mode: int, ratio: int) -> None:
        self._call(lib.sfd_set_overcommit(self.ptr, mode, ratio))

    def set_share_pagetables(self, on: bool) -> None:
        self._call(lib.sfd_set_share_pagetables(self.ptr, int(on)))

    def set_thp(self, mode: int, cow: int) -> None:
        self._call(lib.sfd_set_thp(self.ptr, mode, cow))

    # ---- processes ----
    def fork(self, pid: int, mode: int) -> int:
        out = ffi.new("int *")
        self._call(lib.sfd_fork(self.ptr, pid, mode, out))
        return int(out[0])

    def vfork(self, pid: int) -> int:
        out = ffi.new("int *")
        self._call(lib.sfd_vfork(self.ptr, pid, out))
        return int(out[0])

    def kill_exit(self, pid: int, sig: int) -> None:
        self._call(lib.sfd_kill_exit(self.ptr, pid, sig))

    def fd_ident(self, pid: int, fd: int) -> tuple[int, bool]:
        ident, is_pipe = ffi.new("uint64_t *"), ffi.new("int *")
        self._call(lib.sfd_fd_ident(self.ptr, pid, fd, ident, is_pipe))
        return int(ident[0]), bool(is_pipe[0])

    def chdir(self, pid: int, path: str | bytes | os.PathLike[Any]) -> None:
        self._call(lib.sfd_chdir(self.ptr, pid, _path(path)), path)

    def ppid(self, pid: int) -> int:
        return self._call(lib.sfd_ppid(self.ptr, pid))

    def exit(self, pid: int, code: int) -> None:
        self._call(lib.sfd_exit(self.ptr, pid, code))

    def wait(self, pid: int, child: int, nohang: bool) -> tuple[int, int]:
        status = ffi.new("int *")
        got = self._call(lib.sfd_wait(self.ptr, pid, child, int(nohang), status))
        return got, int(status[0])

    def execve(self, pid: int, path: str | bytes | os.PathLike[Any], argv: list[bytes],
               env: list[bytes], seed: int) -> tuple[int, int]:
        blob = b"".join(s + b"\0" for s in (*argv, *env))
        rip, rsp = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        self._call(lib.sfd_execve(self.ptr, pid, _path(path), blob, len(blob), len(argv),
                                  len(env), seed, rip, rsp), path)
        return int(rip[0]), int(rsp[0])

    def regs(self, pid: int) -> tuple[int, int]:
        rip, rsp = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        self._call(lib.sfd_regs(self.ptr, pid, rip, rsp))
        return int(rip[0]), int(rsp[0])

    def frame_info(self, pfn: int) -> tuple[int, int]:
        ref, kind = ffi.new("uint32_t *"), ffi.new("uint32_t *")
        self._call(lib.sfd_frame_info(self.ptr, pfn, ref, kind))
        return ref[0], kind[0]

    # ---- memory ----
    def mmap(self, pid: int, addr: int, length: int, prot: int, flags: int, fd: int,
             offset: int) -> int:
        out = ffi.new("uint64_t *")
        self._call(lib.sfd_mmap(self.ptr, pid, addr, length, prot, flags, fd, offset, out))
        return int(out[0])

    def munmap(self, pid: int, addr: int, length: int) -> None:
        self._call(lib.sfd_munmap(self.ptr, pid, addr, length))

    def mprotect(self, pid: int, addr: int, length: int, prot: int) -> None:
        self._call(lib.sfd_mprotect(self.ptr, pid, addr, length, prot))

    def madvise(self, pid: int, addr: int, length: int, advice: int) -> None:
        self._call(lib.sfd_madvise(self.ptr, pid, addr, length, advice))

    def populate(self, pid: int, addr: int, length: int, write: bool,
                 stamp: int | None) -> None:
        self._call(lib.sfd_populate(self.ptr, pid, addr, length, int(write),
                                    int(stamp is not None), stamp or 0))

    def mem_read(self, pid: int, addr: int, length: int) -> bytes:
        buf = ffi.new("uint8_t[]", length)
        self._call(lib.sfd_mem_read(self.ptr, pid, addr, buf, length))
        return bytes(ffi.buffer(buf, length))

    def mem_write(self, pid: int, addr: int, data: Any) -> None:
        # The buffer is released before any exception is raised: a traceback that kept the
        # exported memoryview alive can crash CPython < 3.12.7 at exit (gh-77894).
        with ffi.from_buffer("uint8_t[]", data) as src:
            rc = lib.sfd_mem_write(self.ptr, pid, addr, src, len(src))
        self._call(rc)

    def maps(self, pid: int) -> str:
        cap = 4096
        while True:
            buf = ffi.new("char[]", cap)
            n = self._call(lib.sfd_maps(self.ptr, pid, buf, cap))
            if n < cap:
                return bytes(ffi.buffer(buf, n)).decode()
            cap = n + 1

    def mmstats(self, pid: int) -> dict[str, int]:
        s = ffi.new("struct mmstats *")
        self._call(lib.sfd_mmstats(self.ptr, pid, s))
        return {name: getattr(s, name) for name in MMSTAT_FIELDS}

    def touch(self, pid: int, addr: int, length: int, stride: int, write: bool) -> int:
        return self._call(lib.sfd_touch(self.ptr, pid, addr, length, stride, int(write)))

    def mm_pss(self, pid: int) -> int:
        out = ffi.new("uint64_t *")
        self._call(lib.sfd_mm_pss(self.ptr, pid, out))
        return int(out[0])

    def translate(self, pid: int, addr: int) -> int:
        out = ffi.new("uint64_t *")
        self._call(lib.sfd_translate(self.ptr, pid, addr, out))
        return int(out[0])

    # ---- files ----
    def open(self, pid: int, path: str | bytes | os.PathLike[Any], flags: int,
             mode: int) -> int:
        return self._call(lib.sfd_open(self.ptr, pid, _path(path), flags, mode), path)

    def close_fd(self, pid: int, fd: int) -> int:
        """close(2); returns the pid it launched when fd was a builder fd, else 0."""
        return self._call(lib.sfd_close(self.ptr, pid, fd))

    def read(self, pid: int, fd: int, n: int, offset: int | None = None) -> bytes:
        buf = ffi.new("uint8_t[]", max(n, 1))
        if offset is None:
            got = self._call(lib.sfd_read(self.ptr, pid, fd, buf, n))
        else:
            got = self._call(lib.sfd_pread(self.ptr, pid, fd, buf, n, offset))
        return bytes(ffi.buffer(buf, got))

    def write(self, pid: int, fd: int, data: Any) -> int:
        with ffi.from_buffer("uint8_t[]", data) as src:  # released first (see mem_write)
            rc = lib.sfd_write(self.ptr, pid, fd, src, len(src))
        return self._call(rc)

    def lseek(self, pid: int, fd: int, offset: int, whence: int) -> int:
        return self._call(lib.sfd_lseek(self.ptr, pid, fd, offset, whence))

    def ftruncate(self, pid: int, fd: int, length: int) -> None:
        self._call(lib.sfd_ftruncate(self.ptr, pid, fd, length))

    def fstat_size(self, pid: int, fd: int) -> int:
        out = ffi.new("uint64_t *")
        self._call(lib.sfd_fstat_size(self.ptr, pid, fd, out))
        return int(out[0])

    def fstat(self, pid: int, fd: int) -> tuple[int, int, int, int, int]:
        out = ffi.new("uint64_t[5]")
        self._call(lib.sfd_fstat(self.ptr, pid, fd, out))
        return int(out[0]), int(out[1]), int(out[2]), int(out[3]), int(out[4])

    def close_range(self, pid: int, first: int, last: int) -> None:
        self._call(lib.sfd_close_range(self.ptr, pid, first, last))

    def dup(self, pid: int, fd: int) -> int:
        return self._call(lib.sfd_dup(self.ptr, pid, fd))

    def dup2(self, pid: int, fd: int, fd2: int) -> int:
        return self._call(lib.sfd_dup2(self.ptr, pid, fd, fd2))

    def dup3(self, pid: int, fd: int, fd2: int, flags: int) -> int:
        return self._call(lib.sfd_dup3(self.ptr, pid, fd, fd2, flags))

    def pipe2(self, pid: int, flags: int) -> tuple[int, int]:
        fds = ffi.new("int[2]")
        self._call(lib.sfd_pipe2(self.ptr, pid, flags, fds))
        return int(fds[0]), int(fds[1])

    def pipe_avail(self, pid: int, fd: int) -> tuple[int, int]:
        avail, peers = ffi.new("uint64_t *"), ffi.new("int *")
        self._call(lib.sfd_pipe_avail(self.ptr, pid, fd, avail, peers))
        return int(avail[0]), int(peers[0])

    def unlink(self, pid: int, path: str | bytes | os.PathLike[Any]) -> None:
        self._call(lib.sfd_unlink(self.ptr, pid, _path(path)), path)

    def chmod(self, pid: int, path: str | bytes | os.PathLike[Any], mode: int) -> None:
        self._call(lib.sfd_chmod(self.ptr, pid, _path(path), mode), path)

    def getcred(self, pid: int) -> tuple[int, ...]:
        ids = ffi.new("uint32_t[6]")
        self._call(lib.sfd_getcred(self.ptr, pid, ids))
        return tuple(int(i) for i in ids)

    def setcred(self, pid: int, ids: tuple[int, ...]) -> None:
        self._call(lib.sfd_setcred(self.ptr, pid, ffi.new("uint32_t[6]", list(ids))))

    # ---- the fd model ----
    def process_create(self, pid: int, flags: int = 0) -> tuple[int, int, int]:
        out = ffi.new("int[3]")
        self._call(lib.sfd_process_create(self.ptr, pid, flags, out))
        return int(out[0]), int(out[1]), int(out[2])

    def spawn_mmap(self, pid: int, bfd: int, addr: int, length: int, prot: int, flags: int,
                   fd: int, offset: int) -> int:
        out = ffi.new("uint64_t *")
        self._call(lib.sfd_spawn_mmap(self.ptr, pid, bfd, addr, length, prot, flags, fd,
                                      offset, out))
        return int(out[0])

    def spawn_munmap(self, pid: int, bfd: int, addr: int, length: int) -> None:
        self._call(lib.sfd_spawn_munmap(self.ptr, pid, bfd, addr, length))

    def spawn_mprotect(self, pid: int, bfd: int, addr: int, length: int, prot: int) -> None:
        self._call(lib.sfd_spawn_mprotect(self.ptr, pid, bfd, addr, length, prot))

    def spawn_read(self, pid: int, bfd: int, addr: int, length: int) -> bytes:
        buf = ffi.new("uint8_t[]", max(length, 1))
        self._call(lib.sfd_spawn_access(self.ptr, pid, bfd, addr, buf, ffi.NULL, length))
        return bytes(ffi.buffer(buf, length))

    def spawn_write(self, pid: int, bfd: int, addr: int, data: Any) -> None:
        with ffi.from_buffer("uint8_t[]", data) as src:  # released first (see mem_write)
            rc = lib.sfd_spawn_access(self.ptr, pid, bfd, addr, ffi.NULL, src, len(src))
        self._call(rc)

    def spawn_install_fd(self, pid: int, bfd: int, src: int, dst: int, flags: int) -> int:
        return self._call(lib.sfd_spawn_install_fd(self.ptr, pid, bfd, src, dst, flags))

    def spawn_open(self, pid: int, bfd: int, path: str | bytes | os.PathLike[Any], flags: int,
                   mode: int, dst: int) -> int:
        return self._call(lib.sfd_spawn_open(self.ptr, pid, bfd, _path(path), flags, mode,
                                             dst), path)

    def spawn_chdir(self, pid: int, bfd: int, path: str | bytes | os.PathLike[Any]) -> None:
        self._call(lib.sfd_spawn_chdir(self.ptr, pid, bfd, _path(path)), path)

    def spawn_set_creds(self, pid: int, bfd: int, ids: tuple[int, ...]) -> None:
        self._call(lib.sfd_spawn_set_creds(self.ptr, pid, bfd,
                                           ffi.new("uint32_t[6]", list(ids))))

    def spawn_set_regs(self, pid: int, bfd: int, rip: int, rsp: int) -> None:
        self._call(lib.sfd_spawn_set_regs(self.ptr, pid, bfd, rip, rsp))

    def spawn_setup_stack(self, pid: int, bfd: int, execfn: bytes, argv: list[bytes],
                          env: list[bytes], seed: int, aux: tuple[int, int, int, int],
                          start: int) -> int:
        blob = b"".join(s + b"\0" for s in (*argv, *env))
        rsp = ffi.new("uint64_t *")
        self._call(lib.sfd_spawn_setup_stack(self.ptr, pid, bfd, execfn, blob, len(blob),
                                             len(argv), len(env), seed,
                                             ffi.new("uint64_t[4]", list(aux)), start, rsp))
        return int(rsp[0])

    def spawn_map_cow(self, pid: int, bfd: int, src: int, addr: int, length: int) -> None:
        self._call(lib.sfd_spawn_map_cow(self.ptr, pid, bfd, src, addr, length))

    def close_handle(self, pid: int, fd: int, target: int) -> int:
        """close(2) of fd only if it is a handle to target; returns the launched pid or 0."""
        return self._call(lib.sfd_close_handle(self.ptr, pid, fd, target))

    def handle_target(self, pid: int, fd: int) -> tuple[int, int]:
        """(pid, state) of the process behind a wait handle or builder fd; state 0 running,
        1 zombie, 2 embryo."""
        target, state = ffi.new("int *"), ffi.new("int *")
        self._call(lib.sfd_handle_target(self.ptr, pid, fd, target, state))
        return int(target[0]), int(state[0])
