"""The one module that imports the cffi extension ``spawnfd.sim._kernel``.

It owns the C kernel's lifetime (``ffi.gc``), turns every negative errno into the ``OSError``
subclass the :mod:`os` module would raise, turns the kernel's panic into
:class:`KernelPanic`, and copies bytes and records across the boundary. Nothing above this
layer sees ``ffi`` or ``lib``.
"""

from __future__ import annotations

import errno
import functools
import mmap
import os
from typing import Any, Callable, NoReturn


def _load_unicorn() -> None:
    """Load libunicorn.so.2 from the installed unicorn package, RTLD_GLOBAL, before the
    extension: the CPU (csrc/arch/x86) calls it and is linked without it (no rpath into a
    pip build environment), so its symbols resolve against this copy."""
    import ctypes

    import unicorn

    path = os.path.join(os.path.dirname(unicorn.__file__), "lib", "libunicorn.so.2")
    ctypes.CDLL(path, mode=os.RTLD_GLOBAL)


_load_unicorn()

from ._kernel import ffi, lib  # noqa: E402

_KPANIC = 1000  # -_KPANIC: the kernel has panicked (csrc/spawnfd.h)
_TASK_SIZE = 0x7FFFFFFFF000  # csrc/spawnfd.h
_MAX_RW_COUNT = 0x7FFFF000  # Linux: one read returns at most this (INT_MAX & PAGE_MASK)
_CHUNK = 1 << 22  # host buffers grow a chunk at a time, as the bytes arrive

FAULT_KINDS = ("anon", "zero", "file", "shared", "cow", "wp_reuse", "wp_shared")
KSTAT_FIELDS = tuple(
    name for name, _ in ffi.typeof("struct kstats").fields
    if name not in ("faults", "syscalls_by_nr")
)
MMSTAT_FIELDS = tuple(name for name, _ in ffi.typeof("struct mmstats").fields)
CPU_COUNTER_FIELDS = tuple(name for name, _ in ffi.typeof("struct cpu_counters").fields)
WINDOW_FIELDS = tuple(name for name, _ in ffi.typeof("struct spawn_window").fields
                      if name != "faults")


class KernelPanic(RuntimeError):
    """The simulated kernel found a broken invariant; it refuses every later call."""


def _raise(handle: "CKernel", rc: int, filename: object = None) -> NoReturn:
    if -rc == _KPANIC:
        raise KernelPanic(ffi.string(lib.sfd_panic_message(handle.ptr)).decode())
    err = -rc
    if filename is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), filename)


def _from_buffer(data: Any) -> Any:
    """``data``'s bytes for a C call; anything but a bytes-like object is the TypeError the
    os module raises (cffi's own message speaks of unicode objects)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        try:
            memoryview(data).release()
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not "
                            f"{type(data).__name__!r}") from None
    return ffi.from_buffer("uint8_t[]", data)


def _path(path: str | bytes | os.PathLike[Any]) -> bytes:
    p = os.fsencode(path)
    if b"\0" in p:
        raise ValueError("embedded null byte")
    return p


MAPV_MMAP, MAPV_MUNMAP, MAPV_ZERO = lib.SFD_MAPV_MMAP, lib.SFD_MAPV_MUNMAP, lib.SFD_MAPV_ZERO
MAPV_ABS, MAPV_REL, MAPV_BIAS = lib.SFD_MAPV_ABS, lib.SFD_MAPV_REL, lib.SFD_MAPV_BIAS
MAPV_MAX = lib.SFD_MAPV_MAX
_U64 = (1 << 64) - 1


class MapSteps:
    """A user-space ELF loader's steps for one file, in C memory, reusable: an
    ``sfd_mapv[]`` for ``sfd_spawn_mmapv``. Each step is ``(op, rel, addr, length, offset,
    prot, flags)`` with ``op`` one of ``MAPV_MMAP``/``MAPV_MUNMAP``/``MAPV_ZERO`` and ``rel``
    one of ``MAPV_ABS``/``MAPV_REL``/``MAPV_BIAS``; an mmap without ``MAP_ANONYMOUS`` maps
    the file given to :meth:`CKernel.spawn_mmapv`.

    Raises:
        OSError: ``EINVAL`` if a value does not fit the kernel's 64-bit fields (an ELF whose
            arithmetic overflows), or more than ``MAPV_MAX`` steps.
    """

    def __init__(self, steps: list[tuple[int, int, int, int, int, int, int]]) -> None:
        if len(steps) > MAPV_MAX:
            raise OSError(errno.EINVAL, f"more than {MAPV_MAX} loader steps")
        self.n = len(steps)
        self._v = ffi.new("struct sfd_mapv[]", max(self.n, 1))
        self._bias = ffi.new("uint64_t *")
        self._failed = ffi.new("uint32_t *")
        self._file_steps: list[int] = []
        for i, (op, rel, addr, length, offset, prot, flags) in enumerate(steps):
            if not (0 <= addr <= _U64 and 0 <= length <= _U64 and 0 <= offset <= _U64):
                raise OSError(errno.EINVAL, "an address or length of the ELF overflows")
            e = self._v[i]
            e.op, e.rel, e.addr, e.len, e.off = op, rel, addr, length, offset
            e.prot, e.flags, e.fd = prot, flags, -1
            if op == MAPV_MMAP and not flags & mmap.MAP_ANONYMOUS:
                self._file_steps.append(i)

    def out(self, i: int) -> int:
        """Where step ``i`` (an mmap) mapped, after the last run."""
        return int(self._v[i].out)


class CKernel:
    """A booted C kernel. Methods mirror ``csrc/spawnfd.cdef`` with Python types."""

    __slots__ = ("_ptr", "_cpu_exit", "_woken_buf")

    def __init__(self, memory_bytes: int) -> None:
        out = ffi.new("struct kernel **")
        rc = lib.sfd_kernel_new(memory_bytes, out)
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        self._ptr = ffi.gc(out[0], lib.sfd_kernel_free)
        self._cpu_exit = ffi.new("struct sfd_cpu_exit *")  # reused: one call at a time
        self._woken_buf = ffi.new("int[]", 64)

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
        out["syscalls_by_nr"] = {nr: int(n) for nr, n in enumerate(s.syscalls_by_nr) if n}
        return out

    def spawn_window(self) -> dict[str, Any]:
        s = ffi.new("struct spawn_window *")
        self._call(lib.sfd_spawn_window(self.ptr, s))
        out: dict[str, Any] = {name: getattr(s, name) for name in WINDOW_FIELDS}
        out["faults"] = {kind: s.faults[i] for i, kind in enumerate(FAULT_KINDS)}
        return out

    def signal_send(self, sender: int, pid: int, sig: int) -> int:
        """Send sig to pid: 0 queued (a handler, blocked, or a stop signal), 1 ignored, 2 its
        default action ends pid (the caller carries it out), 3 SIGCONT continued a stopped
        pid (the caller wakes its threads)."""
        return int(self._call(lib.sfd_signal_send(self.ptr, sender, pid, sig)))

    def signal_outbox(self) -> list[tuple[int, int]]:
        """What kill(2) of running code left for the trio layer, oldest first: (pid, signal)
        pairs, signal 0 to wake pid to take a queued signal, else its default action ends
        pid. The outbox is empty afterwards."""
        out: list[tuple[int, int]] = []
        pids, sigs = ffi.new("int[64]"), ffi.new("int[64]")
        while True:
            n = int(self._call(lib.sfd_signal_outbox(self.ptr, pids, sigs, 64)))
            out.extend((pids[i], sigs[i]) for i in range(n))
            if n < 64:
                return out

    def signal_pending(self, tid: int) -> bool:
        """Whether thread tid (a pid: its first thread) has a signal to take now."""
        return bool(lib.sfd_signal_pending(self.ptr, tid))

    def cpu_timeout(self, tid: int) -> None:
        """tid's poll, select or futex wait waited out its timeout: it returns when it runs
        again."""
        self._call(lib.sfd_cpu_timeout(self.ptr, tid))

    def cpu_run(self, tid: int, max_insns: int) -> tuple[int, int, int, int, int, bool]:
        """Run thread tid (a pid: its first thread) on the CPU for at most max_insns
        instructions: (reason, status, fd, address, instructions, woken) of
        ``struct sfd_cpu_exit``."""
        out = self._cpu_exit
        self._call(lib.sfd_cpu_run(self.ptr, tid, max_insns, out))
        return (out.reason, out.status, out.fd, int(out.addr), int(out.insns),
                bool(out.woken))

    def futex_woken(self) -> list[int]:
        """The threads woken from FUTEX_WAIT since the last call (to be run again)."""
        out: list[int] = []
        buf = self._woken_buf
        while True:
            n = self._call(lib.sfd_futex_woken(self.ptr, buf, 64))
            out.extend(buf[0:n])
            if n < 64:
                return out

    def trace_start(self, cap: int) -> None:
        """Record up to cap finished system calls of CPUs (0: stop and drop the record)."""
        self._call(lib.sfd_trace_start(self.ptr, cap))

    def trace_read(self) -> tuple[list[tuple[int, int, int, tuple[int, ...]]], int]:
        """Take the recorded calls, oldest first: ([(pid, nr, result, args)], calls lost)."""
        out: list[tuple[int, int, int, tuple[int, ...]]] = []
        buf = ffi.new("struct sfd_trace_rec[]", 1024)
        lost = ffi.new("uint64_t *")
        while True:
            n = self._call(lib.sfd_trace_read(self.ptr, buf, 1024, lost))
            out += [(buf[i].pid, buf[i].nr, int(buf[i].ret), tuple(int(x) for x in buf[i].args))
                    for i in range(n)]
            if n < 1024:
                return out, int(lost[0])

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

    def set_fork_mode(self, mode: int) -> None:
        self._call(lib.sfd_set_fork_mode(self.ptr, mode))

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

    def pipe_events(self) -> int:
        """Pipe reads, writes and closes so far."""
        return int(lib.sfd_pipe_events(self.ptr))

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

    def mremap(self, pid: int, addr: int, old_len: int, new_len: int, flags: int,
               new_addr: int) -> int:
        return self._call(lib.sfd_mremap(self.ptr, pid, addr, old_len, new_len, flags,
                                         new_addr))

    def mprotect(self, pid: int, addr: int, length: int, prot: int) -> None:
        self._call(lib.sfd_mprotect(self.ptr, pid, addr, length, prot))

    def madvise(self, pid: int, addr: int, length: int, advice: int) -> None:
        self._call(lib.sfd_madvise(self.ptr, pid, addr, length, advice))

    def populate(self, pid: int, addr: int, length: int, write: bool,
                 stamp: int | None) -> None:
        self._call(lib.sfd_populate(self.ptr, pid, addr, length, int(write),
                                    int(stamp is not None), stamp or 0))

    def _access_read(self, addr: int, length: int, call: Any) -> bytes:
        # Read all of [addr, addr + length) or raise, a chunk at a time: a hostile length
        # fails on the first page it cannot read, never as one huge host allocation.
        if addr + length > _TASK_SIZE:
            raise OSError(14, os.strerror(14))  # EFAULT, as the kernel's own check says
        if length <= _CHUNK:
            buf = ffi.new("uint8_t[]", max(length, 1))
            self._call(call(addr, buf, length))
            return bytes(ffi.buffer(buf, length))
        out = bytearray()
        while len(out) < length:
            n = min(length - len(out), _CHUNK)
            buf = ffi.new("uint8_t[]", n)
            self._call(call(addr + len(out), buf, n))
            out += ffi.buffer(buf, n)
        return bytes(out)

    def mem_read(self, pid: int, addr: int, length: int) -> bytes:
        return self._access_read(addr, length, lambda a, buf, n: lib.sfd_mem_read(
            self.ptr, pid, a, buf, n))

    def mem_write(self, pid: int, addr: int, data: Any) -> None:
        # The buffer is released before any exception is raised: a traceback that kept the
        # exported memoryview alive can crash CPython < 3.12.7 at exit (gh-77894).
        with _from_buffer(data) as src:
            rc = lib.sfd_mem_write(self.ptr, pid, addr, src, len(src))
        self._call(rc)

    def maps(self, pid: int) -> str:
        cap = 4096
        while True:
            buf = ffi.new("char[]", cap)
            n = self._call(lib.sfd_maps(self.ptr, pid, buf, cap))
            if n < cap:
                return os.fsdecode(bytes(ffi.buffer(buf, n)))  # paths are bytes
            cap = n + 1

    def cpu_counters(self, pid: int) -> dict[str, int]:
        s = ffi.new("struct cpu_counters *")
        self._call(lib.sfd_cpu_counters(self.ptr, pid, s))
        return {name: getattr(s, name) for name in CPU_COUNTER_FIELDS}

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
        try:
            return self._call(lib.sfd_open(self.ptr, pid, _path(path), flags, mode), path)
        except OverflowError:
            raise _out_of_range() from None

    def close_fd(self, pid: int, fd: int) -> int:
        """close(2); returns the pid it launched when fd was a builder fd, else 0."""
        try:
            return self._call(lib.sfd_close(self.ptr, pid, fd))
        except OverflowError:
            raise _out_of_range() from None

    def read(self, pid: int, fd: int, n: int, offset: int | None = None) -> bytes:
        # One read(2): at most _MAX_RW_COUNT bytes, into host buffers that grow a chunk at a
        # time (a huge n on a small file costs nothing); an error after some bytes is a
        # short read, as when Linux's read meets it part way.
        n = min(n, _MAX_RW_COUNT)
        out = bytearray()
        while True:
            want = min(n - len(out), _CHUNK)
            buf = ffi.new("uint8_t[]", max(want, 1))
            if offset is None:
                got = lib.sfd_read(self.ptr, pid, fd, buf, want)
            elif not out or offset + len(out) < 1 << 63:
                got = lib.sfd_pread(self.ptr, pid, fd, buf, want, offset + len(out))
            else:
                got = 0
            if got < 0 and (not out or -got == _KPANIC):
                self._call(got)
            if got <= 0:
                break
            out += ffi.buffer(buf, got)
            if got < want or len(out) == n:
                break
        return bytes(out)

    def write(self, pid: int, fd: int, data: Any) -> int:
        with _from_buffer(data) as src:  # released first (see mem_write)
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

    def fstat(self, pid: int, fd: int) -> tuple[int, int, int, int, int, int]:
        """``(ino, size, mode, uid, gid, version)``; version 0: the content may change
        without notice (the file is mapped shared and writable)."""
        out = ffi.new("uint64_t[6]")
        try:
            self._call(lib.sfd_fstat(self.ptr, pid, fd, out))
        except OverflowError:
            raise _out_of_range() from None
        return (int(out[0]), int(out[1]), int(out[2]), int(out[3]), int(out[4]), int(out[5]))

    def spawn_mmapv(self, pid: int, bfd: int, steps: MapSteps, fd: int) -> int:
        """Run ``steps`` (their file mappings from the creator's ``fd``) on the embryo in one
        call; returns the bias (see ``sfd_spawn_mmapv``)."""
        v = steps._v
        try:
            for i in steps._file_steps:
                v[i].fd = fd
            self._call(lib.sfd_spawn_mmapv(self.ptr, pid, bfd, v, steps.n, steps._bias,
                                           steps._failed))
        except OverflowError:
            raise _out_of_range() from None
        return int(steps._bias[0])

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
        try:
            self._call(lib.sfd_process_create(self.ptr, pid, flags, out))
        except OverflowError:
            raise _out_of_range() from None
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
        return self._access_read(addr, length, lambda a, buf, n: lib.sfd_spawn_access(
            self.ptr, pid, bfd, a, buf, ffi.NULL, n))

    def spawn_write(self, pid: int, bfd: int, addr: int, data: Any) -> None:
        with _from_buffer(data) as src:  # released first (see mem_write)
            rc = lib.sfd_spawn_access(self.ptr, pid, bfd, addr, ffi.NULL, src, len(src))
        self._call(rc)

    def spawn_install_fd(self, pid: int, bfd: int, src: int, dst: int, flags: int) -> int:
        try:
            return self._call(lib.sfd_spawn_install_fd(self.ptr, pid, bfd, src, dst, flags))
        except OverflowError:
            raise _out_of_range() from None

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
        try:
            self._call(lib.sfd_spawn_setup_stack(self.ptr, pid, bfd, execfn, blob, len(blob),
                                                 len(argv), len(env), seed,
                                                 ffi.new("uint64_t[4]", list(aux)), start,
                                                 rsp))
        except OverflowError:
            raise _out_of_range() from None
        return int(rsp[0])

    def spawn_map_cow(self, pid: int, bfd: int, src: int, addr: int, length: int) -> None:
        self._call(lib.sfd_spawn_map_cow(self.ptr, pid, bfd, src, addr, length))

    def close_handle(self, pid: int, fd: int, target: int) -> int:
        """close(2) of fd only if it is a handle to target; returns the launched pid or 0."""
        try:
            return self._call(lib.sfd_close_handle(self.ptr, pid, fd, target))
        except OverflowError:
            raise _out_of_range() from None

    def handle_target(self, pid: int, fd: int) -> tuple[int, int]:
        """(pid, state) of the process behind a wait handle or builder fd; state 0 running,
        1 zombie, 2 embryo."""
        target, state = ffi.new("int *"), ffi.new("int *")
        self._call(lib.sfd_handle_target(self.ptr, pid, fd, target, state))
        return int(target[0]), int(state[0])


def _out_of_range() -> OSError:
    return OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: argument out of range")


# The spawn path's methods catch OverflowError themselves (no wrapper call per step);
# pipe_events takes no argument (and is called after every CPU slice).
_CHECKED_INLINE = frozenset({"open", "close_fd", "fstat", "spawn_mmapv", "process_create",
                             "spawn_install_fd", "spawn_setup_stack", "close_handle",
                             "pipe_events"})


def _range_checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    # An integer argument that does not fit its C type (an int descriptor of 2**40, a
    # negative unsigned) is EINVAL, as the kernel answers out-of-range values: never a
    # host OverflowError.
    @functools.wraps(fn)
    def call(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except OverflowError:
            raise _out_of_range() from None
    return call


for _name, _fn in list(vars(CKernel).items()):
    if not _name.startswith("_") and callable(_fn) and _name not in _CHECKED_INLINE:
        setattr(CKernel, _name, _range_checked(_fn))
del _name, _fn
