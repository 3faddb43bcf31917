"""``spawnfd.system`` is async (trio's world); scripts get ``spawnfd.host.system_sync``."""

from __future__ import annotations

import inspect
import os

import pytest
import trio

import spawnfd


def test_system_says_it_is_async() -> None:
    for f in (spawnfd.system, spawnfd.host.system):
        assert inspect.iscoroutinefunction(f)
        first_paragraph = (inspect.getdoc(f) or "").split("\n\n")[0]
        assert "Async" in first_paragraph, first_paragraph


def test_system_sync_runs_the_shell_and_returns_the_wait_status(tmp_path: object) -> None:
    assert spawnfd.host.system_sync("exit 3") == 3 << 8
    assert os.waitstatus_to_exitcode(spawnfd.host.system_sync("true")) == 0
    for method in spawnfd.host.METHODS:
        assert spawnfd.host.system_sync("kill -9 $$", method=method) == 9


async def test_system_sync_inside_trio_says_to_await_system() -> None:
    with pytest.raises(RuntimeError, match=r"await spawnfd.host.system"):
        spawnfd.host.system_sync("true")
    await trio.lowlevel.checkpoint()
