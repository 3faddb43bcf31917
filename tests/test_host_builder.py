"""spawnfd.host.create_process: the fd-model builder on the real kernel.

Steps are checked when they are called (exact OSError before anything runs), replayed in the
child on leaving the block, and the child sees exactly what was installed. Each test runs with
every launch method unless it is about one.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import spawnfd.host as host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux host backend")

LD_SO = "/lib64/ld-linux-x86-64.so.2"
SH = "/bin/sh"


@pytest.fixture(params=host.METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Every test must leave our fd table as it found it and no child unreaped."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) == before, "the builder leaked a descriptor"
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return
    assert info is None, f"zombie left behind: {info}"


def assert_no_children() -> None:
    with pytest.raises(ChildProcessError):
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)


async def run_capture(method: str, argv: list[str], **steps: object) -> tuple[int, bytes]:
    """Launch argv with /dev/null as fd 0 and a pipe as fds 1 and 2, after the extra steps
    (name=argument, or name=(arguments,)); return (wait status, output)."""
    r, w = os.pipe()
    stream = trio.lowlevel.FdStream(r)
    try:
        async with host.create_process(method=method) as child:
            await child.setup_stack(argv, env=os.environ)
            await child.open("/dev/null", os.O_RDONLY, fd=0)
            await child.install_fd(1, w)
            await child.install_fd(2, w)
            for name, arg in steps.items():
                await getattr(child, name)(*(arg if isinstance(arg, tuple) else (arg,)))
        os.close(w)
        w = -1
        out = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some():
                out += chunk
            status = await child.wait()
        return status, out
    finally:
        await stream.aclose()
        if w >= 0:
            os.close(w)


async def test_echo_into_a_pipe(method: str) -> None:
    status, out = await run_capture(method, ["/bin/echo", "hello", "builder"])
    assert os.waitstatus_to_exitcode(status) == 0
    assert out == b"hello builder\n"


async def test_wait_returns_a_wait_status_like_os_waitpid(method: str) -> None:
    # Compare with os.system, which returns the same kind of status for the same shell code.
    for code in ("exit 0", "exit 3", "kill -TERM $$", "kill -KILL $$"):
        status, _ = await run_capture(method, [SH, "-c", code])
        assert status == os.system(code), code


async def test_the_child_fd_table_starts_empty(method: str) -> None:
    # What if the parent holds inheritable descriptors? Only installed ones reach the child.
    leaky = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leaky, True)
    try:
        status, out = await run_capture(method, [SH, "-c", "ls /proc/self/fd"])
    finally:
        os.close(leaky)
    assert status == 0
    assert out.split() == [b"0", b"1", b"2", b"3"]  # 3: ls's own directory fd


async def test_only_fd_1_means_no_stdin_or_stderr(method: str) -> None:
    r, w = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            await child.setup_stack(["/bin/ls", "/proc/self/fd"], env=os.environ)
            await child.install_fd(1, w)
        os.close(w)
        w = -1
        assert await child.wait() == 0
        out = os.read(r, 4096)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert out.split() == [b"0", b"1"]  # 0: ls's own directory fd, the lowest free one


async def test_open_into_the_child_and_install_a_high_fd(method: str, tmp_path: Path) -> None:
    src = tmp_path / "input.txt"
    src.write_bytes(b"from a file opened into the child\n")
    r, w = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            await child.setup_stack(["python3", "-c", "import os; os.write(9, os.read(7, 100))"], env=os.environ)
            assert await child.open(src, os.O_RDONLY, fd=7) == 7
            await child.install_fd(9, w)
        os.close(w)
        w = -1
        assert await child.wait() == 0
        assert os.read(r, 4096) == src.read_bytes()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


async def test_open_picks_the_lowest_free_child_fd() -> None:
    async with host.create_process() as child:
        await child.setup_stack(["true"])
        await child.install_fd(0, 0)
        assert await child.open("/dev/null") == 1
        assert await child.open("/dev/null", fd=5) == 5
        assert await child.open("/dev/null") == 2
    assert await child.wait() == 0


async def test_swapped_descriptors(method: str) -> None:
    # What if the child's fd a must be our b and its fd b our a? No dup2 may clobber a
    # source still to be read.
    ra, wa = os.pipe()
    rb, wb = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            prog = f"import os; os.write({wa}, b'A'); os.write({wb}, b'B')"
            await child.setup_stack(["python3", "-c", prog], env=os.environ)
            await child.install_fd(wa, wb)
            await child.install_fd(wb, wa)
        assert await child.wait() == 0
        assert os.read(ra, 10) == b"B"
        assert os.read(rb, 10) == b"A"
    finally:
        for fd in (ra, wa, rb, wb):
            os.close(fd)


async def test_install_fd_keeps_its_own_reference(method: str) -> None:
    # What if the caller closes its fd right after install_fd, before the launch?
    r, w = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            await child.setup_stack(["/bin/echo", "still here"])
            await child.install_fd(1, w)
            os.close(w)
            w = -1
            other = os.open("/dev/null", os.O_WRONLY)  # likely reuses the number
            os.close(other)
        assert await child.wait() == 0
        assert os.read(r, 100) == b"still here\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


async def test_chdir_and_relative_paths(method: str, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data").write_bytes(b"relative\n")
    r, w = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            await child.chdir(tmp_path)
            await child.chdir("sub")  # relative to the child's cwd so far
            await child.open("data", fd=0)  # relative too
            await child.install_fd(1, w)
            await child.setup_stack([SH, "-c", "pwd; cat"], env=os.environ)
        assert await child.wait() == 0
        assert os.read(r, 4096) == f"{tmp_path}/sub\nrelative\n".encode()
    finally:
        os.close(r)
        os.close(w)


async def test_umask_session_and_signals() -> None:
    # Python ignores SIGPIPE; the child must not inherit that, nor our ignored SIGUSR1 once
    # setsigdef() asks for it, and it must start with exactly the mask asked for.
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        prog = (
            "import os; print(oct(os.umask(0)));"
            "print(*[l for l in open('/proc/self/status') if l.startswith(('SigBlk', 'SigIgn'))])"
        )
        status, out = await run_capture(
            "spawnfd",
            ["python3", "-c", prog],
            umask=0o077,
            setsid=(),
            setsigmask=([signal.SIGUSR2],),
            setsigdef=([signal.SIGUSR1],),
        )
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert status == 0
    lines = out.decode().split()
    assert lines[0] == "0o77"
    blocked = int(lines[lines.index("SigBlk:") + 1], 16)
    ignored = int(lines[lines.index("SigIgn:") + 1], 16)
    assert blocked == 1 << (signal.SIGUSR2 - 1)
    assert not ignored & (1 << (signal.SIGUSR1 - 1))  # (python3 itself ignores PIPE and XFSZ)


async def test_setsid_and_setpgroup_take_effect(method: str) -> None:
    prog = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"
    status, out = await run_capture(method, ["python3", "-c", prog], setsid=())
    assert out == b"True True\n"
    status, out = await run_capture(method, ["python3", "-c", prog], setpgroup=0)
    assert out == b"False True\n"


def _inherited_ignores() -> int:
    """What this process ignores beyond Python's own SIGPIPE and SIGXFSZ (a test run started
    as a background job of a shell ignores SIGINT and SIGQUIT too); a child inherits that."""
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return mask & ~((1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1)))


async def test_sigpipe_is_default_in_the_child(method: str) -> None:
    # What if the child inherits Python's ignored SIGPIPE? `yes | head` would never end.
    _, out = await run_capture(method, [SH, "-c", "grep SigIgn /proc/self/status"])
    assert int(out.split()[1], 16) == _inherited_ignores()
    assert not int(out.split()[1], 16) & (1 << (signal.SIGPIPE - 1))


async def test_ignored_signal_stays_ignored_unless_reset(method: str) -> None:
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        _, out = await run_capture(method, [SH, "-c", "grep SigIgn /proc/self/status"])
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert int(out.split()[1], 16) == _inherited_ignores() | 1 << (signal.SIGUSR1 - 1)


async def test_run_through_the_dynamic_loader(method: str) -> None:
    # "mmap ld.so into the child" on a real kernel: the child runs ld.so with the program as
    # its argument; argv[0] is preserved, and the process image is ld.so's.
    r, w = os.pipe()
    try:
        async with host.create_process(method=method) as child:
            ld = await child.load_elf(LD_SO)
            assert ld.interpreter is None and ld.entry > 0 and ld.base == 0
            await child.setup_stack(["my-sh", "-c", 'echo "$0"; readlink /proc/$$/exe'], env=os.environ, executable=SH, interpreter=ld)
            await child.install_fd(1, w)
        assert await child.wait() == 0
        name, exe = os.read(r, 4096).decode().split()
    finally:
        os.close(r)
        os.close(w)
    assert name == "my-sh"
    assert exe == os.path.realpath(LD_SO)


# --- errors: exact, and before anything runs --------------------------------------------------


async def test_missing_program_fails_at_setup_stack(method: str) -> None:
    async with host.create_process(method=method) as child:
        with pytest.raises(FileNotFoundError) as info:
            await child.setup_stack(["spawnfd-no-such-program"])
        assert info.value.filename == "spawnfd-no-such-program"
        with pytest.raises(FileNotFoundError) as info:
            await child.setup_stack(["/nonexistent/prog"])
        assert info.value.filename == "/nonexistent/prog"
        with pytest.raises(PermissionError) as info:
            await child.setup_stack(["/etc/passwd"])
        assert info.value.filename == "/etc/passwd"
        with pytest.raises(PermissionError):
            await child.setup_stack(["/tmp"])
        await child.setup_stack(["true"])
    assert await child.wait() == 0


async def test_bad_steps_fail_when_called(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    async with host.create_process() as child:
        with pytest.raises(OSError) as info:
            await child.install_fd(1, r)  # closed
        assert info.value.errno == 9
        with pytest.raises(OSError) as info:
            await child.install_fd(-1, 1)
        assert info.value.errno == 9
        with pytest.raises(FileNotFoundError) as info:
            await child.open(tmp_path / "missing")
        assert info.value.filename == str(tmp_path / "missing")
        with pytest.raises(FileNotFoundError) as info:
            await child.chdir("/nonexistent-dir")
        assert info.value.filename == "/nonexistent-dir"
        with pytest.raises(NotADirectoryError):
            await child.chdir("/etc/passwd")
        with pytest.raises(ValueError, match="embedded null"):
            await child.setup_stack(["echo", "a\0b"])
        with pytest.raises(ValueError, match="environment variable name"):
            await child.setup_stack(["true"], env={"A=B": "x"})
        with pytest.raises(ValueError):
            await child.setup_stack([])
        with pytest.raises(ValueError):
            await child.setsigmask([0])
        await child.setsid()
        with pytest.raises(ValueError):
            await child.setpgroup()
        await child.setup_stack(["true"])
    assert await child.wait() == 0


async def test_open_with_o_creat_creates_now(tmp_path: Path) -> None:
    target = tmp_path / "created"
    async with host.create_process() as child:
        await child.open(target, os.O_WRONLY | os.O_CREAT, 0o600, fd=1)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600  # before the child exists
        await child.setup_stack(["/bin/echo", "written"])
    assert await child.wait() == 0
    assert target.read_bytes() == b"written\n"


async def test_load_elf_errors(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    async with host.create_process() as child:
        with pytest.raises(FileNotFoundError):
            await child.load_elf("/nonexistent/ld.so")
        with pytest.raises(OSError) as info:
            await child.load_elf("/etc/passwd")
        assert info.value.errno == 8 and info.value.filename == "/etc/passwd"
        ld = await child.load_elf(LD_SO)
        # What if the program given to ld.so is a script or a static program? ld.so cannot.
        with pytest.raises(OSError) as info:
            await child.setup_stack([str(script)], interpreter=ld)
        assert info.value.errno == 8
        if os.path.exists("/sbin/ldconfig"):
            with pytest.raises(OSError) as info:
                await child.setup_stack(["/sbin/ldconfig"], interpreter=ld)
            assert info.value.errno == 8
        # What if the "interpreter" is itself a dynamically linked program?
        not_ld = await child.load_elf("/bin/true")
        assert not_ld.interpreter is not None
        with pytest.raises(ValueError, match="not an interpreter"):
            await child.setup_stack(["/bin/true"], interpreter=not_ld)
        await child.setup_stack(["/bin/true"], interpreter=ld)
    assert await child.wait() == 0


async def test_an_exception_in_the_block_launches_nothing() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with host.create_process() as child:
            await child.setup_stack(["/bin/echo", "never"])
            await child.install_fd(1, 1)
            raise Boom
    assert_no_children()
    with pytest.raises(RuntimeError):
        child.pid


async def test_leaving_without_a_program_raises() -> None:
    with pytest.raises(RuntimeError, match="setup_stack"):
        async with host.create_process() as child:
            await child.install_fd(1, 1)
    assert_no_children()


async def test_exec_error_of_the_child_is_the_exact_exception(method: str, tmp_path: Path) -> None:
    # What if the program passes every check but execve refuses it? (valid mode bits,
    # garbage content: ENOEXEC comes from the kernel, inside the child.)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 not a program")
    junk.chmod(0o755)
    with pytest.raises(OSError) as info:
        async with host.create_process(method=method) as child:
            await child.setup_stack([str(junk)])
    assert info.value.errno == 8
    assert info.value.filename == str(junk)
    if sys.version_info >= (3, 11):
        assert "execve" in " ".join(info.value.__notes__)
    assert_no_children()


async def test_program_removed_between_check_and_launch(method: str, tmp_path: Path) -> None:
    # What if the program vanishes after setup_stack() validated it?
    prog = tmp_path / "prog"
    prog.write_bytes(Path("/bin/true").read_bytes())
    prog.chmod(0o755)
    with pytest.raises(FileNotFoundError) as info:
        async with host.create_process(method=method) as child:
            await child.setup_stack([str(prog)])
            prog.unlink()
    assert info.value.filename == str(prog)
    assert_no_children()


async def test_a_step_that_fails_in_the_child_is_named() -> None:
    # What if a step passes its check but the kernel refuses it in the child? Joining the
    # process group of a process that is not ours: EPERM, and the note names the step.
    # (posix_spawn returns the same errno but cannot say which step it was.)
    with pytest.raises(PermissionError) as info:
        async with host.create_process() as child:
            await child.setup_stack(["true"])
            await child.setpgroup(1)
    assert "setpgroup(1)" in " ".join(info.value.__notes__)
    assert_no_children()
    with pytest.raises(PermissionError) as info:
        async with host.create_process(method="posix_spawn") as child:
            await child.setup_stack(["true"])
            await child.setpgroup(1)
    assert "setpgroup" not in " ".join(info.value.__notes__)


async def test_memory_steps_name_the_simulator() -> None:
    async with host.create_process() as child:
        for name in ("mmap", "munmap", "mprotect", "write", "read", "populate"):
            with pytest.raises(NotImplementedError, match="simulat"):
                await getattr(child, name)(0x400000, 4096)
        await child.setup_stack(["true"])
    assert await child.wait() == 0


async def test_posix_spawn_cannot_umask_or_cgroup() -> None:
    async with host.create_process(method="posix_spawn") as child:
        with pytest.raises(NotImplementedError, match="umask"):
            await child.umask(0o22)
        with pytest.raises(NotImplementedError, match="cgroup"):
            await child.cgroup("/sys/fs/cgroup")
        await child.setup_stack(["true"])
    assert await child.wait() == 0


async def test_after_launch_steps_fail_with_esrch() -> None:
    async with host.create_process() as child:
        await child.setup_stack(["sleep", "30"])
    try:
        with pytest.raises(ProcessLookupError):
            await child.install_fd(1, 1)
        with pytest.raises(RuntimeError):
            async with child:
                pass
        assert child.pid > 0 and child.returncode is None
        child.terminate()
        assert await child.wait() == signal.SIGTERM
        assert child.returncode == -signal.SIGTERM
        assert child.process.pidfd is None  # reaped: pidfd closed
        assert not os.path.exists(f"/proc/{child.pid}")
        child.kill()  # after reaping: a no-op, never a signal to a recycled pid
    finally:
        child.kill()
        await child.process.wait()


async def test_no_public_constructors() -> None:
    with pytest.raises(TypeError):
        host.ProcessBuilder("spawnfd")
    with pytest.raises(TypeError):
        host.Process(["x"], 1, 1)
    with pytest.raises(ValueError):
        host.create_process(method="fork-only")


@pytest.mark.parametrize("launch", ["spawnfd", "fork-exec"])  # posix_spawn: refused, see above
async def test_cgroup_where_permitted(launch: str) -> None:
    method = launch
    root = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    group = os.path.join(root, f"spawnfd-test-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError as e:
        pytest.skip(f"cannot create a cgroup here: {e}")
    try:
        r, w = os.pipe()
        try:
            async with host.create_process(method=method) as child:
                with pytest.raises(FileNotFoundError):
                    await child.cgroup("/nonexistent-cgroup")
                await child.cgroup(group)
                await child.install_fd(1, w)
                await child.setup_stack([SH, "-c", "cat /proc/self/cgroup"])
            assert await child.wait() == 0
            out = os.read(r, 4096).decode()
        finally:
            os.close(r)
            os.close(w)
        # the cgroup2 line ("0::/path") names our group
        assert f"0::/{os.path.basename(group)}\n" in out
    finally:
        os.rmdir(group)
