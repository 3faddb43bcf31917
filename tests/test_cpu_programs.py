"""Real programs on the simulated CPU (issue 13, items 3 and 4) against their native runs on
this host: stdout, stderr and exit status must be equal, and for a few programs the system
calls themselves (an ``strace -f`` of the native run against the kernel's own trace).

What is compared, and why:

* Most programs read only host files, which the simulated VFS shows read-only as the host
  has them (attributes as the host's ``statx`` gave them at first lookup), so their output
  is compared byte for byte.
* ``ls -l /`` is compared byte for byte except the lines of ``/proc`` (procfs counts the
  host's live processes) and ``/tmp`` (the host's other users change its link count and
  mtime between the two runs): those keep only mode and name.
* ``ls -l`` of a tree the test creates in a host directory (not directly in ``/tmp``, whose
  files are the simulator's tmpfs) is compared byte for byte: the simulator sees the same
  host files, symbolic links included.
* ``sleep 0.1`` must also take 0.1 s of the trio clock (it parks the task; the host thread is
  never blocked).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import pathlib
from typing import Any

import pytest
import trio

import spawnfd
from spawnfd.sim.machine import open_kernel

ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C"}
HERE = pathlib.Path(__file__).parent


def native(argv: list[str]) -> Any:
    return subprocess.run(argv, input=b"", capture_output=True, env=ENV, cwd="/")


async def simulated(argv: list[str], k: Any = None, sockets: int = 0) -> Any:
    """Run argv on a fresh simulated kernel (or on k): no system call may be unknown except
    ``sockets`` socket(2) calls (ls -l asks nscd through a socket; without one it reads
    /etc/passwd and /etc/group itself, as natively once the connect fails)."""
    async def run(k: Any) -> Any:
        return await spawnfd.run_process(argv, stdin=b"", capture_stdout=True,
                                         capture_stderr=True, check=False, env=ENV, kernel=k)
    if k is not None:
        return await run(k)
    async with open_kernel("2G", cpu=True) as k:
        r = await run(k)
        st = k.statistics()
        assert st.syscalls_unknown == sockets == st.syscalls_by_nr.get(41, 0), st.syscalls_by_nr
        k.check()
        return r


def same(sim: Any, nat: Any, norm: Any = lambda b: b) -> None:
    assert (sim.returncode, norm(sim.stdout), sim.stderr) == \
        (nat.returncode, norm(nat.stdout), nat.stderr)


PROGRAMS = [
    ["true"], ["false"], ["echo", "hi", "there"], ["cat", "/etc/passwd"], ["env"],
    ["head", "-n", "3", "/etc/passwd"], ["wc", "/etc/passwd"], ["ls", "/"], ["ls", "/usr"],
    ["sort", "/etc/passwd"], ["sort", "-r", "/etc/group"],
    # the real dash, builtins only (/bin/sh is the simulated shell until real programs fork)
    ["dash", "-c", "echo hi; pwd; cd /etc && pwd; test -d /tmp && echo dir; "
                   "printf '%s\\n' a b; read x <<EOF\nline\nEOF\necho $x; exit 3"],
    ["python3.11", "-c", "print(1)"],
    ["python3.11", "-c", 'import json, sys; json.dump({"a": [1, 2]}, sys.stdout)'],
    ["ls", "/nonexistent"], ["cat", "/nonexistent"],
    ["readlink", "/proc/self/exe"], ["readlink", "/bin"], ["stat", "-c", "%n %F %s %a", "/bin",
                                                          "/etc/passwd", "/usr"],
    ["python3.11", "-c", "import os; print(os.readlink('/proc/self/exe'))"],
]


@pytest.mark.parametrize("argv", PROGRAMS, ids=lambda a: " ".join(a)[:40])
async def test_program_matches_its_native_run(argv: list[str]) -> None:
    if shutil.which(argv[0], path=ENV["PATH"]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    same(await simulated(argv), native(argv))


async def test_ls_l_root_matches_except_the_proc_link_count() -> None:
    # /proc's link count follows the host's live processes and /tmp's (host) link count and
    # mtime follow whatever else runs on the host (pytest itself makes directories there):
    # both lines keep only their mode and name.
    def norm(b: bytes) -> bytes:
        return re.sub(rb"^(\S+) .* (proc|tmp)$", rb"\1 N \2", b, flags=re.M)
    same(await simulated(["ls", "-l", "/"], sockets=4), native(["ls", "-l", "/"]), norm)


async def test_ls_l_of_a_host_tree(tmp_path: pathlib.Path) -> None:
    d = tmp_path / "tree"
    d.mkdir()
    (d / "file").write_text("hello\n")
    (d / "empty").touch()
    (d / "sub").mkdir()
    (d / "sub" / "inner").write_text("x" * 5000)
    (d / "exe").write_text("#!/bin/sh\n")
    (d / "exe").chmod(0o755)
    (d / "link").symlink_to("file")
    (d / "dangling").symlink_to("nowhere")
    for argv in (["ls", "-l", str(d)], ["ls", "-la", str(d / "sub")], ["ls", "-lR", str(d)],
                 ["ls", "-i", str(d)], ["ls", "-L", "-l", str(d / "link")]):
        async with open_kernel("2G", cpu=True) as k:
            same(await simulated(argv, k), native(argv))


async def test_sleep_parks_on_the_trio_clock() -> None:
    async with open_kernel("2G", cpu=True) as k:
        t0 = trio.current_time()
        r = await simulated(["sleep", "0.1"], k)
        assert trio.current_time() - t0 >= 0.1
        same(r, native(["sleep", "0.1"]))
        assert k.statistics().syscalls_by_nr.get(230) == 1  # clock_nanosleep


async def test_sort_unlinks_its_temporary_files_in_tmpfs() -> None:
    # sort with a tiny buffer spills to temporary files in $TMPDIR (the simulator's tmpfs
    # /tmp), then removes them: unlink must work there, and none may be left behind.
    argv = ["sort", "-S", "1k", "-T", "/tmp", "/etc/services"]
    if not os.path.exists("/etc/services"):
        argv[-1] = "/etc/passwd"
    async with open_kernel("2G", cpu=True) as k:
        r = await simulated(argv, k)
        same(r, native(argv))
        assert k.statistics().syscalls_by_nr.get(87, 0) + \
            k.statistics().syscalls_by_nr.get(263, 0) >= 1  # unlink or unlinkat
        ls = await simulated(["ls", "-a", "/tmp"], k)
        assert ls.stdout == b".\n..\n"


async def test_tmpfs_listing_rename_and_unlink() -> None:
    async with open_kernel("2G", cpu=True) as k:
        sh = "echo a > /tmp/one; echo b > /tmp/two; mv /tmp/one /tmp/three; ls /tmp; " \
             "cat /tmp/three; rm /tmp/two; ls /tmp; rm /tmp/missing; echo $?"
        r = await simulated(["sh", "-c", sh], k)  # the simulated shell: it forks
        assert r.returncode == 0
        assert r.stdout == b"three\ntwo\na\nthree\n1\n"
        assert r.stderr == b"rm: cannot remove '/tmp/missing': No such file or directory\n"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the probe")
    out = tmp_path_factory.mktemp("probe") / "probe"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(HERE / "syscall_probe.c")], check=True)
    return str(out)


async def test_bad_pointers_and_arguments_as_linux(probe: str) -> None:
    """tests/syscall_probe.c calls each new system call with a bad pointer in each pointer
    argument (EFAULT), and with bad flags, sizes and values; it also reads back what
    rt_sigaction and rt_sigprocmask recorded. Its output natively and on the simulator must
    be equal."""
    same(await simulated([probe]), native([probe]))


# ---- strace: the system calls themselves ----

NAMES = {
    0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 5: "fstat", 6: "lstat",
    8: "lseek", 9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 13: "rt_sigaction",
    14: "rt_sigprocmask", 16: "ioctl", 17: "pread64", 19: "readv", 20: "writev", 21: "access",
    22: "pipe", 28: "madvise", 32: "dup", 33: "dup2", 35: "nanosleep", 39: "getpid",
    60: "exit", 63: "uname", 72: "fcntl", 79: "getcwd", 80: "chdir", 87: "unlink",
    89: "readlink", 96: "gettimeofday", 99: "sysinfo", 102: "getuid", 104: "getgid",
    107: "geteuid", 108: "getegid", 110: "getppid", 137: "statfs", 138: "fstatfs",
    158: "arch_prctl", 186: "gettid", 191: "getxattr", 192: "lgetxattr", 201: "time",
    202: "futex", 204: "sched_getaffinity", 217: "getdents64", 218: "set_tid_address",
    221: "fadvise64", 228: "clock_gettime", 230: "clock_nanosleep", 231: "exit_group",
    257: "openat", 262: "newfstatat", 263: "unlinkat", 267: "readlinkat", 269: "faccessat",
    273: "set_robust_list", 302: "prlimit64", 318: "getrandom", 332: "statx", 334: "rseq",
    439: "faccessat2",
}
ERRNO = {name: n for n, name in ((getattr(__import__("errno"), e), e)
                                 for e in dir(__import__("errno")) if e.startswith("E"))}
ADDRESS_RESULTS = {"mmap", "brk", "mremap"}   # addresses: placeholders
PID_RESULTS = {"set_tid_address", "getpid", "gettid", "getppid"}  # pids differ: placeholders
SMALL_ANON = 64 << 10
# Served by the vDSO natively (no syscall instruction, so strace never sees them); the
# simulator maps no vDSO, so glibc makes them as system calls.
VDSO = {"clock_gettime", "gettimeofday", "time", "getcpu"}

# Differences that remain, each with its reason: (reason, test on a differing stretch of the
# aligned sequences: the native calls there, the simulated calls there).
Calls = list[tuple[str, "int | str"]]
KNOWN_DIFFERENCES: list[tuple[str, Any]] = [
    ("rseq(2) registration: the simulator has no restartable sequences (one CPU, no "
     "preemption inside user code to restart); glibc runs without them on ENOSYS",
     lambda nat, sim: nat == [("rseq", 0)] and sim == [("rseq", -38)]),
    ("a procfs file (ls reads /proc/filesystems): the host reports size 0 for it and the "
     "simulated VFS reads a host file up to the size of its snapshot, so it reads as empty "
     "(ls only looks for selinuxfs there; its output is the same)",
     lambda nat, sim: len(nat) == 1 and nat[0][0] == "read" and nat[0][1] > 0 and sim == []),
]
# Removed from both sequences: anonymous mappings (not MAP_FIXED) smaller than SMALL_ANON.
# Natively the kernel maps a vDSO and ld.so makes a link_map for it with its minimal malloc,
# which then runs out of its first page at another moment: its small anonymous mmaps come
# at other places of the sequence, and one more of them (the TLS block) natively. Big
# mappings (malloc's mmap threshold is 128 KiB) stay compared.


def _result(name: str, text: str) -> int | str:
    text = text.strip()
    m = re.match(r"-1 (E[A-Z0-9]+)", text)
    if m:
        return -ERRNO[m.group(1)]
    if text.startswith("?"):
        return "?"  # exit_group: it does not return
    v = int(text.split()[0], 0)
    return "ADDR" if name in ADDRESS_RESULTS else v


def strace_native(argv: list[str], tmp: pathlib.Path) -> list[tuple[str, int | str]]:
    out = tmp / "strace.txt"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=all", "-o", str(out), *argv],
                   input=b"", capture_output=True, env=ENV, check=False)
    calls: list[tuple[str, int | str]] = []
    for line in out.read_text().splitlines():
        line = re.sub(r"^\d+ +", "", line)
        m = re.match(r"([a-z0-9_]+)\((.*)\)\s+= (.*)$", line)
        if not m:
            continue
        name, args = m.group(1), m.group(2).split(", ")
        if name == "mmap" and "MAP_ANONYMOUS" in args[3] and "MAP_FIXED" not in args[3] \
                and int(args[1]) < SMALL_ANON:
            continue
        res = _result(name, m.group(3))
        calls.append((name, "PID" if name in PID_RESULTS and res > 0 else res))
    return calls


def normalise_native(calls: list[tuple[str, int | str]]) -> list[tuple[str, int | str]]:
    # The simulator starts the program by building it (run_process), not by an execve(2)
    # system call the program makes: the native trace's first call is that execve.
    assert calls and calls[0][0] == "execve"
    return calls[1:]


def normalise_simulated(trace: list[tuple[int, int, int, tuple[int, ...]]]
                        ) -> list[tuple[str, int | str]]:
    out: list[tuple[str, int | str]] = []
    for _, nr, ret, args in trace:
        name = NAMES.get(nr, f"syscall_{nr}")
        if name in VDSO:
            continue
        if name == "mmap" and args[3] & 0x20 and not args[3] & 0x10 and args[1] < SMALL_ANON:
            continue  # MAP_ANONYMOUS, not MAP_FIXED: see SMALL_ANON
        if name in PID_RESULTS and ret > 0:
            out.append((name, "PID"))
            continue
        if name in ("exit_group", "exit"):
            out.append((name, "?"))  # as strace shows a call that does not return
            continue
        out.append((name, "ADDR" if name in ADDRESS_RESULTS and ret >= 0 else ret))
    return out


def unexplained(nat: Calls, sim: Calls) -> list[tuple[Calls, Calls]]:
    """The stretches where the aligned sequences differ and no known difference explains."""
    import difflib
    out = []
    sm = difflib.SequenceMatcher(a=nat, b=sim, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op != "equal" and not any(ok(nat[i1:i2], sim[j1:j2]) for _, ok in KNOWN_DIFFERENCES):
            out.append((nat[i1:i2], sim[j1:j2]))
    return out


STRACE_PROGRAMS = [["/bin/true"], ["echo", "hello"], ["cat", "/etc/passwd"], ["ls", "/usr"],
                   ["ls", "-a", "/etc"]]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("argv", STRACE_PROGRAMS, ids=lambda a: " ".join(a))
async def test_system_calls_match_strace(argv: list[str], tmp_path: pathlib.Path) -> None:
    nat = normalise_native(strace_native(argv, tmp_path))
    async with open_kernel("2G", cpu=True) as k:
        k.trace_syscalls()
        await simulated(argv, k)
        sim = normalise_simulated(k.syscall_trace())
    assert len(nat) > 20 and len(sim) > 20
    assert unexplained(nat, sim) == []
