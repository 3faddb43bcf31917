"""Running simulated processes with trio: ``Sys``, threads as tasks (``open_kernel()`` is
:mod:`spawnfd.sim.machine`'s).

Each simulated thread is a trio task in the kernel's nursery. It runs *behaviours*: async
Python functions registered for program paths, started by the simulated ld.so after
``execve``. The C kernel never blocks; where a system call would (an empty pipe, a full pipe,
``wait`` for a running child) it answers ``EAGAIN`` and the task parks on a
``trio.lowlevel.ParkingLot`` belonging to that object until another task changes it.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._format import describe_wait_status
from .programs import ldso

if TYPE_CHECKING:
    from .kernel import Kernel, Process

__all__ = ["Sys", "Behaviour", "ProgramExit", "RunningProcess"]

Behaviour = Callable[["Sys", list[str], dict[str, str]], Awaitable[int]]


class ProgramExit(BaseException):
    """Raised by ``Sys.exit``: unwinds the behaviour; the thread then exits with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Exec(BaseException):
    """Raised by a successful ``Sys.execve``: the old program's frames are gone."""

    def __init__(self, run: Callable[[], Awaitable[int]]) -> None:
        super().__init__()
        self.run = run


class _Signalled(BaseException):
    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.sig = sig


class _Runtime:
    """The trio side of one kernel: tasks, parking lots, program registry."""

    def __init__(self, kernel: Kernel, nursery: trio.Nursery) -> None:
        self.kernel = kernel
        self.nursery = nursery
        self.lots: dict[int, trio.lowlevel.ParkingLot] = {}   # pipe inode -> waiters
        self._pipe_events = -1                   # kernel's pipe_events at the last wake-up
        self.poll_lot = trio.lowlevel.ParkingLot()  # threads in poll/select: any pipe moved
        self.real: set[int] = set()              # pids that ran real code (kernel signals)
        self.waits: dict[int, trio.CancelScope] = {}  # tid -> the wait a signal interrupts
        # pid -> its threads other than the first: tid -> the scope of the task running it
        self.threads: dict[int, dict[int, trio.CancelScope]] = {}
        self.futex_lots: dict[int, trio.lowlevel.ParkingLot] = {}  # tid -> its FUTEX_WAIT
        self.cont_lots: dict[int, trio.lowlevel.ParkingLot] = {}  # pid -> threads stopped
        self.exec_takeover: set[int] = set()     # pids a thread other than the first exec'd
        self.children: dict[int, trio.lowlevel.ParkingLot] = {}  # parent pid -> wait()ers
        self.scopes: dict[int, trio.CancelScope] = {}
        self.pending_signal: dict[int, int] = {}
        self.vfork_done: dict[int, trio.Event] = {}
        self.programs: dict[str, Behaviour] = {}
        self.crashes: dict[int, Exception] = {}  # pid -> what killed its behaviour
        self.ignored: dict[int, set[int]] = {}   # pid -> signals set to SIG_IGN
        #: cpu=True: a program without a stand-in runs as real x86-64 code on the CPU
        self.cpu = False
        self.log: list[str] = []                 # the kernel's log (CPU faults and signals)
        self._realpaths: dict[str, str] = {}

    def lot(self, ident: int) -> trio.lowlevel.ParkingLot:
        return self.lots.setdefault(ident, trio.lowlevel.ParkingLot())

    def wake_pipes(self) -> None:
        """Let every task parked on a pipe retry, if any pipe was read, written or closed
        since the last wake-up (else they would only block again: with two or more waiters,
        each retry waking the others would never settle)."""
        events = self.kernel._c.pipe_events()
        if events == self._pipe_events:
            return
        self._pipe_events = events
        # Lots nobody is parked on are dropped, so the dict holds only live waits.
        for ident in [i for i, lot in self.lots.items() if not lot]:
            del self.lots[ident]
        for lot in self.lots.values():
            lot.unpark_all()
        self.poll_lot.unpark_all()

    def interrupt(self, pid: int) -> None:
        """pid has a signal to take: end the wait of the thread that takes it, if it waits.
        With threads, the first one that may take it, the first thread first (compare
        Linux's complete_signal()); one that runs takes it itself. A stopped pid that SIGCONT
        continued: its threads run again (they stop again if it is still stopped)."""
        stopped = self.cont_lots.pop(pid, None)
        if stopped is not None and stopped:
            stopped.unpark_all()
            self.wake_parent(pid)  # WCONTINUED, and SIGCHLD's CLD_CONTINUED
        others = self.threads.get(pid)
        if not others:
            scope = self.waits.get(pid)
            if scope is not None:
                scope.cancel()
            return
        c = self.kernel._c
        for tid in (pid, *others):
            if c.signal_pending(tid):
                scope = self.waits.get(tid)
                if scope is not None:
                    scope.cancel()
                return

    def cont_lot(self, pid: int) -> trio.lowlevel.ParkingLot:
        return self.cont_lots.setdefault(pid, trio.lowlevel.ParkingLot())

    def wake_parent(self, pid: int) -> None:
        """pid stopped or continued: its parent's wait sees it, its SIGCHLD handler runs."""
        c = self.kernel._c
        try:
            ppid = c.ppid(pid)
        except OSError:
            return
        self.child_lot(ppid).unpark_all()
        if ppid in self.threads or c.signal_pending(ppid):
            self.interrupt(ppid)

    def futex_lot(self, tid: int) -> trio.lowlevel.ParkingLot:
        return self.futex_lots.setdefault(tid, trio.lowlevel.ParkingLot())

    def wake_futexes(self) -> None:
        """Run again the threads a futex wake took off the kernel's wait queue."""
        for tid in self.kernel._c.futex_woken():
            lot = self.futex_lots.get(tid)
            if lot is not None:
                lot.unpark_all()

    def start_cpu_thread(self, sys: Sys, tid: int) -> None:
        """clone(CLONE_THREAD) made thread tid of sys's process: a task of its own runs it."""
        scope = trio.CancelScope()
        self.threads.setdefault(sys.pid, {})[tid] = scope
        self.nursery.start_soon(self._cpu_thread, sys, tid, scope)

    async def _cpu_thread(self, sys: Sys, tid: int, scope: trio.CancelScope) -> None:
        """A thread other than the first: it ends alone (exit), or ends its process."""
        with scope:
            try:
                await _run_cpu(sys, tid)
            except _Signalled as e:
                self.end_group(sys.pid, e.sig)
        others = self.threads.get(sys.pid)
        if others is not None and others.get(tid) is scope:
            del others[tid]
        self.waits.pop(tid, None)
        self.futex_lots.pop(tid, None)

    def end_group(self, pid: int, wstatus: int) -> None:
        """A thread other than the first ended the process (exit_group, the last thread's
        exit, a fatal signal): its first thread's task finishes it with wstatus."""
        scope = self.scopes.get(pid)
        if scope is not None:
            self.pending_signal.setdefault(pid, wstatus)
            scope.cancel()

    def end_threads(self, pid: int) -> None:
        """The tasks of pid's threads other than the first end: the process exited or
        exec'd, and the kernel let go of them."""
        for tid, scope in self.threads.pop(pid, {}).items():
            scope.cancel()
            self.waits.pop(tid, None)
            self.futex_lots.pop(tid, None)

    def child_lot(self, ppid: int) -> trio.lowlevel.ParkingLot:
        return self.children.setdefault(ppid, trio.lowlevel.ParkingLot())

    def behaviour(self, path: str) -> Behaviour | None:
        real = self._realpaths.get(path)
        if real is None:  # host paths are a read-only snapshot: resolve each one once
            real = self._realpaths[path] = os.path.realpath(path)
        return self.programs.get(real) or self.programs.get(path)

    def start_thread(self, proc: Process, first: Callable[[], Awaitable[int]]) -> None:
        # The scope exists from now on, so the new process can be signalled before it runs.
        self.scopes[proc.pid] = scope = trio.CancelScope()
        self.nursery.start_soon(self._thread, proc, first, scope)

    async def _thread(self, proc: Process, first: Callable[[], Awaitable[int]],
                      scope: trio.CancelScope) -> None:
        """One simulated thread: run behaviours across execs until exit or a signal."""
        status: int | None = None
        with scope:
            step = first
            try:
                while True:
                    try:
                        status = (await step() & 0xFF) << 8
                        break
                    except _Exec as e:
                        step = e.run
            except ProgramExit as e:
                status = (e.code & 0xFF) << 8
            except _Signalled as e:
                status = e.sig
            except OSError as e:  # a system call failed and the program did not handle it
                self.crashes[proc.pid] = e
                # EFAULT is the simulated SIGSEGV; anything else: it exits 1, as a C program
                # does after a failed write ("write error").
                status = signal.SIGSEGV if e.errno == errno.EFAULT else 1 << 8
            except Exception as e:  # a behaviour's bug: the process dies, the host does not
                self.crashes[proc.pid] = e
                status = signal.SIGSEGV
        if status is None:  # cancelled: by a signal, or because the kernel is closing
            status = self.pending_signal.pop(proc.pid, signal.SIGKILL)
        self.scopes.pop(proc.pid, None)
        self._finish(proc, status)

    def _finish(self, proc: Process, status: int) -> None:
        c = self.kernel._c
        ppid = c.ppid(proc.pid)
        try:
            if os.WIFSIGNALED(status):
                c.kill_exit(proc.pid, os.WTERMSIG(status))
            else:
                c.exit(proc.pid, os.WEXITSTATUS(status))
        except ProcessLookupError:
            pass
        ev = self.vfork_done.pop(proc.pid, None)
        if ev is not None:
            ev.set()
        self.ignored.pop(proc.pid, None)
        if signal.SIGCHLD in self.ignored.get(ppid, ()):
            # A parent that ignores SIGCHLD gets no zombies: the child is reaped at once.
            parent = self.kernel._process(ppid)
            parent.wait_pid(proc.pid, nohang=True)
        self.real.discard(proc.pid)
        self.end_threads(proc.pid)
        self.exec_takeover.discard(proc.pid)
        self.futex_lots.pop(proc.pid, None)
        self.cont_lots.pop(proc.pid, None)
        self.waits.pop(proc.pid, None)  # a wait a kill cancelled from outside
        self.wake_pipes()
        self.poll_lot.unpark_all()  # a poll on its wait handle (readable at exit)
        self.child_lot(ppid).unpark_all()
        if ppid in self.threads or c.signal_pending(ppid):  # SIGCHLD for a handler
            self.interrupt(ppid)
        self.child_lot(1).unpark_all()  # orphans it had went to init

    def launch(self, proc: Process) -> None:
        """A builder fd was closed: start the process's first thread at its registers.
        Signal dispositions start at their defaults (nothing is inherited implicitly)."""
        sys = _sys_for(proc, self)
        self.start_thread(proc, lambda: _run_launched(sys))

    def signal(self, pid: int, sig: int) -> None:
        """Deliver sig to pid: ignored, queued for a handler of real code (the process is
        woken from a wait to take it), or (default action) terminate it."""
        scope = self.scopes.get(pid)
        if scope is None:
            raise ProcessLookupError(errno.ESRCH, os.strerror(errno.ESRCH))
        if pid in self.real:  # its dispositions are the kernel's (rt_sigaction)
            how = self.kernel._c.signal_send(0, pid, sig)
            if how in (_SIGQ_QUEUED, _SIGQ_CONTINUED):
                self.interrupt(pid)
            if how != _SIGQ_TERM:
                return
        elif sig in _STANDIN_NO_EFFECT or sig in self.ignored.get(pid, ()):
            return  # ignored by default; a stand-in (Python) program cannot stop
        self.pending_signal[pid] = sig
        scope.cancel()


    def deliver_kills(self) -> None:
        """Carry out what kill(2) of running code left in the kernel's outbox: wake a process
        to take a queued signal, or end it by its default action. A process without a task
        (an embryo, a caller-driven one) ends at once, as the fd model's send_signal does."""
        c = self.kernel._c
        for pid, sig in c.signal_outbox():
            if pid in self.scopes:
                if sig:
                    self.signal(pid, sig)
                else:
                    self.interrupt(pid)
            elif sig:
                try:
                    ppid = c.ppid(pid)
                    c.kill_exit(pid, sig)
                except OSError:
                    continue
                self.child_lot(ppid).unpark_all()
                if c.signal_pending(ppid):
                    self.interrupt(ppid)


def _exec_or_127(path: str, argv: list[str],
                 env: dict[str, str]) -> Callable[[Sys], Awaitable[int]]:
    """A fork or vfork child that execs path, or exits 127 when the exec fails."""

    async def child(csys: Sys) -> int:
        try:
            await csys.execve(path, argv, env)
        except OSError:
            return 127
        return 0  # not reached: a successful execve does not return

    return child


@final
class Sys:
    """The system calls a behaviour makes, for one process: ``process.sys``.

    Blocking calls are ``async`` and park on the object they wait for; the rest are plain
    methods. Every async method is a checkpoint.
    """

    def __init__(self, proc: Process, rt: _Runtime) -> None:
        self.proc = proc
        self._rt = rt

    def __repr__(self) -> str:
        return f"<spawnfd.Sys of pid {self.proc.pid}>"

    @property
    def pid(self) -> int:
        """This process's id."""
        return self.proc.pid

    def getpid(self) -> int:
        """getpid(2): this process's id."""
        return self.proc.pid

    # ---- descriptors ----
    async def read(self, fd: int, n: int) -> bytes:
        """Read; waits while a pipe is empty and still has a writer."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = self.proc.kernel._c.read(self.pid, fd, n)  # wakes only this pipe's lot
            except BlockingIOError:
                await self._park(fd)
                continue
            self._wake(fd)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def write(self, fd: int, data: bytes) -> int:
        """Write everything; waits while a pipe is full. A pipe without readers delivers
        SIGPIPE (the default action kills the process)."""
        view = memoryview(data)
        done = 0
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                if done < len(view):
                    done += self.proc.kernel._c.write(self.pid, fd, view[done:])
            except BlockingIOError:
                await self._park(fd)
                continue
            except BrokenPipeError:
                if signal.SIGPIPE in self._rt.ignored.get(self.pid, ()):
                    raise  # SIGPIPE ignored: the write fails with EPIPE
                raise _Signalled(signal.SIGPIPE) from None
            self._wake(fd)
            if done >= len(view):
                await trio.lowlevel.cancel_shielded_checkpoint()
                return done

    def close(self, fd: int) -> None:
        """close(2); closing a pipe's last writer wakes its readers, a builder fd launches.

        Raises:
            OSError: ``EBADF``.
        """
        self.proc.close(fd)
        self._rt.wake_pipes()

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """open(2) in this process's table (its cwd and credentials); returns the descriptor.

        Raises:
            OSError: ``FileNotFoundError``, ``PermissionError``..., with ``path`` as filename.
        """
        return self.proc.open(path, flags, mode)

    def pipe(self, flags: int = 0) -> tuple[int, int]:
        """pipe2(2): ``(read_fd, write_fd)`` of a 64 KiB pipe; ``flags`` takes ``os.O_CLOEXEC``."""
        return self.proc.pipe(flags)

    def dup(self, fd: int) -> int:
        """dup(2): ``fd`` again on the lowest free descriptor (sharing its file offset).

        Raises:
            OSError: ``EBADF``.
        """
        return self.proc.dup(fd)

    def dup2(self, fd: int, fd2: int) -> int:
        """dup2(2): make ``fd2`` refer to ``fd``'s open file; returns ``fd2``.

        Raises:
            OSError: ``EBADF``.
        """
        r = self.proc.dup2(fd, fd2)
        self._rt.wake_pipes()
        return r

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """lseek(2): move the file offset (``os.SEEK_SET``/``SEEK_CUR``/``SEEK_END``).

        Raises:
            OSError: ``ESPIPE`` on a pipe, ``EINVAL``, ``EBADF``.
        """
        return self.proc.lseek(fd, offset, whence)

    def chdir(self, path: str) -> None:
        """chdir(2): change this process's working directory.

        Raises:
            OSError: ``ENOENT``, ``ENOTDIR``, ``EACCES``, with ``path`` as filename.
        """
        self.proc.kernel._c.chdir(self.pid, path)

    async def _park(self, fd: int) -> None:
        ident, _ = self.proc.kernel._c.fd_ident(self.pid, fd)
        await self._rt.lot(ident).park()

    def _wake(self, fd: int) -> None:
        ident, is_pipe = self.proc.kernel._c.fd_ident(self.pid, fd)
        if is_pipe:
            self._rt.lot(ident).unpark_all()

    # ---- memory ----
    def mmap(self, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0,
             addr: int = 0) -> int:
        """mmap(2) in this process (see :meth:`spawnfd.AddressSpace.mmap`); returns the
        address."""
        return self.proc.mm.mmap(length, prot, flags, fd, offset, addr)

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2) in this process (see :meth:`spawnfd.AddressSpace.munmap`)."""
        self.proc.mm.munmap(addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(2) in this process (see :meth:`spawnfd.AddressSpace.mprotect`)."""
        self.proc.mm.mprotect(addr, length, prot)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """madvise(2) in this process (see :meth:`spawnfd.AddressSpace.madvise`)."""
        self.proc.mm.madvise(addr, length, advice)

    def read_memory(self, addr: int, n: int) -> bytes:
        """Load ``n`` bytes at ``addr`` through the fault path, as the program's own loads.

        Raises:
            OSError: ``EFAULT`` outside its mappings (unhandled, the process dies of SIGSEGV).
        """
        return self.proc.mm.read(addr, n)

    def write_memory(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr`` through the fault path (copy-on-write where it applies).

        Raises:
            OSError: ``EFAULT`` outside its mappings or into read-only memory.
        """
        self.proc.mm.write(addr, data)

    # ---- processes ----
    async def fork(self, child: Callable[[Sys], Awaitable[int]], mode: str | None = None) -> int:
        """fork(2): the child continues in ``child(sys)`` (Python cannot return twice);
        returns the child's pid."""
        await trio.lowlevel.checkpoint()
        c = self.proc.fork(mode)
        _inherit(self._rt, self.pid, c.pid)
        csys = _sys_for(c, self._rt)
        self._rt.start_thread(c, lambda: child(csys))
        return c.pid

    async def vfork(self, child: Callable[[Sys], Awaitable[int]]) -> int:
        """vfork(2): the child runs ``child(sys)`` in this address space (nothing is copied,
        its descriptor table is its own) while this process waits until the child execs or
        exits. Returns the child's pid."""
        await trio.lowlevel.checkpoint()
        c = self.proc.vfork()
        _inherit(self._rt, self.pid, c.pid)
        done = self._rt.vfork_done[c.pid] = trio.Event()
        csys = _sys_for(c, self._rt)
        self._rt.start_thread(c, lambda: child(csys))
        await done.wait()
        return c.pid

    async def vfork_execve(self, path: str, argv: list[str], env: dict[str, str]) -> int:
        """vfork + execve (what glibc's posix_spawn does); a failed exec exits 127."""
        return await self.vfork(_exec_or_127(path, argv, env))

    # ---- library helpers over those calls (what Process.fork_exec / vfork_exec use) ----
    async def fork_exec(self, path: str, argv: list[str], env: dict[str, str],
                        fork_mode: str | None = None) -> RunningProcess:
        """fork (under ``fork_mode``) + execve; the child, held by this process, exits 127
        if the exec fails."""
        pid = await self.fork(_exec_or_127(path, argv, env), fork_mode)
        return RunningProcess._new(self.proc, self.proc.kernel._process(pid))

    async def vfork_exec(self, path: str, argv: list[str],
                         env: dict[str, str]) -> RunningProcess:
        """:meth:`vfork_execve`, the child held by this process as a `RunningProcess`."""
        pid = await self.vfork_execve(path, argv, env)
        return RunningProcess._new(self.proc, self.proc.kernel._process(pid))

    async def execve(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        """execve(2), then the simulated ld.so, then the program's behaviour. On success it
        does not return (the old program is gone); on failure it raises the OSError."""
        await trio.lowlevel.checkpoint()
        self.proc.execve(path, argv, env)
        self._rt.wake_pipes()  # close-on-exec descriptors were closed
        ev = self._rt.vfork_done.pop(self.pid, None)
        if ev is not None:
            ev.set()
        raise _Exec(_explained(self, _program_step(self)))

    # ---- credentials ----
    def getuid(self) -> int:
        """getuid(2): the real user id."""
        return self.proc.credentials[0]

    def geteuid(self) -> int:
        """geteuid(2): the effective user id."""
        return self.proc.credentials[1]

    def getgid(self) -> int:
        """getgid(2): the real group id."""
        return self.proc.credentials[3]

    def getegid(self) -> int:
        """getegid(2): the effective group id."""
        return self.proc.credentials[4]

    def exit(self, code: int) -> None:
        """exit(2): end the program now with ``code`` (raises :class:`spawnfd.ProgramExit`,
        which the runtime catches; do not catch it in a behaviour)."""
        raise ProgramExit(code)

    async def wait(self, pid: int = -1) -> tuple[int, int]:
        """Wait for a child to exit; returns ``(pid, wait status)``."""
        while True:
            await trio.lowlevel.checkpoint_if_cancelled()
            got = self.proc.wait_pid(pid, nohang=True)
            if got is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return got
            await self._rt.child_lot(self.pid).park()

    def kill(self, pid: int, sig: int) -> None:
        """kill(2) with SIGKILL, SIGTERM, SIGPIPE (default action: terminate) or SIGCHLD
        (default: ignored)."""
        if sig not in SIMULATED_SIGNALS:
            raise OSError(errno.EINVAL, f"signal {sig} is not simulated")
        self._rt.signal(pid, sig)

    def signal(self, sig: int, action: Any) -> Any:
        """Set a signal's disposition to ``signal.SIG_IGN`` or ``signal.SIG_DFL``; returns
        the previous one. Ignored signals survive fork and exec, as POSIX says; SIGKILL cannot
        be ignored. Ignoring SIGCHLD makes exited children vanish without a zombie."""
        if sig not in SIMULATED_SIGNALS or sig == signal.SIGKILL:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if action not in (signal.SIG_IGN, signal.SIG_DFL):
            raise OSError(errno.EINVAL, "only SIG_IGN and SIG_DFL are simulated")
        ign = self._rt.ignored.setdefault(self.pid, set())
        old = signal.SIG_IGN if sig in ign else signal.SIG_DFL
        if action == signal.SIG_IGN:
            ign.add(sig)
        else:
            ign.discard(sig)
        return old


@final
class RunningProcess:
    """A child started by ``fork_exec``/``vfork_exec``, held by its parent (trio style).

    ``pid``, ``process`` (the :class:`spawnfd.Process`: ``mm``, fds) and ``returncode`` (the
    wait status once waited); ``await wait()`` reaps it.
    """

    parent: Process
    process: Process
    returncode: int | None

    def __init__(self) -> None:
        raise TypeError("get a RunningProcess from Process.fork_exec or vfork_exec")

    @classmethod
    def _new(cls, parent: Process, process: Process) -> RunningProcess:
        self = object.__new__(cls)
        self.parent, self.process, self.returncode = parent, process, None
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def mm(self) -> Any:
        """The child's :class:`spawnfd.AddressSpace`, for inspection."""
        return self.process.mm

    async def wait(self) -> int:
        """Wait for the child to exit and reap it; returns the wait status (decode it with
        ``os.WIFEXITED``/``os.WEXITSTATUS``/``os.WTERMSIG``)."""
        if self.returncode is None:
            _, self.returncode = await self.parent.sys.wait(self.pid)
        else:
            await trio.lowlevel.checkpoint()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """kill(2) the child with ``sig`` (SIGKILL, SIGTERM, SIGPIPE or SIGCHLD).

        Raises:
            OSError: ``EINVAL`` for a signal the simulator does not have; ``ProcessLookupError``
                once it has exited.
        """
        self.parent.sys.kill(self.pid, sig)

    def terminate(self) -> None:
        """Send ``SIGTERM`` (see :meth:`send_signal`)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL`` (see :meth:`send_signal`)."""
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        state = ("running" if self.returncode is None
                 else describe_wait_status(self.returncode))
        return f"<spawnfd.RunningProcess pid={self.pid} {state}>"


def _no_program(sys: Sys, path: str) -> Callable[[], Awaitable[int]]:
    """A program nothing can run: no stand-in behaviour is registered for it and the
    kernel was opened with cpu=False (no real code runs). Say so on stderr, then die of
    SIGILL (the first instruction is one the CPU does not have)."""

    async def step() -> int:
        msg = (f"spawnfd: {path}: no stand-in program for this path, and this kernel was "
               f"opened with cpu=False (a default kernel runs the real program on its CPU); "
               f"register one with Kernel.register_program\n")
        try:
            await sys.write(2, msg.encode(errors="surrogateescape"))
        except (OSError, _Signalled):
            pass  # no stderr, or nobody reading it: the signal still tells
        raise _Signalled(signal.SIGILL)

    return step


def _explained(sys: Sys, step: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    """``step``, or for a program with nothing to run it (SIGILL) one that says why first."""
    if step is not _sigill:
        return step
    return _no_program(sys, _program_name(sys))


def _program_name(sys: Sys) -> str:
    """The program's path as exec was given it (``AT_EXECFN``), or ``argv[1]`` when ld.so
    was started as a program (``ld.so /path/prog args``); as ldso.load_program decides."""
    stack = ldso.read_initial_stack(sys.proc)
    aux = stack.auxv
    rip, _ = sys.proc.registers
    if aux.get(ldso.AT_BASE, 0) and aux.get(ldso.AT_ENTRY) != rip:
        return os.fsdecode(ldso._cstring(sys.proc, aux[ldso.AT_EXECFN]))
    return os.fsdecode(stack.argv[1]) if len(stack.argv) > 1 else "?"


async def _sigill() -> int:
    raise _Signalled(signal.SIGILL)


CPU_SLICE: Final = 1 << 20   # instructions a CPU runs before the task yields
# Why a slice stopped (enum cpu_stop, csrc/arch/x86/arch.h).
(_CPU_SLICE_OVER, _CPU_EXITED, _CPU_KILLED, _CPU_BLOCKED, _CPU_SLEEP, _CPU_FORKED, _CPU_VFORKED,
 _CPU_EXECED, _CPU_WAIT, _CPU_POLL, _CPU_SIGNAL, _CPU_CLONED, _CPU_FUTEX,
 _CPU_THREAD_EXITED, _CPU_LAUNCHED, _CPU_STOPPED) = range(1, 17)
_SIGQ_QUEUED, _SIGQ_IGNORED, _SIGQ_TERM, _SIGQ_CONTINUED = 0, 1, 2, 3
# Signals that do nothing to a stand-in program: those whose default action is to ignore
# them, and the stop signals (only a thread on the CPU stops).
_STANDIN_NO_EFFECT: Final = frozenset({
    signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH,
    signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_NO_TIMEOUT: Final = 2**64 - 1


async def _run_cpu(sys: Sys, tid: int = 0) -> int:
    """Run a thread as real x86-64 code (csrc/arch/x86): a slice at a time, yielding to
    trio between slices, parked on a pipe's lot while a system call blocks on it, on the
    children's lot while it waits in wait4, on its own lot in FUTEX_WAIT. A child it forked
    gets a task of its own (a vfork parent waits until the child execs or exits), and so
    does a thread it cloned; after its own execve the new program runs here, as real code or
    as its stand-in. tid 0: the process's first thread, whose task is the process's; another
    thread's task returns when the thread exits and ends the process (`_Runtime.end_group`)
    when the thread does."""
    c = sys.proc.kernel._c
    rt = sys._rt
    first = not tid or tid == sys.pid
    tid = tid or sys.pid
    rt.real.add(sys.pid)
    deadline = math.inf
    while True:
        if first and sys.pid in rt.exec_takeover:  # another thread exec'd: its program
            rt.exec_takeover.discard(sys.pid)      # runs here, in the process's task
            raise _Exec(_explained(sys, _program_step(sys)))
        reason, status, fd, addr, _, woken = c.cpu_run(tid, CPU_SLICE)
        rt.wake_pipes()  # what it wrote or closed may free a waiter
        if woken:
            rt.wake_futexes()
        if reason == _CPU_EXITED:
            if not first:
                rt.end_group(sys.pid, (status & 0xFF) << 8)
            return status
        if reason in (_CPU_KILLED, _CPU_SIGNAL):  # kill(2) reached other processes
            rt.deliver_kills()
        if reason == _CPU_THREAD_EXITED:
            if not first:
                return status
            # The first thread exited alone: the process lives on in its other threads
            # until the last one exits (or another execs).
            with trio.CancelScope() as rt.waits[tid]:
                await trio.sleep_forever()
            rt.waits.pop(tid, None)
        elif reason == _CPU_KILLED:
            where = f" at {addr:#x}" if status not in (signal.SIGPIPE, signal.SIGTERM) else ""
            rt.log.append(f"pid {sys.pid}: killed by {signal.Signals(status).name}{where}")
            raise _Signalled(status)
        elif reason in (_CPU_BLOCKED, _CPU_SLEEP, _CPU_WAIT, _CPU_POLL, _CPU_FUTEX):
            # A wait a signal interrupts (the call then returns EINTR or restarts).
            with trio.CancelScope() as rt.waits[tid]:
                if reason == _CPU_BLOCKED:
                    await sys._park(fd)
                elif reason == _CPU_SLEEP:
                    await trio.sleep(addr / 1e9)
                elif reason == _CPU_WAIT:
                    await rt.child_lot(sys.pid).park()
                else:  # poll: until a pipe moves; futex: until woken; or the timeout is over
                    if not fd:  # a new call: its timeout starts now
                        deadline = (math.inf if addr == _NO_TIMEOUT
                                    else trio.current_time() + addr / 1e9)
                    lot = rt.poll_lot if reason == _CPU_POLL else rt.futex_lot(tid)
                    with trio.move_on_at(deadline) as waited:
                        await lot.park()
                    if waited.cancelled_caught:
                        c.cpu_timeout(tid)
            rt.waits.pop(tid, None)
        elif reason == _CPU_SIGNAL:  # delivered above
            pass
        elif reason == _CPU_STOPPED:  # a stop signal: no thread runs until SIGCONT
            if status:  # it stopped just now: the parent may wait for that (WUNTRACED)
                rt.wake_parent(sys.pid)
            with trio.CancelScope() as rt.waits[tid]:
                await rt.cont_lot(sys.pid).park()
            rt.waits.pop(tid, None)
        elif reason == _CPU_CLONED:
            rt.start_cpu_thread(sys, status)
            await trio.lowlevel.checkpoint()
        elif reason in (_CPU_FORKED, _CPU_VFORKED):
            child = sys.proc.kernel._process(status)
            _inherit(rt, sys.pid, child.pid)
            start = functools.partial(_run_cpu, _sys_for(child, rt))  # bound now, not later
            if reason == _CPU_VFORKED:
                done = rt.vfork_done[child.pid] = trio.Event()
                rt.start_thread(child, start)
                await done.wait()
            else:  # the parent goes on first (Linux's default), so every run is the same
                rt.start_thread(child, start)
        elif reason == _CPU_LAUNCHED:  # close(2) of a builder fd (docs/abi.md)
            rt.launch(sys.proc.kernel._process(status))
        elif reason == _CPU_EXECED:
            rt.end_threads(sys.pid)  # the kernel let go of the other threads
            ev = rt.vfork_done.pop(sys.pid, None)
            if ev is not None:
                ev.set()
            if not first:  # this thread is the process's first now: its task runs the
                rt.exec_takeover.add(sys.pid)  # program; this one ends
                scope = rt.waits.get(sys.pid)
                if scope is not None:
                    scope.cancel()
                return 0
            raise _Exec(_explained(sys, _program_step(sys)))
        else:
            await trio.lowlevel.checkpoint()


def _program_step(sys: Sys) -> Callable[[], Awaitable[int]]:
    """What the first instruction at the start registers leads to: the simulated ld.so
    loads the program and its libraries, then the program's behaviour runs (none: SIGILL).
    With ``cpu=True`` a program without a stand-in runs as real code instead, from the real
    ld.so the registers point at; so does a process whose initial stack names no program (one
    a C creator built by hand through the fd model's system calls: the CPU decides)."""
    if sys._rt.cpu:
        try:
            path = ldso.program_path(sys.proc)
        except OSError:
            return lambda: _run_cpu(sys)
        if sys._rt.behaviour(path) is None:
            return lambda: _run_cpu(sys)
    stack, objects = ldso.load_program(sys.proc)
    behaviour = sys._rt.behaviour(_program_path(sys.proc, objects[0]))
    if behaviour is None:
        return _sigill
    args = [os.fsdecode(a) for a in stack.argv]
    envd = dict(os.fsdecode(e).split("=", 1) for e in stack.envp if b"=" in e)
    b = behaviour
    return lambda: b(sys, args, envd)


def _program_path(proc: Process, program: ldso.LoadedObject) -> str:
    """The program's path for looking up its behaviour: a relative AT_EXECFN names a file in
    the simulated process's cwd, never the host's, so the file the kernel mapped there (its
    absolute path, from the maps) is the one."""
    if program.path.startswith("/"):
        return program.path
    load = next((p for p in program.phdrs if p.p_type == 1), None)  # PT_LOAD
    if load is not None:
        addr = (program.bias + load.p_vaddr) & ~0xFFF
        for line in proc.mm.maps().splitlines():
            fields = line.split(None, 5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= addr < hi and len(fields) == 6 and fields[5].startswith("/"):
                return fields[5]
    return program.path


async def _run_launched(sys: Sys) -> int:
    """The first thread of a process launched by closing its builder fd (the task was just
    scheduled: no extra checkpoint before ld.so runs)."""
    rip, _ = sys.proc.registers
    try:  # the CPU fetches at rip: unmapped memory is SIGSEGV
        sys.proc.mm.read(rip, 1)
    except OSError:
        raise _Signalled(signal.SIGSEGV) from None
    try:
        step = _explained(sys, _program_step(sys))
    except OSError as e:  # as the real ld.so: a message on stderr and exit status 127
        if e.errno == errno.EFAULT:  # its stack is not there: it faults first
            raise _Signalled(signal.SIGSEGV) from None
        try:
            await sys.write(2, f"ld.so: error while loading: {e}\n".encode())
        except OSError:
            pass
        return 127
    return await step()


SIMULATED_SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD)


def _inherit(rt: _Runtime, parent: int, child: int) -> None:
    if parent in rt.ignored:
        rt.ignored[child] = set(rt.ignored[parent])


def _sys_for(proc: Process, rt: _Runtime) -> Sys:
    s = Sys(proc, rt)
    proc._sys = s
    return s
