"""execve of real host binaries (binfmt_elf), the initial stack, and the simulated ld.so.

The real kernel is the oracle for layout: a real /bin/cat, /bin/sh and /bin/sleep are started on
the host and left blocked; their /proc/PID/maps must show the same objects, with the same
offsets, permissions and sizes relative to each object's base, as the simulator's after exec
and the simulated ld.so.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest
from elftools.elf.elffile import ELFFile

import spawnfd
from spawnfd.sim.programs import ldso

from .helpers import PAGE

MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ (\d+)\s*(.*)$")
AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_ENTRY = 3, 4, 5, 6, 7, 9
AT_UID, AT_RANDOM, AT_EXECFN = 11, 25, 31
LDSO = os.path.realpath("/lib64/ld-linux-x86-64.so.2")


PT_LOAD, PT_INTERP, PT_NOTE = 1, 3, 4


def tiny_elf(phdrs: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """An x86-64 ET_EXEC: its header and (type, offset, vaddr, filesz, memsz, flags) phdrs."""
    eh = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 62, 1,
                     0x401000, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    return eh + b"".join(struct.pack("<IIQQQQQQ", t, fl, off, va, va, fs, ms, 0x1000)
                         for t, off, va, fs, ms, fl in phdrs)


def test_exec_of_an_elf_without_pt_load_succeeds(kernel: spawnfd.Kernel) -> None:
    # Linux execs it (measured: the process then dies of SIGSEGV at its entry point).
    c = kernel.init.fork()
    fd = c.open("/tmp/noload", os.O_RDWR | os.O_CREAT, 0o755)
    c.write(fd, tiny_elf([(PT_NOTE, 0, 0, 0, 0, 4)]))
    c.close(fd)
    c.execve("/tmp/noload", ["noload"])
    assert "[stack]" in c.mm.maps()
    kernel.check()


def exec_child(k: spawnfd.Kernel, path: str, argv: list[str],
               env: dict[str, str] | None = None) -> spawnfd.Process:
    c = k.init.fork()
    c.execve(path, argv, env if env is not None else {"PATH": "/bin:/usr/bin"})
    return c


def test_exec_maps_program_interpreter_and_stack(kernel: spawnfd.Kernel) -> None:
    c = exec_child(kernel, "/bin/true", ["true"])
    lines = c.mm.maps().splitlines()
    real_true = os.path.realpath("/bin/true")
    assert lines[0].startswith("555555554000-") and lines[0].endswith(real_true)
    assert any(line.endswith(LDSO) for line in lines)
    assert lines[-1].startswith("7ffffffde000-7ffffffff000 rw-p") and lines[-1].endswith("[stack]")
    kernel.check()


def test_initial_stack_and_auxv(kernel: spawnfd.Kernel) -> None:
    argv = ["cat", "-n", "a file"]
    c = exec_child(kernel, "/bin/cat", argv, {"HOME": "/root", "X": "1"})
    rip, rsp = c.registers
    assert rsp % 16 == 0
    st = ldso.read_initial_stack(c)
    assert st.argv == [a.encode() for a in argv]
    assert st.envp == [b"HOME=/root", b"X=1"]
    aux = st.auxv
    assert aux[AT_PAGESZ] == PAGE and aux[AT_PHENT] == 56 and aux[AT_UID] == 0
    with open("/bin/cat", "rb") as f:
        elf = ELFFile(f)
        phoff, phnum, entry = elf.header.e_phoff, elf.header.e_phnum, elf.header.e_entry
        f.seek(phoff)
        phdrs = f.read(phnum * 56)
    assert aux[AT_PHNUM] == phnum
    assert c.mm.read(aux[AT_PHDR], phnum * 56) == phdrs  # the real program headers
    assert aux[AT_ENTRY] == 0x555555554000 + entry
    with open(LDSO, "rb") as f:
        ld_entry = ELFFile(f).header.e_entry
    assert rip == aux[AT_BASE] + ld_entry  # the first thread starts in ld.so
    assert c.mm.read(aux[AT_BASE], 4) == b"\x7fELF"
    assert len(c.mm.read(aux[AT_RANDOM], 16)) == 16
    assert ldso._cstring(c, aux[AT_EXECFN]) == b"/bin/cat"


def test_exec_closes_close_on_exec_descriptors(kernel: spawnfd.Kernel) -> None:
    c = kernel.init.fork()
    keep = c.open("/dev/null", os.O_RDONLY)
    gone = c.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
    c.execve("/bin/true", ["true"])
    assert c.read(keep, 1) == b""
    with pytest.raises(OSError) as ei:
        c.read(gone, 1)
    assert ei.value.errno == errno.EBADF


@pytest.mark.parametrize("setup,path,err", [
    (None, "/nonexistent/prog", errno.ENOENT),
    (None, "/etc", errno.EACCES),                       # a directory
    ("noexec", "/tmp/noexec", errno.EACCES),            # no execute bit
    ("garbage", "/tmp/garbage", errno.ENOEXEC),         # not ELF
    ("short", "/tmp/short", errno.ENOEXEC),             # truncated header
    ("interp-eof", "/tmp/interp-eof", errno.EIO),       # PT_INTERP past the end of the file
    (None, "/dev/null", errno.EACCES),                  # not a regular file
])
def test_exec_errors_leave_the_process_unchanged(kernel: spawnfd.Kernel, setup: str | None,
                                                  path: str, err: int) -> None:
    c = kernel.init.fork()
    if setup:
        fd = c.open(path, os.O_RDWR | os.O_CREAT, 0o644 if setup == "noexec" else 0o755)
        c.write(fd, {"noexec": b"\x7fELF" + bytes(60), "garbage": b"#!nothing\n" * 20,
                     "short": b"\x7fELF\x02\x01",
                     "interp-eof": tiny_elf([(PT_INTERP, 4096, 0, 28, 28, 4),
                                             (PT_LOAD, 0, 0x400000, 176, 176, 5)])}[setup])
        c.close(fd)
    a = c.mm.mmap(PAGE, 3, 0x22)
    c.mm.write(a, b"keep")
    maps = c.mm.maps()
    with pytest.raises(OSError) as ei:
        c.execve(path, ["x"])
    assert ei.value.errno == err
    assert c.mm.maps() == maps and c.mm.read(a, 4) == b"keep"
    kernel.check()


def test_exec_e2big(kernel: spawnfd.Kernel) -> None:
    c = kernel.init.fork()
    with pytest.raises(OSError) as ei:
        c.execve("/bin/true", ["true", "x" * (128 * 1024)])  # one string past MAX_ARG_STRLEN
    assert ei.value.errno == errno.E2BIG
    with pytest.raises(OSError) as ei:
        c.execve("/bin/true", ["true"] + ["y" * 4000] * 600)  # all strings past 2 MiB
    assert ei.value.errno == errno.E2BIG
    c.execve("/bin/true", ["true"] + ["z" * 4000] * 100)  # 400 KB is fine
    assert len(ldso.read_initial_stack(c).argv) == 101


def test_ldso_run_directly_maps_the_program_itself(kernel: spawnfd.Kernel) -> None:
    # What ld.so does when run as `ld.so /bin/cat`: the kernel maps only ld.so; ld.so maps
    # the program (below itself, glibc-style) and its libraries.
    c = exec_child(kernel, LDSO, ["ld.so", "/bin/cat"])
    assert not any(line.endswith("/usr/bin/cat") for line in c.mm.maps().splitlines())
    _, objs = ldso.load_program(c)
    assert [os.path.basename(o.path) for o in objs][:1] == ["cat"]
    names = {line.split()[-1] for line in c.mm.maps().splitlines() if "/" in line}
    assert os.path.realpath("/bin/cat") in names and any("libc.so.6" in n for n in names)
    kernel.check()


# ---- fidelity to the real kernel --------------------------------------------------------

def parse_maps(text: str) -> list[tuple[int, int, str, int, str]]:
    out = []
    for line in text.splitlines():
        m = MAPS_RE.match(line)
        assert m, line
        lo, hi, perms, off, _ino, name = m.groups()
        out.append((int(lo, 16), int(hi, 16), perms, int(off, 16), name))
    return out


def layout(text: str, objects: list[str]) -> dict[str, list[tuple[int, int, str, object]]]:
    """Per object: its lines relative to its base, plus an anonymous bss line right after."""
    lines = parse_maps(text)
    result = {}
    for obj in objects:
        idx = [i for i, ln in enumerate(lines) if ln[4] == obj]
        assert idx, f"{obj} not mapped"
        base = lines[idx[0]][0]
        rel: list[tuple[int, int, str, object]] = [
            (lines[i][0] - base, lines[i][1] - lines[i][0], lines[i][2], lines[i][3])
            for i in idx]
        nxt = idx[-1] + 1
        if nxt < len(lines) and not lines[nxt][4] and lines[nxt][0] == lines[idx[-1]][1]:
            lo, hi, perms = lines[nxt][:3]
            rel.append((lo - base, hi - lo, perms, "anon"))
        result[obj] = rel
    return result


@pytest.fixture
def real_process() -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    # The real program must load exactly what it would load outside this test run: no
    # sanitizer runtimes preloaded by CI's second pass, no locale of ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "ASAN", "UBSAN"))}

    def start(argv: list[str]) -> str:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it has loaded and blocked
            with open(f"/proc/{p.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{p.pid}/maps") as f:
                maps = f.read()
            if state == "S" and "libc.so.6" in maps:
                return maps
            time.sleep(0.01)
        raise TimeoutError(argv)

    yield start
    for p in procs:
        p.kill()
        p.wait()
        if p.stdin:
            p.stdin.close()


@pytest.mark.parametrize("argv", [["/bin/cat"], ["/bin/sh"], ["/bin/sleep", "100"]])
def test_maps_match_the_real_kernel(kernel: spawnfd.Kernel, real_process: object,
                                    argv: list[str]) -> None:
    real = real_process(argv)  # type: ignore[operator]
    c = exec_child(kernel, argv[0], [os.path.basename(argv[0]), *argv[1:]])
    _, objs = ldso.load_program(c)
    prog = os.path.realpath(argv[0])
    libc = os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")
    objects = [prog, LDSO, libc]
    assert layout(c.mm.maps(), objects) == layout(real, objects)
    kernel.check()
