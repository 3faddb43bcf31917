"""spawnfd.host.system against os.system: the same shell command, the same wait status."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

import spawnfd.host as host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux host backend")

COMMANDS = [
    "true",
    "exit 3",
    "exit 255",
    "kill -TERM $$",
    "kill -KILL $$",
    "kill -ABRT $$",  # core dump bit, if the limits allow a core
    "spawnfd-no-such-command 2>/dev/null",  # 127 from the shell
    "if then fi 2>/dev/null",  # syntax error: 2
    "echo $((1 + 1)) | grep -q 2",
]


@pytest.mark.parametrize("method", host.METHODS)
@pytest.mark.parametrize("command", COMMANDS)
async def test_same_status_as_os_system(command: str, method: str) -> None:
    expected = os.system(command)
    with trio.fail_after(30):
        assert await host.system(command, method=method) == expected


async def test_output_and_side_effects(tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = await host.system(f"cd {tmp_path} && echo made > {out.name} && pwd >> {out.name}")
    assert status == 0
    assert out.read_text() == f"made\n{tmp_path}\n"
    assert await host.system(f"test -s {out}".encode()) == 0  # bytes commands, as os.system


async def test_shares_our_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    assert await host.system("echo to-our-fd-1; echo to-our-fd-2 >&2") == 0
    captured = capfd.readouterr()
    assert captured.out == "to-our-fd-1\n" and captured.err == "to-our-fd-2\n"


async def test_cancelled_system_stops_and_reaps_the_shell(tmp_path: Path) -> None:
    # What if system() is cancelled while the shell sleeps? It is terminated, reaped, and
    # the cancellation propagates.
    pidfile = tmp_path / "pid"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.system, f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 30")
            while not pidfile.exists():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}")


async def test_signal_decoding() -> None:
    status = await host.system("kill -TERM $$")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    status = await host.system("exit 7")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7
