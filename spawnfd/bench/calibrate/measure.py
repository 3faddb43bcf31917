"""The measurements on this host's real kernel: forks against populated size, faults, exec.

The package docstring says what is measured and how. :func:`measure_here` measures in this
process; :func:`measure_isolated` runs this very file in a fresh ``python -I -S`` (``measure.py
--worker MODE [--quick]``), so that "a small Python parent" is the same whatever the caller has
imported. That interpreter can import neither this package nor anything outside the standard
library, so this module imports the standard library only (no relative imports), keeps its own
copy of the page geometry of :mod:`.model` (a test checks they agree), and returns plain
JSON-able data (fork points as :class:`PointRow` dicts, with the fields of
:class:`.model.ForkPoint`).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypedDict

__all__ = [
    "MiB", "PAGE", "PTES_PER_TABLE", "TABLE_SPAN", "PointRow", "Progress", "check_host",
    "describe_machine", "fit_sizes_mib", "measure_here", "measure_isolated",
]

# The page geometry, as in model.py (this file runs alone: it cannot import it from there).
PAGE: Final = mmap.PAGESIZE
PTES_PER_TABLE: Final = 512          #: x86-64 and arm64 (4 KiB pages): entries per page table
TABLE_SPAN: Final = PAGE * PTES_PER_TABLE  #: bytes mapped by one last-level page table (2 MiB)
MiB: Final = 1 << 20

#: ``progress(done, total, what)``: called before each measurement step (and once at the end
#: with done == total), e.g. to drive a progress bar.
Progress = Callable[[int, int, str], None]

_MAP_NORESERVE: Final = int(getattr(mmap, "MAP_NORESERVE", 0x4000))  # Linux: 0x4000 on x86/arm


class PointRow(TypedDict):
    """One measured fork, as JSON: the fields of :class:`.model.ForkPoint`."""

    layout: str
    pages: int
    tables: int
    seconds: float
    repeats: int


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """No garbage collection during timing (a collection is a multi-millisecond outlier), and no
    fork-in-a-threaded-process DeprecationWarning (Python >= 3.12): the children only _exit or
    exec."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*fork\(\).*", category=DeprecationWarning)
            yield
    finally:
        if enabled:
            gc.enable()


def _anon(size: int, *, noreserve: bool = False) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes, 4 KiB pages (no transparent huge pages)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (_MAP_NORESERVE if noreserve else 0)
    m = mmap.mmap(-1, size, flags=flags)
    nohuge = getattr(mmap, "MADV_NOHUGEPAGE", None)
    if nohuge is not None:
        try:
            m.madvise(nohuge)
        except OSError:  # a kernel without THP: 4 KiB pages anyway
            pass
    return m


def _touch(m: mmap.mmap, start: int, end: int, stride: int = PAGE, value: int = 1) -> None:
    """Write one byte per ``stride`` in [start, end) (a strided copy done in C, not a loop)."""
    n = len(range(start, end, stride))
    if n:
        with memoryview(m) as mv:
            mv[start:end:stride] = bytes([value]) * n


def _fork_exit() -> int:
    t = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter_ns() - t


def _fork_exec() -> int:
    t = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    dt = time.perf_counter_ns() - t
    if status != 0:
        raise OSError(f"/bin/true exited with status {status:#x}")
    return dt


def _posix_spawn() -> int:
    t = time.perf_counter_ns()
    pid = os.posix_spawn("/bin/true", ["true"], {})
    os.waitpid(pid, 0)
    return time.perf_counter_ns() - t


def _medians(fns: Sequence[Callable[[], int]], repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each of ``fns``, run interleaved (a, b, a, b, …) so that drift of the
    host hits them alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[int]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, samples):
            out.append(fn())
    return [statistics.median(s) / 1e9 for s in samples]


def _dense_sweep(sizes_mib: Sequence[int], repeats: int, kinds: Callable[[int], Sequence[str]],
                 step: Callable[[str], None]) -> dict[str, list[PointRow]]:
    """At each size (ascending), populate the region's prefix and time fork+exit and/or
    fork+exec (``kinds(size)`` ⊆ {"exit", "exec"}). One region, populated progressively."""
    fns = {"exit": _fork_exit, "exec": _fork_exec}
    out: dict[str, list[PointRow]] = {"exit": [], "exec": []}
    top = max(sizes_mib) * MiB
    m = _anon(max(top, PAGE))
    try:
        done = 0
        for size in sorted(sizes_mib):
            step(f"fork, {size} MiB populated")
            end = size * MiB
            if end > done:
                _touch(m, done, end)
                done = end
            ks = list(kinds(size))
            # fewer repeats of the slow big forks, more of the cheap small ones
            reps = repeats if size <= 64 else max(5, repeats * 2 // 3)
            meds = _medians([fns[k] for k in ks], reps)
            pages = end // PAGE
            for kind, sec in zip(ks, meds):
                out[kind].append(PointRow(layout="dense", pages=pages,
                                          tables=-(-pages // PTES_PER_TABLE), seconds=sec,
                                          repeats=reps))
    finally:
        m.close()
    return out


def _sparse_sweep(table_counts: Sequence[int], repeats: int,
                  step: Callable[[str], None]) -> list[PointRow]:
    """One page populated per 2 MiB: ``n`` page tables holding one PTE each. The populated page
    moves through the table (table i, page i mod 512) so the PTEs do not all share one cache set."""
    out = []
    span = max(table_counts) * TABLE_SPAN
    m = _anon(span, noreserve=True)
    try:
        done = 0
        for n in sorted(table_counts):
            step(f"fork, {n} page tables with one page each")
            with memoryview(m) as mv:
                for i in range(done, n):
                    mv[i * TABLE_SPAN + (i % PTES_PER_TABLE) * PAGE] = 1
            done = n
            (sec,) = _medians([_fork_exit], repeats)
            out.append(PointRow(layout="sparse", pages=n, tables=n, seconds=sec, repeats=repeats))
    finally:
        m.close()
    return out


def _fault_anon(size: int, repeats: int) -> float:
    """Net seconds per anonymous write fault: fresh pages minus present pages."""
    per_page = []
    for _ in range(repeats + 1):
        m = _anon(size)
        try:
            t0 = time.perf_counter_ns()
            _touch(m, 0, size, value=1)
            t1 = time.perf_counter_ns()
            _touch(m, 0, size, value=2)
            t2 = time.perf_counter_ns()
        finally:
            m.close()
        per_page.append(((t1 - t0) - (t2 - t1)) / (size // PAGE))
    return statistics.median(per_page[1:]) / 1e9  # the first is a warm-up


def _fault_file(size: int, repeats: int) -> float:
    """Net seconds per page of read faults on a private read-only mapping of a cached file."""
    d = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    fd, name = tempfile.mkstemp(prefix="spawnfd-calibrate-", dir=d)
    try:
        os.unlink(name)
        chunk = bytes(range(256)) * (MiB // 256)
        for _ in range(size // MiB):
            os.write(fd, chunk)
        os.lseek(fd, 0, os.SEEK_SET)
        while os.read(fd, MiB):  # in the page cache
            pass
        per_page = []
        for _ in range(repeats + 1):
            m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            try:
                with memoryview(m) as mv:
                    t0 = time.perf_counter_ns()
                    bytes(mv[::PAGE])
                    t1 = time.perf_counter_ns()
                    bytes(mv[::PAGE])
                    t2 = time.perf_counter_ns()
            finally:
                m.close()
            per_page.append(((t1 - t0) - (t2 - t1)) / (size // PAGE))
        return statistics.median(per_page[1:]) / 1e9
    finally:
        os.close(fd)


def _fault_cow(size: int, repeats: int) -> float:
    """Net seconds per COW fault: a child writing one byte per page its parent populated."""
    m = _anon(size)
    per_page = []
    try:
        _touch(m, 0, size, value=1)
        for _ in range(repeats + 1):
            r, w = os.pipe()
            try:
                pid = os.fork()
                if pid == 0:
                    try:
                        os.close(r)
                        t0 = time.perf_counter_ns()
                        _touch(m, 0, size, value=2)   # each write copies the page
                        t1 = time.perf_counter_ns()
                        _touch(m, 0, size, value=3)   # now private: no fault
                        t2 = time.perf_counter_ns()
                        os.write(w, f"{(t1 - t0) - (t2 - t1)}\n".encode())
                    finally:
                        os._exit(0)
                os.close(w)
                w = -1
                data = b""
                while chunk := os.read(r, 64):
                    data += chunk
                os.waitpid(pid, 0)
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)
            per_page.append(int(data) / (size // PAGE))
    finally:
        m.close()
    return statistics.median(per_page[1:]) / 1e9


def _rss_anon_pages() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024 // PAGE
    except OSError:
        pass
    return 0


def describe_machine() -> dict[str, Any]:
    """What the model was measured on: uname, CPU model, kernel, CPUs, memory, THP, Python."""
    u = platform.uname()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    thp = ""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            thp = f.read().strip()
    except OSError:
        pass
    return {
        "uname": {"system": u.system, "node": u.node, "release": u.release,
                  "version": u.version, "machine": u.machine},
        "cpu_model": cpu, "kernel_release": u.release, "cpu_count": os.cpu_count(),
        "memory_bytes": mem, "page_size": PAGE, "transparent_hugepage": thp,
        "python": platform.python_version(), "python_implementation":
            platform.python_implementation(),
        "parent_rss_anon_pages": _rss_anon_pages(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclasses.dataclass(frozen=True)
class _Plan:
    sizes: tuple[int, ...]     # MiB, dense fork sweep
    sparse: tuple[int, ...]    # page tables, sparse fork sweep
    validate: tuple[int, ...]  # MiB, validation sweep (fitted on the smaller half)
    fork_repeats: int
    fault_mib: int
    fault_repeats: int
    exec_repeats: int


_PLANS: Final = {
    False: _Plan(sizes=(0, 16, 32, 64, 128, 256, 512), sparse=(256, 512, 1024),
                 validate=(0, 16, 32, 64, 128, 256, 384, 512), fork_repeats=31, fault_mib=64,
                 fault_repeats=9, exec_repeats=61),
    True: _Plan(sizes=(0, 16, 64, 128), sparse=(128, 256, 512), validate=(0, 16, 32, 64, 128),
                fork_repeats=15, fault_mib=16, fault_repeats=5, exec_repeats=31),
}


def _fit_sizes(plan: _Plan) -> tuple[int, ...]:
    return plan.validate[: (len(plan.validate) + 1) // 2]


def fit_sizes_mib(quick: bool) -> tuple[int, ...]:
    """The sizes (MiB) a validation fits on: the smaller half of the validation's sizes.

    Args:
        quick: the quick plan's sizes rather than the full one's.

    Returns:
        The sizes, ascending.
    """
    return _fit_sizes(_PLANS[quick])


class _Steps:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total, what)
        self.done += 1

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total, "done")


def check_host() -> None:
    """Raise ``OSError`` unless this is Linux with ``os.fork``."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        raise OSError("spawnfd calibrate measures a Linux kernel; this is " + sys.platform)


def measure_here(mode: str, quick: bool, progress: Progress | None) -> dict[str, Any]:
    """The measurements of ``mode`` ("calibrate" or "validate"), in this process, as plain
    JSON-able data."""
    plan = _PLANS[quick]
    fit = _fit_sizes(plan)
    n_steps = (len(plan.sizes) + 4 if mode == "calibrate" else len(plan.validate))
    steps = _Steps(n_steps + len(plan.sparse) + 1, progress)
    t_start = time.perf_counter()
    res: dict[str, Any] = {"mode": mode, "quick": quick}
    with _quiet_gc():
        res["rss_anon_pages"] = _rss_anon_pages()
        steps("exec of /bin/true from a small parent")
        res["small"] = _medians([_fork_exit, _fork_exec, _posix_spawn], plan.exec_repeats,
                                warmup=3)
        if mode == "calibrate":
            sweep = _dense_sweep(plan.sizes, plan.fork_repeats, lambda _: ("exit",), steps)
        else:
            sweep = _dense_sweep(plan.validate, plan.fork_repeats,
                                 lambda s: ("exit", "exec") if s in fit else ("exec",), steps)
        res["exit"] = sweep["exit"]
        res["exec"] = sweep["exec"]
        res["sparse"] = _sparse_sweep(plan.sparse, plan.fork_repeats, steps)
        if mode == "calibrate":
            steps("anonymous faults")
            res["fault_anon"] = _fault_anon(plan.fault_mib * MiB, plan.fault_repeats)
            steps("file faults")
            res["fault_file"] = _fault_file(plan.fault_mib * MiB, plan.fault_repeats)
            steps("COW faults")
            res["fault_cow"] = _fault_cow(plan.fault_mib * MiB, plan.fault_repeats)
    steps.finish()
    res["elapsed"] = time.perf_counter() - t_start
    return res


def _worker(argv: Sequence[str]) -> int:
    """``measure.py --worker MODE [--quick]``: :func:`measure_here` in a minimal interpreter,
    reporting progress and the result as JSON lines on stdout."""
    def progress(done: int, total: int, what: str) -> None:
        print(json.dumps({"progress": [done, total, what]}), flush=True)

    print(json.dumps({"result": measure_here(argv[0], "--quick" in argv[1:], progress)}),
          flush=True)
    return 0


def measure_isolated(mode: str, quick: bool, progress: Progress | None) -> dict[str, Any]:
    """:func:`measure_here` in a fresh ``python -I -S`` running this file (standard library only),
    so that the fork of "a small Python parent" does not depend on what the caller has imported
    (trio, matplotlib, pytest: every resident page and mapping is copied by each fork)."""
    cmd = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--worker", mode]
    if quick:
        cmd.append("--quick")
    result: dict[str, Any] | None = None
    with tempfile.TemporaryFile() as err, subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            text=True) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                msg = json.loads(line)
                if "progress" in msg and progress is not None:
                    done, total, what = msg["progress"]
                    progress(int(done), int(total), str(what))
                elif "result" in msg:
                    result = msg["result"]
        except BaseException:
            proc.kill()
            raise
        rc = proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
    if rc != 0 or result is None:
        raise RuntimeError(f"the calibration worker failed (exit status {rc}): {stderr[-3000:]}")
    return result



if __name__ == "__main__":
    # measure_isolated()'s worker, in a fresh `python -I -S`: the standard library only
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("usage: measure.py --worker MODE [--quick] (the worker of `spawnfd calibrate`)")
    sys.exit(_worker(sys.argv[2:]))
