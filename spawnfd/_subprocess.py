"""trio's subprocess semantics, shared by both backends.

`trio.run_process` and `trio.lowlevel.open_process` define what a caller sees: which options
are accepted and how bad ones fail, how ``stdin`` bytes are fed and output captured, what
cancellation does (``deliver_cancel``: SIGTERM, then SIGKILL after 5 s), how a process states
itself, and the `subprocess.CalledProcessError` of ``check=True``. The host backend
(:mod:`spawnfd.host`) and the simulator (:mod:`spawnfd.sim.subprocess`) both build on this
module, each with its own ``open_process``; neither imports the other.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Union

import trio

__all__ = ["StrOrBytesPath", "Command", "SHELL", "EMPTY_INPUT", "POSIX_ONLY_IGNORED",
           "fsencode_arg", "check_options", "build_argv", "posix_deliver_cancel", "supervise",
           "describe_state", "close_and_wait", "check_returncode"]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Command = Union[StrOrBytesPath, Sequence[StrOrBytesPath]]

#: The shell of ``shell=True`` (``/bin/sh -c command``).
SHELL = "/bin/sh"
#: ``stdin=`` value for a pipe already at end-of-file (run_process's default ``b""``).
EMPTY_INPUT: Any = object()
#: Popen options that only Windows honours: accepted when false, ValueError otherwise.
POSIX_ONLY_IGNORED = ("startupinfo", "creationflags")


def fsencode_arg(arg: StrOrBytesPath) -> bytes:
    """An argv/env item as bytes; ValueError on an embedded NUL, as `os.execv` raises."""
    b = os.fsencode(arg)
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


def check_options(options: Mapping[str, Any], known: Collection[str],
                  unsupported: Mapping[str, str], what: str) -> None:
    """Popen's argument checks, as trio makes them, against a backend's tables: ``known``
    options, ``unsupported`` ones (with why), ``what`` names the process class in errors."""
    for key in ("universal_newlines", "text", "encoding", "errors", "bufsize"):
        if options.get(key):
            raise TypeError(
                f"{what} only supports communicating over unbuffered byte streams; "
                f"the '{key}' option is not supported"
            )
    for key in options:
        if key not in known:
            raise TypeError(f"open_process() got an unexpected keyword argument {key!r}")
        if key in unsupported and options[key] is not None:
            raise NotImplementedError(f"{key}= is not supported: {unsupported[key]}")
    for key in POSIX_ONLY_IGNORED:
        if options.get(key):
            raise ValueError(f"{key} is only supported on Windows platforms")


def build_argv(command: Command, shell: bool, executable: StrOrBytesPath | None) -> tuple[list[Any], Any]:
    """argv and the name errors report (Popen's orig_executable), as Popen builds them."""
    if isinstance(command, (str, bytes)):
        args: list[Any] = [command]
    elif isinstance(command, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        args = [command]
    else:
        args = list(command)
    if shell:
        args = [SHELL, "-c", *args]
        if executable:
            args[0] = executable
    if not args:
        raise IndexError("list index out of range")  # what Popen raises for []
    return args, (executable if executable is not None else args[0])


async def posix_deliver_cancel(p: Any) -> None:
    """trio's default for both backends: SIGTERM, then SIGKILL after 5 seconds (trio time)."""
    try:
        p.terminate()
        await trio.sleep(5)
        warnings.warn(
            RuntimeWarning(
                f"process {p!r} ignored SIGTERM for 5 seconds. "
                "(Maybe you should pass a custom deliver_cancel?) "
                "Trying SIGKILL."
            ),
            stacklevel=1,
        )
        p.kill()
    except OSError as exc:
        warnings.warn(
            RuntimeWarning(f"tried to kill process {p!r}, but failed with: {exc!r}"), stacklevel=1
        )


async def supervise(
    command: Command,
    *,
    stdin: Any,
    capture_stdout: bool,
    capture_stderr: bool,
    deliver_cancel: Callable[[Any], Awaitable[object]] | None,
    task_status: trio.TaskStatus[Any],
    options: dict[str, Any],
    opener: Callable[..., Awaitable[Any]],
) -> tuple[Any, bytes | None, bytes | None]:
    """trio.run_process's body: start, feed, collect, wait, and kill if cancelled. Shared by
    the host and the simulator: ``opener`` is their open_process."""
    open_child = opener
    if isinstance(stdin, str):
        raise UnicodeError("process stdin must be bytes, not str")
    if task_status is trio.TASK_STATUS_IGNORED:
        if stdin is subprocess.PIPE:
            raise ValueError(
                "stdin=subprocess.PIPE is only valid with nursery.start, "
                "since that's the only way to access the pipe; use nursery.start "
                "or pass the data you want to write directly"
            )
        for name in ("stdout", "stderr"):
            if options.get(name) is subprocess.PIPE:
                raise ValueError(
                    f"{name}=subprocess.PIPE is only valid with nursery.start, "
                    "since that's the only way to access the pipe"
                )
    data: bytes | bytearray | memoryview | None = None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        data = stdin
        options["stdin"] = subprocess.PIPE
    else:
        options["stdin"] = stdin
    if capture_stdout:
        if "stdout" in options:
            raise ValueError("can't specify both stdout and capture_stdout")
        options["stdout"] = subprocess.PIPE
    if capture_stderr:
        if "stderr" in options:
            raise ValueError("can't specify both stderr and capture_stderr")
        options["stderr"] = subprocess.PIPE
    if deliver_cancel is None:
        deliver_cancel = posix_deliver_cancel

    stdout_chunks: list[bytes] = []
    stderr_chunks: list[bytes] = []

    async def feed_input(stream: trio.abc.SendStream, data: bytes | bytearray | memoryview) -> None:
        async with stream:
            try:
                await stream.send_all(data)
            except trio.BrokenResourceError:
                pass

    async def read_output(stream: trio.abc.ReceiveStream, chunks: list[bytes]) -> None:
        async with stream:
            async for chunk in stream:
                chunks.append(bytes(chunk))

    async def stop(proc: Any, nursery: trio.Nursery) -> None:
        # Run deliver_cancel beside a wait for the exit, then cancel it: call under a shield.
        killer_cscope = trio.CancelScope(shield=True)

        async def killer() -> None:
            with killer_cscope:
                await deliver_cancel(proc)

        nursery.start_soon(killer)
        await proc.wait()
        killer_cscope.cancel()

    if data is not None and not len(data):
        options["stdin"] = EMPTY_INPUT  # a pipe already at end-of-file: no feeding task
        data = None
    if data is None and not capture_stdout and not capture_stderr:
        # Nothing runs beside the wait: a nursery is opened only if the child must be stopped.
        proc = await open_child(command, **options)
        try:
            task_status.started(proc)
            await proc.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    await stop(proc, nursery)
            raise
        return proc, None, None

    proc = await open_child(command, **options)  # outside the nursery, as trio >= 0.25
    async with trio.open_nursery() as nursery:
        try:
            if data is not None:
                assert proc.stdin is not None
                nursery.start_soon(feed_input, proc.stdin, data)
                proc.stdin = None
                proc.stdio = None
            if capture_stdout:
                assert proc.stdout is not None
                nursery.start_soon(read_output, proc.stdout, stdout_chunks)
                proc.stdout = None
                proc.stdio = None
            if capture_stderr:
                assert proc.stderr is not None
                nursery.start_soon(read_output, proc.stderr, stderr_chunks)
                proc.stderr = None
            task_status.started(proc)
            await proc.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                await stop(proc, nursery)
            raise

    stdout = b"".join(stdout_chunks) if capture_stdout else None
    stderr = b"".join(stderr_chunks) if capture_stderr else None
    return proc, stdout, stderr


def describe_state(proc: Any) -> str:
    """How trio's Process repr states a child: running, or how it ended (both backends)."""
    rc = proc.returncode
    if rc is None:
        return f"running with PID {proc.pid}"
    return f"exited with signal {-rc}" if rc < 0 else f"exited with status {rc}"


async def close_and_wait(proc: Any) -> None:
    """trio's Process.aclose(), for the host's and the simulator's processes alike: close the
    pipes, wait for the exit; if cancelled, kill and wait before propagating."""
    with trio.CancelScope(shield=True):
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                await stream.aclose()
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


def check_returncode(proc: Any, stdout: bytes | None, stderr: bytes | None) -> None:
    """Raise `subprocess.CalledProcessError` if proc exited nonzero (as trio.run_process)."""
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, output=stdout, stderr=stderr)
