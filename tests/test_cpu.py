"""Real x86-64 code on the simulated kernel (issue 13, first slice): ``open_kernel(cpu=True)``
runs the host's real ld.so, libc and programs on the CPU of ``csrc/arch/x86`` (Unicorn in
virtual-TLB mode over the simulated frames), every access through the simulated page tables
and every system call served by the simulated kernel. Each program is compared with its
native run on this host."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
from typing import Any

import pytest
import trio
import trio.testing

import spawnfd
from spawnfd.sim.machine import open_kernel

LDSO = "/lib64/ld-linux-x86-64.so.2"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C"}


def native(argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None) -> Any:
    return subprocess.run(argv, input=stdin, capture_output=True, env=ENV if env is None else env)


def stdio(p: Any) -> None:
    for _ in range(3):
        p.open("/dev/null", os.O_RDWR)


async def run_real(k: Any, argv: list[str], stdin: bytes = b"",
                   env: dict[str, str] | None = None) -> Any:
    return await spawnfd.run_process(argv, stdin=stdin, capture_stdout=True, check=False,
                                     env=ENV if env is None else env, kernel=k)


async def test_cpu_option_is_validated() -> None:
    with pytest.raises(TypeError):
        async with open_kernel("64M", cpu="yes"):  # type: ignore[arg-type]
            pass


async def test_readme_fd_model_example_runs_the_real_echo_through_the_real_ldso() -> None:
    # The README's first fd-model example: the creator maps /bin/echo and ld.so, writes the
    # stack and installs a pipe as fd 1; closing the builder fd starts ld.so at its entry.
    async with open_kernel("1G", cpu=True) as k:
        sh = k.init
        stdio(sh)
        r, w = sh.pipe(os.O_CLOEXEC)
        async with sh.create_process() as child:
            prog = await child.load_elf("/bin/echo")
            ld = await child.load_elf(prog.interpreter)
            await child.setup_stack(["echo", "hi"], {"PATH": "/bin"}, interpreter=ld,
                                    program=prog)
            await child.install_fd(1, w)
            await child.open("/dev/null", os.O_RDONLY, fd=0)
            before = child.mm.maps()
        sh.close(w)
        assert await sh.sys.read(r, 100) == b"hi\n"
        assert await child.wait() == 0
        s = k.statistics()
        assert "libc.so.6" not in before          # the real ld.so mapped libc itself
        assert s.cpu_instructions > 50_000 and s.tlb_fills > 100
        assert s.syscalls_by_nr.get(1) == 1       # one write(2)
        assert s.syscalls_by_nr.get(257, 0) >= 1  # openat of libc by the real ld.so
        assert s.syscalls == sum(s.syscalls_by_nr.values())
        assert k._runtime.log == []
        k.check()


async def test_ldso_alone_maps_the_program() -> None:
    # The other launch form: only ld.so is mapped; it is started as `ld.so /bin/echo hi`.
    async with open_kernel("1G", cpu=True) as k:
        sh = k.init
        stdio(sh)
        r, w = sh.pipe(os.O_CLOEXEC)
        async with sh.create_process() as child:
            ld = await child.load_elf(LDSO)
            await child.setup_stack(["/bin/echo", "via", "ld.so"], ENV, interpreter=ld)
            await child.install_fd(1, w)
        sh.close(w)
        assert await sh.sys.read(r, 100) == native(["/bin/echo", "via", "ld.so"]).stdout
        assert await child.wait() == 0
        k.check()


@pytest.mark.parametrize("argv", [["/bin/true"], ["/bin/false"], ["/bin/echo", "a", "b c"],
                                  ["echo", "-n", "x"]])
async def test_programs_match_native(argv: list[str]) -> None:
    async with open_kernel("1G", cpu=True) as k:
        stdio(k.init)
        done = await run_real(k, argv)
        want = native(argv)
        assert (done.returncode, done.stdout) == (want.returncode, want.stdout)
        assert k.statistics().cpu_instructions > 0
        k.check()


async def test_cat_of_a_tmpfs_file_and_of_stdin() -> None:
    data = b"".join(b"line %d of the file\n" % i for i in range(5000))  # 100 KiB
    async with open_kernel("1G", cpu=True) as k:
        sh = k.init
        stdio(sh)
        fd = sh.open("/tmp/f.txt", os.O_CREAT | os.O_WRONLY, 0o644)
        sh.write(fd, data)
        sh.close(fd)
        done = await run_real(k, ["cat", "/tmp/f.txt"])
        assert (done.returncode, done.stdout) == (0, data)
        done = await run_real(k, ["cat"], stdin=data)  # stdin from a pipe: reads block
        want = native(["cat"], stdin=data)
        assert (done.returncode, done.stdout) == (want.returncode, want.stdout)
        done = await run_real(k, ["cat", "/nonexistent"])
        assert done.returncode == native(["cat", "/nonexistent"]).returncode == 1
        k.check()


async def test_env_prints_the_given_environment() -> None:
    env = {"A": "1", "B": "two words", "PATH": "/bin"}
    async with open_kernel("1G", cpu=True) as k:
        stdio(k.init)
        done = await run_real(k, ["env"], env=env)
        want = native(["env"], env=env)
        assert (done.returncode, done.stdout) == (want.returncode, want.stdout)
        k.check()


def tiny_elf(code: bytes) -> bytes:
    """A static ET_EXEC of one PT_LOAD (r-x at 0x400000) whose entry is code."""
    base, hdr = 0x400000, 64 + 56
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
            + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base + hdr, 64, 0, 0, 64, 56, 1, 0, 0, 0))
    size = hdr + len(code)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code


def write_tiny(k: Any, code: bytes) -> None:
    fd = k.init.open("/tmp/tiny", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o755)
    k.init.write(fd, tiny_elf(code))
    k.init.close(fd)


async def launch_tiny(k: Any) -> int:
    async with k.init.create_process() as child:
        prog = await child.load_elf("/tmp/tiny")
        await child.setup_stack(["tiny"], {}, program=prog)
        await child.install_fd(1, 1)
    return await child.wait()


async def run_tiny(k: Any, code: bytes) -> int:
    write_tiny(k, code)
    return await launch_tiny(k)


UD2 = b"\x0f\x0b"
WILD_JUMP = b"\x48\xb8" + struct.pack("<Q", 0xDEAD0000) + b"\xff\xe0"  # mov rax, imm; jmp rax
# write(1, (void *)0x10, 4); exit(-rax): the errno comes back as the exit status
BAD_WRITE = (b"\xb8\x01\x00\x00\x00\xbf\x01\x00\x00\x00\xbe\x10\x00\x00\x00\xba\x04\x00\x00\x00"
             b"\x0f\x05\x48\x89\xc7\x48\xf7\xdf\xb8\x3c\x00\x00\x00\x0f\x05")
UNKNOWN_SYSCALL = b"\xb8\xf4\x01\x00\x00\x0f\x05\x48\x89\xc7\x48\xf7\xdf\xb8\x3c\x00\x00\x00\x0f\x05"
# clone(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD, 0); exit(-rax): threads are not there yet
CLONE_THREAD = (b"\xbf" + struct.pack("<I", 0x10900) + b"\x31\xf6\xb8\x38\x00\x00\x00\x0f\x05"
                b"\x48\x89\xc7\x48\xf7\xdf\xb8\x3c\x00\x00\x00\x0f\x05")


async def test_bad_code_is_killed_and_bad_pointers_get_efault() -> None:
    async with open_kernel("256M", cpu=True) as k:
        stdio(k.init)
        status = await run_tiny(k, UD2)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGILL
        assert k._runtime.log[-1].endswith("SIGILL at 0x400078")
        k.check()
        status = await run_tiny(k, WILD_JUMP)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
        assert k._runtime.log[-1].endswith("SIGSEGV at 0xdead0000")
        k.check()
        assert await run_tiny(k, BAD_WRITE) == 14 << 8  # EFAULT, the host unharmed
        k.check()
        before = k.statistics().syscalls_unknown
        assert await run_tiny(k, UNKNOWN_SYSCALL) == 38 << 8  # ENOSYS, counted
        assert k.statistics().syscalls_unknown == before + 1
        assert await run_tiny(k, CLONE_THREAD) == 38 << 8  # ENOSYS: a clean error
        k.check()


async def test_real_code_by_default_stand_ins_by_choice() -> None:
    # A kernel runs the real program by default: `ls /` lists the directory as natively.
    async with spawnfd.open_kernel("256M") as k:
        stdio(k.init)
        done = await run_real(k, ["ls", "/"])
        assert (done.returncode, done.stdout) == (0, native(["ls", "/"]).stdout)
        assert k.statistics().cpu_instructions > 100_000
    # cpu=False: every built-in stand-in answers for its program, no instruction runs...
    async with open_kernel("256M", cpu=False) as k:
        stdio(k.init)
        done = await run_real(k, ["/bin/echo", "hi"])
        assert done.stdout == b"hi\n" and k.statistics().cpu_instructions == 0
    # ... and per program: a registered behaviour runs instead of the real code
    async def hello(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        await sys.write(1, b"stand-in\n")
        return 0

    async with open_kernel("256M") as k:
        stdio(k.init)
        k.register_program("/bin/echo", hello)
        assert (await run_real(k, ["/bin/echo", "hi"])).stdout == b"stand-in\n"
        assert (await run_real(k, ["/bin/true"])).returncode == 0
        assert k.statistics().cpu_instructions > 0  # true ran as real code


def exit_code(status: int) -> bytes:
    """mov edi, status; mov eax, 60; syscall."""
    return b"\xbf" + struct.pack("<I", status) + b"\xb8\x3c\x00\x00\x00\x0f\x05"


def loop_then_exit(n: int, status: int) -> bytes:
    """mov ecx, n; 1: dec ecx; jnz 1b; then exit(status): 2n + 4 instructions."""
    return b"\xb9" + struct.pack("<I", n) + b"\xff\xc9\x75\xfc" + exit_code(status)


async def test_translated_code_goes_when_its_frame_changes() -> None:
    # The one CPU caches translated code by physical frame. The same file page rewritten in
    # place by write(2), or the file truncated (its frame freed) and written again, must run
    # the new code: the frame was marked as holding code, so its change flushes translations.
    async with open_kernel("256M", cpu=True) as k:
        stdio(k.init)
        sh = k.init
        assert await run_tiny(k, exit_code(3)) == 3 << 8
        flushes = k.statistics().tb_flushes
        fd = sh.open("/tmp/tiny", os.O_WRONLY, 0)
        sh.lseek(fd, 64 + 56, os.SEEK_SET)
        sh.write(fd, exit_code(5))  # the same page-cache frame, new instructions
        sh.close(fd)
        assert await launch_tiny(k) == 5 << 8
        assert k.statistics().tb_flushes == flushes + 1
        assert await run_tiny(k, exit_code(7)) == 7 << 8  # O_TRUNC: the frame freed, reused
        assert await launch_tiny(k) == 7 << 8
        k.check()


N = 3_000_000  # loop iterations: 6 M instructions, six slices


async def test_programs_interleave_on_the_one_cpu() -> None:
    # Two programs at the same virtual address, different code, each running several slices
    # (2**20 instructions) at once: the CPU switches between them, and each runs its own code.
    async with open_kernel("256M", cpu=True) as k:
        stdio(k.init)
        sh = k.init
        for i, path in enumerate(("/tmp/a", "/tmp/b")):
            fd = sh.open(path, os.O_CREAT | os.O_WRONLY, 0o755)
            sh.write(fd, tiny_elf(loop_then_exit(N + i, 10 + i)))
            sh.close(fd)
        before = k.statistics()
        async with sh.create_process() as a, sh.create_process() as b:
            for child, path in ((a, "/tmp/a"), (b, "/tmp/b")):
                prog = await child.load_elf(path)
                await child.setup_stack([path], {}, program=prog)
        children = [a, b]
        assert [await c.wait() for c in children] == [10 << 8, 11 << 8]
        after = k.statistics()
        assert after.cpu_instructions - before.cpu_instructions == 2 * (2 * N + 1) + 2 * 4
        # seven slices each; trio runs both in each batch (in a random order): >= one switch a batch
        assert after.cpu_switches - before.cpu_switches >= 6
        k.check()


async def test_many_readers_blocked_on_one_pipe_settle() -> None:
    # Twenty real cat processes read one empty pipe: each parks in read(2) and stays parked
    # (a retry that only blocks again must not wake the others: that never settles). The
    # machine goes idle; closing the write end gives them all end of file.
    async with open_kernel("1G", cpu=True) as k:
        sh = k.init
        stdio(sh)
        r, w = sh.pipe(os.O_CLOEXEC)
        children = []
        for _ in range(20):
            async with sh.create_process() as child:
                prog = await child.load_elf("/bin/cat")
                ld = await child.load_elf(prog.interpreter)
                await child.setup_stack(["cat"], ENV, interpreter=ld, program=prog)
                await child.install_fd(0, r)
                await child.install_fd(1, 1)
            children.append(child)
        with trio.fail_after(30):
            await trio.testing.wait_all_tasks_blocked()
        events = k._c.pipe_events()
        await trio.testing.wait_all_tasks_blocked()
        assert k._c.pipe_events() == events  # idle: nobody retries
        sh.close(r)
        sh.close(w)
        assert [await c.wait() for c in children] == [0] * 20
        k.check()


async def test_counters_per_process() -> None:
    # Each process's instructions, system calls and TLB fills, summed into the machine's;
    # readable while it is a zombie. A process that ran no code has zeroes.
    async with open_kernel("256M", cpu=True) as k:
        stdio(k.init)
        sh = k.init
        write_tiny(k, loop_then_exit(1000, 0))
        before = k.statistics()
        async with sh.create_process() as a, sh.create_process() as b:
            for child in (a, b):
                prog = await child.load_elf("/tmp/tiny")
                await child.setup_stack(["tiny"], {}, program=prog)
        await trio.testing.wait_all_tasks_blocked()  # both exited, not yet reaped
        sa, sb = a.process.cpu_statistics(), b.process.cpu_statistics()
        assert sa.instructions == sb.instructions == 1 + 2 * 1000 + 3
        assert sa.syscalls == sb.syscalls == 1 and sa.syscalls_unknown == 0
        assert sa.tlb_fills > 0 and sa.cpu_switches == sb.cpu_switches == 0  # one, then the other
        after = k.statistics()
        assert after.cpu_instructions - before.cpu_instructions == 2 * sa.instructions
        assert after.tlb_fills - before.tlb_fills == sa.tlb_fills + sb.tlb_fills
        assert sh.cpu_statistics() == spawnfd.CPUStatistics(0, 0, 0, 0, 0, 0)
        assert [await a.wait(), await b.wait()] == [0, 0]
        k.check()


@pytest.mark.parametrize("machine", [183, 243, 3])  # EM_AARCH64, EM_RISCV, EM_386 (64-bit)
async def test_an_elf_for_another_machine_is_enoexec_before_any_code_runs(machine: int) -> None:
    good = tiny_elf(exit_code(0))
    bad = good[:18] + struct.pack("<H", machine) + good[20:]
    with open(f"/tmp/spawnfd-foreign-{os.getpid()}", "wb") as f:  # natively: ENOEXEC
        f.write(bad)
    os.chmod(f.name, 0o755)
    try:
        with pytest.raises(OSError) as native_error:
            subprocess.run([f.name])
    finally:
        os.unlink(f.name)
    assert native_error.value.errno == errno.ENOEXEC
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        fd = sh.open("/tmp/foreign", os.O_CREAT | os.O_WRONLY, 0o755)
        sh.write(fd, bad)
        sh.close(fd)
        b = sh.process_create()
        with pytest.raises(OSError) as e:
            b.load_elf("/tmp/foreign")
        assert e.value.errno == errno.ENOEXEC
        b.abort()
        for method in ("spawnfd", "fork-exec", "vfork-exec"):
            with pytest.raises(OSError) as e:
                await spawnfd.run_process(["/tmp/foreign"], kernel=k, method=method)
            assert e.value.errno == errno.ENOEXEC, method
        assert k.statistics().cpu_instructions == 0
        k.check()
