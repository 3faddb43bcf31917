"""The fork-to-exec window of real spawners (``spawnfd bench realspawn``).

Each spawner is a real program on the simulated CPU that starts ``/bin/true`` once: CPython
3.11 holding N MiB of private memory it mapped and write-faulted (``os.fork`` + ``os.execv``,
``subprocess.run``, ``os.posix_spawn``, ``os.system``), and ``dash -c`` and ``bash -c`` at
their own size. The kernel sums what happened between each fork (vfork, clone) and the
child's exec (``Kernel.spawn_window()``): PTEs copied, tables shared, broken and allocated,
pages copied by COW faults, frames allocated, faults by kind, and the instructions the parent and the
child ran there, under each fork policy. The fd model has no window: its row is the whole
spawn from a parent of the same size (init, holding N MiB populated), from
``create_process()`` to the last builder step before the launch.

The parent touches its memory as ``mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)`` does:
the kernel write-faults every page in (an anonymous frame and a present, writable PTE each,
what a bytearray it wrote would leave), but the content stays zero, which the simulator
keeps as metadata. A parent that wrote every byte on the simulated CPU (a bytearray) costs
the host a real page per simulated page and an emulated memset of all of it, so 8 GiB would
hold 8 GiB of this machine; the scenario runs that parent too, ``os.fork`` + ``os.execv``
from at most 1 GiB, to show the window is the same but for the ``mmap`` module's own pages.

Every figure is a kernel counter: each cell runs twice and the two runs must agree.
"""

from __future__ import annotations

import functools
import mmap
import os
import time
from collections.abc import Callable
from typing import Any

import trio

MODES = ("copy", "cow-pt", "cow-pt-eager")
SIZES_MIB = (0, 1024, 8192)
QUICK_SIZES_MIB = (0, 32)
_HOLD = ("import os, subprocess, mmap\n"
         "b = mmap.mmap(-1, {mib} << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS"
         " | mmap.MAP_POPULATE) if {mib} else None\n")
_BYTEARRAY = "import os, subprocess\nb = bytearray(b'x') * ({mib} << 20)\n"
BYTEARRAY = "CPython os.fork + os.execv, parent wrote a bytearray"
BYTEARRAY_MAX_MIB = 1024
PYTHON = {
    "CPython os.fork + os.execv": "pid = os.fork()\nif pid == 0:\n"
                                  "    os.execv('/bin/true', ['true'])\nos.waitpid(pid, 0)\n",
    "CPython subprocess.run": "subprocess.run(['/bin/true'])\n",
    "CPython os.posix_spawn": "os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n",
    "CPython os.system": "os.system('/bin/true')\n",
}
SHELLS = {"dash -c": ["dash", "-c", "/bin/true; :"], "bash -c": ["bash", "-c", "/bin/true; :"]}
FD_MODEL = "fd model (create_process)"
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
FAULTS = ("anon", "zero", "file", "shared", "cow", "wp_reuse", "wp_shared")
COUNTERS = ("ptes_copied", "tables_shared", "tables_copied", "tables_allocated",
            "pages_copied", "frames_allocated", "parent_instructions", "child_instructions", "instructions",
            *(f"faults_{f}" for f in FAULTS))


def memory(mib: int) -> str:
    """The simulated machine for a parent of mib MiB: room for it twice and a GiB more."""
    return f"{max(1, 2 * mib // 1024 + 1)}G"


def _faults(f: Any) -> dict[str, int]:
    return {f"faults_{kind}": getattr(f, kind) for kind in FAULTS}


async def _window(argv: list[str], mode: str, mem: str) -> dict[str, Any]:
    import spawnfd

    async with spawnfd.open_kernel(mem, fork_mode=mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        done = await spawnfd.run_process(argv, kernel=k, env=ENV, check=False)
        w = k.spawn_window()
        k.check()
    k.close()  # its memory goes back now, not when the collector finds the kernel
    row = {c: getattr(w, c) for c in COUNTERS[:6]}
    row.update(parent_instructions=w.instructions - w.child_instructions,
               child_instructions=w.child_instructions, instructions=w.instructions,
               **_faults(w.faults), status=done.returncode, windows=w.windows)
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
    k.close()
    row: dict[str, Any] = {c: getattr(s1, c) - getattr(s0, c) for c in COUNTERS[:6]}
    row.update(parent_instructions=0, child_instructions=0, instructions=0,
               **{f"faults_{f}": getattr(s1.faults, f) - getattr(s0.faults, f) for f in FAULTS},
               status=status, windows=0)
    return row


def cells(mib: int, mode: str) -> list[tuple[str, Callable[[], Any]]]:
    """The spawners measured from a parent of mib MiB under one fork policy."""
    mem = memory(mib)
    out: list[tuple[str, Callable[[], Any]]] = [
        (name, functools.partial(_window, ["python3.11", "-c", _HOLD.format(mib=mib) + code],
                                 mode, mem))
        for name, code in PYTHON.items()]
    if 0 < mib <= BYTEARRAY_MAX_MIB:  # the same fork from a parent that wrote every byte
        code = _BYTEARRAY.format(mib=mib) + PYTHON["CPython os.fork + os.execv"]
        out.insert(1, (BYTEARRAY, functools.partial(_window, ["python3.11", "-c", code],
                                                     mode, mem)))
    if mib == 0:
        out += [(name, functools.partial(_window, argv, mode, mem))
                for name, argv in SHELLS.items()]
    out.append((FD_MODEL, functools.partial(_fd_model, mib, mode, mem)))
    return out


def _groups(rows: list[dict[str, Any]], name: str) -> list[list[str]]:
    """The fork policies under which spawner name gave the same counters at every size,
    grouped (in the order of MODES)."""
    mine = [r for r in rows if r["spawner"] == name]
    groups: dict[tuple[Any, ...], list[str]] = {}
    for mode in dict.fromkeys(r["fork_mode"] for r in mine):
        key = tuple(tuple(r[c] for c in COUNTERS) for r in mine if r["fork_mode"] == mode)
        groups.setdefault(key, []).append(mode)
    return list(groups.values())


def _series(rows: list[dict[str, Any]]) -> None:
    """Name each row's line in the plot: one per group of fork policies that gave the same
    counters at every size ("any policy" if all did); the bytearray parent, a check of the
    populated one, has none."""
    for name in dict.fromkeys(r["spawner"] for r in rows):
        groups = _groups(rows, name)
        for modes in groups:
            label = "any policy" if len(groups) == 1 else ", ".join(modes)
            for r in rows:
                if r["spawner"] == name and r["fork_mode"] in modes:
                    r["series"] = None if name == BYTEARRAY else f"{name}, {label}"


LABELS = {
    "CPython os.fork + os.execv": "CPython `os.fork` + `os.execv`",
    "CPython subprocess.run": "CPython `subprocess.run` (vfork)",
    "CPython os.posix_spawn": "CPython `os.posix_spawn` (glibc, vfork)",
    "CPython os.system": "CPython `os.system` (two windows: python → sh → true)",
    "dash -c": "`dash -c` (vfork; parent 0 only)",
    "bash -c": "`bash -c` (fork; parent 0 only)",
    FD_MODEL: "fd model (`create_process` from init)",
}


SHOWN_FAULTS = ("anon", "file", "cow", "wp_reuse")
FAULT_HELP = {"anon": "anonymous write (a zeroed frame)", "zero": "zero page mapped",
              "file": "file read", "shared": "shared mapping", "cow": "COW copy",
              "wp_reuse": "write-protected page reused in place",
              "wp_shared": "write-protected page of a shared mapping"}


def fault_kinds(rows: list[dict[str, Any]]) -> list[str]:
    """The fault kinds a table shows: the usual four, and any other that happened."""
    return [f for f in FAULTS if f in SHOWN_FAULTS or any(r[f"faults_{f}"] for r in rows)]


def summary(rows: list[dict[str, Any]]) -> str:
    """The README's table, in Markdown: a line per spawner and group of fork policies that
    gave the same counters at every size; PTEs copied at each size, the rest at the largest
    parent (the shells: at theirs, 0)."""
    sizes = sorted({r["parent_mib"] for r in rows})
    gib = " / ".join(f"{m / 1024:g}" for m in sizes)
    kinds = fault_kinds(rows)
    lines = [f"| spawner | fork policy | PTEs copied, parent {gib} GiB | tables shared / broken "
             f"/ allocated | pages copied | frames allocated | faults {' / '.join(kinds)} "
             f"| instructions, parent / child |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in LABELS.items():
        mine = [r for r in rows if r["spawner"] == name]
        if not mine:
            continue
        groups = _groups(rows, name)
        for modes in groups:
            by = {r["parent_mib"]: r for r in mine if r["fork_mode"] == modes[0]}
            r = by[max(by)]  # the largest parent it ran from
            ptes = " / ".join(f"{by[m]['ptes_copied']:,}" if m in by else "–" for m in sizes)
            policy = "any" if len(groups) == 1 else ", ".join(modes)
            faults = " / ".join(f"{r[f'faults_{f}']:,}" for f in kinds)
            lines.append(f"| {label} | {policy} | {ptes} | {r['tables_shared']:,} / "
                         f"{r['tables_copied']:,} / {r['tables_allocated']:,} | "
                         f"{r['pages_copied']:,} | "
                         f"{r['frames_allocated']:,} | {faults} | "
                         f"{r['parent_instructions']:,} / {r['child_instructions']:,} |")
    return "\n".join(lines) + "\n"


async def run(quick: bool, tick: Any = None, sizes_mib: tuple[int, ...] | None = None,
              runs: int = 2) -> list[dict[str, Any]]:
    """Every spawner at every parent size under every fork policy: one row each. Each cell
    runs ``runs`` times; a row's ``repeatable`` says whether every run gave its counters."""
    sizes = sizes_mib if sizes_mib is not None else QUICK_SIZES_MIB if quick else SIZES_MIB
    modes = MODES[:2] if quick else MODES
    rows = []
    for mib in sizes:
        for mode in modes:
            for name, cell in cells(mib, mode):
                results, seconds = [], []
                for i in range(runs):
                    if tick:
                        tick(f"{name}, parent {mib:,} MiB, {mode}, run {i + 1} of {runs}")
                    t = time.perf_counter()
                    results.append(await cell())
                    seconds.append(time.perf_counter() - t)
                row = results[0]
                row["repeatable"] = all(r == row for r in results[1:])
                row["seconds"] = max(seconds)  # wall time of the cell's slowest run
                rows.append({"spawner": name, "parent_mib": mib, "fork_mode": mode, **row})
    _series(rows)
    return rows


__all__ = ["run", "cells", "memory", "summary", "MODES", "SIZES_MIB", "PYTHON", "SHELLS",
           "FD_MODEL", "BYTEARRAY"]
