"""The fd model: process_create, the builder fd and the wait handle, launch, and spawn().

Each rule of docs/fd-model.md ("The rules") has a test that fails when the rule is broken: the
builder fd is close-on-exec, never inherited, never duplicated, never installed; builder
operations fail with ESRCH once the embryo is no embryo; an embryo whose creator exits or
execs dies of SIGKILL with nothing leaked; setuid is honoured by execve only; errors leave
the embryo as it was; a built child is the same process fork+exec would have made.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import spawnfd
from spawnfd.sim.builder import Builder
from spawnfd._constants import MAP_FIXED, MAP_FIXED_NOREPLACE
from spawnfd.sim.programs import coreutils as programs
from spawnfd.sim.programs import ldso
from spawnfd.sim.machine import open_kernel
from spawnfd.sim.spawn import Open, spawn

from .helpers import ANON, PAGE, RW, frames, stamp_bytes

LD = "/lib64/ld-linux-x86-64.so.2"
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE = 11, 12, 13, 14, 23
EMBRYO, RUNNING, ZOMBIE = 2, 0, 1  # Builder handle states, as csrc/kernel/spawn.c reports them


# ---- helpers --------------------------------------------------------------------------

def errno_of(fn: Callable[[], object]) -> int:
    """The errno fn fails with (the test fails if it succeeds)."""
    with pytest.raises(OSError) as ei:
        fn()
    assert ei.value.errno is not None
    return ei.value.errno


def killed_by(status: int | None, sig: int) -> bool:
    return status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == sig


def exited(status: int | None, code: int) -> bool:
    return status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == code


def fd_table(p: spawnfd.Process, upto: int = 24) -> dict[int, int]:
    """A process's descriptor table: fd -> identity (inode number) of the open file."""
    out = {}
    for fd in range(upto):
        try:
            out[fd] = p._c.fd_ident(p.pid, fd)[0]
        except OSError as e:
            assert e.errno == errno.EBADF
    return out


@asynccontextmanager
async def machine(seconds: float = 10) -> AsyncIterator[spawnfd.Kernel]:
    """open_kernel("256M", cpu=False) under a deadline: a child that never starts or never
    ends makes the test fail instead of hang. The stand-ins answer (these tests watch the
    maps and stack a program's behaviour sees; tests/test_cpu*.py run the real code)."""
    with trio.fail_after(seconds):
        async with open_kernel("256M", cpu=False) as k:
            yield k


def reap_all(p: spawnfd.Process) -> dict[int, int]:
    """Reap every exited child of p: pid -> wait status."""
    out = {}
    while True:
        try:
            got = p.wait_pid(-1, nohang=True)
        except ChildProcessError:
            return out
        if got is None:
            return out
        out[got[0]] = got[1]


def stdio(p: spawnfd.Process) -> None:
    """/dev/null as 0, 1 and 2, so everything else lands on 3 and up."""
    for _ in range(3):
        p.open("/dev/null", os.O_RDWR)


def warm_page_cache(k: spawnfd.Kernel, *progs: str) -> None:
    """exec each program once, so its pages (and ld.so's) are in the page cache and frame
    counts compare exactly afterwards."""
    for prog in progs or ("/bin/true",):
        c = k.init.fork()
        c.execve(prog, [prog])
        c.exit(0)
        k.init.wait(c.pid)


def build(b: Builder, prog: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """What an fd-model spawn does to the memory: ld.so and the program, the stack."""
    ld = b.load_elf(LD)
    p = b.load_elf(prog)
    b.setup_stack(argv, env or {}, interpreter=ld, program=p)


class _EmbryoView:
    """read_initial_stack() for an embryo, whose memory is read through its builder."""

    def __init__(self, b: Builder) -> None:
        self.registers = b.process.registers
        self.mm = self
        self._b = b

    def read(self, addr: int, n: int) -> bytes:
        return self._b.read(addr, n)


MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$")


def normalise_maps(text: str) -> list[tuple[str, int, int, str, int]]:
    """maps with addresses made relative: a file's lines to the file's first mapping, an
    anonymous line to the object it follows (its bss), the stack to its own start."""
    out = []
    base: dict[str, int] = {}
    owner = "<start>"
    for line in text.splitlines():
        m = MAPS_RE.match(line)
        assert m, line
        lo, hi, perms, off, name = int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), m[5]
        if name:
            owner = name
            base.setdefault(owner, lo)
        key = owner if name else f"{owner} +anon"
        out.append((key, lo - base.setdefault(owner, lo), hi - lo, perms, off))
    return out


# ---- 0. what process_create gives ---------------------------------------------------------

def test_process_create_gives_an_empty_embryo_with_the_creators_ids_and_cwd(
        kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    stdio(init)
    c = init.fork()
    c.setresgid(7, 7, 7)
    c.setresuid(1000, 1000, 1000)
    kernel._c.chdir(c.pid, "/etc")
    b = c.process_create()
    assert (b.fd, b.wait_fd) == (3, 4) and b.pid > c.pid
    assert b.state() == "embryo" and kernel._c.ppid(b.pid) == c.pid
    assert b.process.mm.maps() == "" and b.process.credentials == (1000,) * 3 + (7,) * 3
    assert b.process.mm.statistics().vma_count == 0
    # no thread and no system calls: ordinary calls on the embryo's pid fail
    assert errno_of(lambda: b.process.mm.read(0x10000, 1)) == errno.ESRCH
    assert errno_of(lambda: b.process.open("/dev/null", os.O_RDONLY)) == errno.ESRCH
    assert b.open("passwd", os.O_RDONLY, fd=5) == 5  # relative to the creator's cwd
    assert b.install_fd(-1, 0) == 0  # the lowest free: the table was empty
    b.launch()
    assert fd_table(b.process) == {0: fd_table(c)[0], 5: b.process._c.fd_ident(b.pid, 5)[0]}
    with open("/etc/passwd", "rb") as f:
        assert b.process.pread(5, 64, 0) == f.read(64)
    b.process.exit(0)
    assert exited(b.wait(), 0)
    c.exit(0)
    init.wait(c.pid)


# ---- 1. close-on-exec --------------------------------------------------------------------

def test_exec_of_the_creator_destroys_the_embryo(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    warm_page_cache(kernel)
    before = frames(kernel)
    c = init.fork()
    r, w = c.pipe()
    b = c.process_create()
    a = b.mmap(64 * PAGE, RW, ANON)
    for i in range(64):
        b.write(a + i * PAGE, b"embryo page %d" % i)
    b.install_fd(0, r)
    c.close(r)  # the embryo holds the only read end now
    assert kernel.statistics().anon_frames == 64
    assert b.state() == "embryo"

    c.execve("/bin/true", ["true"])

    # both handles were close-on-exec: gone from the table
    assert errno_of(lambda: c.fstat_size(b.fd)) == errno.EBADF
    assert errno_of(lambda: c.fstat_size(b.wait_fd)) == errno.EBADF
    assert b.fd not in fd_table(c) and b.wait_fd not in fd_table(c)
    # the embryo died of SIGKILL at once: its memory and its pipe end are released now
    assert kernel.statistics().anon_frames == c.mm.statistics().rss_anon_bytes // PAGE
    with pytest.raises(BrokenPipeError):
        c.write(w, b"x")  # no reader left: the embryo's fd 0 was closed
    assert kernel._c.ppid(b.pid) == c.pid
    kernel.check()
    assert killed_by(c.wait(b.pid, nohang=True), signal.SIGKILL)
    c.exit(0)
    init.wait(c.pid)
    assert frames(kernel) == before


def test_abort_after_an_exec_of_the_creator_touches_no_reused_fd(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    c = init.fork()
    b = c.process_create()
    build(b, "/bin/echo", ["echo"])
    assert (b.fd, b.wait_fd) == (0, 1)
    c.execve("/bin/true", ["true"])  # closes both handles, destroys the embryo
    zero = c.open("/dev/zero", os.O_RDONLY)
    one = c.open("/dev/null", os.O_RDONLY)
    assert (zero, one) == (b.fd, b.wait_fd)  # the numbers are reused
    table = fd_table(c)
    b.abort()  # only reaps: the descriptors now at those numbers are not the builder's
    assert fd_table(c) == table and c.read(zero, 3) == bytes(3)
    assert killed_by(b.returncode, signal.SIGKILL)
    with pytest.raises(ChildProcessError):
        c.wait(-1, nohang=True)
    c.exit(0)
    init.wait(c.pid)


async def test_execve_inside_the_block_runs_the_new_program() -> None:
    async def prog(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        async with sys.proc.create_process() as child:
            build(child.builder, "/bin/echo", ["echo", "from the embryo"])
            await child.install_fd(1, 1)
            await sys.execve("/bin/echo", ["echo", "after exec"], {})
        return 5  # not reached

    async with machine() as k:
        k.install_program("/tmp/prog", prog)
        init = k.init
        stdio(init)
        r, w = init.pipe(os.O_CLOEXEC)
        init.dup2(w, 1)
        c = await init.fork_exec("/tmp/prog", ["prog"])
        init.dup2(2, 1)
        init.close(w)
        out = b""
        while data := await init.sys.read(r, 100):
            out += data
        assert out == b"after exec\n"  # the embryo never ran, the exec went through
        assert exited(await c.wait(), 0) and not k._runtime.crashes
        with pytest.raises(ChildProcessError):
            init.wait(-1, nohang=True)  # the embryo was reaped by its creator
        k.check()


RELEASES: dict[str, Callable[[spawnfd.Process, Builder], object]] = {
    "close_range": lambda p, b: p.close_range(b.fd, b.fd),
    "dup2-over-it": lambda p, b: p.dup2(p.open("/dev/null", os.O_RDONLY), b.fd),
}


@pytest.mark.parametrize("how", list(RELEASES))
def test_releasing_the_builder_fd_other_than_by_close_destroys_the_embryo(
        kernel: spawnfd.Kernel, how: str) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    build(b, "/bin/echo", ["echo"])
    a = b.mmap(PAGE, RW, ANON)
    b.write(a, b"x")
    RELEASES[how](init, b)
    assert b.state() == "zombie"  # killed, not launched: no first thread ever
    assert kernel.statistics().anon_frames == 0
    kernel.check()
    b.abort()  # reaps; whatever is at the old number now stays
    assert killed_by(b.returncode, signal.SIGKILL)
    if how == "dup2-over-it":
        assert init.read(b.fd, 1) == b""  # still the /dev/null dup2'd there


def test_kernel_teardown_with_embryos_alive() -> None:
    k = spawnfd.Kernel("64M")
    c = k.init.fork()
    for creator in (k.init, c, c):
        b = creator.process_create()
        build(b, "/bin/echo", ["echo"])
        b.install_fd(0, b.wait_fd)  # a wait handle may be passed on
    k.check()
    k.close()  # frees embryos, builder files and handles in any order


# ---- 2. not inherited by fork or vfork ----------------------------------------------------

@pytest.mark.parametrize("how", ["copy", "cow-pt", "cow-pt-eager", "vfork"])
def test_builder_fd_is_not_inherited_but_the_wait_handle_is(kernel: spawnfd.Kernel,
                                                            how: str) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    a = b.mmap(PAGE, RW, ANON)
    b.write(a, b"mine")
    c = init.vfork() if how == "vfork" else init.fork(how)

    assert errno_of(lambda: c.fstat_size(b.fd)) == errno.EBADF
    assert errno_of(lambda: kernel._c.spawn_mmap(c.pid, b.fd, 0, PAGE, RW, ANON, -1, 0)) \
        == errno.EBADF
    assert errno_of(lambda: kernel._c.spawn_read(c.pid, b.fd, a, 4)) == errno.EBADF
    assert errno_of(lambda: c.close(b.fd)) == errno.EBADF  # nothing to launch from here
    # the wait handle is inherited, and refers to the same embryo
    assert c.fstat_size(b.wait_fd) == 0
    assert kernel._c.handle_target(c.pid, b.wait_fd) == (b.pid, EMBRYO)
    assert c.open("/dev/null", os.O_RDONLY) == b.fd  # the builder's number is free there
    kernel.check()
    c.exit(0)
    init.wait(c.pid)
    # the child's exit did nothing to the embryo: the creator still builds and launches it
    assert b.state() == "embryo" and b.read(a, 4) == b"mine"
    b.launch()
    assert b.state() == "running" and b.process.mm.read(a, 4) == b"mine"
    b.process.exit(3)
    assert exited(b.wait(), 3)


# ---- 3. never duplicated ------------------------------------------------------------------

DUPS: dict[str, Callable[[spawnfd.Process, int, int], object]] = {
    "dup": lambda p, bfd, other: p.dup(bfd),
    "dup2": lambda p, bfd, other: p.dup2(bfd, other),
    "dup2-itself": lambda p, bfd, other: p.dup2(bfd, bfd),
    "dup2-free-slot": lambda p, bfd, other: p.dup2(bfd, 17),
    "dup3": lambda p, bfd, other: p._c.dup3(p.pid, bfd, other, 0),
    "dup3-cloexec": lambda p, bfd, other: p._c.dup3(p.pid, bfd, other, os.O_CLOEXEC),
    "dup3-free-slot": lambda p, bfd, other: p._c.dup3(p.pid, bfd, 18, 0),
}


@pytest.mark.parametrize("how", list(DUPS))
def test_builder_fd_cannot_be_duplicated(kernel: spawnfd.Kernel, how: str) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    other = init.open("/dev/zero", os.O_RDONLY)
    table = fd_table(init)
    assert errno_of(lambda: DUPS[how](init, b.fd, other)) == errno.EINVAL
    assert fd_table(init) == table
    assert init.read(other, 4) == bytes(4)  # still /dev/zero, not closed by the dup
    assert b.state() == "embryo"
    kernel.check()
    # the wait handle is a plain handle: it may be duplicated (like a pidfd)
    w2 = init.dup(b.wait_fd)
    assert kernel._c.handle_target(init.pid, w2) == (b.pid, EMBRYO)
    b.abort()


# ---- 4. never installed -------------------------------------------------------------------

@pytest.mark.parametrize("into", ["its-own-embryo", "another-embryo"])
@pytest.mark.parametrize("flags", [0, os.O_CLOEXEC], ids=["inheritable", "cloexec"])
def test_builder_fd_cannot_be_installed(kernel: spawnfd.Kernel, into: str, flags: int) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    b2 = init.process_create()
    target = b if into == "its-own-embryo" else b2
    null = init.open("/dev/null", os.O_RDONLY)
    target.install_fd(0, null)
    table = fd_table(init)
    for dst in (0, 5, -1):
        assert errno_of(lambda: kernel._c.spawn_install_fd(init.pid, target.fd, b.fd, dst,
                                                           flags)) == errno.EINVAL
        assert errno_of(lambda: target.install_fd(dst, b.fd,
                                                  inheritable=not flags)) == errno.EINVAL
    # and neither builder fd into the other embryo
    other = b2 if target is b else b
    assert errno_of(lambda: target.install_fd(3, other.fd)) == errno.EINVAL
    assert fd_table(init) == table
    kernel.check()
    # launched, the target holds just what was installed: fd 0, /dev/null
    target.launch()
    assert fd_table(target.process) == {0: table[null]}
    assert other.state() == "embryo"  # its builder fd was never given away
    other.launch()
    assert fd_table(other.process) == {}
    for x in (b, b2):
        x.process.exit(0)
        assert exited(x.wait(), 0)


# ---- 5. after launch, kill or reap: ESRCH; on a non-builder fd: EBADF ---------------------

class Ctx:
    """What the builder operations of a test use."""

    def __init__(self, kernel: spawnfd.Kernel, b: Builder) -> None:
        init = kernel.init
        self.init = init
        self.pipe = init.pipe()
        self.ld = b.load_elf(LD)
        self.addr = b.mmap(PAGE, RW, ANON)
        b.write(self.addr, b"before")
        self.taddr = init.mm.mmap(PAGE, RW, ANON)
        init.mm.write(self.taddr, b"template")


# name -> (through the Builder, straight through the C binding)
OPS: dict[str, tuple[Callable[[Builder, Ctx], object],
                     Callable[[Any, int, int, Ctx], object]]] = {
    "mmap": (lambda b, x: b.mmap(PAGE, RW, ANON),
             lambda c, pid, bfd, x: c.spawn_mmap(pid, bfd, 0, PAGE, RW, ANON, -1, 0)),
    "munmap": (lambda b, x: b.munmap(x.addr, PAGE),
               lambda c, pid, bfd, x: c.spawn_munmap(pid, bfd, x.addr, PAGE)),
    "mprotect": (lambda b, x: b.mprotect(x.addr, PAGE, mmap.PROT_READ),
                 lambda c, pid, bfd, x: c.spawn_mprotect(pid, bfd, x.addr, PAGE, 1)),
    "write": (lambda b, x: b.write(x.addr, b"after"),
              lambda c, pid, bfd, x: c.spawn_write(pid, bfd, x.addr, b"after")),
    "read": (lambda b, x: b.read(x.addr, 6),
             lambda c, pid, bfd, x: c.spawn_read(pid, bfd, x.addr, 6)),
    "install_fd": (lambda b, x: b.install_fd(0, x.pipe[0]),
                   lambda c, pid, bfd, x: c.spawn_install_fd(pid, bfd, x.pipe[0], 0, 0)),
    "open": (lambda b, x: b.open("/dev/null", os.O_RDONLY),
             lambda c, pid, bfd, x: c.spawn_open(pid, bfd, "/dev/null", os.O_RDONLY, 0, -1)),
    "chdir": (lambda b, x: b.chdir("/tmp"),
              lambda c, pid, bfd, x: c.spawn_chdir(pid, bfd, "/tmp")),
    "set_credentials": (lambda b, x: b.set_credentials(1000, 1000),
                        lambda c, pid, bfd, x: c.spawn_set_creds(pid, bfd, (1000,) * 6)),
    "set_registers": (lambda b, x: b.set_registers(0x1000, 0x2000),
                      lambda c, pid, bfd, x: c.spawn_set_regs(pid, bfd, 0x1000, 0x2000)),
    "setup_stack": (lambda b, x: b.setup_stack(["/bin/echo", "hi"], interpreter=x.ld),
                    lambda c, pid, bfd, x: c.spawn_setup_stack(
                        pid, bfd, b"/bin/echo", [b"echo"], [], 1, (0, 0, 0, 0), 0x1000)),
    "map_cow": (lambda b, x: b.map_cow(x.init, x.taddr, PAGE),
                lambda c, pid, bfd, x: c.spawn_map_cow(pid, bfd, x.init.pid, x.taddr, PAGE)),
    "load_elf": (lambda b, x: b.load_elf("/bin/echo"), None),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("state", ["launched", "killed", "killed-and-reaped"])
@pytest.mark.parametrize("op", list(OPS))
def test_builder_operations_after_the_embryo_are_esrch(kernel: spawnfd.Kernel, state: str,
                                                       op: str) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    x = Ctx(kernel, b)
    if state == "launched":
        b.launch()
    else:
        b.send_signal(signal.SIGKILL)  # the builder fd stays open: the C checks the state
        assert b.state() == "zombie" and not b.launched
        assert kernel._c.handle_target(init.pid, b.fd) == (b.pid, ZOMBIE)
        if state == "killed-and-reaped":
            assert killed_by(b.wait(), signal.SIGKILL)
    table = fd_table(init)
    via_builder, via_c = OPS[op]
    with pytest.raises(ProcessLookupError) as ei:
        via_builder(b, x)
    assert ei.value.errno == errno.ESRCH
    if state != "launched" and via_c is not None:
        assert errno_of(lambda: via_c(kernel._c, init.pid, b.fd, x)) == errno.ESRCH
    assert fd_table(init) == table  # load_elf closed the file it opened
    if state == "launched":
        assert b.process.mm.read(x.addr, 6) == b"before"  # nothing reached the child
        b.process.exit(0)
        assert exited(b.wait(), 0)
    else:
        b.launch()  # closing the builder fd of a dead embryo launches nothing
        assert kernel.statistics().anon_frames == init.mm.statistics().rss_anon_bytes // PAGE
        if state == "killed":
            assert killed_by(b.wait(), signal.SIGKILL)
    kernel.check()


@pytest.mark.parametrize("kind", ["pipe", "wait-handle", "file", "closed"])
def test_builder_operations_on_a_non_builder_fd_are_ebadf(kernel: spawnfd.Kernel,
                                                          kind: str) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    x = Ctx(kernel, b)
    fd = {"pipe": x.pipe[0], "wait-handle": b.wait_fd,
          "file": init.open("/dev/null", os.O_RDWR), "closed": 20}[kind]
    maps = b.process.mm.maps()
    for name, (_, via_c) in OPS.items():
        if via_c is None:
            continue
        with pytest.raises(OSError) as ei:
            via_c(kernel._c, init.pid, fd, x)
        assert ei.value.errno == errno.EBADF, name
    assert b.process.mm.maps() == maps and b.read(x.addr, 6) == b"before"
    assert kernel._c.handle_target(init.pid, b.wait_fd) == (b.pid, EMBRYO)
    b.abort()
    assert killed_by(b.returncode, signal.SIGKILL)


# ---- 6. the creator exits without launching -----------------------------------------------

def test_embryo_of_an_exiting_creator_is_destroyed(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    stdio(init)
    warm_page_cache(kernel, "/bin/echo")
    before = frames(kernel)
    table = fd_table(init)
    c = init.fork()
    r, w = c.pipe()
    b = c.process_create()
    build(b, "/bin/echo", ["echo", "never"])
    a = b.mmap(2 << 20, RW, ANON)
    for off in range(0, 2 << 20, 4 * PAGE):
        b.write(a + off, b"x" * 100)
    b.install_fd(1, w)
    assert frames(kernel) > before + 32

    c.exit(0)

    # reparented to init as a zombie killed by SIGKILL; its memory and fds went at once
    assert kernel._c.ppid(b.pid) == 1
    assert errno_of(lambda: b.process.mm.maps()) == errno.ESRCH
    assert kernel.statistics().anon_frames == 0
    reaped = reap_all(init)
    assert set(reaped) == {c.pid, b.pid}
    assert exited(reaped[c.pid], 0) and killed_by(reaped[b.pid], signal.SIGKILL)
    assert frames(kernel) == before
    assert fd_table(init) == table


async def test_embryo_of_a_running_creator_that_exits_is_destroyed() -> None:
    async with machine() as k:
        init = k.init
        stdio(init)
        r, w = init.pipe(os.O_CLOEXEC)
        made: list[int] = []

        async def creator(sys: Any) -> int:
            b = sys.proc.process_create()
            build(b, "/bin/echo", ["echo", "never"])
            b.install_fd(1, w)
            made.append(b.pid)
            return 4  # exits with the builder fd open

        pid = await init.sys.fork(creator)
        assert exited((await init.sys.wait(pid))[1], 4)
        init.close(w)
        assert await init.sys.read(r, 100) == b""  # the embryo never ran
        got, status = await init.sys.wait(-1)
        assert got == made[0] and killed_by(status, signal.SIGKILL)
        assert k.statistics().anon_frames == 0
        k.check()


# ---- 7. setuid: execve only ----------------------------------------------------------------

@pytest.mark.parametrize("bit", ["setuid", "setgid"])
def test_setuid_is_honoured_by_execve_only(kernel: spawnfd.Kernel, bit: str) -> None:
    init = kernel.init
    path = "/tmp/suid"
    with open("/bin/true", "rb") as f:
        data = f.read()
    fd = init.open(path, os.O_WRONLY | os.O_CREAT, 0o755)
    init.write(fd, data)
    init.close(fd)
    init.chmod(path, 0o4755 if bit == "setuid" else 0o2755)
    c = init.fork()
    c.setresgid(1000, 1000, 1000)
    c.setresuid(1000, 1000, 1000)
    assert c.credentials == (1000,) * 6
    with pytest.raises(PermissionError):
        c.setresuid(0, 0, 0)

    # the fd model: the embryo gets the creator's ids, whatever the file's bits
    b = c.process_create()
    assert b.process.credentials == (1000,) * 6
    build(b, path, ["suid"])
    assert b.process.credentials == (1000,) * 6
    aux = ldso.read_initial_stack(_EmbryoView(b)).auxv
    assert (aux[AT_UID], aux[AT_EUID], aux[AT_GID], aux[AT_EGID], aux[AT_SECURE]) == \
        (1000, 1000, 1000, 1000, 0)
    b.launch()
    assert b.process.credentials == (1000,) * 6
    b.process.exit(0)
    assert exited(b.wait(), 0)

    # execve honours the bit: effective and saved id of the owner (root)
    c.execve(path, ["suid"])
    aux = ldso.read_initial_stack(c).auxv
    if bit == "setuid":
        assert c.credentials == (1000, 0, 0, 1000, 1000, 1000)
        assert (aux[AT_UID], aux[AT_EUID], aux[AT_SECURE]) == (1000, 0, 1)
    else:
        assert c.credentials == (1000, 1000, 1000, 1000, 0, 0)
        assert (aux[AT_GID], aux[AT_EGID], aux[AT_SECURE]) == (1000, 0, 1)
    c.exit(0)
    init.wait(c.pid)


def test_builder_credentials_can_only_be_dropped(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    c = init.fork()
    c.setresuid(1000, 1000, 1000)
    b = c.process_create()
    with pytest.raises(PermissionError):
        b.set_credentials(0)
    with pytest.raises(PermissionError):
        b.set_credentials(euid=0)
    with pytest.raises(PermissionError):
        b.set_credentials(1000, 5)  # gid 5 is not one the embryo holds
    assert b.process.credentials == (1000, 1000, 1000, 0, 0, 0)  # nothing changed
    b.abort()

    root = init.process_create()
    root.set_credentials(1000, 1000)  # root may drop to anything
    assert root.process.credentials == (1000,) * 6
    with pytest.raises(PermissionError):
        root.set_credentials(0)  # and never come back
    with pytest.raises(PermissionError):
        root.set_credentials(gid=0)
    assert root.process.credentials == (1000,) * 6
    partial = init.process_create()
    partial.set_credentials(euid=1000)  # effective only: the saved 0 allows a way back
    assert partial.process.credentials == (0, 1000, 0, 0, 0, 0)
    partial.set_credentials(euid=0)
    assert partial.process.credentials == (0,) * 6
    root.abort()
    partial.abort()
    c.exit(0)
    init.wait(c.pid)


# ---- 8. the wait handle --------------------------------------------------------------------

def test_wait_handle_only_waits_and_signals(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    stdio(init)
    b = init.process_create()
    assert errno_of(lambda: init.read(b.wait_fd, 8)) == errno.EINVAL
    assert errno_of(lambda: init.write(b.wait_fd, b"x")) == errno.EINVAL
    assert errno_of(lambda: init.pread(b.wait_fd, 8, 0)) == errno.ESPIPE
    assert errno_of(lambda: init.lseek(b.wait_fd, 0, os.SEEK_SET)) == errno.ESPIPE
    for fd in (b.wait_fd, b.fd):  # anon inodes without an mmap operation
        assert errno_of(lambda: init.mm.mmap(PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE,
                                             fd)) == errno.ENODEV
    assert errno_of(lambda: init.read(b.fd, 8)) == errno.EINVAL  # nor is the builder read
    assert errno_of(lambda: init.write(b.fd, b"x")) == errno.EINVAL
    a = b.mmap(PAGE, RW, ANON)
    b.write(a, b"x" * PAGE)
    # signalling an embryo kills it at once, whatever the signal
    b.send_signal(signal.SIGTERM)
    assert b.state() == "zombie"
    assert kernel.statistics().anon_frames == 0
    with pytest.raises(ProcessLookupError):
        b.write(a, b"y")
    assert killed_by(b.wait(), signal.SIGTERM) and b.state() == "reaped"
    assert errno_of(lambda: init.fstat_size(b.wait_fd)) == errno.EBADF  # wait closed it
    with pytest.raises(ProcessLookupError):
        b.send_signal(signal.SIGKILL)
    b.launch()  # the builder fd of a dead embryo: closing it launches nothing
    assert sorted(fd_table(init)) == [0, 1, 2]


async def test_wait_handle_waits_and_signals_a_running_child(
        autojump_clock: trio.testing.MockClock) -> None:
    async with machine() as k:
        init = k.init
        stdio(init)
        async with init.create_process() as sleeper:
            build(sleeper.builder, "/bin/sleep", ["sleep", "1000"])
        async with init.create_process() as falsy:
            build(falsy.builder, "/bin/false", ["false"])
        await trio.sleep(1)
        assert sleeper.builder.state() == "running"
        assert k._c.handle_target(init.pid, sleeper.builder.wait_fd) == (sleeper.pid, RUNNING)
        assert exited(await falsy.wait(), 1) and falsy.returncode == 256
        sleeper.terminate()
        status = await sleeper.wait()
        assert killed_by(status, signal.SIGTERM) and sleeper.returncode == status
        assert await sleeper.wait() == status  # cached
        with pytest.raises(ProcessLookupError):
            sleeper.kill()
        # an embryo signalled from inside the block: it never runs
        async with init.create_process() as child:
            build(child.builder, "/bin/sleep", ["sleep", "1"])
            child.kill()
            assert child.builder.state() == "zombie"
        assert killed_by(await child.wait(), signal.SIGKILL)
        with pytest.raises(ChildProcessError):
            init.wait(-1, nohang=True)
        k.check()


# ---- 9. exceptions and cancellation destroy the embryo ----------------------------------

class Boom(Exception):
    pass


@pytest.mark.parametrize("how", ["exception", "failing-step", "cancelled", "timeout"])
async def test_an_error_inside_the_block_destroys_the_embryo(how: str) -> None:
    async def writer(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        await sys.write(1, b"I ran\n")
        return 0

    async with machine() as k:
        k.install_program("/tmp/writer", writer)
        init = k.init
        stdio(init)
        r, w = init.pipe(os.O_CLOEXEC)
        table = fd_table(init)
        holder: list[Any] = []

        async def body() -> None:
            async with init.create_process() as child:
                holder.append(child)
                build(child.builder, "/tmp/writer", ["writer"])
                await child.install_fd(1, w)
                assert child.builder.state() == "embryo"
                if how == "exception":
                    raise Boom
                if how == "failing-step":
                    await child.open("/nonexistent", os.O_RDONLY, fd=0)
                if how == "cancelled":
                    scope.cancel()
                await trio.sleep(1000)  # cancelled here (or timed out)

        if how == "exception":
            with pytest.raises(Boom):
                await body()
        elif how == "failing-step":
            with pytest.raises(FileNotFoundError):
                await body()
        elif how == "cancelled":
            with trio.CancelScope() as scope:
                await body()
            assert scope.cancelled_caught
        else:
            with trio.move_on_after(0.01) as scope:
                await body()
            assert scope.cancelled_caught
        child = holder[0]
        assert killed_by(child.returncode, signal.SIGKILL)
        assert child.builder.launched
        await trio.testing.wait_all_tasks_blocked()
        init.close(w)
        assert await init.sys.read(r, 100) == b""  # the program never ran
        with pytest.raises(ChildProcessError):
            init.wait(-1, nohang=True)  # and no zombie is left
        table.pop(w)
        assert fd_table(init) == table  # both handles closed
        assert k.statistics().anon_frames == 0
        k.check()


# ---- 10. errors leave the embryo as it was ------------------------------------------------

class Subject:
    """An embryo with a bit of everything, and a snapshot of it."""

    def __init__(self, kernel: spawnfd.Kernel) -> None:
        init = self.init = kernel.init
        self.kernel = kernel
        stdio(init)
        warm_page_cache(kernel, "/bin/echo")
        self.r, self.w = init.pipe()
        b = self.b = init.process_create()
        self.ld = b.load_elf(LD)
        self.prog = b.load_elf("/bin/echo")
        self.addr = b.mmap(4 * PAGE, RW, ANON)
        b.write(self.addr, b"keep")
        b.install_fd(0, self.r)
        self.taddr = init.mm.mmap(2 * PAGE, RW, ANON)
        init.mm.write(self.taddr, b"template")

    def snapshot(self) -> tuple[object, ...]:
        b = self.b
        st = self.kernel.statistics()  # page-cache frames aside: reading files fills it
        return (b.process.mm.maps(), b.process.registers, b.process.credentials,
                b.read(self.addr, 4), b.read(self.ld.start, 64),
                st.frames_used - st.pagecache_frames, fd_table(self.init),
                self.init.mm.maps())


ERRORS: dict[str, tuple[Callable[[Subject], object], int]] = {
    "mmap-bad-flags": (lambda s: s.b.mmap(PAGE, RW, mmap.MAP_ANONYMOUS), errno.EINVAL),
    "mmap-unaligned-fixed": (lambda s: s.b.mmap(PAGE, RW, ANON | MAP_FIXED, addr=s.addr + 1),
                             errno.EINVAL),
    "mmap-noreplace-taken": (lambda s: s.b.mmap(PAGE, RW, ANON | MAP_FIXED_NOREPLACE,
                                                addr=s.addr), errno.EEXIST),
    "mmap-a-handle": (lambda s: s.b.mmap(PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd=s.b.fd),
                      errno.ENODEV),
    "mmap-bad-fd": (lambda s: s.b.mmap(PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd=21),
                    errno.EBADF),
    "munmap-unaligned": (lambda s: s.b.munmap(s.addr + 1, PAGE), errno.EINVAL),
    "mprotect-unmapped": (lambda s: s.b.mprotect(0x10000, PAGE, 1), errno.ENOMEM),
    "open-missing": (lambda s: s.b.open("/nonexistent", os.O_RDONLY, fd=0), errno.ENOENT),
    "open-dir-for-writing": (lambda s: s.b.open("/tmp", os.O_WRONLY, fd=0), errno.EISDIR),
    "install-closed-fd": (lambda s: s.b.install_fd(0, 21), errno.EBADF),
    "install-bad-flags": (lambda s: s.kernel._c.spawn_install_fd(
        s.init.pid, s.b.fd, s.w, 0, os.O_NONBLOCK), errno.EINVAL),
    "install-too-high": (lambda s: s.b.install_fd(1 << 20, s.w), errno.EBADF),
    "chdir-to-a-file": (lambda s: s.b.chdir("/etc/passwd"), errno.ENOTDIR),
    "chdir-missing": (lambda s: s.b.chdir("/nonexistent"), errno.ENOENT),
    "load-elf-not-elf": (lambda s: s.b.load_elf("/etc/passwd"), errno.ENOEXEC),
    "load-elf-missing": (lambda s: s.b.load_elf("/nonexistent"), errno.ENOENT),
    "load-elf-directory": (lambda s: s.b.load_elf("/etc"), errno.EISDIR),
    "load-elf-addresses-taken": (lambda s: s.b.load_elf("/bin/cat"), errno.EEXIST),
    "write-read-only": (lambda s: s.b.write(s.ld.start, b"\0\0\0\0"), errno.EFAULT),
    "write-unmapped": (lambda s: s.b.write(0x10000, b"x"), errno.EFAULT),
    "read-unmapped": (lambda s: s.b.read(0x10000, 1), errno.EFAULT),
    "map-cow-unaligned": (lambda s: s.b.map_cow(s.init, s.taddr + 1, PAGE), errno.EINVAL),
    "map-cow-empty": (lambda s: s.b.map_cow(s.init, s.taddr, 0), errno.EINVAL),
    "map-cow-occupied": (lambda s: s.b.map_cow(s.init, s.addr, PAGE), errno.EEXIST),
    "map-cow-no-source": (lambda s: s.kernel._c.spawn_map_cow(s.init.pid, s.b.fd, 999,
                                                              s.taddr, PAGE), errno.ESRCH),
    "setup-stack-e2big": (lambda s: s.b.setup_stack(["echo", "x" * (200 << 10)],
                                                    program=s.prog, interpreter=s.ld),
                          errno.E2BIG),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_failing_builder_step_changes_nothing(kernel: spawnfd.Kernel, case: str) -> None:
    s = Subject(kernel)
    if case == "map-cow-occupied":
        s.init.mm.mmap(PAGE, RW, ANON | MAP_FIXED, addr=s.addr)  # init has it mapped too
    before = s.snapshot()
    fn, err = ERRORS[case]
    assert errno_of(lambda: fn(s)) == err
    assert s.snapshot() == before
    kernel.check()
    # launched, the child has exactly what was built: fd 0 the pipe, cwd /, the memory
    s.b.setup_stack(["echo"], program=s.prog, interpreter=s.ld)
    s.b.launch()
    child = s.b.process
    assert fd_table(child) == {0: fd_table(s.init)[s.r]}
    assert child.mm.read(s.addr, 4) == b"keep"
    child.close(child.open("etc/passwd", os.O_RDONLY))  # relative to /
    child.exit(0)
    assert exited(s.b.wait(), 0)


@pytest.mark.parametrize("op", ["load_elf", "setup_stack", "map_cow"])
def test_builder_steps_out_of_memory_change_nothing(kernel: spawnfd.Kernel, op: str) -> None:
    init = kernel.init
    warm_page_cache(kernel, "/bin/echo")
    t = init.fork()
    heap = t.mm.mmap((2 << 20) + 3 * PAGE, RW, ANON | MAP_FIXED, addr=0x40000000)
    t.mm.populate(heap, (2 << 20) + 3 * PAGE, write=True, stamp=7)
    steps: dict[str, Callable[[Builder, Any], object]] = {
        "load_elf": lambda b, ld: b.load_elf("/bin/echo"),
        "setup_stack": lambda b, ld: b.setup_stack(["echo", "y" * 9000] * 3, {"A": "b"},
                                                   interpreter=ld),
        "map_cow": lambda b, ld: b.map_cow(t, heap, (2 << 20) + 3 * PAGE),
    }
    failures = 0
    for n in range(1, 64):
        b = init.process_create()
        ld = b.load_elf(LD)
        maps, regs, used = b.process.mm.maps(), b.process.registers, frames(kernel)
        tmaps, tcontent = t.mm.maps(), t.mm.read(heap + (2 << 20), 3 * PAGE)
        kernel.fail_nth_allocation(n)
        try:
            steps[op](b, ld)
        except OSError as e:
            kernel.fail_nth_allocation(0)
            assert e.errno == errno.ENOMEM, n
            failures += 1
            assert b.process.mm.maps() == maps, n
            assert b.process.registers == regs and frames(kernel) == used, n
            assert t.mm.maps() == tmaps and t.mm.read(heap + (2 << 20), 3 * PAGE) == tcontent
            kernel.check()
            b.abort()
            continue
        kernel.fail_nth_allocation(0)
        kernel.check()
        b.abort()
        break
    else:
        pytest.fail("never succeeded")
    assert failures >= 1
    kernel.check()


# ---- 11. fidelity: the same process as fork+exec --------------------------------------------

def recording(main: programs.Main, seen: dict[int, str]) -> programs.Main:
    """A behaviour that notes the process's maps when the program starts, then runs main."""
    async def wrapper(sys: Any, argv: list[str], env: dict[str, str]) -> int:
        seen[sys.pid] = sys.proc.mm.maps()
        return await main(sys, argv, env)
    return wrapper


FIDELITY = {
    "echo": (["/bin/echo", "hello", "world"], b"", b"hello world\n"),
    "cat": (["/bin/cat"], b"copied\nthrough\n", b"copied\nthrough\n"),
    "sh": (["/bin/sh", "-c", "echo x | wc -c"], b"", b"2\n"),
}


async def run_built(init: spawnfd.Process, argv: list[str], env: dict[str, str], stdin: bytes,
                    form: str) -> tuple[int, bytes, int]:
    """Build a child with fds 0/1 on pipes; feed stdin, return (pid, stdout, status)."""
    in_r, in_w = init.pipe(os.O_CLOEXEC)
    out_r, out_w = init.pipe(os.O_CLOEXEC)
    async with init.create_process() as child:
        ld = await child.load_elf(LD)
        if form == "program":
            prog = await child.load_elf(argv[0])
            await child.setup_stack(argv, env, interpreter=ld, program=prog)
        else:  # ld.so /path/prog args: ld.so maps the program itself
            await child.setup_stack(argv, env, interpreter=ld)
        await child.install_fd(0, in_r)
        await child.install_fd(1, out_w)
        await child.install_fd(2, 2)
    for fd in (in_r, out_w):
        init.close(fd)
    await init.sys.write(in_w, stdin)
    init.close(in_w)
    out = b""
    while data := await init.sys.read(out_r, 4096):
        out += data
    init.close(out_r)
    return child.pid, out, await child.wait()


async def run_forked(init: spawnfd.Process, argv: list[str], env: dict[str, str],
                     stdin: bytes) -> tuple[int, bytes, int]:
    in_r, in_w = init.pipe(os.O_CLOEXEC)
    out_r, out_w = init.pipe(os.O_CLOEXEC)
    init.dup2(in_r, 0)
    init.dup2(out_w, 1)
    child = await init.fork_exec(argv[0], argv, env)
    init.dup2(2, 0)
    init.dup2(2, 1)
    for fd in (in_r, out_w):
        init.close(fd)
    await init.sys.write(in_w, stdin)
    init.close(in_w)
    out = b""
    while data := await init.sys.read(out_r, 4096):
        out += data
    init.close(out_r)
    return child.pid, out, await child.wait()


@pytest.mark.parametrize("prog", list(FIDELITY))
async def test_a_built_child_is_the_process_fork_exec_makes(prog: str) -> None:
    argv, stdin, expected = FIDELITY[prog]
    env = {"PATH": "/usr/bin:/bin"}
    seen: dict[int, str] = {}
    async with machine() as k:
        builtin = k._runtime.programs[os.path.realpath(argv[0])]
        k.register_program(argv[0], recording(builtin, seen))
        init = k.init
        stdio(init)
        fpid, fout, fstatus = await run_forked(init, argv, env, stdin)
        bpid, bout, bstatus = await run_built(init, argv, env, stdin, "program")
        lpid, lout, lstatus = await run_built(init, argv, env, stdin, "ld.so")
        assert fout == bout == lout == expected
        assert exited(fstatus, 0) and exited(bstatus, 0) and exited(lstatus, 0)
        assert {fpid, bpid, lpid} <= set(seen)
        assert normalise_maps(seen[bpid]) == normalise_maps(seen[fpid])
        names = {line.split()[-1] for line in seen[bpid].splitlines() if "/" in line}
        assert os.path.realpath(argv[0]) in names and any("libc.so.6" in n for n in names)
        # ld.so run as the program maps the program itself
        assert os.path.realpath(argv[0]) in seen[lpid]
        k.check()


def test_built_memory_and_stack_equal_execve(kernel: spawnfd.Kernel) -> None:
    """Before any code runs: the builder's maps, registers and initial stack are execve's."""
    init = kernel.init
    for prog in ("/bin/echo", "/bin/cat", "/bin/sh"):
        c = init.fork()
        c.execve(prog, [prog, "a b", "c"], {"HOME": "/root"})
        b = init.process_create()
        build(b, prog, [prog, "a b", "c"], {"HOME": "/root"})
        assert normalise_maps(b.process.mm.maps()) == normalise_maps(c.mm.maps())
        assert b.process.mm.maps() == c.mm.maps()  # the layout is deterministic, too
        assert b.process.registers == c.registers
        st_b, st_c = ldso.read_initial_stack(_EmbryoView(b)), ldso.read_initial_stack(c)
        assert st_b.argv == st_c.argv and st_b.envp == st_c.envp
        random = 25
        assert {k: v for k, v in st_b.auxv.items() if k != random} == \
            {k: v for k, v in st_c.auxv.items() if k != random}
        b.launch()
        ldso.load_program(b.process)  # what ld.so does, in both
        ldso.load_program(c)
        assert b.process.mm.maps() == c.mm.maps()
        for p in (b.process, c):
            p.exit(0)
            init.wait(p.pid)


# ---- 12. a child on pipes talks to its parent ----------------------------------------------

async def test_a_child_on_three_pipes_talks_to_its_parent() -> None:
    async with machine() as k:
        init = k.init
        stdio(init)
        ends = [init.pipe(os.O_CLOEXEC) for _ in range(3)]
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = ends
        async with init.create_process() as child:
            build(child.builder, "/bin/cat", ["cat", "-", "/nonexistent"])
            assert await child.install_fd(0, in_r) == 0
            assert await child.install_fd(1, out_w) == 1
            assert await child.install_fd(2, err_w) == 2
        for fd in (in_r, out_w, err_w):
            init.close(fd)
        assert fd_table(child.process) == {0: fd_table(init)[in_w], 1: fd_table(init)[out_r],
                                           2: fd_table(init)[err_r]}
        for line in (b"ping\n", b"pong\n"):
            await init.sys.write(in_w, line)
            assert await init.sys.read(out_r, 100) == line  # a round trip each time
        init.close(in_w)  # EOF: cat goes on to the missing file
        err = b""
        while data := await init.sys.read(err_r, 100):
            err += data
        assert err == b"cat: /nonexistent: No such file or directory\n"
        assert await init.sys.read(out_r, 100) == b""
        assert exited(await child.wait(), 1)
        k.check()


# ---- 13. map_cow: a zygote without fork -------------------------------------------------

HEAP = 0x40000000  # 2 MiB aligned
HEAP_LEN = (8 << 20) + 5 * PAGE  # four whole chunks and a partial one


@pytest.mark.parametrize("rng,shared,copied", [
    ((HEAP, HEAP_LEN), 4, 5),                  # whole chunks shared, partial ptes copied
    ((HEAP + (1 << 20), 4 << 20), 1, 512),     # one whole chunk inside, two half ones
])
def test_map_cow_shares_tables_and_copies_on_write(
        kernel: spawnfd.Kernel, rng: tuple[int, int], shared: int, copied: int) -> None:
    init = kernel.init
    t = init.fork()  # the template
    t.mm.mmap(HEAP_LEN, RW, ANON | MAP_FIXED, addr=HEAP)
    t.mm.populate(HEAP, HEAP_LEN, write=True, stamp=0x5A5A000011112222)
    t.mm.write(HEAP + (3 << 20) + 2048, b"template data")
    t.mm.write(HEAP + (8 << 20), b"partial chunk")
    addr, length = rng
    b = init.process_create()
    s0 = kernel.statistics()
    b.map_cow(t, addr, length)
    s1 = kernel.statistics()
    assert s1.tables_shared - s0.tables_shared == shared
    assert s1.ptes_copied - s0.ptes_copied == copied
    assert s1.pages_copied == s0.pages_copied and s1.anon_frames == s0.anon_frames
    assert b.process.mm.maps() == f"{addr:08x}-{addr + length:08x} rw-p 00000000 00:00 0\n"
    for off in range(0, length, 256 * PAGE):
        assert b.read(addr + off, 64) == t.mm.read(addr + off, 64)
    assert b.read(addr, length) == t.mm.read(addr, length)
    assert b.process.mm.statistics().shared_pagetable_bytes == shared * PAGE

    # through the builder, before launch: the template does not see it
    pristine = stamp_bytes(0x5A5A000011112222, 16)
    b.write(addr + (2 << 20), b"embryo wrote")
    assert t.mm.read(addr + (2 << 20), 16) == pristine
    t.mm.write(addr + (2 << 20) + PAGE, b"template wrote")
    assert b.read(addr + (2 << 20) + PAGE, 16) == pristine
    assert b.read(addr + (2 << 20), 12) == b"embryo wrote"

    b.launch()  # no runtime: the launched child is driven by the caller
    child = b.process
    last = addr + length - PAGE
    child.mm.write(last, b"child wrote")
    assert t.mm.read(last, 11) == pristine[:11]
    t.mm.write(last + 64, b"template again")
    assert child.mm.read(last + 64, 14) == pristine[:14]
    assert child.mm.read(last, 11) == b"child wrote"
    assert child.mm.read(addr + (2 << 20), 12) == b"embryo wrote"
    assert t.mm.read(addr + (2 << 20), 12) == pristine[:12]
    if addr == HEAP:
        assert child.mm.read(HEAP + (3 << 20) + 2048, 13) == b"template data"
        assert child.mm.read(HEAP + (8 << 20), 13) == b"partial chunk"
    kernel.check()
    child.exit(0)
    assert exited(b.wait(), 0)
    assert t.mm.read(HEAP + (3 << 20) + 2048, 13) == b"template data"
    kernel.check()
    t.exit(0)
    init.wait(t.pid)


@pytest.mark.parametrize("source", ["sibling", "parent", "child-of-other-uid", "grandchild"])
def test_map_cow_needs_the_creator_or_its_child(kernel: spawnfd.Kernel, source: str) -> None:
    init = kernel.init
    creator = init.fork()
    src = {"sibling": lambda: init.fork(), "parent": lambda: init,
           "child-of-other-uid": lambda: creator.fork(),
           "grandchild": lambda: creator.fork().fork()}[source]()
    if source == "child-of-other-uid":
        src.setresuid(1000, 1000, 1000)
    a = src.mm.mmap(PAGE, RW, ANON | MAP_FIXED, addr=HEAP)
    src.mm.write(a, b"secret")
    b = creator.process_create()
    with pytest.raises(PermissionError):
        b.map_cow(src, HEAP, PAGE)
    assert b.process.mm.maps() == ""
    # the creator itself and its own children are fine
    own = creator.fork()
    own.mm.mmap(PAGE, RW, ANON | MAP_FIXED, addr=HEAP + PAGE)
    own.mm.write(HEAP + PAGE, b"shared")
    b.map_cow(own, HEAP + PAGE, PAGE)
    assert b.read(HEAP + PAGE, 6) == b"shared"
    creator.mm.mmap(PAGE, RW, ANON | MAP_FIXED, addr=HEAP + 2 * PAGE)
    creator.mm.write(HEAP + 2 * PAGE, b"mine")
    b.map_cow(creator, HEAP + 2 * PAGE, PAGE)
    assert b.read(HEAP + 2 * PAGE, 4) == b"mine"
    b.abort()
    kernel.check()


# ---- 14. spawn() -------------------------------------------------------------------------

METHODS = ["spawnfd", "fork-exec", "vfork-exec"]


def _no_zombie(init: spawnfd.Process) -> None:
    try:
        assert init.wait(-1, nohang=True) is None
    except ChildProcessError:
        pass


@pytest.mark.parametrize("method", METHODS)
async def test_spawn_errors_are_the_parents(method: str) -> None:
    async with machine() as k:
        init = k.init
        stdio(init)
        table = fd_table(init)
        with pytest.raises(FileNotFoundError) as ei:
            await spawn(init, "/nonexistent/prog", ["prog"], method=method)
        assert ei.value.filename == "/nonexistent/prog"
        _no_zombie(init)
        assert fd_table(init) == table
        with pytest.raises(FileNotFoundError) as ei:
            await spawn(init, "/bin/echo", ["echo", "hi"], method=method,
                        fds={0: Open("/nonexistent/input", os.O_RDONLY), 1: 1, 2: 2})
        assert ei.value.filename == "/nonexistent/input"
        _no_zombie(init)
        assert fd_table(init) == table
        for path in ("/etc/passwd", "/etc", "/tmp/noexec"):  # as execve: EACCES
            if path == "/tmp/noexec":
                k.install_program(path, programs.true_main)
                init.chmod(path, 0o644)
            with pytest.raises(PermissionError) as ei:
                await spawn(init, path, ["x"], method=method)
            assert ei.value.filename == path
            _no_zombie(init)
            assert fd_table(init) == table
        # and a good one after all that
        child = await spawn(init, "/bin/true", ["true"], method=method)
        assert exited(await child.wait(), 0)
        with pytest.raises(ChildProcessError):
            init.wait(-1, nohang=True)
        assert k.statistics().anon_frames == 0
        k.check()


async def probe(sys: Any, argv: list[str], env: dict[str, str]) -> int:
    """Writes the descriptors it has open (lseek says EBADF for the others), whether its cwd
    is /tmp (it lives there) and its environment."""
    fds = []
    for fd in range(32):
        try:
            sys.lseek(fd, 0, os.SEEK_CUR)
        except OSError as e:
            if e.errno == errno.EBADF:
                continue
        fds.append(fd)
    try:
        sys.close(sys.open("probe", os.O_RDONLY))
        cwd = "tmp"
    except FileNotFoundError:
        cwd = "elsewhere"
    env_s = ",".join(f"{k}={v}" for k, v in env.items())
    await sys.write(1, f"{' '.join(map(str, fds))}|{cwd}|{env_s}".encode())
    return 0


async def run_probe(init: spawnfd.Process, method: str, **kw: Any) -> str:
    r, w = init.pipe(os.O_CLOEXEC)
    child = await spawn(init, "/tmp/probe", ["probe"], {"ONLY": "this"}, method=method,
                        fds={0: 0, 1: w, 2: 2}, **kw)
    init.close(w)
    out = b""
    while data := await init.sys.read(r, 100):
        out += data
    init.close(r)
    assert exited(await child.wait(), 0)
    return out.decode()


@pytest.mark.parametrize("method", METHODS)
async def test_spawn_gives_fd_model_children_exactly_their_fds(method: str) -> None:
    async with machine() as k:
        k.install_program("/tmp/probe", probe)
        init = k.init
        stdio(init)
        extra = init.open("/dev/zero", os.O_RDONLY)           # inherited by fork
        init.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)      # closed by exec
        fds = "0 1 2" if method == "spawnfd" else f"0 1 2 {extra}"
        assert await run_probe(init, method) == f"{fds}|elsewhere|ONLY=this"
        assert await run_probe(init, method, cwd="/tmp") == f"{fds}|tmp|ONLY=this"
        with pytest.raises(ChildProcessError):
            init.wait(-1, nohang=True)
        k.check()


def test_signal_zero_through_the_wait_handle_only_checks(kernel: spawnfd.Kernel) -> None:
    # pidfd_send_signal(fd, 0): permission and existence only; the embryo lives on.
    b = kernel.init.process_create()
    b.send_signal(0)
    assert b.state() == "embryo"
    b.abort()
