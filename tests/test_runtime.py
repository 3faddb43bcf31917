"""Processes that run: open_kernel(), Sys, behaviours after exec, pipes that block, wait,
signals, fork+exec and vfork+exec on the simulator."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import trio
import trio.testing

import spawnfd
from spawnfd.sim.machine import open_kernel


def stdio(sh: spawnfd.Process) -> None:
    """Give init /dev/null as 0, 1 and 2, so pipes land on 3 and up."""
    for _ in range(3):
        sh.open("/dev/null", os.O_RDWR)


async def run_capture(sh: spawnfd.Process, argv: list[str], how: str,
                      env: dict[str, str] | None = None) -> tuple[bytes, int]:
    """Run argv with stdout on a pipe; return its output and wait status."""
    r, w = sh.pipe(os.O_CLOEXEC)
    sh.dup2(w, 1)
    sh.close(w)
    if how == "vfork":
        child = await sh.vfork_exec(argv[0], argv, env)
    else:
        child = await sh.fork_exec(argv[0], argv, env, fork_mode=how)
    sh.dup2(2, 1)  # our end of the pipe's writers is gone: EOF once the child exits
    out = b""
    while data := await sh.sys.read(r, 4096):
        out += data
    sh.close(r)
    return out, await child.wait()


@pytest.mark.parametrize("how", ["copy", "cow-pt", "vfork"])
async def test_echo_through_a_pipe(how: str) -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        out, status = await run_capture(sh, ["/bin/echo", "hello", "world"], how)
        assert out == b"hello world\n"
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        k.check()


async def test_vfork_exec_copies_no_pte_and_fork_exec_does() -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        a = sh.mm.mmap(8 << 20, 3, 0x22)
        sh.mm.populate(a, 8 << 20, write=True)
        await run_capture(sh, ["/bin/true"], "vfork")
        assert k.statistics().ptes_copied == 0
        await run_capture(sh, ["/bin/true"], "copy")
        assert k.statistics().ptes_copied == 2048


async def test_pipeline_ends_with_sigpipe_for_the_writer() -> None:
    # yes | head -n 3: head exits after three lines; yes dies of SIGPIPE.
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        p_r, p_w = sh.pipe(os.O_CLOEXEC)
        o_r, o_w = sh.pipe(os.O_CLOEXEC)
        sh.dup2(p_w, 1)
        yes = await sh.fork_exec("/usr/bin/yes", ["yes"])
        sh.dup2(p_r, 0)
        sh.dup2(o_w, 1)
        head = await sh.fork_exec("/usr/bin/head", ["head", "-n", "3"])
        for fd in (p_r, p_w, o_w):
            sh.close(fd)
        sh.dup2(2, 0)
        sh.dup2(2, 1)
        out = b""
        while data := await sh.sys.read(o_r, 100):
            out += data
        assert out == b"y\ny\ny\n"
        assert os.WEXITSTATUS(await head.wait()) == 0
        status = await yes.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGPIPE
        k.check()


async def test_missing_program_and_program_without_behaviour() -> None:
    async with open_kernel("256M", cpu=False) as k:  # stand-ins only: a real ELF without one
        sh = k.init
        stdio(sh)
        _, status = await run_capture(sh, ["/nonexistent"], "copy")
        assert os.WEXITSTATUS(status) == 127
        _, status = await run_capture(sh, ["/bin/ls"], "copy")  # real ELF, no behaviour
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGILL


async def test_custom_program_sees_argv_env_and_memory() -> None:
    async def hello(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        a = sys.mmap(4096, 3, 0x22)
        sys.write_memory(a, b"simulated")
        await sys.write(1, b"%s %s %s\n" % (argv[1].encode(), env["WHO"].encode(),
                                            sys.read_memory(a, 9)))
        return 5

    async with open_kernel("256M") as k:
        k.register_program("/bin/true", hello)  # any real ELF can carry a behaviour
        sh = k.init
        stdio(sh)
        out, status = await run_capture(sh, ["/bin/true", "hi"], "cow-pt", {"WHO": "me"})
        assert out == b"hi me simulated\n" and os.WEXITSTATUS(status) == 5


async def test_kill_a_sleeping_child(autojump_clock: trio.testing.MockClock) -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        child = await sh.fork_exec("/bin/sleep", ["sleep", "1000"])
        await trio.sleep(1)
        sh.sys.kill(child.pid, signal.SIGTERM)
        status = await child.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        with pytest.raises(ProcessLookupError):
            sh.sys.kill(child.pid, signal.SIGKILL)


async def test_sleep_finishes_and_leaving_the_block_kills_the_rest(
        autojump_clock: trio.testing.MockClock) -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        short = await sh.fork_exec("/bin/sleep", ["sleep", "5"])
        await sh.fork_exec("/bin/sleep", ["sleep", "100000"])
        assert os.WEXITSTATUS(await short.wait()) == 0
    k.check()  # the long sleeper was killed and released its memory
    assert k.statistics().anon_frames == 0


async def test_fork_with_a_coroutine_and_wait_for_any_child() -> None:
    async with open_kernel("256M") as k:
        sh = k.init

        async def child(sys: Any) -> int:
            return sys.getpid() % 100

        pids = {await sh.sys.fork(child) for _ in range(3)}
        seen = set()
        for _ in range(3):
            pid, status = await sh.sys.wait()
            assert os.WEXITSTATUS(status) == pid % 100
            seen.add(pid)
        assert seen == pids


async def test_sys_needs_open_kernel() -> None:
    k = spawnfd.Kernel("64M")
    with pytest.raises(RuntimeError):
        k.init.sys


SH_CASES = [
    ("echo hello | wc -c", b"6\n", 0),
    ("echo a b c | cat | cat | wc -w", b"3\n", 0),
    ("false || echo $?", b"1\n", 0),
    ("true && echo yes; false && echo no", b"yes\n", 1),
    ("echo 'two  spaces' \"and $?\"", b"two  spaces and 0\n", 0),
    ("echo one > /tmp/f; echo two >> /tmp/f; cat < /tmp/f", b"one\ntwo\n", 0),
    ("cat /nonexistent 2>&1", b"cat: /nonexistent: No such file or directory\n", 1),
    ("nosuchprogram; echo $?", b"127\n", 0),
    ("yes | head -n 2", b"y\ny\n", 0),
    ("exit 7", b"", 7),
    ("echo |", b"", 2),
]


@pytest.mark.parametrize("method", ["fork-exec", "cow-pt", "copy", "vfork-exec", "spawnfd"])
@pytest.mark.parametrize("line,out,code", SH_CASES)
async def test_sh_c(method: str, line: str, out: bytes, code: int) -> None:
    async with open_kernel("256M") as k:
        k.shell_method = method
        sh = k.init
        stdio(sh)
        got, status = await run_capture(sh, ["/bin/sh", "-c", line], "copy",
                                        {"PATH": "/usr/bin:/bin"})
        assert (got, os.WEXITSTATUS(status)) == (out, code)
        k.check()


async def test_a_crashing_behaviour_kills_only_its_process() -> None:
    async def broken(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        raise ZeroDivisionError

    async with open_kernel("256M") as k:
        k.register_program("/bin/true", broken)
        sh = k.init
        stdio(sh)
        _, status = await run_capture(sh, ["/bin/true"], "copy")
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
        assert isinstance(k._runtime.crashes[min(k._runtime.crashes)], ZeroDivisionError)


async def test_ignored_sigpipe_makes_write_fail_with_epipe() -> None:
    async def writer(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        try:
            await sys.write(1, b"x")
        except BrokenPipeError:
            return 42
        return 0

    async with open_kernel("256M") as k:
        k.register_program("/bin/true", writer)
        sh = k.init
        stdio(sh)
        assert sh.sys.signal(signal.SIGPIPE, signal.SIG_IGN) == signal.SIG_DFL
        r, w = sh.pipe(os.O_CLOEXEC)
        sh.close(r)  # no reader at all
        sh.dup2(w, 1)
        child = await sh.fork_exec("/bin/true", ["true"])  # inherits SIG_IGN across fork+exec
        assert os.WEXITSTATUS(await child.wait()) == 42
        sh.sys.signal(signal.SIGPIPE, signal.SIG_DFL)
        child = await sh.fork_exec("/bin/true", ["true"])
        assert os.WTERMSIG(await child.wait()) == signal.SIGPIPE


async def test_sigchld_default_ignored_and_sig_ign_reaps_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)
        child = await sh.fork_exec("/bin/sleep", ["sleep", "10"])
        sh.sys.kill(child.pid, signal.SIGCHLD)  # default action: ignored
        sh.sys.signal(signal.SIGTERM, signal.SIG_IGN)
        child2 = await sh.fork_exec("/bin/sleep", ["sleep", "10"])
        sh.sys.kill(child2.pid, signal.SIGTERM)  # ignored: inherited disposition
        assert os.WEXITSTATUS(await child.wait()) == 0
        assert os.WEXITSTATUS(await child2.wait()) == 0
        with pytest.raises(OSError):
            sh.sys.signal(signal.SIGKILL, signal.SIG_IGN)
        sh.sys.signal(signal.SIGCHLD, signal.SIG_IGN)
        quick = await sh.fork_exec("/bin/true", ["true"])
        await trio.sleep(1)
        with pytest.raises(ChildProcessError):
            sh.wait(quick.pid, nohang=True)  # no zombie was left to reap


async def test_leaving_open_kernel_reaps_everything(
        autojump_clock: trio.testing.MockClock) -> None:
    async with open_kernel("256M") as k:
        sh = k.init
        stdio(sh)

        async def grandparent(sys: Any) -> int:
            async def deep(s: Any) -> int:
                await trio.sleep(1000)
                return 0
            await sys.fork(deep)
            return 3  # exits at once: its child is orphaned to init

        await sh.sys.fork(grandparent)
        await sh.fork_exec("/bin/sleep", ["sleep", "1000"])
        await trio.sleep(1)
    with pytest.raises(ChildProcessError):
        k.init.wait(-1, nohang=True)  # every process reaped, orphans included
    assert k.statistics().anon_frames == 0
    k.check()


async def test_memory_workload_program_holds_its_memory() -> None:
    from spawnfd.sim.programs import memload_main

    async with open_kernel("1G", share_pagetables=True) as k:
        k.install_program("/tmp/memload", memload_main)
        sh = k.init
        stdio(sh)
        db = sh.open("/tmp/db", os.O_RDWR | os.O_CREAT)
        sh.ftruncate(db, 4 << 20)
        mine = sh.mm.mmap(4 << 20, 3, 0x01, db, 0)  # init maps it too: the tables are shared
        sh.mm.populate(mine, 4 << 20)
        r, w = sh.pipe(os.O_CLOEXEC)
        sh.dup2(r, 0)
        child = await sh.fork_exec("/tmp/memload", ["memload", "8", "--shared", "/tmp/db",
                                                   "--hold"])
        sh.dup2(2, 0)
        sh.close(r)
        while child.mm.statistics().rss_anon_bytes < (8 << 20):
            await trio.sleep(0)  # until the workload has touched its memory
        st = child.mm.statistics()
        # tmpfs pages count as shmem: the database and memload's own text (it lives in /tmp)
        assert st.rss_shmem_bytes >= 4 << 20 and st.shared_pagetable_bytes == 2 * 4096
        assert "/tmp/memload" in child.mm.maps()
        sh.close(w)  # EOF on its stdin: it exits
        assert os.WEXITSTATUS(await child.wait()) == 0
        k.check()
