"""Every public object's repr says what it is and its state, in the units a user reads
(issue 17): hex addresses, ``64 GiB``, how a process ended."""

from __future__ import annotations

import os
import re

import pytest

import spawnfd
from spawnfd._format import describe_wait_status, format_size


@pytest.mark.parametrize("n,text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1 KiB"), (1536, "1.5 KiB"), (512 << 20, "512 MiB"),
    (64 << 30, "64 GiB"), (16 << 40, "16 TiB"), ((1 << 30) + (100 << 20), "1.1 GiB"),
])
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_describe_wait_status() -> None:
    assert describe_wait_status(0) == "exited with status 0"
    assert describe_wait_status(3 << 8) == "exited with status 3"
    assert describe_wait_status(9) == "killed by signal 9 (SIGKILL)"


def test_kernel_repr() -> None:
    with spawnfd.Kernel("64G", share_pagetables=True, thp="always") as k:
        assert repr(k) == ("<spawnfd.Kernel memory=64 GiB fork_mode='copy' "
                           "share_pagetables=True thp='always' thp_cow='split' overcommit=0>")
    assert repr(k).endswith(" closed>")


def test_process_and_address_space_reprs(kernel: spawnfd.Kernel) -> None:
    init = kernel.init
    assert repr(init) == "<spawnfd.Process pid=1 running>"
    child = init.fork()
    child.mm.mmap(2 << 20, 3, 0x22 | 0x8000)  # MAP_POPULATE
    assert re.fullmatch(r"<spawnfd.AddressSpace of pid \d+: 1 mapping, 2 MiB mapped, "
                        r"2 MiB resident>", repr(child.mm)), repr(child.mm)
    child.exit(3)
    assert repr(child) == f"<spawnfd.Process pid={child.pid} zombie>"
    assert repr(child.mm) == f"<spawnfd.AddressSpace of pid {child.pid}: gone (zombie)>"
    init.wait(child.pid)
    assert repr(child) == f"<spawnfd.Process pid={child.pid} exited with status 3>"
    b = init.process_create()
    assert repr(b.process) == f"<spawnfd.Process pid={b.pid} embryo>"
    b.abort()


def test_builder_and_loaded_elf_reprs(kernel: spawnfd.Kernel) -> None:
    b = kernel.init.process_create()
    assert repr(b) == f"<spawnfd.Builder pid={b.pid} embryo fd={b.fd} wait_fd={b.wait_fd}>"
    elf = b.load_elf("/bin/true")
    r = repr(elf)
    assert r.startswith("LoadedElf(path='/bin/true', base=0x") and f"entry={elf.entry:#x}" in r
    b.set_registers(elf.entry, 0)
    b.launch()
    assert repr(b) == f"<spawnfd.Builder pid={b.pid} running wait_fd={b.wait_fd}>"
    b.process.exit(0)
    b.wait()
    assert repr(b) == f"<spawnfd.Builder pid={b.pid} exited with status 0>"
    a = kernel.init.process_create()
    a.abort()
    assert repr(a) == f"<spawnfd.Builder pid={a.pid} aborted>"


async def test_running_reprs() -> None:
    async with spawnfd.open_kernel("256M") as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        pb = k.init.create_process()
        assert repr(pb) == "<spawnfd.ProcessBuilder not entered>"
        async with pb as child:
            prog = await child.load_elf("/bin/true")
            interp = await child.load_elf(prog.interpreter) if prog.interpreter else None
            await child.setup_stack(["true"], interpreter=interp, program=prog)
            assert repr(child) == f"<spawnfd.ProcessBuilder pid={child.pid} embryo>"
        await child.wait()
        assert repr(child) == f"<spawnfd.ProcessBuilder pid={child.pid} exited with status 0>"

        rp = await k.init.fork_exec("/bin/sleep", ["sleep", "1"])
        assert repr(rp) == f"<spawnfd.RunningProcess pid={rp.pid} running>"
        rp.kill()
        await rp.wait()
        assert repr(rp) == f"<spawnfd.RunningProcess pid={rp.pid} killed by signal 9 (SIGKILL)>"

        sp = await spawnfd.open_process(["true"], kernel=k)
        await sp.wait()
        assert repr(sp) == "<spawnfd.SimProcess ['true']: exited with status 0>"
        assert repr(k.init.sys) == "<spawnfd.Sys of pid 1>"
