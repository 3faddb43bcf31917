"""Small helpers shared by the tests."""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

import spawnfd

RW = mmap.PROT_READ | mmap.PROT_WRITE
ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
PAGE = 4096

PTE_P, PTE_W, PTE_U, PTE_A, PTE_D = 1 << 0, 1 << 1, 1 << 2, 1 << 5, 1 << 6
PTE_NX = 1 << 63


def pte_pfn(pte: int) -> int:
    return (pte & 0x000FFFFFFFFFF000) >> 12


def stamp_bytes(stamp: int, n: int = PAGE) -> bytes:
    """What a page populated with ``stamp`` reads back as."""
    return struct.pack("<Q", stamp) * (n // 8)


def host_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def frames(k: spawnfd.Kernel) -> int:
    return k.statistics().frames_used


def examples(n: int) -> int:
    """How many examples a heavy property test runs: ``n``, divided by
    ``SPAWNFD_EXAMPLES_DIVISOR`` (``.ci/run``'s sanitizer pass runs an eighth of them: the
    same rules and kernels, fewer random sequences, under a build ten times slower)."""
    return max(10, n // max(1, int(os.environ.get("SPAWNFD_EXAMPLES_DIVISOR", "1"))))


# ---- real programs, natively and on the simulator (test_realspawn, test_threads, ...) ----

REAL_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C"}
TESTS = Path(__file__).parent


def build_probe(tmp_path_factory: pytest.TempPathFactory, name: str, *flags: str) -> str:
    """Compile tests/<name>.c with the host's gcc; the binary's path."""
    assert shutil.which("gcc"), "gcc builds the probes (and the package)"
    out = tmp_path_factory.mktemp("probe") / name
    subprocess.run(["gcc", "-O1", *flags, "-o", str(out), str(TESTS / f"{name}.c")],
                   check=True)
    return str(out)


def boot_real(k: spawnfd.Kernel) -> None:
    """init's descriptors 0-2 on /dev/null, as a real program expects them open."""
    for _ in range(3):
        k.init.open("/dev/null", os.O_RDWR)


def run_native(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=b"", capture_output=True, env=REAL_ENV, cwd="/")


async def run_simulated(k: spawnfd.Kernel, argv: list[str]) -> Any:
    """argv on k's CPU with an empty stdin, stdout and stderr captured (60 s at most)."""
    with trio.fail_after(60):
        return await spawnfd.run_process(argv, stdin=b"", capture_stdout=True,
                                         capture_stderr=True, check=False, env=REAL_ENV,
                                         kernel=k)


def assert_same_run(sim: Any, nat: Any) -> None:
    """The simulated run printed and ended as the native one."""
    assert (sim.returncode, sim.stdout.decode(), sim.stderr.decode()) == (
        nat.returncode, nat.stdout.decode(), nat.stderr.decode())
