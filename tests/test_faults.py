"""Faults of running code given to the program's handlers (compare force_sig_fault()):
SIGSEGV with SEGV_MAPERR/SEGV_ACCERR, SIGILL, SIGFPE and SIGTRAP with the siginfo and the
trap fields of the mcontext Linux fills, a handler that fixes the page and returns (the
access runs again), siglongjmp out of one, a fault in a thread, a stack overflow caught on
the alternate stack; blocked, ignored and nested faults end the process as on Linux.
tests/fault_probe.c runs natively and on the simulator; stdout and status must be equal."""

from __future__ import annotations

import re

import pytest

import spawnfd

from .helpers import boot_real, build_probe
from .helpers import run_native as native
from .helpers import run_simulated as simulated

@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "fault_probe", "-pthread")


@pytest.mark.parametrize("scenario", ["all", "blocked", "ignored", "nested", "bus"])
async def test_fault_probe_as_natively(probe: str, scenario: str) -> None:
    async with spawnfd.open_kernel("1G") as k:
        boot_real(k)
        argv = [probe, scenario]
        sim = await simulated(k, argv)
        nat = native(argv)
        assert (sim.returncode, sim.stdout.decode()) == (nat.returncode, nat.stdout.decode())
        k.check()


async def test_python_faulthandler_as_natively() -> None:
    """python3.11 -X faulthandler: its SIGSEGV handler prints the traceback, then the
    default action ends the process."""
    code = "import ctypes\nprint('before', flush=True)\nctypes.string_at(0)"
    argv = ["python3.11", "-X", "faulthandler", "-c", code]
    async with spawnfd.open_kernel("2G") as k:
        boot_real(k)
        sim = await simulated(k, argv)
        k.check()
    nat = native(argv)

    def thread_id_out(err: bytes) -> bytes:  # the thread's address: ASLR natively
        return re.sub(rb"thread 0x[0-9a-f]+", b"thread 0x...", err)

    assert (sim.returncode, sim.stdout, thread_id_out(sim.stderr)) == (
        nat.returncode, nat.stdout, thread_id_out(nat.stderr))
    assert b"Fatal Python error: Segmentation fault" in sim.stderr
