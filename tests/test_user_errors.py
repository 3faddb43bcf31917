"""Errors a new user meets (issue 17): each one as the stdlib or trio would raise it, with a
message that says what to do, and the kernel consistent afterwards."""

from __future__ import annotations

import errno
import os
import signal
import subprocess

import pytest
import trio

import spawnfd


async def test_program_without_stand_in_says_why_on_stderr() -> None:
    async with spawnfd.open_kernel("256M", cpu=False) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        with pytest.raises(subprocess.CalledProcessError) as info:
            await spawnfd.run_process(["/usr/bin/ls"], check=True, capture_stderr=True,
                                      kernel=k)
        assert info.value.returncode == -signal.SIGILL
        err = info.value.stderr.decode()
        assert err.startswith("spawnfd: /usr/bin/ls: no stand-in program"), err
        assert "Kernel.register_program" in err
        k.check()


@pytest.mark.parametrize("memory", [0, "100T", -4096, 4097 * 64, "128K", "lots"])
def test_kernel_memory_out_of_range_says_the_range(memory: object) -> None:
    with pytest.raises(ValueError, match=r"memory.*256 KiB.*16 TiB"):
        spawnfd.Kernel(memory)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"memory": 1.5}, TypeError, "memory must be an int or a str"),
    ({"memory": True}, TypeError, "memory must be an int or a str"),
    ({"share_pagetables": "no"}, TypeError, "share_pagetables must be a bool, not str"),
    ({"share_pagetables": 1}, TypeError, "share_pagetables must be a bool, not int"),
    ({"fork_mode": 1}, TypeError, "fork_mode must be a str, not int"),
    ({"fork_mode": "cow"}, ValueError, "fork_mode must be one of"),
    ({"thp": None}, TypeError, "thp must be a str, not NoneType"),
    ({"thp": "sometimes"}, ValueError, "thp must be one of"),
    ({"thp_cow": b"split"}, TypeError, "thp_cow must be a str, not bytes"),
    ({"thp_cow": "merge"}, ValueError, "thp_cow must be one of"),
])
def test_kernel_options_are_validated(kwargs: dict[str, object], exc: type[Exception],
                                      match: str) -> None:
    with pytest.raises(exc, match=match):
        spawnfd.Kernel(**kwargs)  # type: ignore[arg-type]


def test_parse_size_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not float"):
        spawnfd.parse_size(1.5)  # type: ignore[arg-type]


def test_writing_a_str_asks_for_bytes(kernel: spawnfd.Kernel) -> None:
    p = kernel.init
    a = p.mm.mmap(4096, 3, 0x22)
    r, w = p.pipe()
    b = p.process_create()
    b.mmap(4096, 3, 0x22, addr=0x10000)
    for call in (lambda: p.mm.write(a, "hello"), lambda: p.write(w, "hello"),
                 lambda: b.write(0x10000, "hello")):
        with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'str'$"):
            call()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'int'$"):
        p.mm.write(a, 5)  # type: ignore[arg-type]
    b.abort()
    assert p.mm.read(a, 5) == bytes(5)
    kernel.check()


def test_loader_errors_name_the_file(kernel: spawnfd.Kernel) -> None:
    b = kernel.init.process_create()
    with pytest.raises(IsADirectoryError) as info:
        b.load_elf("/bin")
    assert info.value.filename == "/bin"
    with pytest.raises(PermissionError) as info2:
        b.load_elf("/bin", check_exec=True)
    assert info2.value.filename == "/bin"
    first = b.load_elf("/bin/true")
    with pytest.raises(FileExistsError) as info3:  # its addresses are taken
        b.load_elf("/bin/true", addr=first.base)
    assert info3.value.filename == "/bin/true"
    b.abort()
    kernel.check()


@pytest.mark.parametrize("argv", ["true", b"true"])
def test_setup_stack_checks_argv_first(kernel: spawnfd.Kernel, argv: object) -> None:
    b = kernel.init.process_create()
    with pytest.raises(TypeError, match="argv must be a list or tuple of str or bytes"):
        b.setup_stack(argv, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="argv must not be empty"):
        b.setup_stack([], {})
    b.abort()


def test_abort_after_launch_raises_like_a_second_launch(kernel: spawnfd.Kernel) -> None:
    b = kernel.init.process_create()
    b.launch()
    with pytest.raises(ProcessLookupError, match="launched"):
        b.abort()
    with pytest.raises(ProcessLookupError, match="launched"):
        b.launch()
    assert b.state() == "running"  # the abort changed nothing
    b.process.exit(0)
    assert b.wait() == 0
    kernel.check()


def test_abort_twice_is_harmless_and_launch_after_abort_raises(kernel: spawnfd.Kernel) -> None:
    b = kernel.init.process_create()
    b.abort()
    b.abort()  # cleanup paths may abort again: the embryo is gone either way
    with pytest.raises(ProcessLookupError, match="aborted"):
        b.launch()
    assert b.state() == "reaped"
    kernel.check()


def test_caller_driven_embryo_launches_without_registers(kernel: spawnfd.Kernel) -> None:
    # On a bare Kernel nothing runs: the launched process is driven by the caller.
    b = kernel.init.process_create()
    b.launch()
    assert b.state() == "running"
    b.process.exit(0)
    assert b.wait() == 0
    kernel.check()


async def test_a_running_kernel_refuses_an_embryo_without_registers() -> None:
    async with spawnfd.open_kernel("256M") as k:
        b = k.init.process_create()
        with pytest.raises(RuntimeError, match="no registers"):
            b.launch()
        assert b.state() == "embryo" and not b.launched  # the caller's to fill or abort
        b.abort()
        k.check()


async def test_an_empty_embryo_is_not_launched_in_either_backend() -> None:
    async with spawnfd.open_kernel("256M") as k:
        with pytest.raises(RuntimeError, match="no registers"):
            async with k.init.create_process() as child:
                pass
        assert child.builder.state() == "reaped"  # destroyed, never run
        k.check()
    with pytest.raises(RuntimeError, match="setup_stack"):
        async with spawnfd.host.create_process() as hchild:
            pass


async def test_stdin_pipe_without_nursery_start_names_stdin() -> None:
    async with spawnfd.open_kernel("256M") as k:
        with pytest.raises(ValueError, match=r"^stdin=subprocess.PIPE is only valid"):
            await spawnfd.run_process(["/bin/true"], stdin=subprocess.PIPE, kernel=k)
    with pytest.raises(ValueError, match=r"^stdin=subprocess.PIPE is only valid"):
        await spawnfd.host.run_process(["/bin/true"], stdin=subprocess.PIPE)


@pytest.mark.parametrize("method", spawnfd.host.METHODS)
@pytest.mark.parametrize("stdin", [-5, 10**6])
async def test_host_bad_stdin_is_ebadf_for_every_method(method: str, stdin: int) -> None:
    with pytest.raises(OSError) as info:
        await spawnfd.host.run_process(["/bin/true"], stdin=stdin, method=method)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("method", spawnfd.host.METHODS)
async def test_host_negative_pass_fds_is_a_value_error(method: str) -> None:
    with pytest.raises(ValueError, match="bad value"):
        await spawnfd.host.run_process(["/bin/true"], pass_fds=(-3,), method=method)


@pytest.mark.parametrize("method", ["spawnfd", "fork-exec", "vfork-exec"])
async def test_sim_matches_trio_for_a_bad_fd_and_an_empty_name(method: str) -> None:
    async with spawnfd.open_kernel("256M") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        with pytest.raises(OSError) as info:
            await spawnfd.run_process(["/bin/true"], stdin=-5, kernel=k, method=method)
        assert info.value.errno == errno.EBADF and type(info.value) is OSError
        with pytest.raises(PermissionError) as info2:
            await spawnfd.run_process([""], kernel=k, method=method)
        assert info2.value.filename == ""
        k.check()


async def test_trio_itself_says_so() -> None:
    # What the tests above match, checked on this host.
    with pytest.raises(OSError) as info:
        await trio.run_process(["/bin/true"], stdin=-5)
    assert info.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="bad value"):
        await trio.run_process(["/bin/true"], pass_fds=(-3,))
    with pytest.raises(PermissionError):
        await trio.run_process([""])


async def test_no_stand_in_through_ld_so_as_a_program_names_the_program() -> None:
    async with spawnfd.open_kernel("256M", cpu=False) as k:
        r, w = k.init.pipe()
        async with k.init.create_process() as child:
            prog = await child.load_elf("/usr/bin/ls")
            assert prog.interpreter is not None
            ld = await child.load_elf(prog.interpreter)
            await child.setup_stack(["/usr/bin/ls"], {}, interpreter=ld)  # ld.so /usr/bin/ls
            await child.install_fd(2, w)
        k.init.close(w)
        status = await child.wait()
        assert os.WTERMSIG(status) == signal.SIGILL
        err = b""
        while chunk := await k.init.sys.read(r, 4096):
            err += chunk
        k.init.close(r)
        assert err.startswith(b"spawnfd: /usr/bin/ls: no stand-in program"), err
        k.check()
