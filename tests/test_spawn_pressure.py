"""Fork under memory pressure, from a real program (issue 14, "bad input and faults"): the
n-th frame allocation after the program asks for a fork fails, for n = 1, 2, ... as long as
the failure falls inside the fork, under each fork policy. The program sees ENOMEM, the fork
rolls back completely (check() passes, and the next fork succeeds), and the program goes
on. The first n past the fork's own allocations fails a later allocation (the child's COW
fault, or the parent's: Linux's OOM killer would pick a victim there)."""

from __future__ import annotations

import subprocess

import pytest
import trio

import spawnfd

from .helpers import REAL_ENV as ENV
from .helpers import boot_real, build_probe

ENOMEM_LINE = "fork: Cannot allocate memory"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "pressure_probe")


async def _line(stream: trio.abc.ReceiveStream, buf: bytearray) -> str | None:
    while b"\n" not in buf:
        data = await stream.receive_some(4096)
        if not data:
            return None  # the program died
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


async def _attempt(probe: str, fork_mode: str, n: int) -> tuple[str | None, int]:
    """One fork of an 8 MiB parent with the n-th allocation failing: the line the program
    printed for it; if that was ENOMEM, a second fork (nothing failing) must succeed."""
    async with spawnfd.open_kernel("256M", fork_mode=fork_mode) as k:
        boot_real(k)
        proc = await spawnfd.open_process([probe, "8"], kernel=k, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=ENV)
        buf = bytearray()
        with trio.fail_after(60):
            assert await _line(proc.stdout, buf) == "ready"
            k.fail_nth_allocation(n)
            await proc.stdin.send_all(b"f")
            line = await _line(proc.stdout, buf)
            k.fail_nth_allocation(0)
            k.check()
            if line == ENOMEM_LINE:
                await proc.stdin.send_all(b"f")
                assert await _line(proc.stdout, buf) == "child: 0"
                await proc.stdin.aclose()
                assert await proc.wait() == 0
            else:
                await proc.stdin.aclose()
                await proc.wait()
        k.check()
    return line, n


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt", "cow-pt-eager"])
async def test_every_allocation_of_a_fork_can_fail(probe: str, fork_mode: str) -> None:
    n = 1
    while (await _attempt(probe, fork_mode, n))[0] == ENOMEM_LINE:
        n += 1
        assert n < 200
    # copy allocates the child's tables for 8 MiB and more; cow-pt at least its upper levels
    assert n > 1, "the first allocation after the request was not the fork's"
