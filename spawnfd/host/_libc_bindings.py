"""The only importer of ``spawnfd.host._libc``: C structs in, exact ``OSError`` out.

One C call launches a child: the caller describes it (exec candidates, argv, envp, ordered
steps) and gets back ``(pid, pidfd)``, or the ``OSError`` subclass ``os`` would raise for the
errno of the step that failed, with that step's filename. The failing step's index is kept on the
exception as ``spawnfd_step`` so callers can say which step it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, NamedTuple

from ._libc import ffi, lib

DUP2: Final = int(lib.SFD_DUP2)
CHDIR: Final = int(lib.SFD_CHDIR)
FCHDIR: Final = int(lib.SFD_FCHDIR)
SETPGID: Final = int(lib.SFD_SETPGID)
SETSID: Final = int(lib.SFD_SETSID)
UMASK: Final = int(lib.SFD_UMASK)
CGROUP: Final = int(lib.SFD_CGROUP)

STEP_PARENT: Final = int(lib.SFD_STEP_PARENT)
STEP_CLOEXEC: Final = int(lib.SFD_STEP_CLOEXEC)
STEP_SIGNALS: Final = int(lib.SFD_STEP_SIGNALS)
MAX_ACTIONS: Final = int(lib.SFD_MAX_ACTIONS)

#: Launch methods: the clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) child, the same child after a
#: copying clone (fork), and glibc posix_spawn followed by pidfd_open.
METHODS: Final = ("spawnfd", "fork-exec", "posix_spawn")


class Action(NamedTuple):
    """One step the child applies before exec, in order.

    Attributes:
        op: One of the step constants (``DUP2``, ``CHDIR``, ...).
        fd: The parent descriptor the step reads, or -1.
        arg: Target fd (``DUP2``), pgid (``SETPGID``) or mask (``UMASK``).
        path: The directory for ``CHDIR``.
    """

    op: int
    fd: int = -1
    arg: int = 0
    path: bytes | None = None


def _cstrings(items: Sequence[bytes], keep: list[object]) -> object:
    """A NULL-terminated ``char *[]`` for items; the buffers are appended to keep."""
    bufs = [ffi.new("char[]", item) for item in items]
    keep.extend(bufs)
    array = ffi.new("char *[]", len(bufs) + 1)
    array[0 : len(bufs)] = bufs
    keep.append(array)
    return array


def launch(
    paths: Sequence[bytes],
    argv: Sequence[bytes],
    envp: Sequence[bytes] | None,
    actions: Sequence[Action],
    names: Sequence[object],
    *,
    method: str = "spawnfd",
    cloexec_from: int = 3,
    sigmask: int | None = None,
    sigdefault: int = 0,
) -> tuple[int, int]:
    """Start a child and hold it by a pidfd.

    Args:
        paths: Candidates for execve, tried in order (posix_spawn tries the first only).
        argv: The child's argv; no item may contain a NUL byte.
        envp: ``KEY=value`` items, or None for the parent's environment.
        actions: Steps applied in the child, in order.
        names: The filename for each step's error, then one for execve's; None for no filename.
        method: One of ``METHODS``.
        cloexec_from: Close every descriptor from this one up that no ``DUP2`` step targets;
            -1 keeps every inheritable descriptor.
        sigmask: Bit ``sig - 1`` set blocks sig in the child; None keeps the caller's mask.
        sigdefault: Bit ``sig - 1`` set resets sig to ``SIG_DFL`` in the child.

    Returns:
        ``(pid, pidfd)``; the pidfd is close-on-exec and owned by the caller.

    Raises:
        OSError: The exact subclass for the errno of the failing step, with its filename and
            ``spawnfd_step`` set to the step's index (``len(actions)`` for execve, a negative
            ``STEP_*`` constant for work outside the steps). A child that failed is reaped.
        ValueError: method is unknown or there are too many steps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if len(actions) > MAX_ACTIONS:
        raise ValueError(f"too many steps ({len(actions)} > {MAX_ACTIONS})")
    keep: list[object] = []
    s = ffi.new("struct sfd_spawn *")
    s.paths = _cstrings(paths, keep)
    s.argv = _cstrings(argv, keep)
    s.envp = ffi.NULL if envp is None else _cstrings(envp, keep)
    if actions:
        acts = ffi.new("struct sfd_action[]", len(actions))
        for i, a in enumerate(actions):
            c = acts[i]
            c.op, c.fd, c.arg = a.op, a.fd, a.arg
            if a.path is not None:
                buf = ffi.new("char[]", a.path)
                keep.append(buf)
                c.path = buf
        keep.append(acts)
        s.actions = acts
        s.nactions = len(actions)
    s.cloexec_from = cloexec_from
    s.fork = method == "fork-exec"
    if sigmask is not None:
        s.set_sigmask = 1
        s.sigmask = sigmask
    s.sigdefault = sigdefault
    err = lib.sfd_posix_spawn(s) if method == "posix_spawn" else lib.sfd_spawn(s)
    if err:
        step = int(s.step)
        name = names[step] if 0 <= step < len(names) else None
        exc = OSError(err, os.strerror(err)) if name is None else OSError(err, os.strerror(err), name)
        exc.spawnfd_step = step  # type: ignore[attr-defined]
        raise exc
    return int(s.pid), int(s.pidfd)
