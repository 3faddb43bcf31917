"""spawnfd.host.Process: a child held by a pidfd, waited with trio, reaped exactly once."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys

import pytest
import trio

import spawnfd.host as host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux host backend")


def assert_no_zombies() -> None:
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return
    assert info is None, f"an exited child was never reaped: {info}"


async def test_lifecycle() -> None:
    proc = await host.open_process(["sleep", "30"])
    assert proc.returncode is None and proc.poll() is None and proc.wait_status is None
    assert proc.pidfd is not None and os.path.exists(f"/proc/{proc.pid}")
    assert f"running with PID {proc.pid}" in repr(proc)
    proc.terminate()
    with trio.fail_after(30):
        assert await proc.wait() == -signal.SIGTERM
    assert proc.wait_status == signal.SIGTERM
    assert proc.pidfd is None  # reaped, pidfd closed
    assert not os.path.exists(f"/proc/{proc.pid}")  # no zombie
    assert await proc.wait() == -signal.SIGTERM  # waiting again is fine


async def test_many_waiters_and_a_poller() -> None:
    # What if several tasks wait on one child while another polls it? Each gets the result;
    # the child is reaped once.
    proc = await host.open_process(["sh", "-c", "sleep 0.2; exit 9"])
    results = []

    async def waiter() -> None:
        results.append(await proc.wait())

    async def poller() -> None:
        while proc.poll() is None:
            await trio.sleep(0.01)
        results.append(proc.returncode)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(waiter)
            nursery.start_soon(poller)
    assert results == [9, 9, 9, 9]
    assert_no_zombies()


async def test_cancelled_wait_leaves_the_child_waitable() -> None:
    proc = await host.open_process(["sleep", "30"])
    with trio.move_on_after(0.05):
        await proc.wait()
    assert proc.returncode is None
    proc.kill()
    with trio.fail_after(30):
        assert await proc.wait() == -signal.SIGKILL


async def test_aclose_kills_when_cancelled() -> None:
    proc = await host.open_process(["sleep", "30"], stdout=subprocess.PIPE)
    with trio.move_on_after(0.05):
        await proc.aclose()
    assert proc.returncode == -signal.SIGKILL
    assert_no_zombies()


async def test_reaped_behind_our_back() -> None:
    # What if someone else reaps our child (os.waitpid on its pid)? As subprocess: status 0.
    proc = await host.open_process(["sh", "-c", "exit 5"])
    os.waitpid(proc.pid, 0)
    with trio.fail_after(30):
        assert await proc.wait() == 0


async def test_dropped_process_is_reaped_when_it_exits() -> None:
    # What if a Process is dropped without wait()? A system task reaps its child on exit,
    # with no later spawn needed (tests/test_host_resources.py counts the fds).
    proc = await host.open_process(["sleep", "0.2"])
    pid = proc.pid
    del proc  # still running: nothing to reap yet
    gc.collect()
    with trio.fail_after(30):
        while os.path.exists(f"/proc/{pid}"):
            await trio.sleep(0.01)
    assert_no_zombies()


async def test_signal_never_reaches_a_recycled_pid() -> None:
    # After reaping, send_signal is a no-op: the pidfd is gone, and we never fall back to kill().
    proc = await host.open_process(["true"])
    await proc.wait()
    proc.send_signal(signal.SIGKILL)
    proc.kill()
    proc.terminate()


async def test_checkpoints() -> None:
    # Every public async function is a checkpoint, even when it has nothing to wait for.
    proc = await host.open_process(["true"])
    await proc.wait()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await proc.wait()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await host.open_process(["true"])
    assert_no_zombies()
