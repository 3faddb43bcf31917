"""Drop-ins for `trio.run_process` and `trio.lowlevel.open_process`, plus `system`.

Same signatures, same results, same exceptions; the difference is underneath. trio hands
`subprocess.Popen` to a worker thread and waits on a pidfd opened after the fact; these launch
from the trio thread with one C call (a ``clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`` child
that never copies the parent), get the pidfd atomically, and wait on it with
`trio.lowlevel.wait_readable`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Union

import trio

from . import _libc_bindings as _libc
from .._subprocess import (EMPTY_INPUT, POSIX_ONLY_IGNORED, Command, StrOrBytesPath,
                           build_argv, check_options, check_returncode, fsencode_arg,
                           supervise)
from ._process import Process, reap_orphans

Redirect = Union[int, Any, None]  # an fd, an object with fileno(), PIPE, DEVNULL, STDOUT or None

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# Dispositions subprocess's restore_signals=True puts back: Python ignores these in the parent.
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
RESTORED_MASK = sum(1 << (s - 1) for s in RESTORED_SIGNALS)

_UNSUPPORTED = {
    "preexec_fn": "it runs Python in the child between fork and exec, which needs a copy of the "
    "parent; use the steps of spawnfd.host.create_process() instead",
    "user": "changing credentials before exec is not implemented by spawnfd.host",
    "group": "changing credentials before exec is not implemented by spawnfd.host",
    "extra_groups": "changing credentials before exec is not implemented by spawnfd.host",
}
_KNOWN = {
    "cwd",
    "env",
    "shell",
    "executable",
    "close_fds",
    "pass_fds",
    "start_new_session",
    "process_group",
    "restore_signals",
    "umask",
    "pipesize",
    "text",
    "universal_newlines",
    "encoding",
    "errors",
    "bufsize",
    *_UNSUPPORTED,
    *POSIX_ONLY_IGNORED,
}


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` where Python has it (3.11+)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)


def posix_spawn_culprit(exc: OSError, fds: Iterable[int], cwd: StrOrBytesPath | None) -> OSError:
    """posix_spawn returns one errno for every file action and exec alike: find the culprit.

    A source fd that is not open is blamed first, then an unusable cwd, then the program.
    """
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError as e:
            return e
    if cwd is None:
        return exc
    try:
        dirfd = os.open(cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return e
    try:
        if not os.access(".", os.X_OK, dir_fd=dirfd, effective_ids=True):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), cwd)
    finally:
        os.close(dirfd)
    return exc


def env_items(env: Mapping[Any, Any]) -> list[bytes]:
    """``KEY=value`` items for envp, checked as subprocess checks them."""
    items = []
    for k, v in env.items():
        kb, vb = fsencode_arg(k), fsencode_arg(v)
        if b"=" in kb:
            raise ValueError("illegal environment variable name")
        items.append(kb + b"=" + vb)
    return items


def exec_candidates(executable: bytes, env: Mapping[Any, Any] | None) -> list[bytes]:
    """The paths execve tries, in order: executable itself, or each PATH entry (as Popen)."""
    if os.path.dirname(executable):
        return [executable]
    return [os.path.join(os.fsencode(d), executable) for d in os.get_exec_path(env)]


def first_existing(paths: list[bytes]) -> list[bytes]:
    """For posix_spawn, which tries one path: the first candidate that exists, else the last."""
    for p in paths:
        try:
            os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            pass
        return [p]
    return paths[-1:]


def _fileno(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


async def open_process(
    command: Command,
    *,
    stdin: Redirect = None,
    stdout: Redirect = None,
    stderr: Redirect = None,
    method: str = "spawnfd",
    **options: Any,
) -> Process:
    r"""Start a child program on the real kernel; the host twin of `trio.lowlevel.open_process`.

    Takes the same arguments and the `subprocess` options trio passes on (``cwd``, ``env``,
    ``shell``, ``executable``, ``close_fds``, ``pass_fds``, ``start_new_session``,
    ``process_group``, ``restore_signals``, ``umask``, ``pipesize``). The child never shares a
    copy of the parent's memory (unless ``method="fork-exec"``), is held by a pidfd from the
    moment it exists, and inherits no descriptor of the parent beyond 0, 1, 2 and ``pass_fds``.

    Args:
        command: A sequence of arguments, or a string (or bytes) with ``shell=True``.
        stdin: ``subprocess.PIPE`` (then `Process.stdin` is a stream), ``subprocess.DEVNULL``,
            an fd or an object with ``fileno()``, or None to share the parent's.
        stdout: Like stdin, for the child's standard output.
        stderr: Like stdout; ``subprocess.STDOUT`` sends it wherever stdout goes.
        method: ``"spawnfd"`` (default: the vfork-style clone with a pidfd and precise
            errors), ``"fork-exec"`` (the same child after a copying fork, for comparison) or
            ``"posix_spawn"`` (glibc posix_spawn, then pidfd_open).
        **options: subprocess options, as above.

    Returns:
        A running `Process`.

    Raises:
        OSError: The child could not be started: the exact subclass, with the program (or the
            ``cwd``) as filename, as `subprocess.Popen` raises it.
        TypeError: A string command without ``shell=True``, a sequence with it, a text-mode
            option, or an unknown option.
        NotImplementedError: ``preexec_fn``, ``user``, ``group`` or ``extra_groups``.
    """
    check_options(options, _KNOWN, _UNSUPPORTED, "spawnfd.host.Process")
    if method not in _libc.METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(_libc.METHODS)}")
    shell = bool(options.get("shell", False))
    if isinstance(command, (str, bytes)) and not shell:
        raise TypeError("command must be a sequence (not a string or bytes) if shell=False on UNIX systems")
    if not isinstance(command, (str, bytes)) and shell:
        raise TypeError("command must be a string or bytes (not a sequence) if shell=True on UNIX systems")
    await trio.lowlevel.checkpoint_if_cancelled()
    reap_orphans()

    args, orig_executable = build_argv(command, shell, options.get("executable"))
    env = options.get("env")
    argv = [fsencode_arg(a) for a in args]
    envp = None if env is None else env_items(env)
    paths = exec_candidates(fsencode_arg(orig_executable), env)
    if method == "posix_spawn":
        paths = first_existing(paths)

    with _Stdio(options.get("pipesize", -1)) as stdio:
        steps = stdio.steps(stdin, stdout, stderr) + _option_steps(options, method)
        actions = [a for a, _ in steps]
        cwd = options.get("cwd")
        try:
            pid, pidfd = _libc.launch(
                paths,
                argv,
                envp,
                actions,
                [name for _, name in steps] + [orig_executable],
                method=method,
                cloexec_from=3 if options.get("close_fds", True) else -1,
                sigdefault=RESTORED_MASK if options.get("restore_signals", True) else 0,
            )
        except OSError as exc:
            if method != "posix_spawn":
                raise
            culprit = posix_spawn_culprit(exc, (a.fd for a in actions if a.fd >= 0), cwd)
            if culprit is exc:
                raise
            raise culprit from None
        streams = stdio.keep_streams()
    proc = Process._create(command, pid, pidfd, *streams)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return proc


class _Stdio:
    """The child's ends of stdin/stdout/stderr, as dup2 steps, and our trio ends of pipes.

    Leaving the ``with`` closes the child's ends (it has its own copies, or it never started)
    and, unless `keep_streams` was called, our ends too.
    """

    def __init__(self, pipesize: int) -> None:
        self._pipesize = pipesize
        self._always = contextlib.ExitStack()
        self._on_fail = contextlib.ExitStack()
        self._devnull = -1
        self._streams: list[trio.lowlevel.FdStream | None] = [None, None, None]

    def __enter__(self) -> _Stdio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._on_fail.close()
        finally:
            self._always.close()

    def steps(self, stdin: Redirect, stdout: Redirect, stderr: Redirect) -> list[tuple[_libc.Action, object]]:
        fd0 = self._child_end(stdin, 0)
        fd1 = self._child_end(stdout, 1)
        if stderr == subprocess.STDOUT:  # wherever stdout goes; our own stdout if shared
            fd2: int | None = fd1 if fd1 is not None else 1
        else:
            fd2 = self._child_end(stderr, 2)
        return [(_libc.Action(_libc.DUP2, fd, target), None) for fd, target in ((fd0, 0), (fd1, 1), (fd2, 2)) if fd is not None]

    def keep_streams(self) -> list[trio.lowlevel.FdStream | None]:
        self._on_fail.pop_all()
        return self._streams

    def _child_end(self, spec: Redirect, target: int) -> int | None:
        if spec is None:
            return None
        if spec is EMPTY_INPUT:
            r, w = os.pipe()
            self._always.callback(os.close, r)
            self._always.callback(os.close, w)
            return r
        if spec == subprocess.PIPE:
            r, w = os.pipe()
            ours, theirs = (w, r) if target == 0 else (r, w)
            self._always.callback(os.close, theirs)
            if self._pipesize > 0:
                fcntl.fcntl(ours, _F_SETPIPE_SZ, self._pipesize)
            stream = trio.lowlevel.FdStream(ours)
            self._on_fail.callback(stream.close)
            self._streams[target] = stream
            return theirs
        if spec == subprocess.DEVNULL:
            if self._devnull < 0:
                self._devnull = os.open(os.devnull, os.O_RDWR)
                self._always.callback(os.close, self._devnull)
            return self._devnull
        return _fileno(spec)


def _option_steps(options: dict[str, Any], method: str) -> list[tuple[_libc.Action, object]]:
    """Steps for pass_fds, cwd, umask, start_new_session and process_group, in Popen's order."""
    pass_fds = sorted(set(map(int, options.get("pass_fds", ()))))
    if pass_fds and pass_fds[0] < 0:
        raise ValueError("bad value(s) in fds_to_keep")  # as subprocess (_posixsubprocess)
    steps: list[tuple[_libc.Action, object]] = [(_libc.Action(_libc.DUP2, fd, fd), None) for fd in pass_fds]
    cwd = options.get("cwd")
    if cwd is not None:
        steps.append((_libc.Action(_libc.CHDIR, path=fsencode_arg(cwd)), cwd))
    umask = options.get("umask", -1)
    if umask is not None and umask >= 0:
        if method == "posix_spawn":
            raise NotImplementedError("glibc posix_spawn cannot set a umask; use method='spawnfd'")
        steps.append((_libc.Action(_libc.UMASK, arg=umask), None))
    if options.get("start_new_session"):
        steps.append((_libc.Action(_libc.SETSID), None))
    pgid = options.get("process_group")
    if pgid is not None and pgid >= 0:
        steps.append((_libc.Action(_libc.SETPGID, arg=pgid), None))
    return steps


async def run_process(
    command: Command,
    *,
    stdin: bytes | bytearray | memoryview | Redirect = b"",
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    deliver_cancel: Callable[[Process], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[Process] = trio.TASK_STATUS_IGNORED,
    method: str = "spawnfd",
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run command to completion on the real kernel; the host twin of `trio.run_process`.

    Same arguments, defaults and behaviour as trio's: ``stdin`` as bytes (fed, then EOF; the
    default ``b""`` gives an empty stdin) or anything `open_process` takes, ``capture_stdout``
    and ``capture_stderr``, ``check`` raising `subprocess.CalledProcessError` with the captured
    output, ``deliver_cancel`` (default: SIGTERM, then SIGKILL after 5 s), and ``task_status``
    for ``await nursery.start(run_process, ...)``, which returns the `Process`. The function
    always waits for the child to exit, cancelled or not.

    Args:
        command: A sequence of arguments, or a string with ``shell=True``.
        stdin: Bytes to feed, or a redirection as for `open_process`.
        capture_stdout: Collect stdout into the result.
        capture_stderr: Collect stderr into the result.
        check: Raise `subprocess.CalledProcessError` if the child exits nonzero.
        deliver_cancel: ``async def f(process)`` that makes the child exit when cancelled.
        task_status: For `trio.Nursery.start`.
        method: ``"spawnfd"``, ``"fork-exec"`` or ``"posix_spawn"`` (see `open_process`).
        **options: `open_process` options, including ``stdout`` and ``stderr``.

    Returns:
        A `subprocess.CompletedProcess` (with ``stdout``/``stderr`` bytes if captured).

    Raises:
        subprocess.CalledProcessError: check is true and the child exited nonzero.
        OSError: The child could not be started.
        ValueError: Conflicting redirections, or a pipe that nobody could read.
        UnicodeError: stdin is a str.
    """
    options["method"] = method
    proc, stdout, stderr = await supervise(
        command,
        opener=open_process,
        stdin=stdin,
        capture_stdout=capture_stdout,
        capture_stderr=capture_stderr,
        deliver_cancel=deliver_cancel,
        task_status=task_status,
        options=options,
    )
    if check:
        check_returncode(proc, stdout, stderr)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


async def system(
    command: str | bytes,
    *,
    method: str = "spawnfd",
    deliver_cancel: Callable[[Process], Awaitable[object]] | None = None,
) -> int:
    """Async (``await`` it inside ``trio.run``): run ``/bin/sh -c command`` and return its
    wait status, as `os.system` does. A script outside trio calls `system_sync` instead.

    The shell shares the parent's stdin, stdout and stderr. Decode the result with
    `os.waitstatus_to_exitcode` or ``os.WIFEXITED`` and friends. If cancelled, the shell is
    stopped as `run_process` stops a child (``deliver_cancel``) and waited for.

    Args:
        command: The shell command line.
        method: ``"spawnfd"``, ``"fork-exec"`` or ``"posix_spawn"`` (see `open_process`).
        deliver_cancel: As for `run_process`.

    Returns:
        The wait status: ``exit_code << 8``, or the signal number (``| 0x80`` with a core dump).

    Raises:
        OSError: The shell could not be started.
    """
    proc, _, _ = await supervise(
        command,
        opener=open_process,
        stdin=None,
        capture_stdout=False,
        capture_stderr=False,
        deliver_cancel=deliver_cancel,
        task_status=trio.TASK_STATUS_IGNORED,
        options={"shell": True, "method": method},
    )
    status: int | None = proc.wait_status
    assert status is not None
    return status


def system_sync(command: str | bytes, *, method: str = "spawnfd") -> int:
    """Run ``/bin/sh -c command`` and return its wait status, as `os.system`: `system` for a
    script that is not inside ``trio.run`` (it runs one for the call).

    Args:
        command: The shell command line.
        method: ``"spawnfd"``, ``"fork-exec"`` or ``"posix_spawn"`` (see `open_process`).

    Returns:
        The wait status: ``exit_code << 8``, or the signal number (``| 0x80`` with a core dump).

    Raises:
        OSError: The shell could not be started.
        RuntimeError: Called inside ``trio.run``, where ``await system(...)`` is the way
            (a nested run would block every other task).
    """
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("system_sync() cannot run inside trio.run(): "
                           "use 'await spawnfd.host.system(...)' there")
    return trio.run(functools.partial(system, command, method=method))


def signal_mask(signals: Iterable[int]) -> int:
    """Signals as the bit mask the launcher takes (bit ``sig - 1``); ValueError if out of range."""
    bits = 0
    for sig in signals:
        sig = int(sig)
        if not 1 <= sig <= 64:
            raise ValueError(f"signal number {sig} out of range [1; 64]")
        bits |= 1 << (sig - 1)
    return bits
