"""The fd model, synchronous: :class:`Builder`, the caller's handle to a zero-thread embryo.

``Process.process_create()`` asks the kernel for an embryo (no threads, empty memory, empty
descriptor table) and returns a :class:`Builder` holding its two handles in the caller's
descriptor table: the **builder fd**, through which every step below is made, and the
**wait handle**, which can only wait and signal. ``launch()`` closes the builder fd and the
first thread starts; ``abort()`` destroys the embryo instead.

:meth:`Builder.load_elf` is a user-space ELF loader ("mmap ld.so"): it reads the program
headers in the caller and maps each ``PT_LOAD`` segment into the embryo through the builder
fd with the placement rules of the kernel's ``binfmt_elf`` (the same layout ``execve``
produces); :meth:`Builder.setup_stack` writes the SysV initial stack with the kernel's own
stack code (``csrc/exec.c``), shared with ``execve``.
"""

from __future__ import annotations

import dataclasses
import errno
import mmap
import os
import signal
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from .._constants import MAP_FIXED, MAP_FIXED_NOREPLACE
from .. import elf
from ._bindings import (MAPV_ABS, MAPV_BIAS, MAPV_MMAP, MAPV_MUNMAP, MAPV_REL, MAPV_ZERO,
                        MapSteps)

if TYPE_CHECKING:
    from ._bindings import CKernel
    from .kernel import Process

__all__ = ["Builder", "LoadedElf", "ELF_ET_DYN_BASE"]

ELF_ET_DYN_BASE: Final = 0x555555554000  # where binfmt_elf puts a PIE that has an interpreter
_PAGE: Final = 4096
_TASK_SIZE: Final = 0x7FFFFFFFF000  # csrc/spawnfd.h: the user address space
_NO_ID: Final = 0xFFFFFFFF
_STATE_RUNNING, _STATE_ZOMBIE, _STATE_EMBRYO = 0, 1, 2


def _page_up(x: int) -> int:
    return (x + _PAGE - 1) & ~(_PAGE - 1)


@final
@dataclasses.dataclass(frozen=True)
class LoadedElf:
    """Where :meth:`Builder.load_elf` put an ELF file in the embryo."""

    def __repr__(self) -> str:
        return (f"LoadedElf(path={self.path!r}, base={self.base:#x}, entry={self.entry:#x}, "
                f"phdr={self.phdr:#x}, phnum={self.phnum}, interpreter={self.interpreter!r}, "
                f"start={self.start:#x}, end={self.end:#x})")

    path: str
    base: int                 #: load bias (0 for a fixed-address ET_EXEC)
    entry: int                #: run-time entry point
    phdr: int                 #: run-time address of the program headers (AT_PHDR)
    phnum: int                #: number of program headers (AT_PHNUM)
    interpreter: str | None   #: its PT_INTERP (the ld.so it asks for), if any
    start: int                #: lowest mapped address
    end: int                  #: one past the highest mapped address


_PLAN_CACHE: Final = 256  # loader plans kept per kernel (file version x placement)


@dataclasses.dataclass
class _Plan:
    """How one version of an ELF file is mapped for one placement: the loader's steps and
    where the result lies relative to the load bias, which the kernel picks with the first
    mapping (``relative``) or which is fixed at ``base``."""

    steps: MapSteps
    relative: bool
    base: int
    entry: int
    phdr: int | None          # None: the program headers are not in a loaded segment
    phnum: int
    interpreter: str | None
    start: int
    end: int
    last: LoadedElf | None = None  # the result of the last load (it is immutable)


def _plan(h: elf.ElfHeaders, addr: int | None, path: str) -> _Plan:
    """The loader's steps for ELF ``h`` at ``addr`` (None: binfmt_elf's placement). compare
    Linux load_elf_binary() + elf_load() (elf_map, padzero, the anonymous bss tail) and
    csrc/fs/exec.c elf_load()."""
    loads = [ph for ph in h.phdrs if ph.p_type == elf.PT_LOAD]
    if not loads:
        raise OSError(errno.ENOEXEC, f"{os.strerror(errno.ENOEXEC)} (no PT_LOAD)", path)
    for ph in loads:  # as csrc/fs/exec.c elf_check_load(), before anything is mapped
        if (ph.p_filesz > ph.p_memsz or ph.p_memsz > _TASK_SIZE or ph.p_vaddr > _TASK_SIZE
                or _TASK_SIZE - ph.p_memsz < ph.p_vaddr
                or (ph.p_offset - ph.p_vaddr) & (_PAGE - 1)):
            raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)} (bad PT_LOAD)", path)
    dyn = h.e_type == elf.ET_DYN
    interp = None if h.interpreter is None else os.fsdecode(h.interpreter)
    base = addr if addr is not None else (ELF_ET_DYN_BASE if dyn and interp else 0)
    relative = dyn and not base  # ld.so: top-down wherever its whole span fits
    if relative and not loads[0].p_filesz:
        raise OSError(errno.ENOEXEC, f"{os.strerror(errno.ENOEXEC)} (first PT_LOAD has no "
                      "file content)", path)
    bias = base if dyn and not relative else 0
    rel = MAPV_REL if relative else MAPV_ABS
    steps: list[tuple[int, int, int, int, int, int, int]] = []
    ranges: list[tuple[int, int]] = []
    for i, ph in enumerate(loads):
        pgoff = ph.p_vaddr & (_PAGE - 1)
        at = bias + ph.p_vaddr - pgoff      # in the steps' terms (relative: to the bias)
        size = _page_up(ph.p_filesz + pgoff)
        prot = elf.prot(ph.p_flags)
        if ph.p_filesz:
            if relative and i == 0:          # reserve the whole span, keep the first segment
                total = _page_up(loads[-1].p_vaddr + loads[-1].p_memsz - at)
                steps.append((MAPV_MMAP, MAPV_BIAS, at, total, ph.p_offset - pgoff, prot,
                              mmap.MAP_PRIVATE))
                if total > size:
                    steps.append((MAPV_MUNMAP, MAPV_REL, at + size, total - size, 0, 0, 0))
            else:
                steps.append((MAPV_MMAP, rel, at, size, ph.p_offset - pgoff, prot,
                              mmap.MAP_PRIVATE | MAP_FIXED_NOREPLACE))
            ranges.append((at, size))
        if ph.p_memsz > ph.p_filesz:
            zero_start = at + pgoff + ph.p_filesz
            zero_end = at + pgoff + ph.p_memsz
            pad = _page_up(zero_start) - zero_start
            if ph.p_filesz and pad and prot & mmap.PROT_WRITE:  # padzero()
                steps.append((MAPV_ZERO, rel, zero_start, pad, 0, 0, 0))
            zs, ze = _page_up(zero_start), _page_up(zero_end)
            if ze > zs:
                steps.append((MAPV_MMAP, rel, zs, ze - zs, 0,
                              mmap.PROT_READ | mmap.PROT_WRITE | (prot & mmap.PROT_EXEC),
                              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED))
                ranges.append((zs, ze - zs))
    phdr = None
    for ph in loads:
        if ph.p_offset <= h.e_phoff < ph.p_offset + ph.p_filesz:
            phdr = h.e_phoff - ph.p_offset + ph.p_vaddr
            break
    off = 0 if relative else bias  # ranges are in the steps' terms; LoadedElf adds the bias
    return _Plan(MapSteps(steps), relative, bias, h.e_entry, phdr, len(h.phdrs), interp,
                 min(a for a, _ in ranges) - off, max(a + n for a, n in ranges) - off)


def _enc(x: str | bytes) -> bytes:
    b = os.fsencode(x)
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


def _env_items(env: Mapping[str, str] | Sequence[str | bytes] | None) -> list[bytes]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [_enc(f"{k}={v}") for k, v in env.items()]
    return [_enc(e) for e in env]




@final
class Builder:
    """The creator's handle to an embryo: ``fd`` (builder), ``wait_fd``, ``pid``.

    Every method is one or a few C calls that fail at once with the exact ``OSError`` (and
    change nothing); after launch, abort, or the embryo's death, builder steps raise
    ``ProcessLookupError`` (``ESRCH``).
    """

    creator: Process
    fd: int
    wait_fd: int
    pid: int
    returncode: int | None
    _c: CKernel
    _cpid: int
    _closed: bool
    _aborted: bool
    _started: bool  # start registers set (setup_stack or set_registers)

    def __init__(self) -> None:
        raise TypeError("get a Builder from Process.process_create()")

    @classmethod
    def _new(cls, creator: Process) -> Builder:
        self = object.__new__(cls)
        self.creator = creator
        self._c = creator._c  # the hot path: no property chain per step
        self._cpid = creator.pid
        self.fd, self.wait_fd, self.pid = creator._c.process_create(creator.pid)
        self.returncode = None
        self._closed = self._aborted = self._started = False
        return self

    # ---- plumbing ----

    def _bfd(self) -> int:
        if self._closed:
            raise ProcessLookupError(errno.ESRCH, "the builder fd is closed: the process "
                                     "was launched or aborted")
        return self.fd

    @property
    def process(self) -> Process:
        """The :class:`spawnfd.Process` behind the embryo (its ``mm`` for inspection)."""
        return self.creator.kernel._process(self.pid)

    @property
    def launched(self) -> bool:
        """True once the builder fd is closed: by :meth:`launch`, or by :meth:`abort`."""
        return self._closed

    # ---- memory ----
    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        """mmap(2) into the embryo; ``fd`` is a descriptor of the creator. Returns the
        address."""
        return self._c.spawn_mmap(self._cpid, self._bfd(), addr, length, prot, flags,
                                  fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2) in the embryo.

        Raises:
            OSError: ``EINVAL`` (unaligned); ``ESRCH`` after launch or abort.
        """
        self._c.spawn_munmap(self._cpid, self._bfd(), addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(2) in the embryo.

        Raises:
            OSError: ``EINVAL``, ``ENOMEM`` (unmapped), ``EACCES``; ``ESRCH`` after launch or
                abort.
        """
        self._c.spawn_mprotect(self._cpid, self._bfd(), addr, length, prot)

    def read(self, addr: int, length: int) -> bytes:
        """Read the embryo's memory (through its fault path)."""
        return self._c.spawn_read(self._cpid, self._bfd(), addr, length)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write the embryo's memory; read-only memory raises ``EFAULT``."""
        self._c.spawn_write(self._cpid, self._bfd(), addr, data)

    def map_cow(self, source: Process, addr: int, length: int) -> None:
        """Map ``[addr, addr + length)`` of ``source`` (this creator or a child of it) into
        the embryo copy-on-write at the same addresses, sharing last-level page tables of
        whole 2 MiB chunks, as a cow-pt fork would: a zygote without fork."""
        self._c.spawn_map_cow(self._cpid, self._bfd(), source.pid, addr, length)

    # ---- descriptors, cwd, credentials, registers ----
    def install_fd(self, child_fd: int, fd: int, *, inheritable: bool = True) -> int:
        """Install the creator's ``fd`` as the embryo's ``child_fd`` (-1: lowest free);
        ``inheritable=False`` sets close-on-exec there. A builder fd cannot be installed."""
        return self._c.spawn_install_fd(self._cpid, self._bfd(), fd, child_fd,
                                        0 if inheritable else os.O_CLOEXEC)

    def open(self, path: str | bytes | os.PathLike[Any], flags: int, mode: int = 0o666, *,
             fd: int = -1) -> int:
        """Open ``path`` as the embryo would (its cwd and credentials) straight into its
        table at ``fd`` (-1: lowest free); returns the embryo's descriptor."""
        return self._c.spawn_open(self._cpid, self._bfd(), path, flags, mode, fd)

    def chdir(self, path: str | bytes | os.PathLike[Any]) -> None:
        """Set the embryo's working directory (resolved with its credentials).

        Raises:
            OSError: ``ENOENT``, ``ENOTDIR``, ``EACCES``, with ``path`` as filename; ``ESRCH``
                after launch or abort.
        """
        self._c.spawn_chdir(self._cpid, self._bfd(), path)

    def set_credentials(self, uid: int | None = None, gid: int | None = None, *,
                        euid: int | None = None, suid: int | None = None,
                        egid: int | None = None, sgid: int | None = None) -> None:
        """setresuid/setresgid for the embryo: ``uid`` sets real, effective and saved uid
        unless ``euid``/``suid`` say otherwise (the same for gids). Privileges can only be
        dropped: without effective uid 0 each new id must be one the embryo holds
        (``PermissionError``). Nothing changes on error."""
        def pick(one: int | None, all_: int | None) -> int:
            v = one if one is not None else all_
            return _NO_ID if v is None else v

        ids = (pick(None, uid), pick(euid, uid), pick(suid, uid),
               pick(None, gid), pick(egid, gid), pick(sgid, gid))
        self._c.spawn_set_creds(self._cpid, self._bfd(), ids)

    def set_registers(self, rip: int, rsp: int) -> None:
        """Set where the first thread starts (``rip``) and its stack pointer (``rsp``), for
        a caller that lays out memory itself; :meth:`setup_stack` sets both otherwise."""
        self._c.spawn_set_regs(self._cpid, self._bfd(), rip, rsp)
        self._started = True

    # ---- the user-space ELF loader ----
    def _read_elf(self, fd: int, path: str) -> elf.ElfHeaders:
        proc = self.creator
        h = elf.read_headers(lambda n, off: proc.pread(fd, n, off), path)
        if h.e_type not in (elf.ET_EXEC, elf.ET_DYN):
            raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), path)
        return h

    def load_elf(self, path: str | os.PathLike[str], addr: int | None = None, *,
                 check_exec: bool = False) -> LoadedElf:
        """Map an ELF file into the embryo the way the kernel's exec would.

        Each ``PT_LOAD`` segment is mapped with its protection; the bss tail of the last file
        page is cleared and the rest mapped anonymous. A PIE with an interpreter goes at
        ``ELF_ET_DYN_BASE``, an object without one (ld.so) top-down where its whole span
        fits, an ``ET_EXEC`` at its link addresses; ``addr`` overrides the base.

        The loader reads a file's headers once per version of its content (the kernel's
        change counter, like statx's change cookie) and maps all its segments through the
        builder fd in one call (``sfd_spawn_mmapv``): open, fstat, map, close.

        With ``check_exec`` the file must be what ``execve`` accepts: a regular file with an
        execute bit (``EACCES`` otherwise).

        Raises:
            OSError: ``ENOENT`` (open), ``EACCES``, ``ENOEXEC`` (not an x86-64 ELF),
                ``EEXIST`` (its addresses are taken), ``ENOMEM``; nothing of the file stays
                mapped. Every error names the file (``filename``).
        """
        path = os.fspath(path)
        try:
            return self._load_elf(path, addr, check_exec)
        except OSError as e:  # every error of a loader is about the file it loads
            if e.filename is not None:
                raise
            raise elf.named(e, path) from None

    def _load_elf(self, path: str, addr: int | None, check_exec: bool) -> LoadedElf:
        proc, c, cpid = self.creator, self._c, self._cpid
        fd = c.open(cpid, path, os.O_RDONLY | os.O_CLOEXEC, 0)  # a plain file: no wake-ups
        try:
            ino, _, mode, _, _, version = c.fstat(cpid, fd)
            if check_exec and (not stat.S_ISREG(mode) or not mode & 0o111):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            plans = proc.kernel._elf_plans
            key = (ino, version, addr)
            plan = plans.get(key) if version else None
            if plan is None:
                plan = _plan(self._read_elf(fd, path), addr, path)
                if version:
                    if len(plans) >= _PLAN_CACHE:
                        plans.clear()
                    plans[key] = plan
            bias = c.spawn_mmapv(cpid, self._bfd(), plan.steps, fd)
        finally:
            c.close_fd(cpid, fd)
        if not plan.relative:
            bias = plan.base
        last = plan.last
        if last is not None and last.base == bias and last.path == path:
            return last  # the same file at the same place as the last load: same answer
        plan.last = LoadedElf(path, bias, bias + plan.entry,
                              0 if plan.phdr is None else bias + plan.phdr, plan.phnum,
                              plan.interpreter, bias + plan.start, bias + plan.end)
        return plan.last

    def setup_stack(self, argv: Sequence[str | bytes],
                    env: Mapping[str, str] | Sequence[str | bytes] | None = None, *,
                    interpreter: LoadedElf | None = None, program: LoadedElf | None = None,
                    seed: int | None = None) -> int:
        """Write the SysV initial stack (a ``[stack]`` vma, strings, ``AT_RANDOM``, argc,
        argv, envp, auxv) with the kernel's execve code and set the start registers.

        With ``program`` (mapped by :meth:`load_elf`), ld.so finds it through ``AT_PHDR`` /
        ``AT_ENTRY`` and the thread starts at ``interpreter``'s entry (or the program's, for
        a static one). Without it, ld.so is started as a program, ``ld.so argv[0] argv[1:]…``,
        and maps ``argv[0]`` itself. Returns the stack pointer.

        Raises:
            TypeError: ``argv`` is a str or bytes, not a sequence of them (as ``os.execv``).
            ValueError: ``argv`` is empty or an item holds a NUL byte; neither
                ``interpreter`` nor ``program`` is given.
            OSError: ``E2BIG`` (too long), ``ENOMEM``; ``ESRCH`` once launched.
        """
        if isinstance(argv, (str, bytes)):  # as os.execv: a sequence of arguments
            raise TypeError(f"argv must be a list or tuple of str or bytes, not "
                            f"{type(argv).__name__}")
        if not argv:
            raise ValueError("argv must not be empty")
        args = [_enc(a) for a in argv]
        if program is not None:
            aux = (program.phdr, program.phnum, interpreter.base if interpreter else 0,
                   program.entry)
            start = interpreter.entry if interpreter else program.entry
            execfn = _enc(program.path)
        elif interpreter is not None:
            aux = (interpreter.phdr, interpreter.phnum, 0, interpreter.entry)
            start = interpreter.entry
            args = [_enc(interpreter.path), *args]
            execfn = _enc(interpreter.path)
        else:
            raise ValueError("setup_stack needs interpreter= or program=")
        rsp = self._c.spawn_setup_stack(self._cpid, self._bfd(), execfn, args,
                                        _env_items(env),
                                        self.pid if seed is None else seed, aux, start)
        self._started = True
        return rsp

    # ---- launch, abort, wait ----
    def launch(self) -> None:
        """Close the builder fd: the first thread starts (inside ``open_kernel()`` it runs
        the simulated ld.so at the start registers).

        On a bare :class:`Kernel` nothing runs: the launched process is caller-driven and
        needs no registers.

        Raises:
            RuntimeError: inside ``open_kernel()``, neither :meth:`setup_stack` nor
                :meth:`set_registers` was called: the first thread would have nowhere to
                start (the host backend refuses the same way). Nothing changes: the embryo
                can still be completed or aborted.
            ProcessLookupError: ``ESRCH``, already launched or aborted.
        """
        self._bfd()
        if not self._started and self.creator.kernel._runtime is not None:
            raise RuntimeError("setup_stack() or set_registers() was not called: the embryo "
                               "has no registers to start at")
        self._close_handle(self.fd)
        self._closed = True

    def _close_handle(self, fd: int) -> None:
        # Close one of our handles, never a descriptor its number was reused for (an execve
        # of the creator closed both: they are close-on-exec).
        launched = self._c.close_handle(self.creator.pid, fd, self.pid)
        if launched:
            self.creator.kernel._launched(launched)
        self.creator._wake()

    def abort(self) -> None:
        """Destroy the embryo instead of launching it (it dies of SIGKILL; its memory and
        descriptors are released at once) and reap it.

        Aborting again does nothing (the embryo is gone either way), so cleanup code may
        call it freely; aborting a launched process is an error, as any builder step after
        launch is: the running process is not killed.

        Raises:
            ProcessLookupError: ``ESRCH``, the process was launched (signal it through
                :meth:`send_signal` instead).
        """
        if self._closed:
            if self._aborted:
                return
            raise ProcessLookupError(errno.ESRCH, "the process was launched: abort() "
                                     "destroys an embryo only (send_signal() reaches it)")
        if self._refers_to_us(self.fd):
            try:
                self._c.kill_exit(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # already dead
            self.creator.close(self.fd)
        if not self._refers_to_us(self.wait_fd):
            self.wait_fd = -1
        self._closed = self._aborted = True
        self.wait(nohang=True)

    def _refers_to_us(self, fd: int) -> bool:
        # An execve of the creator closed both handles (they are close-on-exec) and destroyed
        # the embryo; their numbers may have been reused since: never close those.
        try:
            return self._c.handle_target(self.creator.pid, fd)[0] == self.pid
        except ProcessLookupError:
            return fd >= 0  # a handle whose process has been reaped: still ours to close
        except OSError:
            return False

    def poll(self) -> int | None:
        """The wait status if the process has exited (reaping it), else None: ``wait(nohang=
        True)``."""
        return self.wait(nohang=True)

    def wait(self, *, nohang: bool = False) -> int | None:
        """Reap the process through the wait handle; returns its wait status (cached).
        A caller-driven process still running raises ``BlockingIOError`` (``None`` with
        ``nohang``)."""
        if self.returncode is not None:
            return self.returncode
        got = self.creator.wait_pid(self.pid, nohang=nohang)
        if got is None:
            return None
        self.returncode = got[1]
        self._close_wait_fd()
        return self.returncode

    def _close_wait_fd(self) -> None:
        if self.wait_fd >= 0:
            try:
                self._close_handle(self.wait_fd)
            except OSError:
                pass  # already closed (the creator exec'd)
            self.wait_fd = -1

    def state(self) -> str:
        """``"embryo"``, ``"running"`` or ``"zombie"`` (``"reaped"`` once waited)."""
        if self.returncode is not None:
            return "reaped"
        _, st = self._c.handle_target(self.creator.pid, self.wait_fd)
        return ("running", "zombie", "embryo")[st]

    def send_signal(self, sig: int) -> None:
        """Signal through the wait handle: an embryo dies at once (it has no thread to run a
        handler); a running process gets the signal as from ``kill(2)``."""
        if self.returncode is not None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        pid, st = self._c.handle_target(self.creator.pid, self.wait_fd)
        if st == _STATE_ZOMBIE or sig == 0:  # signal 0 only checks, as pidfd_send_signal
            return
        rt = self.creator.kernel._runtime
        if st == _STATE_RUNNING and rt is not None and pid in rt.scopes:
            rt.signal(pid, sig)
            return
        if sig in (signal.SIGCHLD,):
            return
        self._c.kill_exit(pid, sig)
        self.creator._wake()

    def _describe(self) -> str:
        """The state in words, as the repr shows it: ``"embryo"``, ``"running"``,
        ``"zombie"``, ``"aborted"``, or how it ended once reaped (``"exited with status
        0"``)."""
        from .._format import describe_wait_status

        if self._aborted:
            return "aborted"
        if self.returncode is not None:
            return describe_wait_status(self.returncode)
        try:
            return self.state()
        except Exception:  # the handles are gone (the creator exec'd) or the kernel closed
            return "gone"

    def __repr__(self) -> str:
        state = self._describe()
        if self.returncode is not None or self._aborted:
            handles = ""
        elif self._closed:
            handles = f" wait_fd={self.wait_fd}"
        else:
            handles = f" fd={self.fd} wait_fd={self.wait_fd}"
        return f"<spawnfd.Builder pid={self.pid} {state}{handles}>"
