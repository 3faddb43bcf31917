"""The simulator's own Python ``sh`` stand-in (spawnfd/sim/programs/sh.py) against the host's
real dash on the same command lines (issue 14, item 3): stdout, stderr and exit status equal.

Two kernels run the stand-in: ``open_kernel(cpu=False)``, where every program is a stand-in
(only lines whose programs all have one), and a default kernel with the stand-in registered
for ``/bin/sh`` (which resolves to dash, so ``dash -c`` is the stand-in too) and every other
program — seq, sort, rm, ls, ``[`` — the real one on the simulated CPU. What the stand-in does
not implement is refused with a clear message and status 2 (dash is not compared there).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import trio

import spawnfd
from spawnfd.sim.programs.sh import Unsupported, parse, sh_main

from .test_realspawn import ENV, SHELL_LINES, native, same

# Programs without a stand-in: a line using one runs only in the kernel with a CPU.
REAL_ONLY = ("seq", "sort", "rm", "ls", "[", "tr", "printf", "grep")

EXTRA_LINES = [
    # lists, status, negation
    "false; echo $?; ! false; echo $?; true && false || echo or",
    "echo a &&\n echo b ||\n echo c\necho d",
    # quoting
    "echo 'two  spaces' \"and $? \\$HOME\" a\\ b '' \"\" end",
    'echo "a\\"b\\\\c\\$d" ${#HOME} "${HOME}x"',
    "x='a  b'; echo $x; echo \"$x\"; y=$x; echo \"$y\"",
    "x=' a '; for i in $x b\"\" \"\"; do echo \"[$i]\"; done",
    "echo ~ ~/x \"~\" '~'",
    "x=~/a; y=a:~:b; z=~; echo $x $y $z; echo ~+ a~ ~\"x\" ~/\"a\" ~",
    "echo a\\\nb # a comment",
    # assignments
    "x=1 env; echo \"[$x]\"",
    "export Z=1; Y=2 env; unset Z; env",
    "x=1; (echo $x; x=2); echo $x $(echo $x)",
    "x=1 export y; echo $x",
    # ${name<op>word}
    "echo ${x:-a b} \"${x:-a  b}\" ${x:-\"a  b\"} ${x-d} ${x:-$(echo s t)} \"${x:-~}\" ${x:-~}",
    "x=; echo [${x-}] ${x:-d} ${x+s} [${x:+s}]; echo ${y=v w}; echo $y; echo ${x:=n} $x",
    "echo ${1:-d} ${#:-f} ${?:+g} ${#x} \"${x:-\"in\"}\" ${x:-${y:-nested}} ${x:-a}} ${x:-\\}}",
    "x='p  q'; for i in ${y:-$x} ${z:-\"$x\"} \"${w:-$x}\"; do echo \"[$i]\"; done",
    "echo ${x?}; echo not reached",
    "echo before; echo ${x:?custom message}; echo not reached",
    # command substitution
    'echo "$(echo "$(echo nested "$(echo deep)")")"',
    "echo `echo hi` \"`echo a b`\" $(echo '  split   me  ')",
    "x=$(false); echo $?; echo $(exit 3) $?",
    "x=$(printf 'a\\n\\n\\n'); echo \"[$x]\"",
    # subshells and groups
    "(cd /usr/bin; pwd); pwd; cd /usr && cd .. && pwd && cd - && echo $OLDPWD",
    "echo a; (echo b; exit 3); echo $?",
    "{ echo a; echo b; } | wc -l; (echo c; echo d) | wc -l",
    # if / while / until / for
    "if false; then echo 1; elif true; then echo 2; else echo 3; fi; if false; then :; fi; echo $?",
    'i=; while [ "$i" != xxx ]; do i=x$i; echo $i; done',
    'i=; until [ "$i" = xx ]; do i=x$i; done; echo $i',
    "for i in 1 2 3; do if [ $i = 2 ]; then continue; fi; echo $i; done",
    "for i in 1 2; do for j in a b; do echo $i$j; break 2; done; done; echo after",
    "for i in a b c; do echo $i; done | sort -r",
    "while false; do :; done; echo $?; for i in; do echo no; done; echo ok",
    # read
    'echo "  a  b   c  " | { read x y; echo "[$x][$y]"; echo $?; }',
    'echo "x y" | { read -r a b c; echo "[$a][$b][$c]"; read d; echo $? "[$d]"; }',
    'echo "a\\ b c" | { read x y; echo "[$x][$y]"; }; echo "p\\q" | { read -r x; echo "$x"; }',
    "printf 'one\\ntwo\\nthree\\n' > /tmp/spawnfd-sh-standin-r; while read l; do echo \"<$l>\";"
    " done < /tmp/spawnfd-sh-standin-r; { read a; read b; echo $a $b; cat; } <"
    " /tmp/spawnfd-sh-standin-r",
    "read",
    # break and continue
    "break; echo a; for i in 1 2; do break 5; done; echo b; (for i in 1; do (break); echo in;"
    " done); echo c",
    "for i in 1; do false; break; done; echo $?",
    "for i in 1 2 3; do for j in 1 2; do continue 2; echo no; done; echo $i; done; echo $?",
    # redirections
    "echo a >&2; echo b 1>&2 2>/dev/null; echo c > /dev/null 2>&1 | cat",
    "cat < /nonexist; echo $?; echo hi > /nonexist/x; echo $?; echo hi >&7; echo $?",
    "for i in 1; do echo; done > /nonexist/x; echo $?; (echo) > /nonexist/x; echo $?",
    ": > /nonexist/x; echo not reached",
    # errors as dash says them
    "nosuch; echo $?; /tmp; echo $?; nosuch | echo hi",
    "echo a\nnosuch",
    "cd /nonexist; echo $?; exit abc",
    "exit 300",
    "false; exit",
    "echo a; (",
    "if true; then",
    "while true; do",
    "echo )",
    "done",
    "| echo",
    "echo a && ",
    "echo \"abc",
    "x=`echo",
    "unset x; echo ${x",
    # dash's echo built-in where /bin/echo would differ
    "echo 'a\\nb' 'c\\0101' 'tab\\tx'; echo -n -e y; echo 'stop\\chere'; echo -n n; echo",
    # yes's options, as GNU's getopt reads them
    "yes -m | head -1; yes -- -m | head -1; yes - | head -1; yes --x | head -1; yes a -m | head -1;"
    " yes a -- -m b | head -1; yes -- | head -1",
    # pipelines of real programs (the second kernel)
    "seq 1 5 | sort -rn | head -n 2; seq 3 | head -1",
    "ls / > /dev/null && echo listed; ls /nonexistent 2>&1 | head -c 4; echo",
]

UNSUPPORTED = [
    ("f() { echo; }; f", "a function definition"),
    ("case a in a) echo;; esac", "case"),
    ("cat <<EOF\nx\nEOF", "a here-document (<<)"),
    ("sleep 1 & echo", "a background job (&)"),
    ("echo $((1 + 2))", "arithmetic expansion $((...))"),
    ("echo ${x#prefix}", "parameter expansion ${x#...}"),
    ("echo /bin/*", "pathname expansion (/bin/*)"),
    ("x='?'; echo $x", "pathname expansion (?)"),
    ("read -p prompt x", "read -p"),
    ("eval echo", "the built-in eval"),
    ("set -e", "the built-in set"),
    ("echo a 2>&-", "closing a descriptor (>&-)"),
    ("echo ~root", "~root (another user's home)"),
]


@pytest.fixture(autouse=True)
def _host_tmp_files() -> Any:
    """The native runs write /tmp/spawnfd-sh-standin-* on the host: removed afterwards."""
    yield
    for name in os.listdir("/tmp"):
        if name.startswith("spawnfd-sh-standin-"):
            os.unlink(os.path.join("/tmp", name))


def needs_real(line: str) -> bool:
    """Does the line run a program that has no stand-in?"""
    return any(re.search(rf"(^|[\s;|&(]){re.escape(p)}(\s|$)", line) for p in REAL_ONLY)


async def sim_run(k: Any, argv: list[str], env: dict[str, str] | None = None) -> Any:
    with trio.fail_after(60):
        return await spawnfd.run_process(argv, stdin=b"", capture_stdout=True,
                                         capture_stderr=True, check=False,
                                         env=env or ENV, kernel=k)


def _setup(k: Any, cpu: bool) -> None:
    if cpu:
        k.register_program("/bin/sh", sh_main)
    for _ in range(3):
        k.init.open("/dev/null", os.O_RDWR)
    # the stand-in answers for dash in both kernels: /bin/sh is a symlink to it here
    assert k._runtime.behaviour(shutil.which("dash") or "/bin/dash") is sh_main


def test_the_host_sh_is_dash() -> None:
    assert os.path.realpath(shutil.which("sh") or "") == os.path.realpath(
        shutil.which("dash") or "-")


def test_realspawn_lines_sort_as_expected() -> None:
    # The first seven SHELL_LINES need stand-ins only; the last two run rm, ls, seq, sort.
    assert [needs_real(line) for line in SHELL_LINES] == [False] * 7 + [True] * 2


# Every line in the kernel with a CPU; in the cpu=False kernel, the lines whose programs all
# have stand-ins (the others cannot run there: there is nothing to run them).
CASES = [pytest.param(line, cpu, id=f"{'real-programs' if cpu else 'cpu=False'}-{line}")
         for line in SHELL_LINES + EXTRA_LINES for cpu in (False, True)
         if cpu or not needs_real(line)]


@pytest.mark.parametrize("line,cpu", CASES)
async def test_standin_sh_as_dash(line: str, cpu: bool) -> None:
    async with spawnfd.open_kernel("512M", cpu=cpu) as k:
        _setup(k, cpu)
        argv = ["dash", "-c", line]
        same(await sim_run(k, argv), native(argv))
        assert k._runtime.crashes == {}
        k.check()


@pytest.mark.parametrize("method", ["fork-exec", "copy", "cow-pt", "vfork-exec", "spawnfd"])
async def test_every_spawn_method(method: str) -> None:
    # SPAWNFD_METHOD (or k.shell_method) picks how the stand-in starts its children;
    # subshells and $(...) fork under the kernel's policy, or the fork mode named.
    lines = ["yes | head -3", "(cd /tmp && pwd)", "x=$(echo a); echo $x",
             "for i in 1 2; do echo $i; done | wc -l", "echo a > /tmp/spawnfd-sh-standin-m; cat /tmp/spawnfd-sh-standin-m"]
    async with spawnfd.open_kernel("512M", cpu=False) as k:
        _setup(k, False)
        for line in lines:
            argv = ["dash", "-c", line]
            same(await sim_run(k, argv, {**ENV, "SPAWNFD_METHOD": method}), native(argv))
        k.shell_method = method
        same(await sim_run(k, ["dash", "-c", lines[0]]), native(["dash", "-c", lines[0]]))
        k.check()


@pytest.mark.parametrize("cpu", [False, True], ids=["cpu=False", "real-programs"])
@pytest.mark.parametrize("line,what", UNSUPPORTED)
async def test_unsupported_constructs_are_refused(line: str, what: str, cpu: bool) -> None:
    async with spawnfd.open_kernel("512M", cpu=cpu) as k:
        _setup(k, cpu)
        r = await sim_run(k, ["sh", "-c", line])
        assert r.returncode == 2
        assert r.stderr.decode().endswith(
            f"{what} is not supported by the simulator's sh\n"), r.stderr
        assert r.stderr.startswith(b"sh: 1: ")
        assert r.stdout == b""
        k.check()


def test_unsupported_is_found_by_the_parser() -> None:
    for line, what in UNSUPPORTED[:7]:
        if "$" in what or "pathname" in what:
            continue  # (pathname expansion is found when the word is expanded)
        with pytest.raises(Unsupported, match=re.escape(what)):
            parse(line)
    assert len(parse("a; b\nc && d | e")) == 2


@pytest.mark.parametrize("cpu", [False, True], ids=["cpu=False", "real-programs"])
async def test_a_file_without_hashbang_is_refused(cpu: bool) -> None:
    # dash runs an executable text file without #! as a script of its own: not simulated.
    async with spawnfd.open_kernel("512M", cpu=cpu) as k:
        _setup(k, cpu)
        fd = k.init.open("/tmp/script", os.O_WRONLY | os.O_CREAT, 0o755)
        k.init.write(fd, b"echo from script\n")
        k.init.close(fd)
        r = await sim_run(k, ["sh", "-c", "/tmp/script"])
        assert (r.returncode, r.stdout) == (2, b"")
        assert r.stderr == (b"sh: 1: running /tmp/script (not a binary, no #!) as a script"
                            b" is not supported by the simulator's sh\n")


async def test_sh_without_dash_c_is_refused() -> None:
    async with spawnfd.open_kernel("512M", cpu=False) as k:
        _setup(k, False)
        for argv in (["sh"], ["sh", "-e", "-c", "true"], ["sh", "/tmp/script"]):
            r = await sim_run(k, argv)
            assert (r.returncode, r.stdout) == (2, b"")
            assert r.stderr.endswith(b"is not supported by the simulator's sh\n")


async def test_earlier_lines_run_before_a_refused_one() -> None:
    # As dash, one top-level line is parsed and run at a time.
    async with spawnfd.open_kernel("512M", cpu=False) as k:
        _setup(k, False)
        r = await sim_run(k, ["sh", "-c", "echo before\ncase x in x) ;; esac\necho after"])
        assert (r.returncode, r.stdout) == (2, b"before\n")
        assert r.stderr == b"sh: 2: case is not supported by the simulator's sh\n"


HEAD_CASES = [["head", "-3"], ["head", "-n", "3"], ["head", "-n3"], ["head", "--lines=2"],
              ["head", "-n", "-2"], ["head", "-c", "5"], ["head", "-c-3"], ["head", "-0"],
              ["head"], ["head", "-n", "x"], ["head", "-y"], ["head", "-n"],
              ["head", "-2", "-", "/nonexist"], ["head", "-v", "-1"],
              ["head", "-v", "-n", "1"]]


@pytest.mark.parametrize("argv", HEAD_CASES, ids=" ".join)
async def test_head_standin_as_gnu_head(argv: list[str]) -> None:
    data = b"".join(b"line %d\n" % i for i in range(12)) + b"partial"
    async with spawnfd.open_kernel("256M", cpu=False) as k:
        _setup(k, False)
        with trio.fail_after(60):
            sim = await spawnfd.run_process(argv, stdin=data, capture_stdout=True,
                                            capture_stderr=True, check=False, env=ENV,
                                            kernel=k)
    nat = subprocess.run(argv, input=data, capture_output=True, env=ENV, cwd="/")
    same(sim, nat)


async def test_no_stand_in_message_names_cpu_false() -> None:
    async with spawnfd.open_kernel("256M", cpu=False) as k:
        _setup(k, False)
        r = await sim_run(k, ["sh", "-c", "seq 2"])
        assert r.returncode == 128 + 4  # SIGILL
        assert b"opened with cpu=False" in r.stderr and b"yet" not in r.stderr
