"""A real child process held by a pidfd and awaited by trio, without threads or polling."""

from __future__ import annotations

import os
import signal
from typing import Any, NoReturn, TypeVar, final

import trio

from .._subprocess import close_and_wait, describe_state

T = TypeVar("T")


class NoPublicConstructor(type):
    """Metaclass for handle classes: ``Cls(...)`` raises; the library calls ``Cls._create``."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc,no-any-return]


def status_from_siginfo(info: os.waitid_result) -> int:
    """The ``os.waitpid``-style wait status for a ``waitid`` result of an exited child."""
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    if info.si_code == os.CLD_DUMPED:
        return info.si_status | 0x80
    return info.si_status  # CLD_KILLED


# Process objects dropped without being waited for, while their child ran: inside trio.run a
# system task waits on the pidfd and reaps the child the moment it exits. Those dropped outside
# a run (or still running when it ended) land here and are reaped at the next spawn (what
# subprocess does with its _active list), so no zombie or pidfd outlives them for long.
_orphans: list[int] = []


def _reap_when_exited(token: trio.lowlevel.TrioToken, pidfd: int) -> None:
    """Hand the pidfd of a dropped, running child to a system task of the run ``token``
    names; if that run is over, to the fallback list. Safe from any thread and from
    ``__del__``."""

    def start() -> None:
        try:
            trio.lowlevel.spawn_system_task(_reaper, pidfd, name=f"reap pidfd {pidfd}")
        except RuntimeError:  # the run is shutting down
            _orphans.append(pidfd)

    try:
        token.run_sync_soon(start)
    except trio.RunFinishedError:
        _orphans.append(pidfd)


async def _reaper(pidfd: int) -> None:
    try:
        await trio.lowlevel.wait_readable(pidfd)
    except BaseException:  # the run is ending (Cancelled): the next spawn reaps it instead
        _orphans.append(pidfd)
        return
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        pass  # reaped elsewhere (waitpid(-1))
    trio.lowlevel.notify_closing(pidfd)
    os.close(pidfd)


def reap_orphans() -> None:
    """Reap the children of collected, never-waited-for Process objects that have exited."""
    for pidfd in list(_orphans):
        try:
            if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is None:
                continue
        except ChildProcessError:
            pass
        _orphans.remove(pidfd)
        os.close(pidfd)


@final
class Process(metaclass=NoPublicConstructor):
    r"""A child process on the real kernel, held by a pidfd. Like `trio.Process`.

    There is no public constructor: get one from `spawnfd.host.open_process`, from
    ``await nursery.start(spawnfd.host.run_process, ...)``, or as ``builder.process`` after a
    `spawnfd.host.create_process` block launched.

    The pidfd names exactly this child, so signals never reach a recycled pid, and waiting is
    ``trio.lowlevel.wait_readable(pidfd)`` followed by ``waitid(P_PIDFD)``: no worker thread,
    no SIGCHLD handler, no polling. The child is reaped as soon as its exit is seen.

    Attributes:
        args: The command as given.
        pid: The child's process id.
        stdin: A `trio.abc.SendStream` to the child's stdin if it was a pipe, else None.
        stdout: A `trio.abc.ReceiveStream` from the child's stdout if it was a pipe, else None.
        stderr: A `trio.abc.ReceiveStream` from the child's stderr if it was a pipe, else None.
        stdio: stdin and stdout stapled into one `trio.StapledStream`, if both are pipes.
    """

    universal_newlines = False
    encoding = None
    errors = None

    def __init__(
        self,
        args: Any,
        pid: int,
        pidfd: int,
        stdin: trio.abc.SendStream | None = None,
        stdout: trio.abc.ReceiveStream | None = None,
        stderr: trio.abc.ReceiveStream | None = None,
    ) -> None:
        self.args: Any = args
        self.pid = pid
        self._pidfd: int | None = pidfd
        self._status: int | None = None
        self._wait_lock = trio.Lock()
        try:  # the run that reaps the child if this object is dropped while it runs
            self._token: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
        except RuntimeError:
            self._token = None
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.stdio: trio.StapledStream[Any, Any] | None = None
        if stdin is not None and stdout is not None:
            self.stdio = trio.StapledStream(stdin, stdout)

    def __repr__(self) -> str:
        return f"<spawnfd.host.Process {self.args!r}: {describe_state(self)}>"

    def __del__(self) -> None:
        pidfd = getattr(self, "_pidfd", None)
        try:
            if pidfd is not None and self._reap(block=False) is None:
                self._pidfd = None
                token = getattr(self, "_token", None)
                if token is None:
                    _orphans.append(pidfd)
                else:
                    _reap_when_exited(token, pidfd)
        except Exception:  # interpreter shutdown: the kernel reaps for us when we exit
            pass

    @property
    def pidfd(self) -> int | None:
        """The pidfd holding the child, or None once the child has been reaped."""
        return self._pidfd

    @property
    def returncode(self) -> int | None:
        """The exit status, ``-signum`` if a signal killed the child, or None while it runs.

        As in trio, reading it checks the child (without blocking) and reaps it if it exited.
        """
        status = self._reap(block=False)
        return None if status is None else os.waitstatus_to_exitcode(status)

    @property
    def wait_status(self) -> int | None:
        """The raw wait status (as `os.waitpid` and `os.system` return it), or None."""
        return self._reap(block=False)

    def poll(self) -> int | None:
        """The same as `returncode`, for code ported from `subprocess`."""
        return self.returncode

    async def wait(self) -> int:
        """Block until the child exits, reap it, and return `returncode`.

        Returns:
            The exit status, or ``-signum`` if a signal killed the child.
        """
        await self._wait_status()
        rc = self.returncode
        assert rc is not None
        return rc

    async def _wait_status(self) -> int:
        if self._reap(block=False) is not None:
            await trio.lowlevel.checkpoint()
            assert self._status is not None
            return self._status
        # One task at a time sleeps on the pidfd (trio allows one waiter per fd); the lock is
        # taken without a schedule point when free, so wait_readable is the only checkpoint.
        try:
            self._wait_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._wait_lock.acquire()
        try:
            if self._reap(block=False) is None:
                assert self._pidfd is not None
                try:
                    await trio.lowlevel.wait_readable(self._pidfd)
                except trio.ClosedResourceError:
                    pass  # poll() in another task reaped it and closed the pidfd
                self._reap(block=True)
        finally:
            self._wait_lock.release()
        assert self._status is not None
        return self._status

    def send_signal(self, sig: int) -> None:
        """Send sig to the child through its pidfd; nothing if it has already been reaped.

        Args:
            sig: A signal number, e.g. ``signal.SIGINT``.
        """
        if self.poll() is not None:
            return
        assert self._pidfd is not None
        try:
            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        """Send ``SIGTERM``."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL``."""
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Close the pipes to the child and wait for it to exit.

        If cancelled, kill the child and wait for it to finish exiting before propagating the
        cancellation, so no zombie is left behind.
        """
        await close_and_wait(self)

    def _reap(self, *, block: bool) -> int | None:
        if self._status is not None or self._pidfd is None:
            return self._status
        try:
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | (0 if block else os.WNOHANG))
        except ChildProcessError:
            status = 0  # reaped behind our back (waitpid(-1) elsewhere): as subprocess does
        else:
            if info is None:
                return None
            status = status_from_siginfo(info)
        self._status = status
        self._close_pidfd()
        return status

    def _close_pidfd(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is None:
            return
        try:
            trio.lowlevel.notify_closing(fd)
        except RuntimeError:
            pass  # not inside trio.run: nobody can be waiting on it
        os.close(fd)
