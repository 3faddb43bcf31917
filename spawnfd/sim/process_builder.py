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
        return self._builder.pid

    @property
    def process(self) -> Process:
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
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.mmap(length, prot, flags, fd, offset, addr)

    async def munmap(self, addr: int, length: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.munmap(addr, length)

    async def mprotect(self, addr: int, length: int, prot: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.mprotect(addr, length, prot)

    async def read(self, addr: int, length: int) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.read(addr, length)

    async def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.write(addr, data)

    async def map_cow(self, source: Process, addr: int, length: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.map_cow(source, addr, length)

    async def install_fd(self, child_fd: int, fd: int, *, inheritable: bool = True) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.install_fd(child_fd, fd, inheritable=inheritable)

    async def open(self, path: str | bytes | os.PathLike[Any], flags: int, mode: int = 0o666,
                   *, fd: int = -1) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.open(path, flags, mode, fd=fd)

    async def chdir(self, path: str | bytes | os.PathLike[Any]) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.chdir(path)

    async def set_credentials(self, uid: int | None = None, gid: int | None = None,
                              **ids: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.set_credentials(uid, gid, **ids)

    async def set_registers(self, rip: int, rsp: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._builder.set_registers(rip, rsp)

    async def load_elf(self, path: str | os.PathLike[str], addr: int | None = None) -> LoadedElf:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.load_elf(path, addr)

    async def setup_stack(self, argv: Sequence[str | bytes],
                          env: Mapping[str, str] | Sequence[str | bytes] | None = None, *,
                          interpreter: LoadedElf | None = None,
                          program: LoadedElf | None = None) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._builder.setup_stack(argv, env, interpreter=interpreter, program=program)

    async def abort(self) -> None:
        """Destroy the embryo now instead of launching it at the end of the block (it dies
        of SIGKILL and is reaped; ``returncode`` says so)."""
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
        self._builder.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        if self._b is None:
            return "<spawnfd.ProcessBuilder not entered>"
        return f"<spawnfd.ProcessBuilder pid={self._b.pid} {self._b._describe()}>"
