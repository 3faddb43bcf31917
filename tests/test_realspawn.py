"""Real programs that spawn (issue 14, first slice): fork, vfork, clone, execve and wait4 from
emulated code, on the kernel's own paths and under its fork policy. Every command line runs
on the simulator and natively; stdout, stderr and exit status must be equal."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

import spawnfd

from .helpers import REAL_ENV as ENV
from .helpers import assert_same_run as same
from .helpers import build_probe
from .helpers import run_native as native
from .helpers import run_simulated as simulated


SHELL_LINES = [
    "echo hi | wc -c",
    "yes | head -3",
    "(cd /tmp && pwd)",
    "for i in 1 2 3; do echo $i; done",
    "x=$(echo a); echo $x",
    "false || echo no; true && echo yes; exit 4",
    "/bin/true; /bin/true; /bin/true",
    "echo one > /tmp/f-$PPID; cat /tmp/f-$PPID; rm /tmp/f-$PPID; ls /nonexistent 2>/dev/null;"
    " echo $?",
    "seq 1 200 | sort -rn | head -2",
]

PYTHON = [
    "import os; print(os.system('echo sys'))",
    "import os; pid = os.posix_spawn('/bin/echo', ['echo', 'spawned'], {});"
    " print(os.waitpid(pid, 0)[1])",
    "import os\npid = os.fork()\nif pid == 0:\n    os.execv('/bin/echo', ['echo', 'forked'])\n"
    "print(os.waitpid(pid, 0)[1])",
    "import subprocess; r = subprocess.run(['echo', 'sub'], stdout=subprocess.PIPE);"
    " print(r.stdout, r.returncode)",
    "import subprocess; r = subprocess.run(['sh', '-c', 'echo out; echo err >&2; exit 3'],"
    " capture_output=True); print(r)",
    "import subprocess; print(subprocess.run(['cat'], input=b'x' * 200000,"
    " capture_output=True).stdout == b'x' * 200000)",
    "import select, os; r, w = os.pipe(); print(select.select([r], [], [], 0.05))",
]


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt", "cow-pt-eager"])
async def test_shells_run_pipelines_as_natively(fork_mode: str) -> None:
    async with spawnfd.open_kernel("2G", fork_mode=fork_mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        for shell in ("dash", "bash"):
            for line in SHELL_LINES:
                argv = [shell, "-c", line]
                sim = await simulated(k, argv)
                same(sim, native(argv))
        st = k.statistics()
        assert st.syscalls_by_nr.get(57, 0) + st.syscalls_by_nr.get(56, 0) > 20  # forks
        assert st.syscalls_by_nr.get(59, 0) > 20 and st.syscalls_by_nr.get(61, 0) > 20
        assert k._runtime.crashes == {}
        k.check()


@pytest.mark.parametrize("code", PYTHON)
async def test_python_spawns_as_natively(code: str) -> None:
    async with spawnfd.open_kernel("2G") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        argv = ["python3.11", "-c", code]
        same(await simulated(k, argv), native(argv))
        k.check()


FORK_EXEC = ("import os\nb = bytearray(b'x') * (32 << 20)\npid = os.fork()\nif pid == 0:\n"
             "    os.execv('/bin/true', ['true'])\nprint(os.waitpid(pid, 0)[1])")


async def test_the_fork_exec_window_under_each_policy_is_exact() -> None:
    # A real python holding 32 MiB it wrote forks and execs /bin/true: under copy the fork
    # copies every pte of it; under cow-pt the tables are shared and the child execs before
    # touching them. The same run twice gives the same counters.
    async def run(mode: str) -> tuple[int, int, int]:
        async with spawnfd.open_kernel("1G", fork_mode=mode) as k:
            for _ in range(3):
                k.init.open("/dev/null", os.O_RDWR)
            s0 = k.statistics()
            r = await simulated(k, ["python3.11", "-c", FORK_EXEC])
            s1 = k.statistics()
            assert (r.returncode, r.stdout) == (0, b"0\n")
            return (s1.ptes_copied - s0.ptes_copied, s1.tables_shared - s0.tables_shared,
                    s1.cpu_instructions - s0.cpu_instructions)
    copy, cow = await run("copy"), await run("cow-pt")
    assert copy == await run("copy") and cow == await run("cow-pt")  # exact, repeatable
    assert copy[0] >= 8192 and copy[1] == 0   # fork copied the ptes of the 32 MiB
    assert cow[1] >= 16 and cow[0] < copy[0] - 8000  # cow-pt shared those tables instead


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "process_probe")


@pytest.fixture(scope="module")
def signal_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "signal_probe")


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt"])
async def test_process_calls_and_their_errors_as_linux(probe: str, fork_mode: str) -> None:
    """tests/process_probe.c: wait4 without children, with bad pointers (EFAULT after the
    child is reaped, as Linux) and options; vfork + exec; execve with bad pointers, a missing
    file, a directory; clone flag combinations Linux refuses; WNOHANG; a child's own copy of
    memory; a child that crashes between fork and exec dies alone."""
    async with spawnfd.open_kernel("1G", fork_mode=fork_mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        same(await simulated(k, [probe]), native([probe]))
        assert any("SIGSEGV" in line for line in k._runtime.log)  # the crashed child
        k.check()


async def test_realspawn_bench_cells() -> None:
    # spawnfd bench realspawn's cells: a CPython fork+exec window copies the PTEs of what the
    # parent wrote under copy and shares its tables under cow-pt; posix_spawn (vfork) and the
    # fd model copy none; every window is closed by the child's exec.
    from spawnfd.bench import realspawn, suite

    assert "realspawn" in suite.SCENARIOS and "realspawn" not in suite.DEFAULT
    hold = realspawn._HOLD.format(mib=16)
    fork = realspawn.PYTHON["CPython os.fork + os.execv"]
    spawn = realspawn.PYTHON["CPython os.posix_spawn"]
    copy = await realspawn._window(["python3.11", "-c", hold + fork], "copy", "1G")
    cow = await realspawn._window(["python3.11", "-c", hold + fork], "cow-pt", "1G")
    vfork = await realspawn._window(["python3.11", "-c", hold + spawn], "copy", "1G")
    fd = await realspawn._fd_model(16, "copy", "1G")
    assert copy["status"] == cow["status"] == vfork["status"] == fd["status"] == 0
    assert copy["windows"] == cow["windows"] == vfork["windows"] == 1
    assert copy["ptes_copied"] >= 4096 and copy["tables_shared"] == 0
    assert cow["tables_shared"] >= 7 and cow["ptes_copied"] < copy["ptes_copied"] - 3000
    assert vfork["ptes_copied"] == fd["ptes_copied"] == 0 and fd["instructions"] == 0
    assert copy["child_instructions"] > vfork["child_instructions"] > 0
    assert vfork["parent_instructions"] == 0 < copy["parent_instructions"]  # vfork: suspended
    assert copy["faults_cow"] == copy["pages_copied"] > 0
    # exact: the same cell again gives the same window, counter for counter
    assert await realspawn._window(["python3.11", "-c", hold + fork], "cow-pt", "1G") == cow
    assert await realspawn._fd_model(16, "copy", "1G") == fd


def test_realspawn_scenario(tmp_path: Path) -> None:
    # The scenario at one small size: each cell ran twice with the same counters, the
    # README's condensed table and the plot are made from the rows, the parent that wrote a
    # bytearray is measured beside the one that populated its memory.
    from spawnfd.bench import realspawn, suite

    r = suite.scenario_realspawn(True, lambda what: None, sizes=[1 / 64])
    assert {row["parent_mib"] for row in r.rows} == {16}
    assert all(row["repeatable"] and row["status"] == 0 for row in r.rows)
    assert any("the counters were the same in all 12 cells" in n for n in r.notes), r.notes
    assert any(n.startswith("a parent that wrote a bytearray of 16 MiB, copy") for n in r.notes)
    by = {(row["spawner"], row["fork_mode"]): row for row in r.rows}
    assert by[(realspawn.BYTEARRAY, "copy")]["series"] is None  # a check, not a line
    assert by[(realspawn.FD_MODEL, "copy")]["series"] == f"{realspawn.FD_MODEL}, any policy"
    assert by[("CPython os.fork + os.execv", "cow-pt")]["series"].endswith(", cow-pt")
    table = r.summary["table"]
    assert table == r.lead == realspawn.summary(r.rows)
    assert table.startswith("| spawner | fork policy | PTEs copied, parent 0.015625 GiB |")
    assert "| CPython `os.fork` + `os.execv` | copy | " in table and "| any |" in table
    assert realspawn.BYTEARRAY not in table
    assert suite.markdown(r).index(table) < suite.markdown(r).index("Every row:")
    png = suite.plot(r, tmp_path)
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt"])
async def test_signals_are_delivered_as_linux(signal_probe: str, fork_mode: str) -> None:
    """tests/signal_probe.c: a handler run by kill(2) of itself on the real signal frame,
    rt_sigreturn back with the FPU state kept; a blocked signal taken when unblocked;
    SIGCHLD with its siginfo; a read interrupted (EINTR) and, with SA_RESTART, restarted;
    SIGPIPE to a handler; SIGTERM's default action ending a child; kill's errors."""
    async with spawnfd.open_kernel("1G", fork_mode=fork_mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        same(await simulated(k, [signal_probe]), native([signal_probe]))
        assert k.statistics().syscalls_by_nr.get(15, 0) >= 6  # rt_sigreturn, once a handler
        k.check()


async def test_a_handler_of_real_code_takes_a_signal_sent_from_python() -> None:
    # RunningProcess.terminate() on a real python that handles SIGTERM: the handler runs
    # (the process was parked in a read of its stdin pipe: the wait is interrupted).
    code = ("import signal, sys, os\n"
            "signal.signal(signal.SIGTERM, lambda s, f: (print('term', s, flush=True),"
            " os._exit(7)))\n"
            "print('ready', flush=True)\nsys.stdin.read()\n")
    async with spawnfd.open_kernel("1G") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        proc = await spawnfd.open_process(["python3.11", "-c", code], kernel=k,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=ENV)
        assert await proc.stdout.receive_some(100) == b"ready\n"
        await trio.testing.wait_all_tasks_blocked()
        proc.terminate()
        assert await proc.wait() == 7
        assert await proc.stdout.receive_some(100) == b"term 15\n"
        await proc.stdin.aclose()
        k.check()


@pytest.fixture(scope="module")
def jobctl_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "jobctl_probe")


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt"])
async def test_job_control_calls_as_linux(jobctl_probe: str, fork_mode: str) -> None:
    """tests/jobctl_probe.c: setsid, setpgid, getpgid, getpgrp, getsid with Linux's errors
    (EPERM, EACCES after exec, ESRCH, EINVAL), groups inherited by fork and kept by exec;
    kill(-pgid), kill(0) and their errors, kill's permission for another uid (EPERM, SIGCONT
    within the session); wait4 of a group (0, < -1); waitid (P_PID, P_PGID,
    P_ALL, P_PIDFD's errors, WNOHANG, WNOWAIT, the siginfo's fields, EFAULT, EINVAL); pause
    and sigsuspend (the mask back after the handler); sigaltstack and
    SA_ONSTACK (uc_stack, SS_ONSTACK, EPERM on it, ENOMEM, SS_DISABLE, SS_AUTODISARM, kept by
    fork, cleared by exec)."""
    async with spawnfd.open_kernel("1G", fork_mode=fork_mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        sim = await simulated(k, [jobctl_probe])
        same(sim, native([jobctl_probe]))
        assert b"sigaltstack" in sim.stdout and k._runtime.crashes == {}
        st = k.statistics().syscalls_by_nr
        assert all(st.get(nr, 0) > 0 for nr in (34, 109, 112, 121, 124, 130, 131, 247))
        k.check()


async def test_kill_minus_one_spares_init_and_the_caller(jobctl_probe: str) -> None:
    # kill(-1) natively needs a pid namespace of its own (it would reach every process of
    # the host): the probe runs there as its init, which kill(-1) spares as it spares the
    # simulator's init; the probe ignores the signal so both runs agree.
    nat = native(["unshare", "--pid", "--fork", jobctl_probe, "killall"])
    if nat.returncode != 0 and b"unshare" in nat.stderr:
        pytest.skip(f"no pid namespace here: {nat.stderr!r}")
    async with spawnfd.open_kernel("1G") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        same(await simulated(k, [jobctl_probe, "killall"]), nat)
        assert nat.stdout.endswith(b"others 32 32\n")  # 20 + SIGUSR2 from each handler
        k.check()


JOB_LINES = [
    ["dash", "-c", "sleep 0 & wait; echo $?"],
    ["dash", "-c", "false & wait $!; echo $?"],
    ["dash", "-c", "set -m; true & wait; echo $?"],  # no tty: job control turned off
    ["bash", "-c", "set -m; sleep 0 & wait; echo $?; (exit 3) & wait $!; echo $?"],
    ["bash", "-c", "set -m; sleep 5 & kill -TERM %1; wait $!; echo $?"],  # kill(-pgid)
    ["bash", "-c", "sleep 0 & wait; echo $?; (exit 3) & wait $!; echo $?"],
    # kill(0) in a job's own group: the subshell and its sleep die, the shell goes on
    ["bash", "-c", "set -m; (sleep 5 & kill -TERM 0; sleep 1); echo $?"],
    # a job stopped and continued: bash sees both through waitpid(WUNTRACED | WCONTINUED)
    ["bash", "-c", "set -m; sleep 5 & pid=$!; kill -STOP $pid; sleep 0.2; jobs;"
     " kill -CONT $pid; sleep 0.2; jobs; kill $pid; wait $pid; echo $?"],
]


@pytest.fixture(scope="module")
def stop_probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_probe(tmp_path_factory, "stop_probe")


@pytest.mark.parametrize("fork_mode", ["copy", "cow-pt"])
async def test_stop_and_continue_as_linux(stop_probe: str, fork_mode: str) -> None:
    """tests/stop_probe.c: SIGSTOP and SIGTSTP stop a child (its threads no longer run: the
    pipe it counts into stays quiet), SIGCONT continues it; wait4's WUNTRACED and WCONTINUED
    and waitid's WSTOPPED, WCONTINUED and WNOWAIT report each once; SIGCHLD says CLD_STOPPED
    and CLD_CONTINUED unless SA_NOCLDSTOP; SIGKILL ends a stopped child; SIGCONT drops a
    pending stop signal."""
    async with spawnfd.open_kernel("1G", fork_mode=fork_mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        same(await simulated(k, [stop_probe]), native([stop_probe]))
        assert k._runtime.cont_lots == {}
        k.check()


async def test_shells_with_background_jobs_as_natively() -> None:
    # dash's wait builtin sleeps in rt_sigsuspend until SIGCHLD; bash with set -m puts each
    # job in a group of its own (setpgid in parent and child), asks TIOCGPGRP of a non-tty
    # (ENOTTY) and kills a job by its group.
    async with spawnfd.open_kernel("1G") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        for argv in JOB_LINES:
            same(await simulated(k, argv), native(argv))
        st = k.statistics().syscalls_by_nr
        assert st.get(130, 0) > 0 and st.get(109, 0) >= 4 and st.get(62, 0) > 0
        k.check()


async def test_embryos_join_their_creators_group_and_group_kills_reach_them() -> None:
    # A process launched through the fd model is in its creator's group and session (init's:
    # 1 and 1); kill(0) of a real program in init's group ends an embryo init holds (it has
    # no thread to run anything) and the program itself, and spares init.
    async with spawnfd.open_kernel("1G") as k:
        sh = k.init
        for _ in range(3):
            sh.open("/dev/null", os.O_RDWR)
        r, w = sh.pipe(os.O_CLOEXEC)
        async with sh.create_process() as child:
            prog = await child.load_elf("/usr/bin/python3.11")
            ld = await child.load_elf(prog.interpreter)
            await child.setup_stack(
                ["python3.11", "-c", "import os; print(os.getpid() > 1, os.getpgrp(), os.getsid(0))"],
                ENV, interpreter=ld, program=prog)
            await child.install_fd(1, w)
        sh.close(w)
        assert await child.wait() == 0
        assert await sh.sys.read(r, 100) == b"True 1 1\n"
        embryo = sh.process_create()
        res = await simulated(k, ["python3.11", "-c", "import os, signal; os.kill(0, signal.SIGTERM)"])
        assert res.returncode == -15
        assert embryo.state() == "zombie"
        assert os.WTERMSIG(embryo.wait()) == 15
        k.check()


# The job-control calls of a shell itself (not its children), by name: (result, pid-valued).
JOB_CALLS = {109: "setpgid", 111: "getpgrp", 121: "getpgid", 112: "setsid", 124: "getsid",
             62: "kill", 61: "wait4", 247: "waitid", 16: "ioctl", 130: "rt_sigsuspend",
             34: "pause"}
PID_VALUED = {"getpgrp", "getpgid", "getsid", "setsid", "wait4"}


def _job_call(name: str, ret: int) -> tuple[str, int | str]:
    return (name, "PID" if name in PID_VALUED and ret > 0 else ret)


def strace_job_calls(argv: list[str], out: Path) -> list[tuple[str, int | str]]:
    """The job-control calls of the first process of an ``strace -f`` of argv, in order
    (a call strace shows unfinished is taken where it resumes)."""
    import errno
    import re

    subprocess.run(["strace", "-f", "-qq", "-o", str(out), *argv], input=b"",
                   capture_output=True, env=ENV, cwd="/", check=False)
    lines = out.read_text().splitlines()
    first = lines[0].split()[0]
    calls = []
    for line in lines:
        pid, _, rest = line.partition(" ")
        if pid != first:
            continue
        m = (re.match(r"\s*<\.\.\. ([a-z0-9_]+) resumed>.*\)\s+= (.*)$", rest)
             or re.match(r"\s*([a-z0-9_]+)\(.*\)\s+= (.*)$", rest))
        if not m or m.group(1) not in JOB_CALLS.values():
            continue
        res = m.group(2).strip()
        e = re.match(r"-1 (E[A-Z0-9]+)", res)
        calls.append(_job_call(m.group(1), -getattr(errno, e.group(1)) if e
                               else int(res.split()[0], 0)))
    return calls


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
async def test_bash_job_control_calls_match_strace(tmp_path: Path) -> None:
    # bash -c 'set -m': its own calls (getpgrp, TIOCGPGRP on a non-tty, setpgid of each
    # job, wait4 with WSTOPPED|WCONTINUED, kill(-pgid) of a job) as strace -f shows them.
    argv = ["bash", "-c", "set -m; sleep 0 & wait; (exit 3) & wait $!; sleep 5 & kill %%;"
            " wait $!; echo $?"]
    nat = strace_job_calls(argv, tmp_path / "strace.txt")
    async with spawnfd.open_kernel("1G") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        k.trace_syscalls()
        res = await simulated(k, argv)
        trace = k.syscall_trace()
        shell = trace[0][0]
        sim = [_job_call(JOB_CALLS[nr], ret) for pid, nr, ret, _ in trace
               if pid == shell and nr in JOB_CALLS]
        k.check()
    assert res.stdout == b"143\n"
    assert ("kill", 0) in nat and ("setpgid", 0) in nat and ("ioctl", -25) in nat
    assert sim == nat
