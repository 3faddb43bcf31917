"""How spawnfd states sizes and process endings in reprs and messages (both backends)."""

from __future__ import annotations

import os
import signal

__all__ = ["format_size", "describe_wait_status"]


def format_size(n: int) -> str:
    """Bytes as a person reads them: ``"64 GiB"``, ``"512 MiB"``, ``"1.5 KiB"``, ``"12 B"``.

    Binary units, the largest that keeps the number at least 1, at most one decimal (dropped
    when it is zero).
    """
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 1 << shift:
            v = round(n / (1 << shift), 1)
            return f"{int(v)} {unit}" if v == int(v) else f"{v} {unit}"
    return f"{n} B"


def describe_wait_status(status: int) -> str:
    """A wait status (``os.waitpid``'s) in words: ``"exited with status 3"``,
    ``"killed by signal 9 (SIGKILL)"``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            return f"killed by signal {sig}"
        return f"killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"wait status {status:#x}"
