"""The simulated kernel, synchronous: :class:`Kernel`, :class:`Process`, :class:`AddressSpace`.

A :class:`Kernel` is one simulated machine whose memory manager lives in C (``csrc/``); this
module is the typed, documented face of it. Every call is one C call: populating a gigabyte
is a single call that walks the page tables in C, never a Python loop per page.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from .._format import describe_wait_status, format_size
from ._bindings import FAULT_KINDS, CKernel, KernelPanic
from .builder import Builder
from .process_builder import ProcessBuilder

if TYPE_CHECKING:
    from .runtime import RunningProcess

__all__ = ["Kernel", "Process", "AddressSpace", "KernelStatistics", "MMStatistics", "CPUStatistics",
           "SpawnWindow",
           "FaultStatistics", "KernelPanic", "FORK_MODES", "parse_size"]

FORK_MODES: Final = ("copy", "cow-pt", "cow-pt-eager")
THP_MODES: Final = ("never", "madvise", "always")
THP_COW_POLICIES: Final = ("split", "copy-huge")
_U64 = 1 << 64
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MEMORY_MIN: Final = 256 << 10  #: the smallest machine (64 frames), as csrc/mm/frame.c
MEMORY_MAX: Final = 16 << 40   #: the largest machine
# Every kernel not yet collected: the test suite checks each one after every test.
_live_kernels: weakref.WeakSet[Kernel] = weakref.WeakSet()


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string like ``"512M"``, ``"64G"``, ``"1T"`` (binary units).

    Raises:
        TypeError: neither an int nor a str.
        ValueError: a string in another form.
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise TypeError(f"size must be an int or a str like '16G', not {type(size).__name__}")
    if isinstance(size, int):
        return size
    m = _SIZE_RE.match(size)
    if not m:
        raise ValueError(f"cannot parse size {size!r}; use bytes or e.g. '512M', '64G', '1T'")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _u32(value: int, what: str) -> int:
    # An unsigned int argument (close_range): out of range is EINVAL.
    if _u64(value, what) >= 1 << 32:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what} out of range")
    return value


def _i64(value: int, what: str) -> int:
    # A signed 64-bit argument (loff_t: lseek, ftruncate): out of range is EINVAL.
    if type(value) is int and -(1 << 63) <= value < 1 << 63:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what} out of range")


def _u64(value: int, what: str) -> int:
    # The C calls take unsigned 64-bit values; out of range is EINVAL, as the kernel says.
    if type(value) is int and 0 <= value < _U64:  # the common case, first
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value < _U64:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: {what} out of range")
    return value


def _memory_bytes(memory: int | str) -> int:
    # The Kernel's memory= option: its type, its form, then the range the C kernel accepts.
    if isinstance(memory, bool) or not isinstance(memory, (int, str)):
        raise TypeError(f"memory must be an int or a str like '16G', not "
                        f"{type(memory).__name__}")
    valid = (f"a multiple of 4 KiB between {format_size(MEMORY_MIN)} and "
             f"{format_size(MEMORY_MAX)}")
    try:
        n = parse_size(memory)
    except ValueError:
        raise ValueError(f"memory must be bytes or a size like '512M', '64G', '1T' "
                         f"({valid}), not {memory!r}") from None
    if not MEMORY_MIN <= n <= MEMORY_MAX or n % 4096:
        raise ValueError(f"memory must be {valid}, not {memory!r}")
    return n


def _choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    # A str option with a fixed set of values: TypeError for another type, ValueError else.
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, not {value!r}")
    return value


@final
@dataclasses.dataclass(frozen=True)
class FaultStatistics:
    """Page faults since boot, by how they were resolved."""

    anon: int       #: anonymous write fault: a zeroed frame allocated
    zero: int       #: anonymous read fault: the shared zero page mapped
    file: int       #: private file read fault: the page-cache page mapped read-only
    shared: int     #: shared mapping fault: the page-cache page mapped
    cow: int        #: a page copied (private file write, write to a shared anon page)
    wp_reuse: int   #: write to a write-protected page its only user: reused in place
    wp_shared: int  #: write to a write-protected page of a shared mapping


@final
@dataclasses.dataclass(frozen=True)
class KernelStatistics:
    """Deterministic counters of a :class:`Kernel`, from ``Kernel.statistics()``."""

    frames_total: int
    frames_used: int
    anon_frames: int
    pagecache_frames: int
    pagetable_frames: int
    frames_allocated: int
    frames_freed: int
    tables_allocated: int
    tables_freed: int
    ptes_copied: int
    tables_shared: int
    tables_copied: int
    tables_reused: int
    pages_copied: int
    zero_page_maps: int
    buffers: int      #: frames whose content is a real 4 KiB host buffer
    thp_fault_alloc: int     #: huge pages allocated by faults
    thp_fault_fallback: int  #: eligible faults that found no free aligned 2 MiB block
    thp_split_pmd: int       #: huge pmd entries split into page tables
    thp_copied: int          #: huge pages copied whole on a write (thp_cow="copy-huge")
    committed_as: int        #: Committed_AS in bytes: private writable memory charged
    commit_limit: int        #: CommitLimit in bytes: memory * overcommit_ratio / 100 (no swap)
    faults: FaultStatistics
    cpu_instructions: int = 0  #: x86-64 instructions executed by real code (cpu=True)
    syscalls: int = 0          #: system calls made by real code
    syscalls_unknown: int = 0  #: ... of which the table has no entry for (-ENOSYS)
    tlb_fills: int = 0         #: CPU TLB misses resolved through the page tables
    tlb_flushes: int = 0       #: CPU TLB flushes (munmap, mprotect, COW break, fork, ...)
    tb_flushes: int = 0        #: translated-code flushes (a frame that held code changed)
    cpu_switches: int = 0      #: threads loaded into the one CPU in place of another
    #: system calls by x86-64 number (only numbers called)
    syscalls_by_nr: dict[int, int] = dataclasses.field(default_factory=dict)

    @property
    def memory_used_bytes(self) -> int:
        """Bytes of simulated memory in use (``frames_used`` pages of 4 KiB)."""
        return self.frames_used * 4096


@final
@dataclasses.dataclass(frozen=True)
class MMStatistics:
    """Accounting of one address space, from ``AddressSpace.statistics()``."""

    rss_anon_bytes: int
    rss_file_bytes: int
    rss_shmem_bytes: int
    pagetable_bytes: int          #: tables this mm uses, shared ones included
    shared_pagetable_bytes: int   #: of which shared with other address spaces
    vma_count: int
    total_vm_bytes: int
    anon_huge_bytes: int          #: AnonHugePages: mapped by huge pmd entries (in rss too)

    @property
    def rss_bytes(self) -> int:
        """Resident bytes: anonymous, file and shared memory together."""
        return self.rss_anon_bytes + self.rss_file_bytes + self.rss_shmem_bytes


@final
@dataclasses.dataclass(frozen=True)
class CPUStatistics:
    """One process's use of the simulated CPU, summed over its execs, from
    ``Process.cpu_statistics()`` (zero for a process that never ran real code)."""

    instructions: int      #: x86-64 instructions it executed
    syscalls: int          #: system calls it made
    syscalls_unknown: int  #: ... of which the table has no entry for (-ENOSYS)
    tlb_fills: int         #: TLB misses of its accesses, served by its page tables
    tlb_flushes: int       #: TLB flushes its address space's changes caused
    cpu_switches: int      #: times it was loaded into the CPU in place of another


@final
@dataclasses.dataclass(frozen=True)
class SpawnWindow:
    """What happened between the forks (vforks, clones) of running programs and their
    children's exec or exit, summed over every such window so far: the copies the fork
    policy made and the instructions run (``Kernel.spawn_window()``)."""

    windows: int             #: windows closed: the child exec'd, or exited first
    exits: int               #: ... of which by the child's exit
    ptes_copied: int         #: entries copied by fork
    tables_shared: int       #: last-level tables shared instead of copied
    tables_copied: int       #: shared tables copied when a write broke them
    tables_allocated: int    #: page tables allocated (the fork's copies included)
    pages_copied: int        #: pages copied by COW faults, the parent's and the child's
    frames_allocated: int    #: frames allocated: page tables and pages
    faults: FaultStatistics  #: faults by kind
    instructions: int        #: instructions the parent and the child ran
    child_instructions: int  #: ... of which the child's


@final
class Kernel:
    """A simulated machine: frames, page tables, VMAs, page cache, processes.

    ``Kernel(memory="64G")`` boots one; ``k.init`` is pid 1, a process the caller drives.
    Use it as a context manager (or call :meth:`close`) to give the host memory back at once.

    Args:
        memory: simulated physical memory, bytes or a string like ``"512M"``, ``"1T"``.
            A multiple of 4 KiB between 256 KiB and 16 TiB.
        fork_mode: default fork policy, one of ``"copy"``, ``"cow-pt"``, ``"cow-pt-eager"``.
        share_pagetables: share last-level tables of big ``MAP_SHARED`` file mappings.
        thp: transparent huge pages, ``"never"``, ``"madvise"`` or ``"always"``.
        thp_cow: a write to a shared huge page, ``"split"`` or ``"copy-huge"``.
        overcommit: ``vm.overcommit_memory``: 0 (Linux's default heuristic: refuse a single
            private writable mapping larger than memory), 1 (always grant), 2 (strict: the
            total charge stays under ``memory * overcommit_ratio / 100``).
        overcommit_ratio: ``vm.overcommit_ratio``, percent (mode 2 only).

    Raises:
        TypeError: an option of the wrong type (``memory`` neither int nor str,
            ``share_pagetables`` not a bool, a mode not a str).
        ValueError: a size that does not parse or is out of range, or an unknown mode.
        OSError: ``ENOMEM`` if the host cannot reserve the frame metadata.
    """

    def __init__(self, memory: int | str = "16G", *, fork_mode: str = "copy",
                 share_pagetables: bool = False, thp: str = "never",
                 thp_cow: str = "split", overcommit: int = 0,
                 overcommit_ratio: int = 50) -> None:
        memory_bytes = _memory_bytes(memory)
        _choice(fork_mode, "fork_mode", FORK_MODES)
        _choice(thp, "thp", THP_MODES)
        _choice(thp_cow, "thp_cow", THP_COW_POLICIES)
        if not isinstance(share_pagetables, bool):
            raise TypeError(f"share_pagetables must be a bool, not "
                            f"{type(share_pagetables).__name__}")
        if type(overcommit) is not int:
            raise TypeError(f"overcommit must be an int (0, 1 or 2), not {overcommit!r}")
        if overcommit not in (0, 1, 2):
            raise ValueError(f"overcommit must be 0, 1 or 2 (vm.overcommit_memory), "
                             f"not {overcommit!r}")
        if type(overcommit_ratio) is not int:
            raise TypeError(f"overcommit_ratio must be an int, not {overcommit_ratio!r}")
        if not 0 <= overcommit_ratio < 2**32:
            raise ValueError(f"overcommit_ratio must be between 0 and 2**32 - 1 (a percent), "
                             f"not {overcommit_ratio!r}")
        self.memory_bytes: Final = memory_bytes
        self.fork_mode: Final = fork_mode
        self.share_pagetables: Final = share_pagetables
        #: transparent huge pages for private anonymous memory, as Linux's
        #: /sys/kernel/mm/transparent_hugepage/enabled: "never", "madvise", "always"
        self.thp: Final = thp
        #: a write to a huge page shared after fork: "split" the pmd and copy the 4 KiB page
        #: written, or "copy-huge" the whole 2 MiB
        self.thp_cow: Final = thp_cow
        #: vm.overcommit_memory and vm.overcommit_ratio
        self.overcommit: Final = overcommit
        self.overcommit_ratio: Final = overcommit_ratio
        self._c = CKernel(_u64(self.memory_bytes, "memory"))
        if overcommit != 0 or overcommit_ratio != 50:
            self._c.set_overcommit(overcommit, overcommit_ratio)
        if fork_mode != "copy":  # the policy of fork(2) from running programs, too
            self._c.set_fork_mode(FORK_MODES.index(fork_mode))
        if share_pagetables:
            self._c.set_share_pagetables(True)
        if thp != "never" or thp_cow != "split":
            self._c.set_thp(THP_MODES.index(thp), THP_COW_POLICIES.index(thp_cow))
        self._procs: dict[int, Process] = {}
        self._programs: dict[str, Any] = {}
        self._elf_plans: dict[tuple[int, int, int | None], Any] = {}  # Builder.load_elf
        self._runtime: Any = None  # set by spawnfd.open_kernel(): processes then run
        #: how the simulated sh starts children: "fork-exec" (this kernel's fork policy),
        #: "copy" or "cow-pt" (fork+exec under that policy), or "vfork-exec"
        self.shell_method = "fork-exec"
        self.init: Final = self._process(1)
        _live_kernels.add(self)

    def _launched(self, pid: int) -> None:
        # A builder fd was closed: inside open_kernel() the first thread starts now.
        if self._runtime is not None:
            self._runtime.launch(self._process(pid))

    def spawn_window(self) -> SpawnWindow:
        """The fork-to-exec windows of running programs so far, summed (see
        :class:`SpawnWindow`)."""
        raw = self._c.spawn_window()
        raw["faults"] = FaultStatistics(**{k: raw["faults"][k] for k in FAULT_KINDS})
        return SpawnWindow(**raw)

    def _process(self, pid: int) -> Process:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = Process._new(self, pid)
        return p

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Tear the machine down now; every later call raises ``ValueError``."""
        self._c.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` tore the machine down."""
        return self._c.closed

    def statistics(self) -> KernelStatistics:
        """The kernel's deterministic counters, as one frozen record."""
        raw = self._c.kstats()
        faults = FaultStatistics(**{k: raw["faults"][k] for k in FAULT_KINDS})
        raw["faults"] = faults
        return KernelStatistics(**raw)

    def trace_syscalls(self, capacity: int = 1 << 16) -> None:
        """Start recording the system calls real code makes on the CPU (``cpu=True``): each
        finished call as (pid, number, result, arguments), read with :meth:`syscall_trace`.
        ``capacity`` calls are kept; ``0`` stops recording."""
        self._c.trace_start(capacity)

    def syscall_trace(self) -> list[tuple[int, int, int, tuple[int, ...]]]:
        """Take the calls recorded since :meth:`trace_syscalls` (or the last read), oldest
        first. Raises OverflowError if some were lost because the buffer was full."""
        calls, lost = self._c.trace_read()
        if lost:
            raise OverflowError(f"{lost} system calls not recorded: the trace buffer was full")
        return calls

    def check(self) -> None:
        """Recompute refcounts and accounting from scratch and compare.

        Walks every page table of every address space and every page cache, recounting each
        frame's references, each table's entries, each mm's rss and page-table bytes, inode
        and file references, and the buddy allocator's free lists.

        Raises:
            KernelPanic: naming the first mismatch; the kernel then refuses every call.
        """
        self._c.check()

    def register_program(self, path: str, behaviour: Any) -> None:
        """Run ``behaviour`` for the program at ``path`` after exec (``async def main(sys,
        argv, env) -> int``); the path is matched after resolving symlinks."""
        self._programs[os.path.realpath(path)] = behaviour
        if self._runtime is not None:
            self._runtime.programs[os.path.realpath(path)] = behaviour

    def install_program(self, path: str, behaviour: Any, elf: str = "/bin/true") -> None:
        """Create an executable at ``path`` (in /tmp or /dev/shm) whose bytes are a real ELF
        (``elf``, default /bin/true) and register ``behaviour`` for it: a program of your own
        that exec, ld.so and the maps treat like any other."""
        with open(elf, "rb") as f:
            data = f.read()
        fd = self.init.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
        try:
            self.init.write(fd, data)
        finally:
            self.init.close(fd)
        self.register_program(path, behaviour)

    def fail_nth_allocation(self, n: int) -> None:
        """Fault injection: the ``n``-th frame allocation from now fails with ``ENOMEM``.

        ``n = 0`` turns it off. It fires once.
        """
        self._c.fail_alloc_after(_u64(n, "n"))

    def frame_info(self, pfn: int) -> tuple[int, str]:
        """Refcount and kind (``free``, ``anon``, ``pagecache``, ``pagetable``, ``zero``)."""
        ref, kind = self._c.frame_info(_u64(pfn, "pfn"))
        return ref, ("free", "anon", "pagecache", "pagetable", "zero")[kind]

    def __repr__(self) -> str:
        return (f"<spawnfd.Kernel memory={format_size(self.memory_bytes)} "
                f"fork_mode={self.fork_mode!r} share_pagetables={self.share_pagetables} "
                f"thp={self.thp!r} thp_cow={self.thp_cow!r} overcommit={self.overcommit}"
                f"{' closed' if self.closed else ''}>")


@final
class Process:
    """A simulated process: ``Kernel.init``, or what ``fork``, ``vfork`` and the fd model make.

    Its methods are the system calls a caller-driven process makes; each raises the
    ``OSError`` subclass the :mod:`os` module would raise for the same errno.
    """

    pid: int
    mm: AddressSpace
    kernel: Kernel
    _sys: Any
    _status: int | None  # the wait status, once reaped through wait_pid

    def __init__(self) -> None:
        raise TypeError("get a Process from Kernel.init, fork or spawn")

    @classmethod
    def _new(cls, kernel: Kernel, pid: int) -> Process:
        self = object.__new__(cls)
        self.kernel = kernel
        self.pid = pid
        self.mm = AddressSpace._new(self)
        self._sys = None
        self._status = None
        return self

    @property
    def sys(self) -> Any:
        """The process's system calls (``spawnfd.sim.Sys``); processes run only inside
        ``spawnfd.open_kernel()``."""
        if self._sys is None:
            raise RuntimeError("processes run only inside spawnfd.open_kernel()")
        return self._sys

    async def fork_exec(self, path: str, argv: list[str], env: dict[str, str] | None = None,
                        fork_mode: str | None = None) -> RunningProcess:
        """fork (under ``fork_mode``, default the kernel's) + execve; the child inherits this
        process's descriptors. Returns a :class:`spawnfd.RunningProcess` (``pid``, ``mm``,
        ``await wait()``). A failed exec makes the child exit with 127."""
        child: RunningProcess = await self.sys.fork_exec(path, argv, {} if env is None else env,
                                                         fork_mode)
        return child

    async def vfork_exec(self, path: str, argv: list[str],
                         env: dict[str, str] | None = None) -> RunningProcess:
        """vfork + execve, what glibc's posix_spawn does: nothing is copied. Returns a
        :class:`spawnfd.RunningProcess`."""
        child: RunningProcess = await self.sys.vfork_exec(path, argv, {} if env is None else env)
        return child

    @property
    def _c(self) -> CKernel:
        return self.kernel._c

    def cpu_statistics(self) -> CPUStatistics:
        """This process's use of the CPU (``open_kernel(cpu=True)``), readable until it is
        reaped."""
        return CPUStatistics(**self._c.cpu_counters(self.pid))

    def fork(self, mode: str | None = None) -> Process:
        """Duplicate this process; returns the child, which the caller drives too.

        Args:
            mode: the fork policy, ``"copy"`` (classic), ``"cow-pt"`` (copy-on-write page
                tables, deferred page refcounts) or ``"cow-pt-eager"``; default: the
                kernel's ``fork_mode``.

        Raises:
            OSError: ``ENOMEM`` when simulated memory runs out part-way; the fork is then
                rolled back completely.
        """
        mode = self.kernel.fork_mode if mode is None else mode
        if mode not in FORK_MODES:
            raise ValueError(f"mode must be one of {FORK_MODES}, not {mode!r}")
        pid = self._c.fork(self.pid, FORK_MODES.index(mode))
        return self.kernel._process(pid)

    def vfork(self) -> Process:
        """A child that borrows this process's address space (nothing is copied) until it
        calls :meth:`execve` or :meth:`exit`, as glibc's ``posix_spawn`` uses it. Until then
        this process is suspended: its calls raise ``BlockingIOError``.
        """
        return self.kernel._process(self._c.vfork(self.pid))

    def exit(self, code: int = 0) -> None:
        """Exit: memory and descriptors are released at once; the parent reaps the zombie."""
        self._c.exit(self.pid, code)

    def wait(self, pid: int = -1, *, nohang: bool = False) -> int | None:
        """Reap an exited child (``pid``, or any with -1); returns its wait status.

        The status decodes with ``os.WIFEXITED``/``os.WEXITSTATUS``. Caller-driven processes
        never exit on their own, so waiting for one still running cannot block: it returns
        ``None`` with ``nohang``, else raises ``BlockingIOError``.

        Raises:
            ChildProcessError: no such child.
        """
        got = self.wait_pid(pid, nohang=nohang)
        return None if got is None else got[1]

    def wait_pid(self, pid: int = -1, *, nohang: bool = False) -> tuple[int, int] | None:
        """Like :meth:`wait`, returning ``(pid, wait status)``."""
        got, status = self._c.wait(self.pid, pid, nohang)
        if got == 0:
            return None
        reaped = self.kernel._procs.pop(got, None)
        if reaped is not None:
            reaped._status = status
        return got, status

    def execve(self, path: str | bytes | os.PathLike[Any], argv: Sequence[str | bytes],
               env: Mapping[str, str] | Sequence[str | bytes] | None = None) -> tuple[int, int]:
        """Replace this process's memory with a program, as Linux ``binfmt_elf`` does.

        Maps the ELF's ``PT_LOAD`` segments (bss zero-filled), its ``PT_INTERP`` (ld.so) below
        the mmap base, and the SysV initial stack (argc, argv, envp, auxv); closes
        close-on-exec descriptors. Nothing runs: the returned registers are where the first
        thread would start (the interpreter's entry) and its stack pointer.

        Returns:
            ``(rip, rsp)``.

        Raises:
            OSError: ``ENOENT``, ``EACCES`` (not a regular file, no execute bit), ``ENOEXEC``
                (not an x86-64 ELF), ``E2BIG`` (arguments too long); the process is unchanged.
        """
        def enc(x: str | bytes) -> bytes:
            b = os.fsencode(x)
            if b"\0" in b:
                raise ValueError("embedded null byte")
            return b

        if env is None:
            env = {}
        items = ([f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping)
                 else list(env))
        return self._c.execve(self.pid, path, [enc(a) for a in argv], [enc(e) for e in items],
                              self.pid)

    @property
    def registers(self) -> tuple[int, int]:
        """``(rip, rsp)`` the first thread starts with (set by :meth:`execve`)."""
        return self._c.regs(self.pid)

    def open(self, path: str | bytes | os.PathLike[Any], flags: int, mode: int = 0o666) -> int:
        """Open a file into this process's descriptor table; returns the descriptor.

        Host files are visible read-only under their own paths; ``/tmp`` and ``/dev/shm`` are
        writable tmpfs; ``/dev/null`` and ``/dev/zero`` exist.
        """
        return self._c.open(self.pid, path, flags, mode)

    def _wake(self) -> None:
        # Inside open_kernel(), a change made through this synchronous API (data written,
        # a pipe end closed) must wake the simulated threads parked on it.
        if self.kernel._runtime is not None:
            self.kernel._runtime.wake_pipes()

    def close(self, fd: int) -> None:
        """Close a descriptor. Closing a builder fd launches its embryo."""
        launched = self._c.close_fd(self.pid, fd)
        if launched:
            self.kernel._launched(launched)
        self._wake()

    def create_process(self) -> ProcessBuilder:
        """The fd model, async: ``async with proc.create_process() as child:`` gives a
        :class:`spawnfd.ProcessBuilder`; leaving the block launches the child (an exception
        or cancellation inside destroys it). Processes run inside ``spawnfd.open_kernel()``."""
        return ProcessBuilder(self)

    def process_create(self) -> Builder:
        """The fd model: a new embryo child (zero threads, empty memory and descriptor
        table, this process's credentials and cwd). Returns a :class:`spawnfd.Builder`
        holding the builder fd and the wait handle in this process's table."""
        return Builder._new(self)

    @property
    def credentials(self) -> tuple[int, int, int, int, int, int]:
        """``(uid, euid, suid, gid, egid, sgid)``."""
        ids = self._c.getcred(self.pid)
        return (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5])

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        """setresuid(2); -1 leaves an id. Unprivileged processes only drop privileges."""
        self._c.setcred(self.pid, tuple(i & 0xFFFFFFFF for i in (ruid, euid, suid, -1, -1, -1)))

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        """setresgid(2); -1 leaves an id."""
        self._c.setcred(self.pid, tuple(i & 0xFFFFFFFF for i in (-1, -1, -1, rgid, egid, sgid)))

    def chmod(self, path: str | bytes | os.PathLike[Any], mode: int) -> None:
        """chmod(2) of a tmpfs file (owner or root); host files are read-only (``EROFS``)."""
        self._c.chmod(self.pid, path, mode)

    def read(self, fd: int, n: int) -> bytes:
        """Read up to ``n`` bytes at the file offset."""
        data = self._c.read(self.pid, fd, _u64(n, "n"))
        self._wake()
        return data

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset`` without moving the file offset."""
        return self._c.read(self.pid, fd, _u64(n, "n"), _u64(offset, "offset"))

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at the file offset; returns bytes written."""
        n = self._c.write(self.pid, fd, data)
        self._wake()
        return n

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """Move the file offset (``os.SEEK_SET``/``SEEK_CUR``/``SEEK_END``)."""
        return self._c.lseek(self.pid, fd, _i64(offset, "offset"), whence)

    def ftruncate(self, fd: int, length: int) -> None:
        """Set a tmpfs file's size; shrinking unmaps the pages past the end everywhere."""
        self._c.ftruncate(self.pid, fd, _i64(length, "length"))

    def fstat_size(self, fd: int) -> int:
        """The size of the file behind ``fd``."""
        return self._c.fstat_size(self.pid, fd)

    def fstat(self, fd: int) -> os.stat_result:
        """fstat(2): ``st_ino``, ``st_size``, ``st_mode``, ``st_uid``, ``st_gid`` are the
        simulator's; the other fields are 0."""
        ino, size, mode, uid, gid, _ = self._c.fstat(self.pid, fd)
        return os.stat_result((mode, ino, 0, 1, uid, gid, size, 0, 0, 0))

    def close_range(self, first: int, last: int = 0xFFFFFFFF) -> None:
        """close_range(2): close every descriptor in ``[first, last]`` (unsigned 32-bit
        values, as Linux takes them; beyond the table nothing is closed)."""
        self._c.close_range(self.pid, _u32(first, "first"), _u32(last, "last"))
        self._wake()

    def dup(self, fd: int) -> int:
        """Duplicate ``fd`` onto the lowest free descriptor (sharing the file offset)."""
        return self._c.dup(self.pid, fd)

    def dup2(self, fd: int, fd2: int, inheritable: bool = True) -> int:
        """Make ``fd2`` refer to ``fd``'s open file; ``inheritable=False`` sets close-on-exec."""
        got = (self._c.dup2(self.pid, fd, fd2) if inheritable
               else self._c.dup3(self.pid, fd, fd2, os.O_CLOEXEC))
        self._wake()
        return got

    def pipe(self, flags: int = 0) -> tuple[int, int]:
        """A pipe with a 64 KiB buffer: ``(read_fd, write_fd)``; flags ``os.O_CLOEXEC``.

        The synchronous API never blocks: reading an empty pipe that still has a writer, or a
        write that does not fit (writes of at most 4096 bytes are atomic), raises
        ``BlockingIOError``; reading after every writer closed returns ``b""``; writing with
        no reader left raises ``BrokenPipeError``.
        """
        return self._c.pipe2(self.pid, flags)

    def unlink(self, path: str | bytes | os.PathLike[Any]) -> None:
        """Remove a tmpfs name; the file lives on while it is open or mapped."""
        self._c.unlink(self.pid, path)

    def state(self) -> str:
        """What the process is now: ``"running"``, ``"embryo"`` (built through a builder
        fd, not launched), ``"suspended"`` (a vfork parent until its child execs or exits),
        ``"zombie"``, or once reaped how it ended (``"exited with status 0"``,
        ``"killed by signal 9 (SIGKILL)"``; ``"reaped"`` if another handle reaped it)."""
        if self._status is not None:
            return describe_wait_status(self._status)
        c = self._c
        try:
            c.ppid(self.pid)
        except ProcessLookupError:
            return "reaped"
        try:
            c.getcred(self.pid)
        except ProcessLookupError:
            return "zombie"
        try:
            c.fd_ident(self.pid, -1)
        except ProcessLookupError:
            return "embryo"
        except BlockingIOError:
            return "suspended"
        except OSError:
            pass
        return "running"

    def __repr__(self) -> str:
        if self.kernel.closed:
            return f"<spawnfd.Process pid={self.pid} (kernel closed)>"
        try:
            state = self.state()
        except Exception as e:  # a panicked kernel: say so rather than fail
            state = f"unknown ({type(e).__name__})"
        return f"<spawnfd.Process pid={self.pid} {state}>"


@final
class AddressSpace:
    """A process's memory: ``process.mm``.

    Every access goes through the simulated fault path in C. Addresses and lengths are ints;
    constants are the :mod:`mmap` module's, plus ``spawnfd.MAP_FIXED``,
    ``spawnfd.MAP_FIXED_NOREPLACE``, ``spawnfd.MAP_DROPPABLE``, ``spawnfd.MADV_WIPEONFORK``,
    ``MADV_KEEPONFORK``, ``MADV_GUARD_INSTALL`` and ``MADV_GUARD_REMOVE``.
    """

    _proc: Process

    def __init__(self) -> None:
        raise TypeError("get an AddressSpace from Process.mm")

    @classmethod
    def _new(cls, proc: Process) -> AddressSpace:
        self = object.__new__(cls)
        self._proc = proc
        return self

    @property
    def _c(self) -> CKernel:
        return self._proc.kernel._c

    @property
    def _pid(self) -> int:
        return self._proc.pid

    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        """Map memory, as mmap(2); returns the address.

        Args:
            length: bytes (rounded up to pages).
            prot: ``mmap.PROT_*``.
            flags: ``mmap.MAP_SHARED``/``MAP_PRIVATE``/``MAP_ANONYMOUS``/``MAP_POPULATE``,
                ``spawnfd.MAP_DROPPABLE``/``MAP_FIXED``/``MAP_FIXED_NOREPLACE``.
            fd: a descriptor of this process for a file mapping.
            offset: file offset, page aligned.
            addr: a hint, or the address for ``MAP_FIXED``.

        Raises:
            OSError: the errno Linux gives (``EINVAL``, ``EBADF``, ``EACCES``, ``EEXIST``,
                ``ENOMEM``, ``ENODEV``, ``EOVERFLOW``, ``EPERM``, ``EOPNOTSUPP``).
        """
        return self._c.mmap(self._pid, _u64(addr, "addr"), _u64(length, "length"), prot,
                            flags, fd, _u64(offset, "offset"))

    def munmap(self, addr: int, length: int) -> None:
        """Unmap ``[addr, addr + length)``; emptied page tables are freed."""
        self._c.munmap(self._pid, _u64(addr, "addr"), _u64(length, "length"))

    def mremap(self, addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        """Resize or move a mapping, as mremap(2); returns its (new) address.

        A shrink unmaps the tail; a growth extends the mapping in place when the pages after it
        are free, else (with ``MREMAP_MAYMOVE``) moves it. A move carries the page-table
        entries along: pages keep their content and identity (nothing is copied).

        Args:
            addr: start of the mapping, page aligned.
            old_len: bytes mapped at ``addr`` now; 0 maps a shared mapping a second time.
            new_len: bytes wanted (rounded up to pages).
            flags: ``spawnfd.MREMAP_MAYMOVE``/``MREMAP_FIXED``/``MREMAP_DONTUNMAP``.
            new_addr: the destination for ``MREMAP_FIXED`` (whatever is there is unmapped),
                a hint for ``MREMAP_DONTUNMAP``.

        Raises:
            OSError: the errno Linux gives: ``EINVAL`` (flags, alignment, a zero ``new_len``,
                ``MREMAP_FIXED``/``DONTUNMAP`` without ``MREMAP_MAYMOVE``, overlapping ranges,
                a private ``old_len`` of 0), ``EFAULT`` (``addr`` not mapped, or a growth or
                move across the end of its mapping), ``ENOMEM`` (no room to grow without
                ``MREMAP_MAYMOVE``, ``vm.max_map_count``, the commit charge, out of memory).
        """
        return self._c.mremap(self._pid, _u64(addr, "addr"), _u64(old_len, "old_len"),
                              _u64(new_len, "new_len"), flags, _u64(new_addr, "new_addr"))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Change protection, splitting and merging mappings as Linux does."""
        self._c.mprotect(self._pid, _u64(addr, "addr"), _u64(length, "length"), prot)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """``MADV_DONTNEED``/``FREE``/``DONTFORK``/``DOFORK``/``WIPEONFORK``/``KEEPONFORK``/
        ``POPULATE_READ``/``POPULATE_WRITE``/``DONTNEED_LOCKED``, ``REMOVE`` (a hole punched
        in the shmem/tmpfs file), ``GUARD_INSTALL``/``GUARD_REMOVE`` (guard pages: any access
        is ``EFAULT``), the flags ``(NO)HUGEPAGE``/
        ``DONTDUMP``/``DODUMP``/``(UN)MERGEABLE`` and the hints ``NORMAL``/``RANDOM``/
        ``SEQUENTIAL``/``WILLNEED``/``COLD``/``PAGEOUT``. Vma by vma, as Linux: the vmas before
        the first one refused keep the advice."""
        self._c.madvise(self._pid, _u64(addr, "addr"), _u64(length, "length"), advice)

    def populate(self, addr: int, length: int, write: bool = False,
                 stamp: int | None = None) -> None:
        """Fault every page of the range in, as ``MADV_POPULATE_READ``/``_WRITE`` does.

        With ``stamp`` (requires ``write``), every page is also filled with that 64-bit value
        repeated (little-endian): a cheap way to give gigabytes distinct, checkable content.

        Raises:
            OSError: ``EINVAL`` (unaligned, or a mapping without ``PROT_READ``/``PROT_WRITE``
                for the access), ``ENOMEM`` (unmapped part or out of simulated memory; pages
                populated so far stay), ``EFAULT`` (past the end of a file: SIGBUS).
        """
        if stamp is not None:
            _u64(stamp, "stamp")
        self._c.populate(self._pid, _u64(addr, "addr"), _u64(length, "length"), write, stamp)

    def read(self, addr: int, length: int) -> bytes:
        """Read bytes through the fault path (``EFAULT`` outside a mapping or its rights)."""
        return self._c.mem_read(self._pid, _u64(addr, "addr"), _u64(length, "length"))

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes through the fault path (copy-on-write where it applies)."""
        self._c.mem_write(self._pid, _u64(addr, "addr"), data)

    def maps(self) -> str:
        """The mappings in ``/proc/PID/maps`` format."""
        return self._c.maps(self._pid)

    def statistics(self) -> MMStatistics:
        """rss by kind, page-table bytes, mapping count and size, as one frozen record."""
        raw = self._c.mmstats(self._pid)
        return MMStatistics(rss_anon_bytes=raw["rss_anon"] * 4096,
                            rss_file_bytes=raw["rss_file"] * 4096,
                            rss_shmem_bytes=raw["rss_shmem"] * 4096,
                            pagetable_bytes=raw["pagetable_bytes"],
                            shared_pagetable_bytes=raw["shared_pagetable_bytes"],
                            vma_count=raw["vma_count"], total_vm_bytes=raw["total_vm"],
                            anon_huge_bytes=raw["anon_huge"])

    def touch(self, addr: int, length: int, *, every: int = 1, write: bool = True) -> int:
        """Load from (or store to) every ``every``-th page of ``[addr, addr + length)``
        through the fault path, as a program's memory accesses would, in one C call (the
        bytes are left as they are). Returns the pages touched; ``EFAULT`` where the mappings
        do not allow the access."""
        return self._c.touch(self._pid, _u64(addr, "addr"), _u64(length, "length"),
                             _u64(every, "every"), write)

    def pss_bytes(self) -> int:
        """Proportional set size: each mapped page divided by the number of address spaces
        mapping it (a COW-shared page table counts each of its sharers). One step per page,
        unlike :meth:`statistics`."""
        return self._c.mm_pss(self._pid)

    def translate(self, addr: int) -> int:
        """The raw x86-64 pte mapping ``addr`` (0 if none), without faulting."""
        return self._c.translate(self._pid, _u64(addr, "addr"))

    def __repr__(self) -> str:
        head = f"<spawnfd.AddressSpace of pid {self._pid}"
        if self._proc.kernel.closed:
            return f"{head} (kernel closed)>"
        try:
            st = self.statistics()
        except BlockingIOError:
            return f"{head}: lent to its vfork child>"
        except Exception:
            return f"{head}: gone ({self._proc.state()})>"
        n = st.vma_count
        return (f"{head}: {n} mapping{'' if n == 1 else 's'}, "
                f"{format_size(st.total_vm_bytes)} mapped, "
                f"{format_size(st.rss_bytes)} resident>")
