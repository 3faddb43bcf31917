"""system(), run_process() and open_process() on the simulator, with trio's semantics, for
every way of starting a child; and the top-level dispatch between simulator and host."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import spawnfd
from spawnfd.sim import subprocess as simsub

METHODS = ["spawnfd", "fork-exec", "vfork-exec"]
ALL_METHODS = [*METHODS, "cow-pt"]


@asynccontextmanager
async def machine(cpu: bool = True) -> AsyncIterator[spawnfd.Kernel]:
    """A running kernel whose init has /dev/null as 0, 1 and 2. Afterwards: no child of
    init left (not even a zombie), no descriptor leaked, and the kernel's books balance."""
    async with spawnfd.open_kernel("256M", cpu=cpu) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        yield k
        with pytest.raises(ChildProcessError):
            k.init.wait_pid(-1, nohang=True)
        r, w = k.init.pipe()
        assert (r, w) == (3, 4), "a descriptor leaked in init"
        k.init.close(r)
        k.init.close(w)
        k.check()


async def system_output(k: spawnfd.Kernel, cmd: str, **kw: Any) -> tuple[bytes, int]:
    """Run system() with init's stdout on a pipe; returns what it wrote and the status."""
    sh = k.init
    r, w = sh.pipe(os.O_CLOEXEC)
    sh.dup2(w, 1)
    sh.close(w)
    try:
        status = await spawnfd.system(cmd, kernel=k, **kw)
    finally:
        sh.dup2(2, 1)  # /dev/null again: the pipe's last writer is gone
    out = b""
    while data := await sh.sys.read(r, 4096):
        out += data
    sh.close(r)
    return out, status


# ---- system() -------------------------------------------------------------------------------


@pytest.mark.parametrize("cpu", [True, False], ids=["real-dash", "simulated-sh"])
@pytest.mark.parametrize("method", ALL_METHODS)
async def test_system_pipeline_and_status(method: str, cpu: bool) -> None:
    async with machine(cpu) as k:
        before = k.statistics().ptes_copied
        out, status = await system_output(k, "echo hi | wc -c", method=method)
        assert out == b"3\n" and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        copied = k.statistics().ptes_copied - before
        if not cpu:  # the simulated shell starts its children with the method too
            assert (copied > 0) == (method in ("fork-exec", "cow-pt"))
        else:  # the real dash forks the pipeline's two children itself
            assert copied > 0
        status = await spawnfd.system("exit 3", kernel=k, method=method)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
        assert await spawnfd.system("nosuchprogram 2>/dev/null", kernel=k,
                                    method=method) == 127 << 8


async def test_system_env_and_cwd() -> None:
    async with machine() as k:
        fd = k.init.open("/tmp/in.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        k.init.write(fd, b"relative\n")
        k.init.close(fd)
        assert await spawnfd.system("cat in.txt > out.txt", kernel=k, cwd="/tmp") == 0
        fd = k.init.open("/tmp/out.txt", os.O_RDONLY)
        assert k.init.read(fd, 100) == b"relative\n"
        k.init.close(fd)
        out, status = await system_output(k, "echo $GREETING", env={"GREETING": "hello",
                                                                   "PATH": "/bin"})
        assert (out, status) == (b"hello\n", 0)


# ---- run_process() --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
async def test_run_process_captures_stdout(method: str) -> None:
    async with machine() as k:
        r = await spawnfd.run_process(["echo", "hi"], capture_stdout=True, kernel=k,
                                      method=method)
        assert isinstance(r, subprocess.CompletedProcess)
        assert (r.args, r.returncode, r.stdout, r.stderr) == (["echo", "hi"], 0, b"hi\n", None)


@pytest.mark.parametrize("method", METHODS)
async def test_run_process_feeds_stdin_bigger_than_a_pipe(method: str) -> None:
    data = bytes(range(256)) * 1000  # 256 000 bytes: feeding and reading must overlap
    async with machine() as k:
        r = await spawnfd.run_process(["cat"], stdin=data, capture_stdout=True, kernel=k,
                                      method=method)
        assert r.stdout == data
        r = await spawnfd.run_process(["wc", "-c"], capture_stdout=True, kernel=k,
                                      method=method)  # default stdin: empty, at EOF
        assert r.stdout == b"0\n"


@pytest.mark.parametrize("method", METHODS)
async def test_run_process_check_raises_with_the_captured_output(method: str) -> None:
    async with machine() as k:
        r = await spawnfd.run_process(["cat", "/nonexistent"], capture_stderr=True,
                                      check=False, kernel=k, method=method)
        assert r.returncode == 1
        assert r.stderr == b"cat: /nonexistent: No such file or directory\n"
        with pytest.raises(subprocess.CalledProcessError) as info:
            await spawnfd.run_process("echo out; cat /nope", shell=True, capture_stdout=True,
                                      capture_stderr=True, kernel=k, method=method)
        e = info.value
        assert (e.returncode, e.cmd) == (1, "echo out; cat /nope")
        assert e.stdout == b"out\n"
        assert e.stderr == b"cat: /nope: No such file or directory\n"


async def test_stderr_to_stdout_and_devnull() -> None:
    async with machine() as k:
        r = await spawnfd.run_process("echo out; cat /nope", shell=True, capture_stdout=True,
                                      stderr=subprocess.STDOUT, check=False, kernel=k)
        assert r.stdout == b"out\ncat: /nope: No such file or directory\n"
        r = await spawnfd.run_process(["cat"], stdin=subprocess.DEVNULL, capture_stdout=True,
                                      kernel=k)
        assert r.stdout == b""
        r = await spawnfd.run_process(["echo", "x"], stdout=subprocess.DEVNULL,
                                      capture_stderr=True, kernel=k)
        assert (r.stdout, r.stderr) == (None, b"")


@pytest.mark.parametrize("method", METHODS)
async def test_missing_program_and_bad_cwd(method: str) -> None:
    async with machine() as k:
        with pytest.raises(FileNotFoundError) as info:
            await spawnfd.run_process(["no-such-program"], kernel=k, method=method)
        assert info.value.filename == "no-such-program"
        with pytest.raises(FileNotFoundError) as info:
            await spawnfd.run_process(["/bin/no-such-program"], kernel=k, method=method)
        assert info.value.filename == "/bin/no-such-program"
        with pytest.raises(FileNotFoundError) as info:
            await spawnfd.run_process(["true"], cwd="/no/such/dir", kernel=k, method=method)
        assert info.value.filename == "/no/such/dir"
        with pytest.raises(FileNotFoundError):  # no PATH entry has it
            await spawnfd.run_process(["echo"], env={"PATH": "/nonexistent"}, kernel=k,
                                      method=method)


async def test_env_and_cwd_are_honoured() -> None:
    async with machine() as k:
        r = await spawnfd.run_process(["env"], capture_stdout=True, kernel=k)
        assert r.stdout == b"PATH=/usr/bin:/bin\n"  # the documented default
        r = await spawnfd.run_process(["env"], env={"A": "1", b"B": b"2"}, capture_stdout=True,
                                      kernel=k)
        assert r.stdout == b"A=1\nB=2\n"
        fd = k.init.open("/tmp/rel.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        k.init.write(fd, b"in tmp\n")
        k.init.close(fd)
        for method in METHODS:
            r = await spawnfd.run_process(["cat", "rel.txt"], cwd="/tmp", capture_stdout=True,
                                          kernel=k, method=method)
            assert r.stdout == b"in tmp\n"


@pytest.mark.parametrize("method", METHODS)
async def test_cancel_terminates_the_child(method: str,
                                           autojump_clock: trio.testing.MockClock) -> None:
    async with machine() as k:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(
                spawnfd.run_process, ["sleep", "1000"], kernel=k, method=method))
            assert isinstance(proc, spawnfd.SimProcess) and proc.pid > 1
            assert proc.returncode is None
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
        assert proc.returncode == -signal.SIGTERM
        assert proc.wait_status == signal.SIGTERM
        assert trio.current_time() < 2  # not the whole sleep, not deliver_cancel's 5 s


async def test_cancel_with_output_capture(autojump_clock: trio.testing.MockClock) -> None:
    async with machine() as k:
        # sleep never reads: the feeding task stays blocked on a full pipe until cancelled
        with trio.move_on_after(3) as scope:
            await spawnfd.run_process(["sleep", "1000"], stdin=b"x" * 100_000,
                                      capture_stdout=True, capture_stderr=True, kernel=k)
        assert scope.cancelled_caught and trio.current_time() == pytest.approx(3)


async def test_custom_deliver_cancel(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[simsub.SimProcess] = []

    async def deliver(p: simsub.SimProcess) -> None:
        seen.append(p)
        await trio.sleep(2)
        p.send_signal(signal.SIGKILL)

    async with machine() as k:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(
                spawnfd.run_process, ["sleep", "1000"], kernel=k, deliver_cancel=deliver))
            nursery.cancel_scope.cancel()
        assert seen == [proc] and proc.returncode == -signal.SIGKILL
        assert trio.current_time() == pytest.approx(2)


async def test_default_deliver_cancel_escalates_to_sigkill(
        autojump_clock: trio.testing.MockClock) -> None:
    async def stubborn(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        sys.signal(signal.SIGTERM, signal.SIG_IGN)
        await trio.sleep(1000)
        return 0

    async with machine() as k:
        k.install_program("/tmp/stubborn", stubborn)
        with pytest.warns(RuntimeWarning, match="ignored SIGTERM for 5 seconds"):
            async with trio.open_nursery() as nursery:
                proc = await nursery.start(functools.partial(
                    spawnfd.run_process, ["/tmp/stubborn"], kernel=k))
                nursery.cancel_scope.cancel()
        assert proc.returncode == -signal.SIGKILL
        assert trio.current_time() == pytest.approx(5)


async def test_system_cancelled_stops_the_shell_and_its_pipeline(
        autojump_clock: trio.testing.MockClock) -> None:
    async with machine() as k:
        with trio.move_on_after(1):
            await spawnfd.system("sleep 1000 | cat", kernel=k)
        # sh died of SIGTERM and was reaped; its children were orphaned to init: reap them
        # the way a caller would (here: kill and wait), so machine() finds nothing left.
        for pid in list(k._runtime.scopes):
            k.init.sys.kill(pid, signal.SIGKILL)
        while True:
            try:
                await k.init.sys.wait()
            except ChildProcessError:
                break


# ---- open_process() -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_open_process_streams(method: str) -> None:
    async with machine() as k:
        async with await spawnfd.open_process(["cat"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, kernel=k,
                                              method=method) as proc:
            assert isinstance(proc.stdin, trio.abc.SendStream)
            assert isinstance(proc.stdout, trio.abc.ReceiveStream)
            assert proc.stdio is not None and proc.stderr is None
            for chunk in (b"one\n", b"two\n"):
                await proc.stdin.send_all(chunk)
                assert await proc.stdout.receive_some() == chunk
            await proc.stdio.send_eof()
            assert await proc.stdout.receive_some() == b""
            assert await proc.wait() == 0
            assert proc.poll() == 0 and "exited with status 0" in repr(proc)
        with pytest.raises(trio.ClosedResourceError):
            await proc.stdout.receive_some()


async def test_open_process_misc() -> None:
    async with machine() as k:
        # writing to a child that is gone: BrokenResourceError, the caller is not killed
        proc = await spawnfd.open_process(["true"], stdin=subprocess.PIPE, kernel=k)
        assert await proc.wait() == 0
        assert proc.stdin is not None
        with pytest.raises(trio.BrokenResourceError):
            await proc.stdin.send_all(b"x")
        await proc.aclose()

        # two tasks wait, one reaps; signals after the exit are no-ops
        proc = await spawnfd.open_process(["cat"], stdin=subprocess.PIPE, kernel=k)
        results = []

        async def waiter() -> None:
            results.append(await proc.wait())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            proc.terminate()
        assert results == [-signal.SIGTERM, -signal.SIGTERM]
        proc.kill()
        assert proc.returncode == -signal.SIGTERM
        with pytest.raises(OSError):
            proc.send_signal(signal.SIGUSR1)  # not simulated
        await proc.aclose()

        # a blocked receive sees ClosedResourceError when another task closes the stream
        proc = await spawnfd.open_process(["cat"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, kernel=k)
        assert proc.stdout is not None and proc.stdin is not None
        stdout = proc.stdout

        async def reader() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stdout.receive_some()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await stdout.receive_some()
            await stdout.aclose()
        await proc.aclose()  # closes stdin: cat sees EOF and exits
        assert proc.returncode == 0


async def test_pass_fds_and_parent_fds() -> None:
    async def to_fd(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        await sys.write(int(argv[1]), f"via fd {argv[1]}\n".encode())
        return 0

    async with machine() as k:
        k.install_program("/tmp/to", to_fd)
        r, w = k.init.pipe(os.O_CLOEXEC)  # close-on-exec: only pass_fds carries it over
        for method in METHODS:
            await spawnfd.run_process(["/tmp/to", str(w)], pass_fds=[w], kernel=k,
                                      method=method)
            await spawnfd.run_process(["/tmp/to", "1"], stdout=w, kernel=k, method=method)
        k.init.close(w)
        out = b""
        while data := await k.init.sys.read(r, 4096):
            out += data
        k.init.close(r)
        assert out == f"via fd {w}\nvia fd 1\n".encode() * 3


async def test_a_simulated_program_as_the_parent() -> None:
    async def runner(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        r = await spawnfd.run_process(["echo", "nested", str(sys.pid)], capture_stdout=True,
                                      kernel=sys.proc.kernel, parent=sys.proc,
                                      method=argv[1])
        await sys.write(1, r.stdout)
        return r.returncode

    async with machine() as k:
        k.install_program("/tmp/runner", runner)
        for method in METHODS:
            proc = await spawnfd.open_process(["/tmp/runner", method], stdout=subprocess.PIPE,
                                              kernel=k, method=method)
            assert proc.stdout is not None
            out = b""
            async for chunk in proc.stdout:
                out += chunk
            assert out == f"nested {proc.pid}\n".encode()
            await proc.aclose()
            assert proc.returncode == 0


# ---- arguments ------------------------------------------------------------------------------


async def test_bad_arguments_raise_what_trio_raises() -> None:
    async with machine() as k:
        run = functools.partial(spawnfd.run_process, kernel=k)
        with pytest.raises(TypeError, match="sequence"):
            await run("echo hi")
        with pytest.raises(TypeError, match="string"):
            await run(["echo", "hi"], shell=True)
        with pytest.raises(TypeError, match="text"):
            await run(["echo"], text=True)
        with pytest.raises(TypeError, match="unexpected keyword"):
            await run(["echo"], colour="blue")
        with pytest.raises(NotImplementedError, match="preexec_fn"):
            await run(["echo"], preexec_fn=lambda: None)
        with pytest.raises(NotImplementedError, match="start_new_session"):
            await run(["echo"], start_new_session=True)
        with pytest.raises(ValueError, match="nursery.start"):
            await run(["echo"], stdout=subprocess.PIPE)
        with pytest.raises(ValueError, match="both stdout and capture_stdout"):
            await run(["echo"], stdout=subprocess.DEVNULL, capture_stdout=True)
        with pytest.raises(UnicodeError):
            await run(["cat"], stdin="text")
        with pytest.raises(ValueError, match="method"):
            await run(["echo"], method="teleport")
        with pytest.raises(ValueError, match="null"):
            await run(["echo", "a\0b"])
        with pytest.raises(IndexError):
            await run([])
        with pytest.raises(OSError):  # not an open descriptor of init
            await run(["echo"], stdout=57)
        async with spawnfd.open_kernel("64M") as other:
            with pytest.raises(ValueError, match="another kernel"):
                await run(["echo"], parent=other.init)
    with pytest.raises(RuntimeError, match="open_kernel"):
        await spawnfd.run_process(["echo"], kernel=spawnfd.Kernel("64M"))


# ---- dispatch -------------------------------------------------------------------------------


async def test_without_a_kernel_the_host_runs_it() -> None:
    r = await spawnfd.run_process(["true"])
    assert r.returncode == 0
    assert await spawnfd.system("exit 3") == 3 << 8
    proc = await spawnfd.open_process(["true"])
    assert isinstance(proc, spawnfd.host.Process)
    assert await proc.wait() == 0
    with pytest.raises(TypeError, match="only for the simulator"):
        await spawnfd.system("true", cwd="/tmp")
    with pytest.raises(TypeError, match="only for the simulator"):
        await spawnfd.run_process(["true"], parent=object())
    with pytest.raises(ValueError, match="method"):
        await spawnfd.run_process(["true"], method="vfork-exec")  # a simulator-only method
