"""A host child's pidfd never outlives both its Process object and the child (issue 17)."""

from __future__ import annotations

import gc
import os
import time

import trio

import spawnfd


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def exited(pid: int) -> bool:
    """Whether the child has exited (a zombie), without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


async def test_a_dropped_process_is_reaped_as_soon_as_it_exits() -> None:
    before = open_fds()
    proc = await spawnfd.host.open_process(["sleep", "0.2"])
    pid = proc.pid
    assert proc.pidfd in open_fds()
    del proc
    gc.collect()
    with trio.fail_after(5):
        while open_fds() - before:  # nothing else spawns: only the child's exit can close it
            await trio.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")  # reaped, no zombie left behind


async def test_a_dropped_process_that_already_exited_closes_at_once() -> None:
    before = open_fds()
    proc = await spawnfd.host.open_process(["true"])
    with trio.fail_after(30):
        while not exited(proc.pid):  # nobody waits for it
            await trio.sleep(0.01)
    del proc
    gc.collect()
    assert open_fds() - before == set()


def test_outside_trio_the_next_spawn_reaps() -> None:
    # A child still running when trio.run returns: the fallback reaps it at the next spawn.
    pids = []

    async def start() -> None:
        pids.append((await spawnfd.host.open_process(["sleep", "0.1"])).pid)

    before = open_fds()
    trio.run(start)
    gc.collect()
    assert len(open_fds() - before) <= 1  # its pidfd, at most
    deadline = time.monotonic() + 30
    while not exited(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.01)

    async def again() -> None:
        await spawnfd.host.run_process(["true"])

    trio.run(again)
    assert open_fds() - before == set()
