"""Small helpers shared by the tests."""

from __future__ import annotations

import mmap
import os
import struct

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
