"""``open_kernel()``: a simulated machine whose processes run.

It boots a :class:`~spawnfd.sim.kernel.Kernel`, gives it a runtime (each simulated thread a
task in one trio nursery, see :mod:`spawnfd.sim.runtime`), registers the built-in stand-in
programs for their real paths on this host (``/bin/sh``, ``/bin/echo``, …, see
:mod:`spawnfd.sim.programs`) and, on leaving, kills what still runs and reaps it.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from .kernel import Kernel
from .programs import coreutils
from .programs.sh import sh_main
from .runtime import Behaviour, _Runtime, _sys_for

__all__ = ["open_kernel", "BUILTINS"]

#: The stand-ins, by program name; each is registered for that program's path on this host.
BUILTINS: Final[dict[str, Behaviour]] = {
    "sh": sh_main,
    "true": coreutils.true_main, "false": coreutils.false_main, "echo": coreutils.echo_main,
    "cat": coreutils.cat_main, "head": coreutils.head_main, "wc": coreutils.wc_main,
    "yes": coreutils.yes_main, "sleep": coreutils.sleep_main, "env": coreutils.env_main,
}


def _register_builtins(table: dict[str, Behaviour]) -> None:
    """Register each built-in for its real program path on this host (/bin/echo, …)."""
    for name, main in BUILTINS.items():
        path = shutil.which(name, path="/usr/bin:/bin")
        if path:
            table.setdefault(os.path.realpath(path), main)


@asynccontextmanager
async def open_kernel(memory: int | str = "16G", *, cpu: bool = True,
                      **kwargs: Any) -> AsyncIterator[Kernel]:
    """A simulated machine whose processes run: each thread is a task in a trio nursery.

    Args:
        memory: Simulated physical memory, bytes or a size such as ``"16G"``.
        cpu: True (the default): programs run as real x86-64 code on the simulated CPU
            (Unicorn, every access through the simulated page tables, every system call
            served by the simulated kernel) unless a stand-in is registered for them with
            :meth:`~spawnfd.Kernel.register_program` (``/bin/sh`` is the real dash, forking
            and exec'ing for real). False: every built-in Python stand-in
            (``sh``, ``echo``, ``cat``, ``head``, ``wc``, ``yes``, ``sleep``, ``true``,
            ``false``, ``env``) answers for its program, and a program without one dies of
            SIGILL — for spawning at scale, where a real ld.so's start-up would dominate.
        **kwargs: The other :class:`spawnfd.Kernel` options (``fork_mode``,
            ``share_pagetables``, ``thp``, …).

    ``k.init.sys`` is init's system-call object, driven by the caller. Leaving the block
    kills whatever still runs (SIGKILL) and waits for the tasks to finish.
    """
    if not isinstance(cpu, bool):
        raise TypeError(f"cpu must be True or False, not {cpu!r}")
    k = Kernel(memory, **kwargs)
    async with trio.open_nursery() as nursery:
        rt = _Runtime(k, nursery)
        rt.cpu = cpu
        k._runtime = rt
        if not cpu:
            _register_builtins(rt.programs)
        rt.programs.update(k._programs)
        _sys_for(k.init, rt)
        try:
            yield k
        finally:
            for pid in list(rt.scopes):
                rt.pending_signal[pid] = signal.SIGKILL
                rt.scopes[pid].cancel()
    _reap_all(k)


def _reap_all(k: Kernel) -> None:
    """After the nursery: every simulated thread is gone; reap the zombies, orphans that
    went to init included, so the machine is left with init alone."""
    while True:
        try:
            if k.init.wait_pid(-1, nohang=True) is None:
                return
        except ChildProcessError:
            return
