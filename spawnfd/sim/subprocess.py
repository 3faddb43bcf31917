"""`system`, `run_process` and `open_process` on the simulated kernel, with trio's semantics.

The simulator's twins of ``os.system``, `trio.run_process` and `trio.lowlevel.open_process`:
the same arguments, results and exceptions, but the child is a simulated process started by
:func:`spawnfd.sim.spawn.spawn` as a child of ``parent`` (default: the kernel's init), with the
chosen ``method`` (``"spawnfd"``: the fd model; ``"fork-exec"`` and its fork policies
``"copy"``/``"cow-pt"``/``"cow-pt-eager"``; ``"vfork-exec"``). Pipes are simulated pipes in the
parent's descriptor table; the trio side reads and writes them through ``parent.sys`` as
`trio.abc.SendStream`/`trio.abc.ReceiveStream` objects.

Conventions (where the host and the simulator differ):

* ``env`` defaults to :data:`DEFAULT_ENV` (``{"PATH": "/usr/bin:/bin"}``), not the host's
  environment; a given ``env`` replaces it, as in `subprocess`. A bare program name is looked
  up in that ``PATH`` (default ``/usr/bin:/bin``) in the simulated file system.
* A shell command (``system``, ``shell=True``) runs ``/bin/sh -c command``; the shell is
  started with ``method`` and starts its own children with ``method`` too: ``SPAWNFD_METHOD``
  is set in the shell's environment (unless ``env`` already sets it), which the simulated sh
  honours and passes on (so it is visible to the programs it runs, e.g. ``env``).
* Descriptors: the fd model gives the child exactly its 0, 1, 2 (the parent's, or the
  redirections) and ``pass_fds``; the fork and vfork paths also keep whatever the parent had
  open without close-on-exec, as ``fork`` does (every pipe made here is close-on-exec).
* ``returncode`` is trio's (exit status, or ``-signum``); ``wait_status`` is the raw status.
* Writing to a pipe whose reader is gone raises `trio.BrokenResourceError` in the caller (the
  parent is not killed by SIGPIPE: it is the trio side, not a simulated program).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Union, final

import trio

from .._subprocess import (EMPTY_INPUT, build_argv, check_options, close_and_wait,
                           describe_state, fsencode_arg, supervise)
from .kernel import Kernel, Process
from .process_builder import ProcessBuilder
from .programs.ldso import search_path
from .runtime import _Signalled
from .spawn import METHODS, FdSpec, Open, SpawnedProcess, _default_fds, spawn

__all__ = ["system", "run_process", "open_process", "SimProcess", "SimSendStream",
           "SimReceiveStream", "DEFAULT_ENV", "METHODS"]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Command = Union[StrOrBytesPath, Sequence[StrOrBytesPath]]
#: subprocess.PIPE / DEVNULL / STDOUT (stderr only), a descriptor of the parent, an
#: :class:`~spawnfd.sim.spawn.Open` redirection, or None (the parent's own 0, 1 or 2)
Redirect = Union[int, Open, None]
DeliverCancel = Callable[["SimProcess"], Awaitable[object]]

#: The environment a child gets when ``env`` is not given.
DEFAULT_ENV: Final[Mapping[str, str]] = {"PATH": "/usr/bin:/bin"}
_DEFAULT_PATH: Final = "/usr/bin:/bin"
_SHELL: Final = "/bin/sh"
_CHUNK: Final = 65536
_SIMULATED_SIGNALS: Final = (signal.SIGKILL, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD)

_UNSUPPORTED = {
    "preexec_fn": "it runs Python in the child between fork and exec; build the child "
    "step by step with process.create_process() instead",
    "user": "changing credentials before exec is not implemented by spawnfd.sim.subprocess; "
    "use ProcessBuilder.set_credentials",
    "group": "changing credentials before exec is not implemented by spawnfd.sim.subprocess; "
    "use ProcessBuilder.set_credentials",
    "extra_groups": "the simulator has no supplementary groups",
}
_POSIX_ONLY_IGNORED = ("startupinfo", "creationflags")
_TEXT = ("universal_newlines", "text", "encoding", "errors", "bufsize")
_KNOWN = {
    "cwd", "env", "shell", "executable", "close_fds", "pass_fds", "start_new_session",
    "process_group", "restore_signals", "umask", "pipesize",
    *_TEXT, *_UNSUPPORTED, *_POSIX_ONLY_IGNORED,
}


def _check_options(options: Mapping[str, Any]) -> None:
    """The host backend's checks, plus the options the simulator cannot honour."""
    check_options(options, _KNOWN, _UNSUPPORTED, "spawnfd.sim.subprocess.SimProcess")
    if not options.get("close_fds", True):
        raise NotImplementedError(
            "close_fds=False is not simulated: the child gets 0, 1, 2 and pass_fds")
    if options.get("start_new_session"):
        raise NotImplementedError("start_new_session= is not simulated: the kernel has "
                                  "sessions (a real program calls setsid), but the "
                                  "simulator's spawn does not set them; use spawnfd.host")
    pgid = options.get("process_group")
    if pgid is not None and pgid >= 0:
        raise NotImplementedError("process_group= is not simulated: the kernel has process "
                                  "groups (a real program calls setpgid), but the "
                                  "simulator's spawn does not set them; use spawnfd.host")
    umask = options.get("umask", -1)
    if umask is not None and umask >= 0:
        raise NotImplementedError("umask= is not simulated; use spawnfd.host")
    pipesize = options.get("pipesize", -1)
    if pipesize is not None and pipesize >= 0:
        raise NotImplementedError("pipesize= is not simulated: simulated pipes hold 64 KiB")


def _str(arg: StrOrBytesPath) -> str:
    return os.fsdecode(fsencode_arg(arg))


def _env_dict(env: Mapping[Any, Any] | None) -> dict[str, str]:
    if env is None:
        return dict(DEFAULT_ENV)
    out: dict[str, str] = {}
    for k, v in env.items():
        key, value = _str(k), _str(v)
        if "=" in key:
            raise ValueError("illegal environment variable name")
        out[key] = value
    return out


def _resolve_parent(kernel: Kernel, parent: Any) -> Process:
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a spawnfd.Kernel, not {type(kernel).__name__}")
    if kernel._runtime is None:
        raise RuntimeError("simulated processes run only inside spawnfd.open_kernel(); "
                           "pass the kernel it yields")
    if parent is None:
        return kernel.init
    proc = parent if isinstance(parent, Process) else getattr(parent, "process", None)
    if not isinstance(proc, Process):
        raise TypeError(f"parent must be a spawnfd.Process, not {type(parent).__name__}")
    if proc.kernel is not kernel:
        raise ValueError("parent belongs to another kernel")
    return proc


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


# ---------------------------------------------------------------------------------------------
# streams over simulated pipes


class _SimStream:
    """One end of a simulated pipe in the parent's table, used by one task at a time."""

    def __init__(self, parent: Process, fd: int) -> None:
        self._parent = parent
        self._fd = fd
        self._closed = False
        self._busy: str | None = None
        self._scope: trio.CancelScope | None = None

    @property
    def fd(self) -> int:
        """The descriptor in the parent's table (-1 once closed)."""
        return -1 if self._closed else self._fd

    def _enter(self, what: str) -> trio.CancelScope:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._busy is not None:
            raise trio.BusyResourceError(f"another task is using this stream for {what}")
        self._busy = what
        self._scope = trio.CancelScope()
        return self._scope

    def _leave(self) -> None:
        self._busy = None
        self._scope = None

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()  # a task blocked in this stream sees ClosedResourceError
        if self._parent.kernel.closed:
            return
        try:
            self._parent.sys.close(self._fd)
        except (OSError, RuntimeError):
            pass  # the parent is gone, or the kernel stopped running

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self._parent.pid} fd={self.fd}>"


@final
class SimSendStream(_SimStream, trio.abc.SendStream):  # type: ignore[misc,unused-ignore]
    """The write end of a simulated pipe (a child's stdin), as a `trio.abc.SendStream`."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        scope = self._enter("send")
        try:
            with scope:
                if not data:
                    await trio.lowlevel.checkpoint()
                else:
                    try:
                        await self._parent.sys.write(self._fd, bytes(data))
                    except BrokenPipeError:
                        raise trio.BrokenResourceError("the reader closed the pipe") from None
                    except _Signalled as e:  # SIGPIPE: the trio side is not killed by it
                        if e.sig != signal.SIGPIPE:
                            raise
                        raise trio.BrokenResourceError("the reader closed the pipe") from None
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed during send_all")
        finally:
            self._leave()

    async def wait_send_all_might_not_block(self) -> None:
        scope = self._enter("send")
        try:
            with scope:
                await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("this stream was closed")
        finally:
            self._leave()

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()


@final
class SimReceiveStream(_SimStream, trio.abc.ReceiveStream):  # type: ignore[misc,unused-ignore]
    """The read end of a simulated pipe (a child's stdout or stderr), as a
    `trio.abc.ReceiveStream`; ``b""`` at end-of-file."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = _CHUNK
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        scope = self._enter("receive")
        data = b""
        try:
            with scope:
                got: bytes = await self._parent.sys.read(self._fd, max_bytes)
                data = got
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed during receive_some")
        finally:
            self._leave()
        return data

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()


# ---------------------------------------------------------------------------------------------
# the process object


@final
class SimProcess:
    """A simulated child started by :func:`open_process` or ``nursery.start(run_process)``;
    like `trio.Process`.

    Attributes:
        args: The command as given.
        pid: The child's pid in the simulator.
        parent: The simulated process whose child it is.
        handle: What :func:`spawnfd.sim.spawn.spawn` returned (a `ProcessBuilder` for the fd
            model, a `RunningProcess` otherwise).
        stdin: A `SimSendStream` if stdin was ``PIPE``, else None.
        stdout, stderr: `SimReceiveStream` objects if they were ``PIPE``, else None.
        stdio: stdin and stdout stapled into a `trio.StapledStream`, if both are pipes.
        method: The method that started it.
    """

    universal_newlines = False
    encoding = None
    errors = None

    def __init__(self, args: Any, parent: Process, handle: SpawnedProcess, method: str,
                 stdin: SimSendStream | None, stdout: SimReceiveStream | None,
                 stderr: SimReceiveStream | None) -> None:
        self.args: Any = args
        self.parent = parent
        self.handle = handle
        self.method = method
        self.pid = handle.pid
        self.stdin: trio.abc.SendStream | None = stdin
        self.stdout: trio.abc.ReceiveStream | None = stdout
        self.stderr: trio.abc.ReceiveStream | None = stderr
        self.stdio: trio.StapledStream[Any, Any] | None = None
        if stdin is not None and stdout is not None:
            self.stdio = trio.StapledStream(stdin, stdout)
        self._status: int | None = None
        self._wait_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<spawnfd.SimProcess {self.args!r}: {describe_state(self)}>"

    def _reap(self) -> int | None:
        """Reap the child if it has exited (never blocks); its wait status or None."""
        if self._status is not None:
            return self._status
        h = self.handle
        if self.parent.kernel.closed:
            self._status = 0  # leaving open_kernel() reaped everything
            return self._status
        try:
            if isinstance(h, ProcessBuilder):
                status = h.builder.wait(nohang=True)
            else:
                got = self.parent.wait_pid(self.pid, nohang=True)
                status = None if got is None else got[1]
                if status is not None and hasattr(h, "returncode"):
                    h.returncode = status  # type: ignore[misc]
        except ChildProcessError:
            status = 0  # reaped behind our back: what subprocess reports
        if status is not None:
            self._status = status
        return status

    @property
    def returncode(self) -> int | None:
        """The exit status, ``-signum`` if a signal killed the child, or None while it runs.
        As in trio, reading it checks the child without blocking and reaps it if it exited."""
        status = self._reap()
        return None if status is None else os.waitstatus_to_exitcode(status)

    @property
    def wait_status(self) -> int | None:
        """The raw wait status (as ``os.waitpid``/``os.system`` give it), or None."""
        return self._reap()

    def poll(self) -> int | None:
        """The same as `returncode`."""
        return self.returncode

    async def wait(self) -> int:
        """Block until the child exits, reap it and return `returncode`."""
        await self._wait_status()
        rc = self.returncode
        assert rc is not None
        return rc

    async def _wait_status(self) -> int:
        if self._reap() is not None:
            await trio.lowlevel.checkpoint()
            assert self._status is not None
            return self._status
        async with self._wait_lock:  # one task waits through the handle; the others queue
            if self._reap() is None:
                try:
                    status = await self.handle.wait()
                except ChildProcessError:
                    status = 0 if self._status is None else self._status
                if self._status is None:
                    self._status = status
        assert self._status is not None
        return self._status

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child; nothing if it has already exited. The simulator knows
        SIGKILL, SIGTERM, SIGPIPE (default action: terminate) and SIGCHLD (ignored).

        Raises:
            OSError: ``EINVAL`` for a signal the simulator does not have.
        """
        if int(sig) not in _SIMULATED_SIGNALS:
            raise OSError(errno.EINVAL, f"signal {sig} is not simulated")
        if self.poll() is not None:
            return
        try:
            self.handle.send_signal(sig)
        except ProcessLookupError:
            pass  # exited, not yet reaped

    def terminate(self) -> None:
        """Send ``SIGTERM``."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL``."""
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Close the pipes to the child and wait for it to exit; if cancelled, kill it and
        wait for it before propagating the cancellation (as trio's)."""
        await close_and_wait(self)

    async def __aenter__(self) -> SimProcess:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------
# open_process


class _Stdio:
    """The child's descriptors and our stream ends; closes what the child no longer needs."""

    def __init__(self, parent: Process) -> None:
        self.parent = parent
        self.fds: dict[int, FdSpec] = {}
        self.close_after: list[int] = []       # the child's ends, closed once it has them
        self.ours: list[_SimStream] = []        # closed if the child never starts
        self.streams: list[_SimStream | None] = [None, None, None]

    def _pipe(self) -> tuple[int, int]:
        return self.parent.sys.pipe(os.O_CLOEXEC)  # type: ignore[no-any-return]

    def child_end(self, spec: Any, target: int) -> FdSpec | None:
        if spec is None:
            return None
        if spec is EMPTY_INPUT:
            r, w = self._pipe()
            self.parent.sys.close(w)
            self.close_after.append(r)
            return r
        if isinstance(spec, Open):
            return spec
        if spec == subprocess.PIPE:
            r, w = self._pipe()
            ours, theirs = (w, r) if target == 0 else (r, w)
            self.close_after.append(theirs)
            stream: _SimStream = (SimSendStream(self.parent, ours) if target == 0
                                  else SimReceiveStream(self.parent, ours))
            self.ours.append(stream)
            self.streams[target] = stream
            return theirs
        if spec == subprocess.DEVNULL:
            return Open("/dev/null", os.O_RDONLY if target == 0 else os.O_WRONLY)
        if spec == subprocess.STDOUT:
            raise ValueError("STDOUT can only be used for stderr")
        if isinstance(spec, bool) or not isinstance(spec, int):
            raise TypeError(
                f"the simulator redirects to PIPE, DEVNULL, STDOUT, a descriptor of the parent "
                f"(an int) or a spawnfd.sim.spawn.Open, not {type(spec).__name__}")
        if spec < 0:  # as trio: the child's dup2 fails
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return spec

    def arrange(self, stdin: Any, stdout: Any, stderr: Any, pass_fds: Any) -> None:
        inherited = _default_fds(self.parent)  # before any pipe takes a free number
        fds: dict[int, FdSpec] = dict(inherited)
        for target, spec in ((0, stdin), (1, stdout)):
            end = self.child_end(spec, target)
            if end is not None:
                fds[target] = end
        if stderr == subprocess.STDOUT and not isinstance(stderr, bool):
            if 1 in fds:
                fds[2] = fds[1]
            else:
                fds.pop(2, None)
        else:
            end = self.child_end(stderr, 2)
            if end is not None:
                fds[2] = end
        for fd in sorted({int(f) for f in pass_fds}):
            if fd < 0:
                raise ValueError("bad value(s) in fds_to_keep")  # as subprocess
            fds.setdefault(fd, fd)
        self.fds = fds

    def done(self) -> None:
        for fd in self.close_after:
            try:
                self.parent.sys.close(fd)
            except OSError:
                pass
        self.close_after.clear()

    def abandon(self) -> None:
        self.done()
        for s in self.ours:
            s._close()


def _fix_filename(exc: OSError, path: str, name: Any, cwd: str | None) -> OSError:
    """Report a failed exec under the program's name as given, as `subprocess.Popen` does."""
    if exc.errno == errno.EBADF or (cwd is not None and exc.filename == cwd):
        return exc
    if exc.filename is not None and exc.filename != path:
        return exc  # a redirection's file
    new = OSError(exc.errno, os.strerror(exc.errno or errno.EIO), name)
    new.__cause__ = None
    return new


async def open_process(
    command: Command,
    *,
    kernel: Kernel,
    method: str = "spawnfd",
    stdin: Redirect = None,
    stdout: Redirect = None,
    stderr: Redirect = None,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    shell: bool = False,
    parent: Any = None,
    **options: Any,
) -> SimProcess:
    """Start a simulated child; the simulator's twin of `trio.lowlevel.open_process`.

    Args:
        command: A sequence of arguments (``argv[0]`` looked up in ``env``'s ``PATH``), or a
            string (or bytes) with ``shell=True`` (then ``/bin/sh -c command``).
        kernel: A kernel from ``spawnfd.open_kernel()``.
        method: How the child is started (one of `METHODS`): ``"spawnfd"`` (the fd model),
            ``"fork-exec"`` (the kernel's fork policy) or ``"copy"``/``"cow-pt"``/
            ``"cow-pt-eager"``, or ``"vfork-exec"``. With ``shell=True`` the shell uses it
            for its own children too.
        stdin, stdout, stderr: ``subprocess.PIPE`` (the attribute is then a stream),
            ``subprocess.DEVNULL``, a descriptor of ``parent``, an `Open` redirection, or None
            for the parent's own; ``stderr=subprocess.STDOUT`` goes wherever stdout goes.
        cwd: The child's working directory.
        env: The child's environment (default `DEFAULT_ENV`).
        shell: Run ``command`` with ``/bin/sh -c``.
        parent: The simulated process whose child it is (default ``kernel.init``).
        **options: ``executable`` and ``pass_fds`` are honoured; ``close_fds=True`` and
            ``restore_signals`` are accepted (the simulator's children start with default
            signal dispositions through the fd model); ``start_new_session``,
            ``process_group``, ``umask``, ``pipesize``, ``close_fds=False``, ``preexec_fn``,
            ``user``, ``group`` and ``extra_groups`` raise `NotImplementedError`.

    Raises:
        OSError: The child could not be started: the exact subclass, with the program (or
            ``cwd``) as filename (``FileNotFoundError`` for a missing program).
        TypeError: A string command without ``shell=True``, a sequence with it, a text-mode or
            unknown option.
        ValueError: An unknown method, a negative ``pass_fds``, an embedded NUL.
        RuntimeError: The kernel does not run processes (not from ``open_kernel()``).
    """
    _check_options(options)
    _check_method(method)
    if isinstance(command, (str, bytes)) and not shell:
        raise TypeError("command must be a sequence (not a string or bytes) if shell=False "
                        "on UNIX systems")
    if not isinstance(command, (str, bytes)) and shell:
        raise TypeError("command must be a string or bytes (not a sequence) if shell=True "
                        "on UNIX systems")
    proc = _resolve_parent(kernel, parent)
    await trio.lowlevel.checkpoint_if_cancelled()

    args, orig_executable = build_argv(command, shell, options.get("executable"))
    argv = [_str(a) for a in args]
    name = _str(orig_executable)
    envd = _env_dict(env)
    if shell:
        envd.setdefault("SPAWNFD_METHOD", method)
    cwd_s = None if cwd is None else _str(cwd)
    if not name:  # as Popen: each PATH directory joined with "" is a directory, not run
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), orig_executable)
    if "/" in name:
        path = name
    else:
        found = search_path(proc, name, envd.get("PATH", _DEFAULT_PATH).split(":"))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), orig_executable)
        path = found

    stdio = _Stdio(proc)
    try:
        stdio.arrange(stdin, stdout, stderr, options.get("pass_fds", ()))
        with trio.CancelScope(shield=True):  # starting is one step, as on the host
            try:
                handle = await spawn(proc, path, argv, envd, method=method, fds=stdio.fds,
                                     cwd=cwd_s, close_fds=True)
            except OSError as exc:
                fixed = _fix_filename(exc, path, orig_executable, cwd_s)
                if fixed is exc:
                    raise
                raise fixed from None
    except BaseException:
        stdio.abandon()
        raise
    stdio.done()
    s0, s1, s2 = stdio.streams
    assert s0 is None or isinstance(s0, SimSendStream)
    assert s1 is None or isinstance(s1, SimReceiveStream)
    assert s2 is None or isinstance(s2, SimReceiveStream)
    result = SimProcess(command, proc, handle, method, s0, s1, s2)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result


# ---------------------------------------------------------------------------------------------
# run_process and system


async def _supervise(command: Command, **kwargs: Any) -> tuple[SimProcess, bytes | None,
                                                                bytes | None]:
    """trio.run_process's body, shared with the host backend, opening simulated children."""
    proc, stdout, stderr = await supervise(command, opener=open_process, **kwargs)
    assert isinstance(proc, SimProcess)
    return proc, stdout, stderr


async def run_process(
    command: Command,
    *,
    kernel: Kernel,
    method: str = "spawnfd",
    stdin: bytes | bytearray | memoryview | Redirect = b"",
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    deliver_cancel: DeliverCancel | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    cwd: StrOrBytesPath | None = None,
    env: Mapping[Any, Any] | None = None,
    shell: bool = False,
    parent: Any = None,
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run a simulated child to completion; the simulator's twin of `trio.run_process`.

    As trio's: ``stdin`` bytes are fed through a pipe and then closed (default ``b""``: an
    empty stdin), or any redirection `open_process` takes; ``capture_stdout`` and
    ``capture_stderr`` read simulated pipes concurrently; ``check`` raises
    `subprocess.CalledProcessError` (with the captured output) on a nonzero exit; on
    cancellation ``deliver_cancel(process)`` runs (default: SIGTERM, then SIGKILL after 5 s of
    trio time) and the child is always waited for; ``await nursery.start(run_process, ...)``
    (with the keyword arguments bound by `functools.partial`) returns the `SimProcess`.

    Args:
        command: As for `open_process`.
        kernel: A kernel from ``spawnfd.open_kernel()``.
        method: As for `open_process`.
        stdin: Bytes to feed, or a redirection.
        capture_stdout: Collect stdout into the result.
        capture_stderr: Collect stderr into the result.
        check: Raise `subprocess.CalledProcessError` if the child exits nonzero.
        deliver_cancel: ``async def f(process)`` that makes the child exit when cancelled.
        task_status: For `trio.Nursery.start`.
        cwd, env, shell, parent: As for `open_process`.
        **options: `open_process` options, including ``stdout`` and ``stderr``.

    Returns:
        A `subprocess.CompletedProcess` (``returncode`` negative for a signal).

    Raises:
        subprocess.CalledProcessError: check is true and the child exited nonzero.
        OSError: The child could not be started.
        ValueError: Conflicting redirections, or a pipe nobody could read.
        UnicodeError: stdin is a str.
    """
    options.update(kernel=kernel, method=method, cwd=cwd, env=env, shell=shell, parent=parent)
    proc, stdout, stderr = await _supervise(
        command,
        stdin=stdin,
        capture_stdout=capture_stdout,
        capture_stderr=capture_stderr,
        deliver_cancel=deliver_cancel,
        task_status=task_status,
        options=options,
    )
    rc = proc.returncode
    assert rc is not None
    if check and rc:
        raise subprocess.CalledProcessError(rc, proc.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(proc.args, rc, stdout, stderr)


async def system(
    command: str | bytes,
    *,
    kernel: Kernel,
    method: str = "spawnfd",
    env: Mapping[Any, Any] | None = None,
    cwd: StrOrBytesPath | None = None,
    parent: Any = None,
    deliver_cancel: DeliverCancel | None = None,
) -> int:
    """Async: run ``/bin/sh -c command`` in the simulator and return its wait status, as
    `os.system`.

    The shell is a child of ``parent`` (default ``kernel.init``) started with ``method``, and
    starts the commands of the line with ``method`` too (through ``SPAWNFD_METHOD`` in its
    environment, unless ``env`` sets it). It shares the parent's descriptors 0, 1 and 2. If
    cancelled, the shell is stopped as `run_process` stops a child and waited for.

    Returns:
        The wait status: ``exit_code << 8``, or the signal number; decode it with
        ``os.WEXITSTATUS`` & co. or `os.waitstatus_to_exitcode`.

    Raises:
        OSError: The shell could not be started.
    """
    proc, _, _ = await _supervise(
        command,
        stdin=None,
        capture_stdout=False,
        capture_stderr=False,
        deliver_cancel=deliver_cancel,
        task_status=trio.TASK_STATUS_IGNORED,
        options={"shell": True, "kernel": kernel, "method": method, "env": env, "cwd": cwd,
                 "parent": parent},
    )
    status = proc.wait_status
    assert status is not None
    return status
