"""Starting a program in the simulator by any of the three compared paths.

``await spawn(parent, path, argv, env, method=..., fds=..., cwd=...)`` is what the simulated
``sh``, ``spawnfd.system``, ``spawnfd.run_process`` and the benchmarks call:

* ``"spawnfd"`` — the fd model: an embryo is built through its builder fd (ELF files mapped by
  the parent's user-space loader, the stack written, exactly the descriptors in ``fds``
  installed) and launched by closing the builder fd;
* ``"fork-exec"`` (under the kernel's fork policy) or ``"copy"`` / ``"cow-pt"`` /
  ``"cow-pt-eager"`` — fork, then the child rearranges its descriptors and execs;
* ``"vfork-exec"`` — what glibc's ``posix_spawn`` does: the child borrows the parent's memory
  until exec.

Errors are the parent's in every case, as ``subprocess`` reports them: the fd model fails
before anything runs; fork and vfork children report a failed ``open``/``chdir``/``execve``
through a close-on-exec pipe (the technique of CPython's ``_posixsubprocess``), and the
parent raises that ``OSError`` after reaping the child.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from .process_builder import ProcessBuilder
from .runtime import RunningProcess

if TYPE_CHECKING:
    from .kernel import AddressSpace, Process

__all__ = ["spawn", "Open", "SpawnedProcess", "METHODS"]

METHODS: Final = ("spawnfd", "fork-exec", "vfork-exec", "copy", "cow-pt", "cow-pt-eager")
_FAIL: Final = struct.Struct("<ii")  # (errno, which step: 0 exec, 1 fds, 2 chdir)


@dataclasses.dataclass(frozen=True)
class Open:
    """A descriptor the child gets by opening a path (relative to its cwd) — a redirection."""

    path: str
    flags: int
    mode: int = 0o666


FdSpec = int | Open


class SpawnedProcess(Protocol):
    """What :func:`spawn` returns, whichever the method."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def mm(self) -> AddressSpace: ...
    async def wait(self) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


def _default_fds(parent: Process) -> dict[int, FdSpec]:
    out: dict[int, FdSpec] = {}
    for fd in (0, 1, 2):
        try:
            parent._c.fd_ident(parent.pid, fd)
        except OSError:
            continue
        out[fd] = fd
    return out


async def spawn(parent: Process, path: str, argv: Sequence[str],
                env: Mapping[str, str] | None = None, *, method: str = "spawnfd",
                fds: Mapping[int, FdSpec] | None = None, cwd: str | None = None,
                close_fds: bool = False) -> SpawnedProcess:
    """Start ``path`` with ``argv`` and ``env`` as a child of ``parent``.

    ``fds`` maps the child's descriptor numbers to the parent's descriptors or to
    :class:`Open` redirections, applied in order. The fd model gives the child exactly those
    (default: the parent's 0, 1 and 2); fork and vfork children also keep whatever else the
    parent had open without close-on-exec, as fork always does, unless ``close_fds`` (then
    they close everything else before exec, as ``subprocess`` does with close_range).

    Raises:
        OSError: the program could not be started (``FileNotFoundError`` for a missing
            program or redirection file, ``PermissionError``, ``ENOEXEC``...); no child is
            left behind.
        ValueError: an unknown method.
    """
    env = {} if env is None else dict(env)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if method == "spawnfd":
        return await _spawn_fd_model(parent, path, list(argv), env,
                                     None if fds is None else dict(fds), cwd)
    return await _spawn_fork(parent, path, list(argv), env, dict(fds or {}), cwd, method,
                             close_fds)


async def _spawn_fd_model(parent: Process, path: str, argv: list[str], env: dict[str, str],
                          fds: dict[int, FdSpec] | None, cwd: str | None) -> SpawnedProcess:
    # The same steps as `async with parent.create_process()`, made through the synchronous
    # builder with one checkpoint for the whole spawn (each step is a C call or two): its
    # cancellation half now, its scheduling half after the launch.
    await trio.lowlevel.checkpoint_if_cancelled()
    b = parent.process_create()
    try:
        if cwd is not None:
            b.chdir(cwd)
        prog = b.load_elf(_resolve_in(parent, cwd, path), check_exec=True)
        interp = b.load_elf(prog.interpreter, check_exec=True) if prog.interpreter else None
        b.setup_stack(argv, env, interpreter=interp, program=prog)
        if fds is None:  # the parent's 0, 1 and 2, those it has open
            for fd in (0, 1, 2):
                if fd not in (b.fd, b.wait_fd):
                    try:
                        b.install_fd(fd, fd)
                    except OSError as e:
                        if e.errno != errno.EBADF:
                            raise
            fds = {}
        for cfd, spec in fds.items():
            if isinstance(spec, Open):
                b.open(spec.path, spec.flags, spec.mode, fd=cfd)
            else:
                b.install_fd(cfd, spec)
        b.launch()
    except BaseException:
        if not b.launched:
            b.abort()
        await trio.lowlevel.cancel_shielded_checkpoint()
        raise
    # The other half of the checkpoint, as leaving `async with create_process()`: the child
    # gets its first turn now, as a vfork child runs until its exec.
    await trio.lowlevel.cancel_shielded_checkpoint()
    return ProcessBuilder._launched(parent, b)


def _resolve_in(parent: Process, cwd: str | None, path: str) -> str:
    # The loader runs in the parent, the child has its own cwd: relative paths are the child's.
    if cwd is None or path.startswith("/"):
        return path
    return os.path.join(cwd, path)


async def _spawn_fork(parent: Process, path: str, argv: list[str], env: dict[str, str],
                      fds: dict[int, FdSpec], cwd: str | None, method: str,
                      close_fds: bool) -> SpawnedProcess:
    psys = parent.sys
    r, w = psys.pipe(os.O_CLOEXEC)

    async def child(csys: Any) -> int:
        step = 1
        try:
            _arrange_fds(csys, fds, w)
            if close_fds:
                _close_others(csys, set(fds) | {w})
            step = 2
            if cwd is not None:
                csys.chdir(cwd)
            step = 0
            await csys.execve(path, argv, env)
        except OSError as e:
            await csys.write(w, _FAIL.pack(e.errno or errno.EIO, step) +
                             os.fsencode(getattr(e, "filename", None) or ""))
            return 127
        return 0  # not reached: execve does not return

    try:
        if method == "vfork-exec":
            pid = await psys.vfork(child)
        else:
            pid = await psys.fork(child, None if method == "fork-exec" else method)
    finally:
        psys.close(w)
    try:
        report = b""
        while chunk := await psys.read(r, 4096):
            report += chunk
    finally:
        psys.close(r)
    proc = RunningProcess._new(parent, parent.kernel._process(pid))
    if report:
        await proc.wait()
        err, step = _FAIL.unpack(report[:_FAIL.size])
        name = os.fsdecode(report[_FAIL.size:]) or (path if step == 0 else None)
        raise OSError(err, os.strerror(err), name)
    return proc


def _arrange_fds(csys: Any, fds: dict[int, FdSpec], report_fd: int) -> None:
    """In a fork/vfork child: make the descriptors in fds what they should be, as
    ``posix_spawn`` file actions would. Sources are first duplicated above every target so
    a mapping like {0: 1, 1: 0} works."""
    if not fds:
        return
    top = max([*fds, report_fd, 2]) + 1
    staged: dict[int, int] = {}
    for cfd, spec in fds.items():
        if isinstance(spec, Open):
            src = csys.open(spec.path, spec.flags | os.O_CLOEXEC, spec.mode)
        else:
            src = csys.proc._c.dup3(csys.pid, spec, top + len(staged), os.O_CLOEXEC)
        staged[cfd] = src
    for cfd, src in staged.items():
        csys.dup2(src, cfd)
    for src in set(staged.values()):
        if src not in fds:
            csys.close(src)


def _close_others(csys: Any, keep: set[int]) -> None:
    """close_range() over every gap between the descriptors to keep."""
    first = 0
    for fd in sorted(keep):
        if fd > first:
            csys.proc.close_range(first, fd - 1)
        first = fd + 1
    csys.proc.close_range(first)


async def wait_all(children: Sequence[SpawnedProcess]) -> list[int]:
    """Wait for every child; returns their wait statuses in order."""
    out = []
    for c in children:
        out.append(await c.wait())
    await trio.lowlevel.checkpoint()
    return out
