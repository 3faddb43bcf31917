"""spawnfd.host: the spawnfd API on the real Linux kernel.

Layout (data flows down, results flow up):
    spawnfd.host (this module)   the public names, re-exported explicitly below
    spawnfd.host._builder        create_process / ProcessBuilder: record, validate, launch
    spawnfd.host._subprocess     run_process / open_process / system: trio's drop-ins
    spawnfd.host._process        Process: a child held by a pidfd, awaited with trio
    spawnfd.host._libc_bindings  the only importer of the cffi module spawnfd.host._libc
    spawnfd/host/_launch.c       the launcher: clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) or posix_spawn

Needs Linux >= 5.11 (pidfds, waitid(P_PIDFD), close_range(CLOSE_RANGE_CLOEXEC)) and glibc >= 2.34.
"""

from ._builder import Elf as Elf
from ._builder import ProcessBuilder as ProcessBuilder
from ._builder import create_process as create_process
from ._libc_bindings import METHODS as METHODS
from ._process import Process as Process
from ._subprocess import open_process as open_process
from ._subprocess import run_process as run_process
from ._subprocess import system as system
from ._subprocess import system_sync as system_sync

__all__ = [
    "METHODS",
    "Elf",
    "Process",
    "ProcessBuilder",
    "create_process",
    "open_process",
    "run_process",
    "system",
    "system_sync",
]
