"""The fd-model builder on the real kernel: record and validate now, launch on leaving the block.

The simulator's builder manipulates a zero-thread embryo through an fd. Linux has no such
embryo, so this builder does the next best thing: every step is checked against the real kernel
the moment it is called (the descriptor is duplicated, the file opened, the directory opened,
the program found), so a mistake raises the exact `OSError` before anything runs; leaving the
``async with`` block replays the steps in a ``clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)``
child, which reports the index of any step that still fails. Nothing the parent did not install
reaches the child: its descriptor table starts empty, as the embryo's does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple, final

import trio

from .. import elf
from . import _libc_bindings as _libc
from ._process import NoPublicConstructor, Process, reap_orphans
from .._subprocess import StrOrBytesPath, fsencode_arg
from ._subprocess import RESTORED_MASK, add_note, env_items, exec_candidates, signal_mask

_NO_MEMORY: Final = (
    "{name}(): the Linux kernel cannot map or write memory into a child before it execs; "
    "spawnfd.host can only set up what exec keeps (fds, cwd, stack, session, signals, umask, "
    "cgroup). Use the simulated kernel for this: "
    "`async with spawnfd.open_kernel() as k: async with k.init.create_process() as child: ...`"
)



@final
@dataclass(frozen=True)
class Elf:
    """An ELF file `ProcessBuilder.load_elf` checked, to run as the child's interpreter.

    On the real kernel nothing is mapped before exec: ``base`` is 0 (the kernel picks it at
    exec) and ``entry``/``phdr`` are the file's own values, relative to that base.

    Attributes:
        path: The file, as given.
        base: 0: chosen by the kernel at exec.
        entry: ``e_entry``.
        phdr: ``e_phoff``, the file offset of the program headers.
        interpreter: The file's own ``PT_INTERP`` (None for ld.so and static programs).
    """

    path: str
    base: int
    entry: int
    phdr: int
    interpreter: str | None


def _read_elf(fd: int, name: object) -> elf.ElfHeaders:
    """The ELF headers of the host file open at fd, of any machine (ENOEXEC if not ELF)."""
    return elf.read_headers(lambda n, off: os.pread(fd, n, off), name, machine=None)


_host_machine: int | None = None


def _machine_of_this_host() -> int:
    global _host_machine
    if _host_machine is None:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _host_machine = _read_elf(fd, "/proc/self/exe").e_machine
        finally:
            os.close(fd)
    return _host_machine


class _Step(NamedTuple):
    action: _libc.Action
    name: object  # filename for its OSError, or None
    what: str  # for the exception note


class _Program(NamedTuple):
    paths: list[bytes]  # what execve is given (one path, found at setup_stack)
    argv: list[bytes]  # as execve gets it (ld.so's argv when run through it)
    envp: list[bytes] | None  # None: our environment at launch
    name: object  # filename for an execve error
    args: list[Any]  # argv as the caller gave it, for Process.args


def create_process(*, method: str = "spawnfd") -> ProcessBuilder:
    """A builder for one real child process, used as ``async with ... as child:``.

    ::

        async with spawnfd.host.create_process() as child:
            await child.setup_stack(["/bin/echo", "hi"], env=os.environ)
            await child.install_fd(1, os.open("out.txt", os.O_WRONLY | os.O_CREAT))
        status = await child.wait()          # a wait status, as os.waitpid returns

    Args:
        method: How leaving the block launches: ``"spawnfd"`` (default: a
            ``clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`` child that reports the failing step),
            ``"fork-exec"`` (the same child after copying the parent) or ``"posix_spawn"``
            (glibc posix_spawn file actions, then pidfd_open; no umask or cgroup steps).

    Returns:
        A `ProcessBuilder` that has not launched anything yet.

    Raises:
        ValueError: Unknown method.
    """
    if method not in _libc.METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(_libc.METHODS)}")
    return ProcessBuilder._create(method)


@final
class ProcessBuilder(metaclass=NoPublicConstructor):
    """One child process on the real kernel, set up step by step, launched on leaving the block.

    Get one from `spawnfd.host.create_process`. Inside the ``async with`` block the methods
    record steps; each is checked at once and raises the exact `OSError` for a bad fd, a missing
    file or directory, or a program that cannot be run. The child's descriptor table starts
    empty: it gets exactly the fds installed or opened into it. Leaving the block normally
    launches the child (an exception in the block launches nothing); afterwards the builder
    holds the child by a pidfd: `pid`, `wait`, `send_signal`, `process`. A block that never
    called `setup_stack` launches nothing and raises `RuntimeError` on leaving it, as the
    simulator's builder does for an embryo without registers.

    Memory operations (`mmap`, `write`, ...) raise `NotImplementedError`: Linux cannot do them
    to a child before exec. The simulated kernel can.
    """

    def __init__(self, method: str) -> None:
        self._method = method
        self._state = "new"  # -> "open" -> "launched" | "discarded"
        self._steps: list[_Step] = []
        self._held: list[int] = []  # our duplicates and opened files, closed at launch
        self._targets: set[int] = set()
        self._dirfd: int | None = None  # the child's cwd so far, for relative paths
        self._program: _Program | None = None
        self._sigmask: int | None = None
        self._sigdefault = RESTORED_MASK
        self._session: str | None = None
        self._process: Process | None = None

    def __repr__(self) -> str:
        if self._process is not None:
            return f"<spawnfd.host.ProcessBuilder launched: {self._process!r}>"
        return f"<spawnfd.host.ProcessBuilder {self._state}, {len(self._steps)} steps>"

    async def __aenter__(self) -> ProcessBuilder:
        await trio.lowlevel.checkpoint()
        if self._state != "new":
            raise RuntimeError("a ProcessBuilder can be entered only once")
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._launch()
        finally:
            if self._state != "launched":
                self._state = "discarded"
            self._release()
        await trio.lowlevel.cancel_shielded_checkpoint()

    # --- steps -------------------------------------------------------------------------------

    async def install_fd(self, child_fd: int, fd: int | Any) -> None:
        """Make fd of this process the child's descriptor child_fd.

        The builder keeps its own duplicate, so the caller may close fd right away.

        Args:
            child_fd: The number in the child's table.
            fd: A descriptor of this process, or an object with ``fileno()``.

        Raises:
            OSError: ``EBADF`` if fd is not open, or child_fd is negative or beyond the limit.
        """
        await self._step()
        self._check_target(child_fd)
        dup = self._hold(_dup(fd if isinstance(fd, int) else fd.fileno()))
        self._add(_libc.Action(_libc.DUP2, dup, child_fd), None, f"install_fd({child_fd}, {fd!r})")
        self._targets.add(child_fd)

    async def open(
        self, path: StrOrBytesPath, flags: int = os.O_RDONLY, mode: int = 0o666, *, fd: int | None = None
    ) -> int:
        """Open path straight into the child's descriptor table.

        The file is opened now, relative to the child's working directory so far, so errors are
        those of `os.open` for this very call (``O_CREAT`` creates it now).

        Args:
            path: The file.
            flags: ``os.O_*`` flags.
            mode: Permission bits for ``O_CREAT``.
            fd: The child's descriptor number; default: the lowest one not yet used.

        Returns:
            The descriptor number in the child.

        Raises:
            OSError: What `os.open` raises for path, or ``EBADF`` for a bad fd number.
        """
        await self._step()
        if fd is None:
            fd = min(set(range(len(self._targets) + 1)) - self._targets)
        self._check_target(fd)
        opened = self._hold(os.open(path, flags | os.O_CLOEXEC, mode, dir_fd=self._dirfd))
        self._add(_libc.Action(_libc.DUP2, opened, fd), path, f"open({path!r}) as fd {fd}")
        self._targets.add(fd)
        return fd

    async def chdir(self, path: StrOrBytesPath) -> None:
        """Set the child's working directory (relative to the one set so far).

        Raises:
            OSError: ``FileNotFoundError``, ``NotADirectoryError`` or ``PermissionError`` for
                path, as `os.chdir` would raise them.
        """
        await self._step()
        dirfd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._dirfd)
        self._hold(dirfd)
        if not os.access(".", os.X_OK, dir_fd=dirfd, effective_ids=True):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        self._add(_libc.Action(_libc.FCHDIR, dirfd), path, f"chdir({path!r})")
        self._dirfd = dirfd

    async def load_elf(self, path: StrOrBytesPath) -> Elf:
        """Check the dynamic loader (or another interpreter) the child will run.

        The simulator maps ld.so into the embryo; the real kernel maps it at exec, so here the
        child runs ld.so itself with the program as its argument:
        ``setup_stack(argv, interpreter=elf)`` execs ``ld.so --argv0 argv[0] program argv[1:]``.

        Args:
            path: The interpreter, e.g. ``/lib64/ld-linux-x86-64.so.2``.

        Returns:
            The checked `Elf`.

        Raises:
            OSError: What opening path raises; ``ENOEXEC`` if it is not an ELF file for this
                machine; ``EACCES`` if it is not executable.
        """
        await self._step()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
        try:
            head = self._check_elf(fd, path)
            if not stat.S_ISREG(os.fstat(fd).st_mode) or not os.access(
                path, os.X_OK, dir_fd=self._dirfd, effective_ids=True
            ):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        finally:
            os.close(fd)
        interp = os.fsdecode(head.interpreter) if head.interpreter is not None else None
        return Elf(os.fsdecode(path), 0, head.e_entry, head.e_phoff, interp)

    async def setup_stack(
        self,
        argv: Sequence[StrOrBytesPath],
        env: Mapping[Any, Any] | None = None,
        *,
        executable: StrOrBytesPath | None = None,
        interpreter: Elf | None = None,
    ) -> None:
        """Choose the program, its argv and its environment.

        Args:
            argv: The child's argv; ``argv[0]`` names the program unless executable is given
                (without a slash it is searched in the ``PATH`` of env).
            env: The environment; None passes this process's environment at launch.
            executable: The program to run, if not ``argv[0]``.
            interpreter: An `Elf` from `load_elf`: run the program through it.

        Raises:
            OSError: ``FileNotFoundError``/``PermissionError``/``ENOEXEC`` for a program that
                cannot be found or run, with its name as filename.
            ValueError: Empty argv, a NUL byte, or ``=`` in an environment variable name.
        """
        await self._step()
        if not argv:
            raise ValueError("argv must not be empty")
        args = [fsencode_arg(a) for a in argv]
        envp = None if env is None else env_items(env)
        name = executable if executable is not None else argv[0]
        program = self._find_program(fsencode_arg(name), env, name)
        if interpreter is None:
            self._program = _Program([program], args, envp, name, list(argv))
            return
        if interpreter.interpreter is not None:
            raise ValueError(f"{interpreter.path} is a dynamically linked program, not an interpreter")
        fd = os.open(program, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
        try:
            if self._check_elf(fd, name).interpreter is None:
                exc = OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), name)
                add_note(exc, "a static program cannot be run through the dynamic loader")
                raise exc
        finally:
            os.close(fd)
        ld = fsencode_arg(interpreter.path)
        argv_ld = [ld, b"--argv0", args[0], program, *args[1:]]
        self._program = _Program([ld], argv_ld, envp, interpreter.path, list(argv))

    async def setpgroup(self, pgid: int = 0) -> None:
        """Put the child in process group pgid (0: a new group led by the child)."""
        await self._step()
        if pgid < 0:
            raise ValueError("pgid must be >= 0")
        if self._session == "setsid":
            raise ValueError("setpgroup() after setsid(): a session leader cannot change its group")
        self._session = "setpgroup"
        self._add(_libc.Action(_libc.SETPGID, arg=pgid), None, f"setpgroup({pgid})")

    async def setsid(self) -> None:
        """Make the child the leader of a new session (and process group)."""
        await self._step()
        if self._session is not None:
            raise ValueError("setsid() after setpgroup() or setsid()")
        self._session = "setsid"
        self._add(_libc.Action(_libc.SETSID), None, "setsid()")

    async def setsigmask(self, signals: Iterable[int]) -> None:
        """Start the child with exactly these signals blocked (default: this thread's mask)."""
        await self._step()
        self._sigmask = signal_mask(signals)

    async def setsigdef(self, signals: Iterable[int]) -> None:
        """Reset these signals to their default action in the child.

        Handled signals are always reset (exec does that), and so are ``SIGPIPE`` and
        ``SIGXFSZ``, which Python ignores, as `subprocess` does with ``restore_signals``.
        """
        await self._step()
        self._sigdefault |= signal_mask(signals)

    async def umask(self, mask: int) -> None:
        """Set the child's file mode creation mask."""
        await self._step()
        if not 0 <= mask <= 0o7777:
            raise ValueError(f"umask {mask:#o} out of range")
        self._need("umask")
        self._add(_libc.Action(_libc.UMASK, arg=mask), None, f"umask({mask:#o})")

    async def cgroup(self, path: StrOrBytesPath) -> None:
        """Move the child into the cgroup at path before it execs, where permitted.

        Raises:
            OSError: What opening ``path/cgroup.procs`` for writing raises (``ENOENT`` if path
                is not a cgroup, ``EACCES`` without the right).
        """
        await self._step()
        self._need("cgroup")
        procs = os.path.join(os.fsencode(path), b"cgroup.procs")
        fd = self._hold(os.open(procs, os.O_WRONLY | os.O_CLOEXEC, dir_fd=self._dirfd))
        self._add(_libc.Action(_libc.CGROUP, fd), path, f"cgroup({path!r})")

    # --- what only the simulator can do ------------------------------------------------------

    async def mmap(self, *args: object, **kwargs: object) -> int:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="mmap"))

    async def munmap(self, *args: object, **kwargs: object) -> None:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="munmap"))

    async def mprotect(self, *args: object, **kwargs: object) -> None:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="mprotect"))

    async def write(self, *args: object, **kwargs: object) -> None:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="write"))

    async def read(self, *args: object, **kwargs: object) -> bytes:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="read"))

    async def populate(self, *args: object, **kwargs: object) -> None:
        """Not on the real kernel. Raises: NotImplementedError (use the simulator)."""
        raise NotImplementedError(_NO_MEMORY.format(name="populate"))

    # --- the launched child ------------------------------------------------------------------

    @property
    def process(self) -> Process:
        """The launched child as a `Process` (trio-style: `Process.wait` returns returncode)."""
        if self._process is None:
            raise RuntimeError("the child has not been launched: leave the async with block first")
        return self._process

    @property
    def pid(self) -> int:
        """The child's pid (after launch)."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status or ``-signum``, None while running (after launch)."""
        return self.process.returncode

    async def wait(self) -> int:
        """Wait for the launched child through its pidfd and reap it.

        Returns:
            The wait status, as `os.waitpid` returns it (decode with ``os.WIFEXITED`` & co.).
        """
        return await self.process._wait_status()

    def send_signal(self, sig: int) -> None:
        """Signal the launched child through its pidfd."""
        self.process.send_signal(sig)

    def terminate(self) -> None:
        """Send ``SIGTERM`` to the launched child."""
        self.process.terminate()

    def kill(self) -> None:
        """Send ``SIGKILL`` to the launched child."""
        self.process.kill()

    # --- internals ---------------------------------------------------------------------------

    async def _step(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._state == "launched":
            raise ProcessLookupError(errno.ESRCH, "the child is already running: builder steps are over")
        if self._state != "open":
            raise RuntimeError("use the builder inside `async with spawnfd.host.create_process() as child:`")

    def _need(self, what: str) -> None:
        if self._method == "posix_spawn":
            raise NotImplementedError(f"glibc posix_spawn has no {what} attribute; use method='spawnfd'")

    def _add(self, action: _libc.Action, name: object, what: str) -> None:
        if len(self._steps) >= _libc.MAX_ACTIONS:
            raise ValueError(f"too many steps (at most {_libc.MAX_ACTIONS})")
        self._steps.append(_Step(action, name, what))

    def _hold(self, fd: int) -> int:
        self._held.append(fd)
        return fd

    def _check_target(self, child_fd: int) -> None:
        limit = os.sysconf("SC_OPEN_MAX")
        if not isinstance(child_fd, int) or not 0 <= child_fd < limit:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def _check_elf(self, fd: int, name: object) -> elf.ElfHeaders:
        head = _read_elf(fd, name)
        if head.e_machine != _machine_of_this_host():
            raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), name)
        return head

    def _find_program(self, name: bytes, env: Mapping[Any, Any] | None, shown: object) -> bytes:
        """The path execve will be given, found now as execvpe would find it in the child."""
        denied = None
        for path in exec_candidates(name, env):
            try:
                st = os.stat(path, dir_fd=self._dirfd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                denied = denied or e.errno
                continue
            if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK, dir_fd=self._dirfd, effective_ids=True):
                return path
            denied = denied or errno.EACCES
        err = denied or errno.ENOENT
        raise OSError(err, os.strerror(err), shown)

    def _launch(self) -> None:
        if self._program is None:
            raise RuntimeError("setup_stack() was not called: the child has no program to run")
        prog = self._program
        reap_orphans()
        try:
            pid, pidfd = _libc.launch(
                prog.paths,
                prog.argv,
                prog.envp,
                [s.action for s in self._steps],
                [*(s.name for s in self._steps), prog.name],
                method=self._method,
                cloexec_from=0,
                sigmask=self._sigmask,
                sigdefault=self._sigdefault,
            )
        except OSError as exc:
            step: int = getattr(exc, "spawnfd_step", _libc.STEP_PARENT)
            if 0 <= step < len(self._steps):
                what = self._steps[step].what
            elif step == len(self._steps):
                what = f"execve({os.fsdecode(prog.paths[0])!r})"
            else:
                what = {
                    _libc.STEP_CLOEXEC: "closing the parent's descriptors",
                    _libc.STEP_SIGNALS: "resetting signals",
                }.get(step, "starting the child")
            add_note(exc, f"spawnfd.host: {what} failed (method={self._method!r})")
            raise
        self._process = Process._create(prog.args, pid, pidfd)
        self._state = "launched"

    def _release(self) -> None:
        held, self._held = self._held, []
        for fd in held:
            os.close(fd)


def _dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
