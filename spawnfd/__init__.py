"""spawnfd: fd-based process creation, COW and shared page tables, measured.

Layout (data flows down, results flow up):
    spawnfd (this module)   the public names, re-exported explicitly below
    spawnfd._core           Kernel, Process, AddressSpace: the simulated kernel, synchronous
    spawnfd.sim             open_kernel / Sys: processes that run (trio tasks), the simulated
                            ld.so, the built-in program behaviours
    spawnfd._bindings       the only importer of the cffi module (errno -> OSError, lifetimes)
    csrc/                   the simulated kernel in C: frame, pgtable, vma, fault, mm, file, ...
    spawnfd.host            the real-Linux backend: run_process, open_process, system and
                            create_process on the host kernel (pidfds, posix_spawn / clone)
    spawnfd._dispatch       system / run_process / open_process: the simulator with kernel=,
                            the host without
"""

from ._bindings import KernelPanic as KernelPanic
from ._constants import MADV_KEEPONFORK as MADV_KEEPONFORK
from ._constants import MADV_WIPEONFORK as MADV_WIPEONFORK
from ._constants import MAP_FIXED as MAP_FIXED
from ._constants import MAP_FIXED_NOREPLACE as MAP_FIXED_NOREPLACE
from ._constants import MAP_GROWSDOWN as MAP_GROWSDOWN
from ._constants import MAP_SHARED_VALIDATE as MAP_SHARED_VALIDATE
from ._constants import PAGE_SIZE as PAGE_SIZE
from ._constants import PROT_NONE as PROT_NONE
from ._core import AddressSpace as AddressSpace
from ._core import FaultStatistics as FaultStatistics
from ._core import Kernel as Kernel
from ._core import KernelStatistics as KernelStatistics
from ._core import MMStatistics as MMStatistics
from ._core import Process as Process
from ._core import parse_size as parse_size
from ._builder import Builder as Builder
from ._builder import LoadedElf as LoadedElf
from . import host as host
from .sim.runtime import ProgramExit as ProgramExit
from .sim.runtime import RunningProcess as RunningProcess
from .sim.runtime import Sys as Sys
from .sim.runtime import open_kernel as open_kernel
from .sim.builder import ProcessBuilder as ProcessBuilder
from .sim.spawn import Open as Open
from .sim.spawn import spawn as spawn
from .sim.subprocess import SimProcess as SimProcess
from ._dispatch import open_process as open_process
from ._dispatch import run_process as run_process
from ._dispatch import system as system

__version__ = "0.1.0"
