"""spawnfd: fd-based process creation, COW and shared page tables, measured.

Layout — one package per world, neutral modules both import, this module the one public face
(data flows down, results flow up; ``docs/architecture.md`` draws it):

    spawnfd (this module)   the public names, re-exported explicitly below
    spawnfd._dispatch       system / run_process / open_process: the simulator with
                            ``kernel=``, the host without
    spawnfd.sim             the simulator: ``kernel`` (Kernel, Process, AddressSpace, sync),
                            ``builder`` (the fd model's Builder), ``process_builder`` (its
                            async face), ``runtime`` (Sys, processes as trio tasks),
                            ``machine`` (open_kernel), ``spawn``, ``subprocess``,
                            ``programs/`` (the stand-in ld.so, sh, coreutils), ``_bindings``
                            (the only importer of the C kernel, csrc/)
    spawnfd.host            the real-Linux backend (pidfds, posix_spawn / clone)
    spawnfd._subprocess     trio's run_process semantics, shared by both backends
    spawnfd.elf             ELF reading, shared by both backends
    spawnfd.bench           benchmark scenarios and the calibrated cost model (CLI only)
"""

from .sim._bindings import KernelPanic as KernelPanic
from ._constants import MADV_GUARD_INSTALL as MADV_GUARD_INSTALL
from ._constants import MADV_GUARD_REMOVE as MADV_GUARD_REMOVE
from ._constants import MADV_KEEPONFORK as MADV_KEEPONFORK
from ._constants import MADV_WIPEONFORK as MADV_WIPEONFORK
from ._constants import MAP_DROPPABLE as MAP_DROPPABLE
from ._constants import MAP_FIXED as MAP_FIXED
from ._constants import MAP_FIXED_NOREPLACE as MAP_FIXED_NOREPLACE
from ._constants import MAP_GROWSDOWN as MAP_GROWSDOWN
from ._constants import MAP_SHARED_VALIDATE as MAP_SHARED_VALIDATE
from ._constants import MREMAP_DONTUNMAP as MREMAP_DONTUNMAP
from ._constants import MREMAP_FIXED as MREMAP_FIXED
from ._constants import MREMAP_MAYMOVE as MREMAP_MAYMOVE
from ._constants import PAGE_SIZE as PAGE_SIZE
from ._constants import PROT_NONE as PROT_NONE
from .sim.kernel import AddressSpace as AddressSpace
from .sim.kernel import CPUStatistics as CPUStatistics
from .sim.kernel import FaultStatistics as FaultStatistics
from .sim.kernel import Kernel as Kernel
from .sim.kernel import KernelStatistics as KernelStatistics
from .sim.kernel import MMStatistics as MMStatistics
from .sim.kernel import SpawnWindow as SpawnWindow
from .sim.kernel import Process as Process
from .sim.kernel import parse_size as parse_size
from .sim.builder import Builder as Builder
from .sim.builder import LoadedElf as LoadedElf
from . import host as host
from .sim.runtime import ProgramExit as ProgramExit
from .sim.runtime import RunningProcess as RunningProcess
from .sim.runtime import Sys as Sys
from .sim.machine import open_kernel as open_kernel
from .sim.process_builder import ProcessBuilder as ProcessBuilder
from .sim.spawn import Open as Open
from .sim.spawn import spawn as spawn
from .sim.subprocess import SimProcess as SimProcess
from ._dispatch import open_process as open_process
from ._dispatch import run_process as run_process
from ._dispatch import system as system

__version__ = "0.1.0"
