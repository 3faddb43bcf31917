"""Errors a new user meets (issue 17): each one as the stdlib or trio would raise it, with a
message that says what to do, and the kernel consistent afterwards."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

import spawnfd


async def test_program_without_stand_in_says_why_on_stderr() -> None:
    async with spawnfd.open_kernel("256M") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        with pytest.raises(subprocess.CalledProcessError) as info:
            await spawnfd.run_process(["/usr/bin/ls"], check=True, capture_stderr=True,
                                      kernel=k)
        assert info.value.returncode == -signal.SIGILL
        err = info.value.stderr.decode()
        assert err.startswith("spawnfd: /usr/bin/ls: no stand-in program"), err
        assert "Kernel.register_program" in err
        k.check()
