"""spawnfd.host.run_process / open_process against trio's own, on the same commands.

Every case runs through `trio.run_process` and through `spawnfd.host.run_process` with each
launch method, and requires the same result: output, return code, or exception (type, errno,
filename, captured output).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import spawnfd.host as host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux host backend")

Runner = Callable[..., Awaitable[Any]]


def _spawnfd(method: str) -> Runner:
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await host.run_process(*args, method=method, **kwargs)

    return run


RUNNERS: dict[str, Runner] = {"trio": trio.run_process} | {
    f"spawnfd[{m}]": _spawnfd(m) for m in host.METHODS
}


def outcome(result: Any) -> tuple[Any, ...]:
    """What a caller can observe of a result or an exception, comparable across runners."""
    if isinstance(result, subprocess.CalledProcessError):
        return ("CalledProcessError", result.returncode, result.cmd, result.stdout, result.stderr)
    if isinstance(result, OSError):
        return (type(result), result.errno, result.filename)
    if isinstance(result, TypeError):  # trio's wording changes between versions
        return (TypeError,)
    if isinstance(result, BaseException):
        return (type(result), str(result).replace("spawnfd.host.Process", "trio.Process"))
    return ("ok", result.args, result.returncode, result.stdout, result.stderr)


async def outcomes(*args: Any, skip: tuple[str, ...] = (), **kwargs: Any) -> dict[str, tuple[Any, ...]]:
    """Run the same call through every runner (but skip); return what each produced."""
    seen = {}
    for name, run in RUNNERS.items():
        if name in skip:
            continue
        try:
            with trio.fail_after(30):
                result = await run(*args, **dict(kwargs))
        except (OSError, subprocess.CalledProcessError, ValueError, TypeError, UnicodeError) as e:
            result = e
        seen[name] = outcome(result)
    return seen


def assert_same(seen: dict[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    expected = seen["trio"]
    for name, got in seen.items():
        assert got == expected, f"{name} differs from trio.run_process"
    return expected


def assert_no_zombies() -> None:
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return
    assert info is None, f"an exited child was never reaped: {info}"


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


SH = "/bin/sh"

SAME_RESULT_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("echo", (["echo", "hi"],), {"capture_stdout": True}),
    ("both streams", ([SH, "-c", "echo out; echo err >&2; exit 3"],), dict(capture_stdout=True, capture_stderr=True, check=False)),
    ("check raises with output", ([SH, "-c", "echo out; echo err >&2; exit 3"],), dict(capture_stdout=True, capture_stderr=True)),
    ("stderr=STDOUT", ([SH, "-c", "echo a; echo b >&2; echo c"],), dict(capture_stdout=True, stderr=subprocess.STDOUT)),
    ("stdin bytes", (["cat"],), dict(stdin=b"fed\x00bytes", capture_stdout=True)),
    ("stdin 1 MiB", ([SH, "-c", "wc -c"],), dict(stdin=b"x" * (1 << 20), capture_stdout=True)),
    ("default stdin is empty", ([SH, "-c", "cat; echo end"],), dict(capture_stdout=True)),
    ("stdin DEVNULL", ([SH, "-c", "cat; echo end"],), dict(stdin=subprocess.DEVNULL, capture_stdout=True)),
    ("stdout DEVNULL", ([SH, "-c", "echo gone; echo kept >&2"],), dict(stdout=subprocess.DEVNULL, capture_stderr=True)),
    ("signal", ([SH, "-c", "kill -TERM $$"],), dict(check=False)),
    ("signal with check", ([SH, "-c", "echo dying; kill -KILL $$"],), dict(capture_stdout=True)),
    ("env replaces the environment", (["env"],), dict(env={"ONLY": "this"}, capture_stdout=True)),
    ("env with bytes", (["env"],), dict(env={b"K": b"v\xff"}, capture_stdout=True)),
    ("cwd", (["pwd"],), dict(cwd="/usr/lib", capture_stdout=True)),
    ("shell", ("echo $((6 * 7)) | tr 4 x",), dict(shell=True, capture_stdout=True)),
    ("executable replaces the program, not argv[0]", (["argv0", "-c", 'echo "$0"'],), dict(executable=SH, capture_stdout=True)),
    ("new session", (["python3", "-c", "import os; print(os.getsid(0) == os.getpid())"],), dict(start_new_session=True, capture_stdout=True)),
    ("process group", (["python3", "-c", "import os; print(os.getpgid(0) == os.getpid())"],), dict(process_group=0, capture_stdout=True)),
    ("SIGPIPE and SIGXFSZ are not ignored in the child", ([SH, "-c", "grep SigIgn /proc/self/status"],), dict(capture_stdout=True)),
    ("no parent fd in the child", ([SH, "-c", "ls /proc/self/fd"],), dict(capture_stdout=True)),
    # errors: exact exception, errno and filename
    ("missing program", (["spawnfd-no-such-program"],), {}),
    ("missing absolute program", (["/nonexistent/prog"],), {}),
    ("directory as program", (["/tmp"],), {}),
    ("not executable", (["/etc/passwd"],), {}),
    ("missing cwd", (["true"],), dict(cwd="/nonexistent-dir")),
    ("cwd is a file", (["true"],), dict(cwd="/etc/passwd")),
    ("str without shell", ("echo hi",), {}),
    ("list with shell", (["echo", "hi"],), dict(shell=True)),
    ("str stdin", (["cat"],), dict(stdin="text")),
    ("capture and stdout", (["true"],), dict(capture_stdout=True, stdout=subprocess.DEVNULL)),
    ("PIPE without nursery.start", (["true"],), dict(stdout=subprocess.PIPE)),
    ("NUL in argv", (["echo", "a\0b"],), {}),
    ("= in env name", (["true"],), dict(env={"A=B": "1"})),
    ("text mode", (["true"],), dict(text=True)),
]


@pytest.mark.parametrize(
    "args,kwargs", [pytest.param(a, k, id=i) for i, a, k in SAME_RESULT_CASES]
)
async def test_same_result_as_trio(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert_same(await outcomes(*args, **kwargs))
    assert_no_zombies()


async def test_results_have_real_content() -> None:
    # Guard against "all runners agree because all are broken": check a few values directly.
    seen = await outcomes([SH, "-c", "echo out; echo err >&2; exit 3"], capture_stdout=True, capture_stderr=True)
    assert seen["trio"] == ("CalledProcessError", 3, [SH, "-c", "echo out; echo err >&2; exit 3"], b"out\n", b"err\n")
    with pytest.raises(FileNotFoundError) as info:
        await host.run_process(["spawnfd-no-such-program"])
    assert info.value.filename == "spawnfd-no-such-program"
    done = await host.run_process([SH, "-c", "kill -TERM $$"], check=False)
    assert done.returncode == -signal.SIGTERM
    ls = await host.run_process([SH, "-c", "ls /proc/self/fd"], capture_stdout=True)
    assert ls.stdout.split() == [b"0", b"1", b"2", b"3"]  # 3 is ls's own directory fd


async def test_umask() -> None:
    # glibc posix_spawn has no umask attribute: that method refuses instead of faking it.
    seen = await outcomes([SH, "-c", "umask"], umask=0o027, capture_stdout=True, skip=("spawnfd[posix_spawn]",))
    assert assert_same(seen)[3] == b"0027\n"
    with pytest.raises(NotImplementedError, match="umask"):
        await host.run_process(["true"], umask=0o027, method="posix_spawn")


async def test_path_search_uses_env_path(tmp_path: Path) -> None:
    # What if the program is found only through the PATH of the env= given, not ours?
    tool = tmp_path / "spawnfd-tool"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o755)
    seen = assert_same(await outcomes(["spawnfd-tool"], env={"PATH": f"/nonexistent:{tmp_path}"}, capture_stdout=True))
    assert seen[3] == b"tool ran\n"


async def test_exec_format_error_reaches_the_parent(tmp_path: Path) -> None:
    # What if the file is executable but execve itself refuses it (ENOEXEC)?
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01garbage, not a program\n")
    junk.chmod(0o755)
    seen = assert_same(await outcomes([str(junk)]))
    assert seen[:2] == (OSError, 8)


async def test_bad_fd_as_stdin() -> None:
    # What if stdin names a descriptor that is not open?
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    seen = assert_same(await outcomes(["true"], stdin=r))
    assert seen[:2] == (OSError, 9)


async def test_stderr_to_our_fd1_while_stdout_is_a_pipe(capfd: pytest.CaptureFixture[str]) -> None:
    # What if a source fd (our 1) is also a target the child overwrites first (its 1)?
    # stderr must still reach *our* fd 1, not the capture pipe.
    for name, run in RUNNERS.items():
        r = await run([SH, "-c", "echo to-pipe; echo to-our-stdout >&2"], capture_stdout=True, stderr=1)
        assert r.stdout == b"to-pipe\n", name
        assert capfd.readouterr().out == "to-our-stdout\n", name


async def test_close_fds_false_with_a_moved_source(capfd: pytest.CaptureFixture[str]) -> None:
    # What if a source must be moved out of the way (our 1 -> its 2 after its 1 became a
    # pipe) while close_fds=False: are our other inheritable fds still inherited?
    fd = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        for name, run in RUNNERS.items():
            check = f"ls /proc/self/fd | grep -qx {fd} && echo kept >&2 || echo lost >&2"
            await run([SH, "-c", check], capture_stdout=True, stderr=1, close_fds=False)
            assert capfd.readouterr().out == "kept\n", name
    finally:
        os.close(fd)


async def test_pass_fds_and_close_fds() -> None:
    # What if the parent has inheritable fds: are they passed only when asked for?
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        listing = f"ls /proc/self/fd | grep -qx {w} && echo has-{w} || echo no-{w}"
        assert_same(await outcomes([SH, "-c", listing], capture_stdout=True))
        assert_same(await outcomes([SH, "-c", listing], capture_stdout=True, close_fds=False))
        seen = assert_same(await outcomes([SH, "-c", listing], capture_stdout=True, pass_fds=[w]))
        assert seen[3] == f"has-{w}\n".encode()
        write_to_w = ["python3", "-c", f"import os; os.write({w}, b'through\\n')"]
        seen = assert_same(await outcomes(write_to_w, pass_fds=[w]))
        assert os.read(r, 100) == b"through\n" * len(RUNNERS)
    finally:
        os.close(r)
        os.close(w)


async def test_nursery_start_gives_a_process_with_pipes() -> None:
    for name, run in RUNNERS.items():
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                lambda task_status, run=run: run(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, task_status=task_status)
            )
            assert proc.pid > 0 and proc.returncode is None, name
            await proc.stdio.send_all(b"ping")
            assert await proc.stdout.receive_some(10) == b"ping", name
            await proc.stdin.aclose()
            assert await proc.stdout.receive_some(10) == b"", name
        assert proc.returncode == 0, name


async def test_broken_pipe_kills_a_writer_with_sigpipe() -> None:
    # What if we close our read end while the child still writes? SIGPIPE must be default
    # in the child (Python ignores it in the parent): the child dies of it, as with trio.
    codes = {}
    for name, run in RUNNERS.items():
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(
                lambda task_status, run=run: run(["yes"], stdout=subprocess.PIPE, check=False, task_status=task_status)
            )
            await proc.stdout.receive_some(10)
            await proc.stdout.aclose()
        codes[name] = proc.returncode
    assert set(codes.values()) == {-signal.SIGPIPE}, codes


async def test_child_that_never_reads_its_big_stdin() -> None:
    # What if we feed more than a pipe holds to a child that exits without reading?
    assert_same(await outcomes([SH, "-c", "exit 4"], stdin=b"z" * (4 << 20), check=False))


async def test_cancel_while_blocked_terminates_and_reaps() -> None:
    # What if run_process is cancelled while the child sleeps? SIGTERM, wait, then Cancelled.
    for name, run in RUNNERS.items():
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(lambda task_status, run=run: run(["sleep", "30"], task_status=task_status))
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert proc.returncode == -signal.SIGTERM, name
        assert not os.path.exists(f"/proc/{proc.pid}"), name
    assert_no_zombies()


async def test_cancel_with_custom_deliver_cancel() -> None:
    async def sigkill(p: Any) -> None:
        p.kill()

    for name, run in RUNNERS.items():
        with trio.move_on_after(0.1) as scope:
            async with trio.open_nursery() as nursery:
                proc = await nursery.start(
                    lambda task_status, run=run: run(["sleep", "30"], deliver_cancel=sigkill, task_status=task_status)
                )
        assert scope.cancelled_caught, name
        assert proc.returncode == -signal.SIGKILL, name


async def test_default_deliver_cancel_escalates_to_sigkill() -> None:
    # What if the child ignores SIGTERM? After 5 s: a RuntimeWarning and SIGKILL, as in trio.
    script = "trap '' TERM; echo ready; exec >/dev/null; while :; do sleep 0.05; done"
    with pytest.warns(RuntimeWarning, match="ignored SIGTERM"):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                proc = await nursery.start(
                    lambda task_status: host.run_process([SH, "-c", script], stdout=subprocess.PIPE, task_status=task_status)
                )
                async with proc.stdout:
                    assert await proc.stdout.receive_some() == b"ready\n"  # the trap is set
                nursery.cancel_scope.cancel()
    assert proc.returncode == -signal.SIGKILL


async def test_many_concurrent_children_same_codes_as_trio() -> None:
    # What if many children run and exit at once? Each result must go to its own caller.
    results: dict[str, dict[int, int]] = {}
    for name, run in RUNNERS.items():
        codes: dict[int, int] = {}

        async def one(i: int, run: Runner = run, codes: dict[int, int] = codes) -> None:
            r = await run([SH, "-c", f"exit {i % 256}"], check=False)
            codes[i] = r.returncode

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(one, i)
        results[name] = codes
    assert all(r == {i: i % 256 for i in range(100)} for r in results.values())
    assert_no_zombies()


async def test_thousand_concurrent_children_leave_no_fd_or_zombie() -> None:
    before = open_fds()
    done = 0

    async def one() -> None:
        nonlocal done
        await host.run_process(["/bin/true"])
        done += 1

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(one)
    assert done == 1000
    assert open_fds() == before
    assert_no_zombies()


async def test_open_process_streams_and_signals() -> None:
    proc = await host.open_process(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.returncode is None and proc.poll() is None
        await proc.stdin.send_all(b"abc")
        assert await proc.stdout.receive_some(3) == b"abc"
        # (SIGTERM: a test run started as a shell's background job ignores SIGINT, and so
        # would cat)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == -signal.SIGTERM
        proc.kill()  # already reaped: nothing happens, as with subprocess
        assert proc.pidfd is None
        assert "exited with signal 15" in repr(proc)
    finally:
        await proc.aclose()


async def test_open_process_unsupported_options() -> None:
    with pytest.raises(NotImplementedError, match="preexec_fn"):
        await host.open_process(["true"], preexec_fn=lambda: None)
    with pytest.raises(TypeError, match="unexpected keyword"):
        await host.open_process(["true"], no_such_option=1)
    with pytest.raises(ValueError, match="unknown method"):
        await host.open_process(["true"], method="telepathy")
    assert_no_zombies()


async def test_failed_spawns_leak_no_fd() -> None:
    # What if spawning fails after pipes were made? Every pipe end must be closed again.
    before = open_fds()
    for method in host.METHODS:
        for kwargs in ({}, {"cwd": "/nonexistent"}):
            with pytest.raises(FileNotFoundError):
                await host.open_process(
                    ["spawnfd-no-such-program"] if not kwargs else ["true"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    method=method,
                    **kwargs,
                )
    assert open_fds() == before
    assert_no_zombies()
