"""The fd model as system calls against glibc's spawners (``spawnfd bench abi``).

``examples/c/compare.c``, compiled with the host's C compiler, runs on the simulator and
spawns ``/bin/true`` N times by each method in turn from the same parent — glibc
``posix_spawn`` (vfork-style clone), ``fork`` + ``execve``, ``vfork`` + ``execve``, and the fd
model's ``fdspawn`` (``examples/c/fdspawn.c``: the ELF loading and the initial stack done by
the parent through the builder fd) in both forms — after the parent mapped and wrote 0, 1 or
8 GiB. Around each method the harness reads the kernel's counters (the parent waits on its
stdin meanwhile); each method's first spawn (lazy PLT binding, first allocations) comes before
the measurement, and a run with no spawns at all (method ``none``) measures the handshake,
which is subtracted. Every figure is a kernel counter divided by N: the same run gives the same
numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any


METHODS = ("posix_spawn", "fork", "vfork", "fdspawn", "fdspawn-ldso")
SIZES_MIB = (0, 1024, 8192)
QUICK_SIZES_MIB = (0, 256)
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "c"
FAULTS = ("anon", "zero", "file", "cow", "wp_reuse")
COUNTERS = ("parent_instructions", "child_instructions", "parent_syscalls", "child_syscalls",
            "tables_allocated", "ptes_copied", "tables_shared", "pages_copied",
            "frames_allocated", *[f"faults_{f}" for f in FAULTS], "window_instructions")


def build(out_dir: str) -> str:
    """Compile compare.c with fdspawn.c; the executable's path. RuntimeError without a C
    compiler or outside a source checkout (examples/c is not installed)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("spawnfd bench abi compiles examples/c/compare.c: no C compiler")
    if not (EXAMPLES / "compare.c").is_file():
        raise RuntimeError(f"spawnfd bench abi needs the source checkout's examples/c "
                           f"(not found at {EXAMPLES})")
    from ..abi import get_include

    exe = os.path.join(out_dir, "compare")
    subprocess.run([cc, "-O1", "-Wall", "-Wextra", "-Werror", f"-I{get_include()}",
                    f"-I{EXAMPLES}", "-o", exe, str(EXAMPLES / "compare.c"),
                    str(EXAMPLES / "fdspawn.c")], check=True)
    return exe


def _snapshot(k: Any, parent: Any) -> dict[str, int]:
    s, c, w = k.statistics(), parent.cpu_statistics(), k.spawn_window()
    snap = {"instructions": s.cpu_instructions, "syscalls": s.syscalls,
            "parent_instructions": c.instructions, "parent_syscalls": c.syscalls,
            "tables_allocated": s.tables_allocated, "ptes_copied": s.ptes_copied,
            "tables_shared": s.tables_shared, "pages_copied": s.pages_copied,
            "frames_allocated": s.frames_allocated, "window_instructions": w.instructions}
    snap.update({f"faults_{f}": getattr(s.faults, f) for f in FAULTS})
    return snap


def _delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    d = {key: b[key] - a[key] for key in a}
    d["child_instructions"] = d.pop("instructions") - d["parent_instructions"]
    d["child_syscalls"] = d.pop("syscalls") - d["parent_syscalls"]
    return d


async def measure(exe: str, n: int, mib: int, mode: str = "copy",
                  methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    """One parent of ``mib`` MiB spawning ``/bin/true`` n times by each method: a row per
    method with the counters per spawn."""
    import spawnfd

    mem = f"{2 * mib // 1024 + 3}G"
    rows = []
    async with spawnfd.open_kernel(mem, fork_mode=mode) as k:
        for _ in range(3):
            k.init.open("/dev/null", os.O_RDWR)
        proc = await spawnfd.open_process([exe, str(n), str(mib), "none", *methods],
                                          kernel=k, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=ENV)
        parent = k._process(proc.pid)
        out, into = proc.stdout, proc.stdin
        assert out is not None and into is not None
        buf = b""

        async def line() -> str:
            nonlocal buf
            while b"\n" not in buf:
                chunk = await out.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"compare ended early: {buf!r}")
                buf += chunk
            ln, _, buf = buf.partition(b"\n")
            return ln.decode()

        deltas = {}
        for m in ("none", *methods):
            assert await line() == f"ready {m}"
            before = _snapshot(k, parent)
            await into.send_all(b"x")
            assert await line() == f"done {m}"
            deltas[m] = _delta(before, _snapshot(k, parent))
            await into.send_all(b"x")
        status = await proc.wait()
        k.check()
    if status != 0:
        raise RuntimeError(f"compare exited with {status}: a spawn failed")
    base = deltas.pop("none")
    for m, d in deltas.items():
        row: dict[str, Any] = {"method": m, "parent_mib": mib, "fork_mode": mode, "n": n}
        row.update({key: (d[key] - base[key]) / n for key in COUNTERS})
        rows.append(row)
    return rows


async def run(quick: bool, tick: Any = None, n: int | None = None,
              sizes: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """Every method at every parent size: one row each."""
    n = n or (2 if quick else 5)
    sizes = sizes or (QUICK_SIZES_MIB if quick else SIZES_MIB)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        exe = build(d)
        for mib in sizes:
            if tick:
                tick(f"parent {mib} MiB: {', '.join(METHODS)}")
            rows += await measure(exe, n, mib)
    return rows


__all__ = ["run", "measure", "build", "METHODS", "SIZES_MIB", "COUNTERS"]
