"""The fork-to-exec window of real spawners (``spawnfd bench realspawn``).

Each spawner is a real program on the simulated CPU that starts ``/bin/true`` once: CPython
3.11 holding a bytearray of N MiB it wrote (``os.fork`` + ``os.execv``, ``subprocess.run``,
``os.posix_spawn``, ``os.system``), and ``dash -c`` and ``bash -c`` at their own size. The
kernel sums what happened between each fork (vfork, clone) and the child's exec
(``Kernel.spawn_window()``): PTEs copied, tables shared and copied, pages copied by COW
faults, frames allocated, and the instructions the parent and the child ran there, under
each fork policy. The fd model has no window: its row is the whole spawn from a parent of the
same size (init, holding N MiB populated), from ``create_process()`` to the last builder
step before the launch. Every figure is a kernel counter: the same run gives the same
numbers.
"""

from __future__ import annotations

import functools
import mmap
import os
from typing import Any

import trio

MODES = ("copy", "cow-pt", "cow-pt-eager")
SIZES_MIB = (0, 256, 1024)
QUICK_SIZES_MIB = (0, 32)
_HOLD = "import os, subprocess\nb = bytearray(b'x') * ({mib} << 20)\n"
PYTHON = {
    "CPython os.fork + os.execv": "pid = os.fork()\nif pid == 0:\n"
                                  "    os.execv('/bin/true', ['true'])\nos.waitpid(pid, 0)\n",
    "CPython subprocess.run": "subprocess.run(['/bin/true'])\n",
    "CPython os.posix_spawn": "os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n",
    "CPython os.system": "os.system('/bin/true')\n",
}
SHELLS = {"dash -c": ["dash", "-c", "/bin/true; :"], "bash -c": ["bash", "-c", "/bin/true; :"]}
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
COUNTERS = ("ptes_copied", "tables_shared", "tables_copied", "pages_copied",
            "frames_allocated", "instructions", "child_instructions")


async def _window(argv: list[str], mode: str, mem: str) -> dict[str, Any]:
    import spawnfd

    async with spawnfd.open_kernel(mem, fork_mode=mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        done = await spawnfd.run_process(argv, kernel=k, env=ENV, check=False)
        w = k.spawn_window()
        k.check()
    row = {c: getattr(w, c) for c in COUNTERS}
    row.update(status=done.returncode, windows=w.windows, cow_faults=w.faults.cow)
    return row


async def _fd_model(mib: int, mode: str, mem: str) -> dict[str, Any]:
    import spawnfd

    async with spawnfd.open_kernel(mem, fork_mode=mode) as k:
        p = k.init
        for _ in range(3):
            p.open("/dev/null", os.O_RDWR)
        if mib:
            a = p.mm.mmap(mib << 20, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            p.mm.populate(a, mib << 20, write=True)
        s0 = k.statistics()
        async with p.create_process() as child:
            prog = await child.load_elf("/bin/true")
            assert prog.interpreter is not None  # a dynamic executable
            ld = await child.load_elf(prog.interpreter)
            await child.setup_stack(["true"], ENV, interpreter=ld, program=prog)
            for fd in (0, 1, 2):
                await child.install_fd(fd, fd)
            s1 = k.statistics()  # the builder's work; the launch (a close) allocates nothing
        status = await child.wait()
        k.check()
    row = {c: getattr(s1, c) - getattr(s0, c) for c in COUNTERS[:4]}
    row.update(frames_allocated=s1.frames_allocated - s0.frames_allocated, instructions=0,
               child_instructions=0, status=status, windows=0,
               cow_faults=s1.faults.cow - s0.faults.cow)
    return row


async def run(quick: bool, tick: Any = None) -> list[dict[str, Any]]:
    """Every spawner at every parent size under every fork policy: one row each."""
    sizes, modes = (QUICK_SIZES_MIB, MODES[:2]) if quick else (SIZES_MIB, MODES)
    rows = []
    for mib in sizes:
        mem = f"{max(1, 2 * mib // 1024 + 1)}G"
        for mode in modes:
            cells: list[tuple[str, Any]] = [
                (name, functools.partial(_window, ["python3.11", "-c",
                                                   _HOLD.format(mib=mib) + code], mode, mem))
                for name, code in PYTHON.items()]
            if mib == 0:
                cells += [(name, functools.partial(_window, argv, mode, mem))
                          for name, argv in SHELLS.items()]
            cells.append(("fd model (create_process)",
                          functools.partial(_fd_model, mib, mode, mem)))
            for name, cell in cells:
                if tick:
                    tick(f"{name}, parent {mib} MiB, {mode}")
                row = await cell()
                rows.append({"spawner": name, "parent_mib": mib, "fork_mode": mode, **row})
    return rows


__all__ = ["run", "MODES", "SIZES_MIB", "PYTHON", "SHELLS"]
