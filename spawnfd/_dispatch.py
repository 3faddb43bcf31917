"""``spawnfd.system`` / ``run_process`` / ``open_process``: one name, two backends.

With ``kernel=`` (a kernel from ``spawnfd.open_kernel()``) the call runs in the simulator
(:mod:`spawnfd.sim.subprocess`); without it, on the real Linux host (:mod:`spawnfd.host`).
Arguments and results are trio's in both cases. ``method`` defaults to ``"spawnfd"`` on both;
the host takes ``"spawnfd"``, ``"fork-exec"`` or ``"posix_spawn"``, the simulator
``"spawnfd"``, ``"fork-exec"``, ``"vfork-exec"`` (and the fork policies ``"copy"``,
``"cow-pt"``, ``"cow-pt-eager"``). ``parent=`` (and, for `system`, ``env=``/``cwd=``) exist
only in the simulator.

``nursery.start`` passes no keyword arguments, so bind them first, as trio recommends::

    proc = await nursery.start(functools.partial(spawnfd.run_process, cmd, kernel=k))
"""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

import trio

from . import host as _host
from .sim import subprocess as _sim

if TYPE_CHECKING:
    from .sim.kernel import Kernel

__all__ = ["system", "run_process", "open_process"]

DeliverCancel = Callable[[Any], Awaitable[object]]


def _sim_only(fn: str, **given: Any) -> None:
    names = [k for k, v in given.items() if v is not None]
    if names:
        raise TypeError(f"{fn}(): {', '.join(n + '=' for n in names)} "
                        f"{'is' if len(names) == 1 else 'are'} only for the simulator "
                        "(pass kernel=)")


async def system(
    command: str | bytes,
    *,
    kernel: Kernel | None = None,
    method: str | None = None,
    deliver_cancel: DeliverCancel | None = None,
    env: Mapping[Any, Any] | None = None,
    cwd: Any = None,
    parent: Any = None,
) -> int:
    """Run ``/bin/sh -c command``; returns the wait status, as `os.system`. Async: ``await``
    it inside trio; without trio, ``trio.run(spawnfd.system, command)`` runs one call.

    In the simulator with ``kernel=`` (see `spawnfd.sim.subprocess.system`), else on the host
    (see `spawnfd.host.system`, which shares our descriptors and environment).
    """
    if kernel is None:
        _sim_only("system", env=env, cwd=cwd, parent=parent)
        return await _host.system(command, method=method or "spawnfd",
                                  deliver_cancel=deliver_cancel)
    return await _sim.system(command, kernel=kernel, method=method or "spawnfd", env=env,
                             cwd=cwd, parent=parent, deliver_cancel=deliver_cancel)


async def run_process(
    command: Any,
    *,
    kernel: Kernel | None = None,
    method: str | None = None,
    stdin: Any = b"",
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    deliver_cancel: DeliverCancel | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    parent: Any = None,
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run command to completion, as `trio.run_process`.

    In the simulator with ``kernel=`` (see `spawnfd.sim.subprocess.run_process`), else on the
    host (see `spawnfd.host.run_process`). ``await nursery.start(...)`` returns the process.
    """
    if kernel is None:
        _sim_only("run_process", parent=parent)
        return await _host.run_process(
            command, stdin=stdin, capture_stdout=capture_stdout, capture_stderr=capture_stderr,
            check=check, deliver_cancel=deliver_cancel, task_status=task_status,
            method=method or "spawnfd", **options)
    return await _sim.run_process(
        command, kernel=kernel, method=method or "spawnfd", stdin=stdin,
        capture_stdout=capture_stdout, capture_stderr=capture_stderr, check=check,
        deliver_cancel=deliver_cancel, task_status=task_status, parent=parent, **options)


@overload
async def open_process(command: Any, *, kernel: None = None, method: str | None = None,
                       stdin: Any = None, stdout: Any = None, stderr: Any = None,
                       parent: None = None, **options: Any) -> _host.Process: ...
@overload
async def open_process(command: Any, *, kernel: Kernel, method: str | None = None,
                       stdin: Any = None, stdout: Any = None, stderr: Any = None,
                       parent: Any = None, **options: Any) -> _sim.SimProcess: ...


async def open_process(
    command: Any,
    *,
    kernel: Kernel | None = None,
    method: str | None = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    parent: Any = None,
    **options: Any,
) -> _host.Process | _sim.SimProcess:
    """Start a child, as `trio.lowlevel.open_process`: a `spawnfd.sim.SimProcess` with
    ``kernel=`` (see `spawnfd.sim.subprocess.open_process`), else a `spawnfd.host.Process`
    (see `spawnfd.host.open_process`)."""
    if kernel is None:
        _sim_only("open_process", parent=parent)
        return await _host.open_process(command, stdin=stdin, stdout=stdout, stderr=stderr,
                                        method=method or "spawnfd", **options)
    return await _sim.open_process(command, kernel=kernel, method=method or "spawnfd",
                                   stdin=stdin, stdout=stdout, stderr=stderr, parent=parent,
                                   **options)
