"""The fd model as a system-call ABI for C programs that run on the simulator.

The header ``spawnfd/abi.h`` ships inside the package: its system-call numbers (a private
range, ``SPAWNFD_NR_BASE`` = 1024), structures and ``static inline`` wrappers over
``syscall(2)``. ``docs/abi.md`` is the reference.

    cc -I"$(python3 -m spawnfd.abi)" prog.c
"""

from __future__ import annotations

import os

__all__ = ["get_include", "NR_BASE", "NR_COUNT"]

NR_BASE = 1024   #: SPAWNFD_NR_BASE: the first number of the private range
NR_COUNT = 14    #: SPAWNFD_NR_COUNT: calls in it (spawnfd_create ... spawnfd_mmapv)


def get_include() -> str:
    """The directory to pass to ``cc -I`` for ``#include <spawnfd/abi.h>``."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


if __name__ == "__main__":  # python3 -m spawnfd.abi: the directory for cc -I
    print(get_include())
