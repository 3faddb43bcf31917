"""The fd model's async trio API: ``async with process.create_process() as child:``.

Inside the block ``child`` is a :class:`ProcessBuilder` for a zero-thread embryo; every step
is an awaited method that fails at once with the exact ``OSError`` and leaves the embryo as
it was. Leaving the block closes the builder fd and launches the first thread; an exception
or a cancellation inside the block destroys the embryo instead. After the block the same
object is the handle to the running child (``pid``, ``await wait()``, ``send_signal``), held
through the wait handle like a pidfd.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import trio

from .builder import Builder, LoadedElf

if TYPE_CHECKING:
    from .kernel import AddressSpace, Process

__all__ = ["ProcessBuilder", "LoadedElf"]


@final
class ProcessBuilder:
    """An embryo being built (inside ``async with``), then the launched child.

    Leaving the block launches the embryo; if neither :meth:`setup_stack` nor
    :meth:`set_registers` was called it has nowhere to start: it is destroyed instead and
    ``RuntimeError`` raised, as the host backend's builder does without ``setup_stack``.
    """

    def __init__(self, creator: Process) -> None:
        self._creator = creator
        self._b: Builder | None = None

    @classmethod
    def _launched(cls, creator: Process, builder: Builder) -> ProcessBuilder:
        """The handle of a child built and launched through the synchronous ``builder``."""
        self = cls(creator)
        self._b = builder
        return self

    async def __aenter__(self) -> ProcessBuilder:
        await trio.lowlevel.checkpoint()
        if self._b is not None:
            raise RuntimeError("a ProcessBuilder is entered once")
        self._b = self._creator.process_create()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        b = self._builder
        if b.launched:
            pass  # aborted inside the block
        elif exc_type is None:
            try:
                b.launch()
            except RuntimeError:
                b.abort()  # nothing to run (no setup_stack): the embryo never runs
                raise
        else:
            b.abort()  # an error or a cancellation: the embryo never runs
        await trio.lowlevel.cancel_shielded_checkpoint()

    @property
    def _builder(self) -> Builder:
        if self._b is None:
            raise RuntimeError("use the ProcessBuilder in 'async with process.create_process()'")
        return self._b

    # ---- identity ----
    @property
    def pid(self) -> int:
        """The child's process id (an embryo has one too)."""
        return self._builder.pid

    @property
    def process(self) -> Process:
        """The :class:`spawnfd.Process` behind the child: its ``mm``, ``state()``."""
        return self._builder.process

    @property
    def mm(self) -> AddressSpace:
        """The child's address space, for inspection (maps, statistics)."""
        return self._builder.process.mm

    @property
    def returncode(self) -> int | None:
        """The wait status once :meth:`wait` reaped the child."""
        return self._builder.returncode

    @property
    def builder(self) -> Builder:
        """The synchronous :class:`spawnfd.Builder` underneath (fd numbers, state)."""
        return self._builder

    # ---- builder steps ----
    # Each step is a C call or two that never blocks: a cancellation point, not a schedule
    # point (entering and leaving the block are full checkpoints).
    async def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
                   addr: int = 0) -> int:
        """Map memory into the embryo, as mmap(2) would in the child.

        Args:
            length: Bytes (rounded up to pages).
            prot: ``mmap.PROT_*``.
            flags: ``mmap.MAP_*``, ``spawnfd.MAP_FIXED``/``MAP_FIXED_NOREPLACE``.
            fd: A descriptor of the creator for a file mapping, -1 for anonymous memory.
            offset: File offset, page aligned.
            addr: A hint, or the address for ``MAP_FIXED``.

        Returns:
            The address in the embryo.

        Raises:
            OSError: The errno mmap(2) gives (``EINVAL``, ``EBADF``, ``EEXIST``, ``ENOMEM``...);
                ``ESRCH`` once launched. The embryo is unchanged.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.mmap(length, prot, flags, fd, offset, addr)

    async def munmap(self, addr: int, length: int) -> None:
        """Unmap ``[addr, addr + length)`` from the embryo, as munmap(2).

        Raises:
            OSError: ``EINVAL`` (unaligned); ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.munmap(addr, length)

    async def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Change the protection of ``[addr, addr + length)`` in the embryo, as mprotect(2).

        Raises:
            OSError: ``EINVAL``, ``ENOMEM`` (unmapped), ``EACCES``; ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.mprotect(addr, length, prot)

    async def read(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes of the embryo's memory at ``addr`` (through its fault path).

        Raises:
            OSError: ``EFAULT`` outside its mappings; ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.read(addr, length)

    async def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` into the embryo's memory at ``addr`` (copy-on-write where it applies).

        Raises:
            TypeError: ``data`` is not bytes-like.
            OSError: ``EFAULT`` outside its mappings or into read-only memory; ``ESRCH`` once
                launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.write(addr, data)

    async def map_cow(self, source: Process, addr: int, length: int) -> None:
        """Share ``[addr, addr + length)`` of ``source`` into the embryo copy-on-write at the
        same addresses, page tables included, as a cow-pt fork would: a zygote without fork.

        Args:
            source: The creator or a child of it.
            addr: Start, page aligned.
            length: Bytes, page aligned.

        Raises:
            OSError: ``EINVAL`` (unaligned), ``EPERM`` (not the creator or a child of it with
                the same uid), ``EEXIST`` (taken in the embryo), ``ENOMEM``; ``ESRCH`` once
                launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.map_cow(source, addr, length)

    async def install_fd(self, child_fd: int, fd: int, *, inheritable: bool = True) -> int:
        """Install the creator's ``fd`` as the embryo's ``child_fd``.

        Args:
            child_fd: The number in the embryo's table; -1 for the lowest free one.
            fd: A descriptor of the creator (not a builder fd).
            inheritable: False sets close-on-exec in the embryo.

        Returns:
            The embryo's descriptor.

        Raises:
            OSError: ``EBADF`` (``fd`` not open, or a builder fd); ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.install_fd(child_fd, fd, inheritable=inheritable)

    async def open(self, path: str | bytes | os.PathLike[Any], flags: int, mode: int = 0o666,
                   *, fd: int = -1) -> int:
        """Open ``path`` as the embryo would (its cwd and credentials) into its table.

        Args:
            path: The file.
            flags: ``os.O_*``.
            mode: Permissions of a created file.
            fd: The embryo's descriptor to use; -1 for the lowest free one.

        Returns:
            The embryo's descriptor.

        Raises:
            OSError: What open(2) raises (``FileNotFoundError``, ``PermissionError``...), with
                ``path`` as filename; ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.open(path, flags, mode, fd=fd)

    async def chdir(self, path: str | bytes | os.PathLike[Any]) -> None:
        """Set the embryo's working directory.

        Raises:
            OSError: ``ENOENT``, ``ENOTDIR``, ``EACCES`` with ``path`` as filename; ``ESRCH``
                once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.chdir(path)

    async def set_credentials(self, uid: int | None = None, gid: int | None = None,
                              **ids: int) -> None:
        """Set the embryo's user and group ids (see :meth:`spawnfd.Builder.set_credentials`).

        Args:
            uid: Real, effective and saved uid, unless ``euid=``/``suid=`` say otherwise.
            gid: The same for the group ids (``egid=``, ``sgid=``).
            **ids: ``euid``, ``suid``, ``egid``, ``sgid``.

        Raises:
            PermissionError: A new id the embryo does not hold, without effective uid 0.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.set_credentials(uid, gid, **ids)

    async def set_registers(self, rip: int, rsp: int) -> None:
        """Set where the first thread starts (``rip``) and its stack pointer (``rsp``), for a
        caller that lays memory out itself; :meth:`setup_stack` sets both otherwise."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.set_registers(rip, rsp)

    async def load_elf(self, path: str | os.PathLike[str], addr: int | None = None) -> LoadedElf:
        """Map an ELF file into the embryo the way the kernel's exec would (see
        :meth:`spawnfd.Builder.load_elf`).

        Args:
            path: The ELF file (a program, or an interpreter such as ld.so).
            addr: The load address instead of the kernel's choice.

        Returns:
            A :class:`spawnfd.LoadedElf`: where it went, its entry, its ``PT_INTERP``.

        Raises:
            OSError: ``ENOENT``, ``EACCES``, ``ENOEXEC``, ``EEXIST``, ``ENOMEM``, with ``path`` as
                filename; nothing of the file stays mapped.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.load_elf(path, addr)

    async def setup_stack(self, argv: Sequence[str | bytes],
                          env: Mapping[str, str] | Sequence[str | bytes] | None = None, *,
                          interpreter: LoadedElf | None = None,
                          program: LoadedElf | None = None) -> int:
        """Write the SysV initial stack and set the start registers (see
        :meth:`spawnfd.Builder.setup_stack`).

        Args:
            argv: The arguments, a list of str or bytes.
            env: The environment, a mapping or ``"NAME=value"`` items.
            interpreter: The ld.so mapped by :meth:`load_elf`, if any.
            program: The program mapped by :meth:`load_elf`, if any.

        Returns:
            The stack pointer.

        Raises:
            TypeError: ``argv`` is a str or bytes.
            ValueError: ``argv`` empty, or neither ``interpreter`` nor ``program`` given.
            OSError: ``E2BIG``, ``ENOMEM``; ``ESRCH`` once launched.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.setup_stack(argv, env, interpreter=interpreter, program=program)

    async def abort(self) -> None:
        """Destroy the embryo now instead of launching it at the end of the block (it dies
        of SIGKILL and is reaped; ``returncode`` says so). Aborting again does nothing.

        Raises:
            ProcessLookupError: ``ESRCH``, the child was launched (``kill()`` reaches it).
        """
        await trio.lowlevel.checkpoint()
        self._builder.abort()

    # ---- the launched child ----
    async def wait(self) -> int:
        """Wait for the child to exit and reap it; returns the wait status."""
        b = self._builder
        if b.returncode is None:
            _, status = await self._creator.sys.wait(b.pid)
            b.returncode = status
            b._close_wait_fd()
        else:
            await trio.lowlevel.checkpoint()
        return b.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the child through its wait handle: an embryo dies at once; a running child
        gets it as from kill(2).

        Raises:
            ProcessLookupError: The child has been reaped.
        """
        self._builder.send_signal(sig)

    def terminate(self) -> None:
        """Send ``SIGTERM`` (see :meth:`send_signal`)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL`` (see :meth:`send_signal`)."""
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        if self._b is None:
            return "<spawnfd.ProcessBuilder not entered>"
        return f"<spawnfd.ProcessBuilder pid={self._b.pid} {self._b._describe()}>"
