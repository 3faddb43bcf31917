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

if TYPE_CHECKING:
    from ._bindings import CKernel
    from .kernel import Process

__all__ = ["Builder", "LoadedElf", "ELF_ET_DYN_BASE"]

ELF_ET_DYN_BASE: Final = 0x555555554000  # where binfmt_elf puts a PIE that has an interpreter
_PAGE: Final = 4096
_NO_ID: Final = 0xFFFFFFFF
_STATE_RUNNING, _STATE_ZOMBIE, _STATE_EMBRYO = 0, 1, 2


def _page_up(x: int) -> int:
    return (x + _PAGE - 1) & ~(_PAGE - 1)


@final
@dataclasses.dataclass(frozen=True)
class LoadedElf:
    """Where :meth:`Builder.load_elf` put an ELF file in the embryo."""

    path: str
    base: int                 #: load bias (0 for a fixed-address ET_EXEC)
    entry: int                #: run-time entry point
    phdr: int                 #: run-time address of the program headers (AT_PHDR)
    phnum: int                #: number of program headers (AT_PHNUM)
    interpreter: str | None   #: its PT_INTERP (the ld.so it asks for), if any
    start: int                #: lowest mapped address
    end: int                  #: one past the highest mapped address


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
        self._closed = False
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
        return self._closed

    # ---- memory ----
    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        """mmap(2) into the embryo; ``fd`` is a descriptor of the creator. Returns the
        address."""
        return self._c.spawn_mmap(self._cpid, self._bfd(), addr, length, prot, flags,
                                  fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        self._c.spawn_munmap(self._cpid, self._bfd(), addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
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
        self._c.spawn_set_regs(self._cpid, self._bfd(), rip, rsp)

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

        With ``check_exec`` the file must be what ``execve`` accepts: a regular file with an
        execute bit (``EACCES`` otherwise).

        Raises:
            OSError: ``ENOENT`` (open), ``EACCES``, ``ENOEXEC`` (not an x86-64 ELF),
                ``EEXIST`` (its addresses are taken), ``ENOMEM``; nothing of the file stays
                mapped.
        """
        path = os.fspath(path)
        proc = self.creator
        fd = proc.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if check_exec:
                mode = proc.fstat(fd).st_mode
                if not stat.S_ISREG(mode) or not mode & 0o111:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return self._map_elf(fd, path, self._read_elf(fd, path), addr)
        finally:
            proc.close(fd)

    def _map_elf(self, fd: int, path: str, h: elf.ElfHeaders, addr: int | None) -> LoadedElf:
        loads = [ph for ph in h.phdrs if ph.p_type == elf.PT_LOAD]
        if not loads:
            raise OSError(errno.ENOEXEC, f"{os.strerror(errno.ENOEXEC)} (no PT_LOAD)", path)
        dyn = h.e_type == elf.ET_DYN
        interp = None if h.interpreter is None else os.fsdecode(h.interpreter)
        if addr is not None:
            base = addr
        else:
            base = ELF_ET_DYN_BASE if dyn and interp else 0
        bias = base if dyn else 0
        mapped: list[tuple[int, int]] = []
        try:
            for i, ph in enumerate(loads):
                total = 0
                if i == 0 and dyn and not base:
                    total = loads[-1].p_vaddr + loads[-1].p_memsz - (loads[0].p_vaddr & ~4095)
                bias = self._load_segment(fd, ph, bias, total, mapped)
        except BaseException:
            for a, n in mapped:  # loader failed: nothing of the file stays mapped
                try:
                    self.munmap(a, n)
                except OSError:
                    pass
            raise
        phdr = 0
        for ph in loads:
            if ph.p_offset <= h.e_phoff < ph.p_offset + ph.p_filesz:
                phdr = bias + h.e_phoff - ph.p_offset + ph.p_vaddr
                break
        start = min(a for a, _ in mapped)
        end = max(a + n for a, n in mapped)
        return LoadedElf(path, bias, bias + h.e_entry, phdr, len(h.phdrs), interp, start, end)

    def _load_segment(self, fd: int, ph: elf.Phdr, bias: int, total: int,
                      mapped: list[tuple[int, int]]) -> int:
        """One PT_LOAD: compare exec.c elf_load() (Linux elf_map() + elf_load())."""
        pgoff = ph.p_vaddr & (_PAGE - 1)
        addr = (bias + ph.p_vaddr) & ~(_PAGE - 1)
        size = _page_up(ph.p_filesz + pgoff)
        prot = elf.prot(ph.p_flags)
        if ph.p_filesz:
            length = _page_up(total) if total else size
            flags = mmap.MAP_PRIVATE | (0 if total else MAP_FIXED_NOREPLACE)
            out = self.mmap(length, prot, flags, fd, ph.p_offset - pgoff, addr)
            if total:
                bias = out - (ph.p_vaddr & ~(_PAGE - 1))
                if length > size:
                    self.munmap(out + size, length - size)
            mapped.append((out, size))
            addr = out
        if ph.p_memsz > ph.p_filesz:
            zero_start = addr + pgoff + ph.p_filesz
            zero_end = addr + pgoff + ph.p_memsz
            pad = _page_up(zero_start) - zero_start
            if ph.p_filesz and pad and prot & mmap.PROT_WRITE:  # padzero()
                self.write(zero_start, bytes(pad))
            zs, ze = _page_up(zero_start), _page_up(zero_end)
            if ze > zs:
                self.mmap(ze - zs, mmap.PROT_READ | mmap.PROT_WRITE | (prot & mmap.PROT_EXEC),
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_FIXED, addr=zs)
                mapped.append((zs, ze - zs))
        return bias

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
        """
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
        return self._c.spawn_setup_stack(self._cpid, self._bfd(), execfn, args,
                                         _env_items(env),
                                         self.pid if seed is None else seed, aux, start)

    # ---- launch, abort, wait ----
    def launch(self) -> None:
        """Close the builder fd: the first thread starts (inside ``open_kernel()`` it runs
        the simulated ld.so at the start registers)."""
        self._bfd()
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
        descriptors are released at once) and reap it."""
        if self._closed:
            return
        if self._refers_to_us(self.fd):
            try:
                self._c.kill_exit(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # already dead
            self.creator.close(self.fd)
        if not self._refers_to_us(self.wait_fd):
            self.wait_fd = -1
        self._closed = True
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

    def __repr__(self) -> str:
        return (f"<spawnfd.Builder pid={self.pid} fd={self.fd} "
                f"{'launched' if self._closed else 'embryo'}>")
