"""A cost model of this host's real Linux kernel: ``spawnfd calibrate``.

The simulator counts what a kernel does (PTEs copied, page tables allocated, faults by kind,
forks, execs) exactly, but its wall time is the simulator's, not a kernel's. This module measures
the real kernel the tests run on and fits per-operation costs, so that a set of simulator counters
can be turned into "the time a real kernel on this host would take"::

    spawnfd calibrate                 # measure (about 3 s), print, store the model
    spawnfd calibrate --validate      # also: fit on small parents, predict fork+exec of big ones
    spawnfd calibrate --quick --json  # smaller sizes, the model as JSON on stdout

From Python::

    from spawnfd.calibrate import CostModel, calibrate, try_load
    model = try_load() or calibrate()
    seconds = model.predict({"forks": 1, "execs": 1, "ptes_copied": 262_144,
                             "tables_allocated": 512})

What is measured — in a fresh ``python -I -S`` running this file (standard library only), so that
"a small Python parent" is the same whatever the caller has imported; ``time.perf_counter_ns``,
the garbage collector off, medians of repeats after warm-ups; anonymous regions are
``MAP_PRIVATE | MAP_ANONYMOUS`` with ``MADV_NOHUGEPAGE``, so the kernel maps 4 KiB pages like
the simulator does:

1. **fork against populated size** — the Python parent maps N MiB, writes one byte per page, and
   times ``os.fork()`` + child ``os._exit(0)`` + ``os.waitpid``; this includes the child's
   teardown of the copied page tables, which is what a fork+exec also pays (exec drops the copied
   mm). *Dense* points populate every page (PTEs = pages, page tables = pages / 512); *sparse*
   points populate one page per 2 MiB (one PTE per page table), so the per-PTE and the
   per-page-table cost can be told apart — with dense points alone they are collinear.
2. **anonymous fault** — writing one byte per page of a fresh anonymous region, minus the same
   writes once the pages are present: the net cost per page (allocate, zero, map).
3. **file fault** — a private read-only mapping of a file already in the page cache, one byte read
   per page, minus the same reads once mapped. Per *page*: Linux maps up to 16 neighbouring
   page-cache pages per fault ("fault-around"), and that is part of the real per-page cost.
4. **COW fault** — the parent populates a region and forks; the child writes one byte per
   inherited page (each write copies a page), minus a second pass, measured inside the child and
   reported through a pipe.
5. **exec of a small binary** — fork + ``execv("/bin/true")`` + ``waitpid`` from the Python parent
   holding nothing extra, interleaved with fork + ``_exit`` at the same size: the difference is the
   fixed cost of exec (``exec_base``). ``os.posix_spawn`` of ``/bin/true`` is recorded beside it.

A run whose fit inputs are implausible (fork time not growing with size, exec not costing
anything, a cost not positive) was disturbed by another process and is measured again, up to
three times (``Measurements.attempts``).

The fit (:func:`fit_fork`) is a weighted least-squares fit of
``fork = fork_base + per_pte * PTEs + per_table * page_tables`` over the dense and sparse points,
weighted by 1/time² so that it minimises *relative* error (timing noise is roughly proportional,
and the validation target is a relative one). ``fork_base`` is the intercept: forking a small
Python parent (the interpreter's own few thousand resident anonymous pages, its mappings and
its post-fork work included — ``machine["parent_rss_anon_pages"]``). The fault costs and
``exec_base`` are direct medians.

:func:`validate` checks the model honestly: it fits on fork+_exit of the smaller half of the
sizes only, then measures real fork+exec at every size and compares with
``predict(fork_counters(pages, exec=True))``; the target is a maximum error of 15 %.

The model is stored as JSON at ``$SPAWNFD_COST_MODEL``, else
``$XDG_CACHE_HOME/spawnfd/cost-model.json`` (``~/.cache/spawnfd/cost-model.json``), with a
description of the machine it was measured on.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

__all__ = [
    "COSTS", "COUNTERS", "TARGET_ERROR_PCT", "CostModel", "ForkPoint", "Measurements", "Progress",
    "ValidationReport", "ValidationRow", "calibrate", "counters_between", "default_path",
    "describe_machine", "fit_fork", "fork_counters", "least_squares", "main", "try_load",
    "validate",
]

PAGE: Final = mmap.PAGESIZE
PTES_PER_TABLE: Final = 512          #: x86-64 and arm64 (4 KiB pages): entries per page table
TABLE_SPAN: Final = PAGE * PTES_PER_TABLE  #: bytes mapped by one last-level page table (2 MiB)
MiB: Final = 1 << 20
TARGET_ERROR_PCT: Final = 15.0       #: what ``validate`` must meet (max |error|)
FORMAT: Final = "spawnfd-cost-model"
FORMAT_VERSION: Final = 1

#: The counter names :meth:`CostModel.predict` accepts (a missing key counts 0).
COUNTERS: Final = ("ptes_copied", "tables_allocated", "frames_allocated", "faults_anon",
                   "faults_file", "faults_cow", "pages_copied", "forks", "execs")

#: The seven costs of a :class:`CostModel`, in seconds.
COSTS: Final = ("fork_base", "per_pte", "per_table", "fault_anon", "fault_file", "fault_cow",
                "exec_base")

#: ``progress(done, total, what)``: called before each measurement step (and once at the end
#: with done == total), e.g. to drive a progress bar.
Progress = Callable[[int, int, str], None]

_MAP_NORESERVE: Final = int(getattr(mmap, "MAP_NORESERVE", 0x4000))  # Linux: 0x4000 on x86/arm


# --------------------------------------------------------------------------------------------
# The model


@dataclasses.dataclass(frozen=True)
class ForkPoint:
    """One measured fork: the parent's populated layout and the median time of fork+_exit+wait
    (or fork+exec+wait, in :func:`validate`)."""

    layout: str      #: "dense" (every page populated) or "sparse" (one page per page table)
    pages: int       #: populated pages in the region = PTEs a classic fork copies for it
    tables: int      #: last-level page tables covering them
    seconds: float   #: median
    repeats: int     #: samples in the median

    @property
    def mib(self) -> float:
        """Populated MiB (dense) — for sparse points, the populated pages' size as well."""
        return self.pages * PAGE / MiB


@dataclasses.dataclass(frozen=True)
class Measurements:
    """The raw medians a :class:`CostModel` was fitted from (seconds)."""

    fork: tuple[ForkPoint, ...]
    fault_anon: float         #: per page
    fault_file: float         #: per page
    fault_cow: float          #: per page
    fork_exit_small: float    #: fork + _exit + waitpid, parent holding nothing extra
    fork_exec_small: float    #: fork + execv("/bin/true") + waitpid, same parent
    posix_spawn_small: float  #: os.posix_spawn("/bin/true") + waitpid, same parent
    quick: bool
    elapsed: float            #: wall time of the calibration (of the last attempt)
    attempts: int = 1         #: runs measured: a disturbed (implausible) run is measured again


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Per-operation costs of this host's kernel, in seconds. See :meth:`predict`."""

    fork_base: float   #: fixed cost of fork + child exit + wait (of the calibrating parent)
    per_pte: float     #: per PTE copied at fork (incl. its share of the child's teardown)
    per_table: float   #: per page table allocated (and torn down)
    fault_anon: float  #: per anonymous write fault (allocate + zero + map a page)
    fault_file: float  #: per page of a private file read fault from the page cache
    fault_cow: float   #: per page copied by a copy-on-write fault
    exec_base: float   #: fixed cost of exec of a small binary (/bin/true) and its exit
    machine: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    measurements: Measurements | None = dataclasses.field(default=None, compare=False)

    def costs(self) -> dict[str, float]:
        """The seven costs by name (seconds)."""
        return {name: float(getattr(self, name)) for name in COSTS}

    def breakdown(self, counters: Mapping[str, float]) -> dict[str, float]:
        """:meth:`predict`, term by term: cost name -> seconds.

        ``forks`` × fork_base, ``execs`` × exec_base, ``ptes_copied`` × per_pte,
        ``tables_allocated`` × per_table, ``faults_anon`` × fault_anon, ``faults_file`` ×
        fault_file, and max(``faults_cow``, ``pages_copied``) × fault_cow — the measured COW cost
        is per page copied, and a huge-page COW copies 512 pages in one fault.
        ``frames_allocated`` is accepted and costs nothing by itself: every measured cost already
        includes the frames it allocates (a fault's page, a fork's page tables).
        """
        unknown = sorted(set(counters) - set(COUNTERS))
        if unknown:
            raise ValueError(f"unknown counters {unknown}; known: {', '.join(COUNTERS)}")
        n: dict[str, float] = {}
        for key in COUNTERS:
            value = float(counters.get(key, 0))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"counter {key} must be a finite count >= 0, not {value!r}")
            n[key] = value
        return {
            "fork_base": n["forks"] * self.fork_base,
            "exec_base": n["execs"] * self.exec_base,
            "per_pte": n["ptes_copied"] * self.per_pte,
            "per_table": n["tables_allocated"] * self.per_table,
            "fault_anon": n["faults_anon"] * self.fault_anon,
            "fault_file": n["faults_file"] * self.fault_file,
            "fault_cow": max(n["faults_cow"], n["pages_copied"]) * self.fault_cow,
        }

    def predict(self, counters: Mapping[str, float]) -> float:
        """Seconds this host's kernel would take for the work ``counters`` describe: a dict with
        keys among :data:`COUNTERS` (missing keys count 0; an unknown key is a ``ValueError``).
        """
        return math.fsum(self.breakdown(counters).values())

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "unit": "seconds",
                             "costs": self.costs(), "machine": dict(self.machine)}
        if self.measurements is not None:
            d["measurements"] = dataclasses.asdict(self.measurements)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostModel:
        if d.get("format") != FORMAT or d.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} version {FORMAT_VERSION} document")
        costs = d["costs"]
        values = {}
        for name in COSTS:
            v = costs[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"cost {name} must be a finite number, not {v!r}")
            values[name] = float(v)
        meas = None
        if d.get("measurements") is not None:
            m = dict(d["measurements"])
            m["fork"] = tuple(ForkPoint(**p) for p in m["fork"])
            meas = Measurements(**m)
        return cls(**values, machine=dict(d.get("machine", {})), measurements=meas)

    @classmethod
    def from_json(cls, text: str) -> CostModel:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the model as JSON (to :func:`default_path` by default); returns the path."""
        p = Path(path) if path is not None else default_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json() + "\n")
        os.replace(tmp, p)  # atomic: a concurrent reader sees the old or the new model
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> CostModel:
        """Read a model saved by :meth:`save` (from :func:`default_path` by default)."""
        p = Path(path) if path is not None else default_path()
        return cls.from_json(p.read_text())


def default_path() -> Path:
    """``$SPAWNFD_COST_MODEL``, else ``$XDG_CACHE_HOME/spawnfd/cost-model.json``, else
    ``~/.cache/spawnfd/cost-model.json``."""
    explicit = os.environ.get("SPAWNFD_COST_MODEL")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "spawnfd" / "cost-model.json"


def try_load(path: str | os.PathLike[str] | None = None) -> CostModel | None:
    """The stored model, or None if there is none (a corrupt file is still an error)."""
    try:
        return CostModel.load(path)
    except FileNotFoundError:
        return None


def fork_counters(pages: int, *, exec: bool = False) -> dict[str, int]:
    """The counters of one classic fork (and, with ``exec``, the child's exec of a small binary)
    of a parent with ``pages`` populated private pages, densely laid out."""
    d = {"forks": 1, "ptes_copied": pages, "tables_allocated": -(-pages // PTES_PER_TABLE)}
    if exec:
        d["execs"] = 1
    return d


def counters_between(before: Any, after: Any, *, forks: int = 0,
                     execs: int = 0) -> dict[str, int]:
    """Counters for :meth:`CostModel.predict` from two ``Kernel.statistics()`` snapshots of the
    simulator (``forks``/``execs`` are not kernel statistics: the caller knows them)."""
    d = {key: int(getattr(after, key)) - int(getattr(before, key))
         for key in ("ptes_copied", "tables_allocated", "frames_allocated", "pages_copied")}
    for kind in ("anon", "file", "cow"):
        d[f"faults_{kind}"] = int(getattr(after.faults, kind)) - int(getattr(before.faults, kind))
    d["forks"], d["execs"] = forks, execs
    return d


# --------------------------------------------------------------------------------------------
# Least squares


def least_squares(rows: Sequence[Sequence[float]], y: Sequence[float],
                  weights: Sequence[float] | None = None) -> tuple[float, ...]:
    """Ordinary (or, with ``weights``, weighted) least squares: the ``b`` minimising
    ``sum(w_i * (y_i - rows_i · b)^2)``. Solves the normal equations by Gaussian elimination with
    partial pivoting after scaling every column to a maximum of 1 (PTE counts are ~1e5 times the
    intercept's column). Meant for 2–4 parameters; ``ValueError`` if the columns are linearly
    dependent or there are fewer points than parameters."""
    n = len(rows)
    if n == 0 or n != len(y):
        raise ValueError("need as many rows as observations, and at least one")
    k = len(rows[0])
    if any(len(r) != k for r in rows):
        raise ValueError("rows differ in length")
    if n < k:
        raise ValueError(f"{n} points cannot determine {k} parameters")
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    if len(w) != n or any(not v > 0 or not math.isfinite(v) for v in w):
        raise ValueError("weights must be finite and positive, one per row")
    scale = [max(abs(float(r[j])) for r in rows) or 1.0 for j in range(k)]
    xs = [[float(r[j]) / scale[j] for j in range(k)] for r in rows]
    # normal equations A b = c, A = X^T W X, c = X^T W y, as an augmented matrix
    a = [[math.fsum(w[i] * xs[i][p] * xs[i][q] for i in range(n)) for q in range(k)]
         + [math.fsum(w[i] * xs[i][p] * float(y[i]) for i in range(n))] for p in range(k)]
    norm = max(abs(a[p][p]) for p in range(k)) or 1.0
    for col in range(k):
        piv = max(range(col, k), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) <= 1e-12 * norm:
            raise ValueError("the columns are linearly dependent: the fit is not determined")
        a[col], a[piv] = a[piv], a[col]
        for r in range(col + 1, k):
            f = a[r][col] / a[col][col]
            for c in range(col, k + 1):
                a[r][c] -= f * a[col][c]
    b = [0.0] * k
    for r in reversed(range(k)):
        b[r] = (a[r][k] - math.fsum(a[r][c] * b[c] for c in range(r + 1, k))) / a[r][r]
    return tuple(b[j] / scale[j] for j in range(k))


def fit_fork(points: Sequence[ForkPoint]) -> tuple[float, float, float]:
    """``(fork_base, per_pte, per_table)`` by least squares over ``points``, weighted by
    1/seconds² (minimising relative error). A coefficient the noise drives negative is dropped
    (fixed at 0) and the rest refitted: a cost cannot be negative. Needs at least one dense and
    one sparse point beside size 0 to tell per_pte from per_table."""
    cols = [0, 1, 2]
    while True:
        rows = [[(1.0, float(p.pages), float(p.tables))[c] for c in cols] for p in points]
        b = least_squares(rows, [p.seconds for p in points],
                          [1.0 / max(p.seconds, 1e-9) ** 2 for p in points])
        neg = [c for c, v in zip(cols, b) if v < 0 and c != 0]
        if not neg:
            out = [0.0, 0.0, 0.0]
            for c, v in zip(cols, b):
                out[c] = v
            return out[0], out[1], out[2]
        cols.remove(min(neg, key=lambda c: b[cols.index(c)]))


# --------------------------------------------------------------------------------------------
# Measurements on the real kernel


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
                 step: Callable[[str], None]) -> dict[str, list[ForkPoint]]:
    """At each size (ascending), populate the region's prefix and time fork+exit and/or
    fork+exec (``kinds(size)`` ⊆ {"exit", "exec"}). One region, populated progressively."""
    fns = {"exit": _fork_exit, "exec": _fork_exec}
    out: dict[str, list[ForkPoint]] = {"exit": [], "exec": []}
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
                out[kind].append(ForkPoint("dense", pages, -(-pages // PTES_PER_TABLE), sec, reps))
    finally:
        m.close()
    return out


def _sparse_sweep(table_counts: Sequence[int], repeats: int,
                  step: Callable[[str], None]) -> list[ForkPoint]:
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
            out.append(ForkPoint("sparse", n, n, sec, repeats))
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


def _check_host() -> None:
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        raise OSError("spawnfd calibrate measures a Linux kernel; this is " + sys.platform)


def _measure(mode: str, quick: bool, progress: Progress | None) -> dict[str, Any]:
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
        res["exit"] = [dataclasses.asdict(p) for p in sweep["exit"]]
        res["exec"] = [dataclasses.asdict(p) for p in sweep["exec"]]
        res["sparse"] = [dataclasses.asdict(p)
                         for p in _sparse_sweep(plan.sparse, plan.fork_repeats, steps)]
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
    """``calibrate.py --worker MODE [--quick]``: :func:`_measure` in a minimal interpreter,
    reporting progress and the result as JSON lines on stdout."""
    def progress(done: int, total: int, what: str) -> None:
        print(json.dumps({"progress": [done, total, what]}), flush=True)

    print(json.dumps({"result": _measure(argv[0], "--quick" in argv[1:], progress)}), flush=True)
    return 0


def _measure_isolated(mode: str, quick: bool, progress: Progress | None) -> dict[str, Any]:
    """:func:`_measure` in a fresh ``python -I -S`` running this file (standard library only),
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


_ATTEMPTS: Final = 3


def _plausible(r: Mapping[str, Any]) -> bool:
    """Whether a run's fit inputs can be right: fork time grows with the populated size, exec
    costs something, every fitted and measured cost is positive. Another process taking the CPU
    mid-run (two cores, shared) can break that; such a run is measured again. Only what the
    model is fitted from is checked — never the validation's fork+exec points."""
    dense = [p.seconds for p in _points(r["exit"])]
    try:
        costs = fit_fork(_points(r["exit"]) + _points(r["sparse"]))
    except ValueError:
        return False
    fork_exit, fork_exec, _ = r["small"]
    faults = [r[k] for k in ("fault_anon", "fault_file", "fault_cow") if k in r]
    return (all(a < b for a, b in zip(dense, dense[1:])) and all(c > 0 for c in costs)
            and fork_exec > fork_exit and all(f > 0 for f in faults))


def _run(mode: str, quick: bool, progress: Progress | None, isolated: bool) -> dict[str, Any]:
    """Measure (isolated: in a fresh minimal interpreter), up to :data:`_ATTEMPTS` times until
    the run is :func:`_plausible`; the result records the attempts."""
    _check_host()
    for attempt in range(1, _ATTEMPTS + 1):
        if isolated and sys.executable:
            r = _measure_isolated(mode, quick, progress)
        else:
            r = _measure(mode, quick, progress)
        r["attempts"] = attempt
        if _plausible(r):
            break
    return r


def _points(rows: Sequence[Mapping[str, Any]]) -> list[ForkPoint]:
    return [ForkPoint(**r) for r in rows]


def calibrate(quick: bool = False, progress: Progress | None = None, *,
              isolated: bool = True) -> CostModel:
    """Measure this host's kernel and fit a :class:`CostModel` (not saved: call ``.save()``).

    About 3 s (``quick``: about 1 s, smaller sizes); memory peaks at about 600 MiB (``quick``:
    about 200 MiB). The measurements run in a fresh minimal interpreter (``python -I -S``), so
    ``fork_base`` is the fork of a small Python parent whatever the caller has imported;
    ``isolated=False`` measures in this process instead (its fork_base then includes every page
    and mapping this process has).
    """
    machine = describe_machine()
    r = _run("calibrate", quick, progress, isolated)
    machine["parent_rss_anon_pages"] = r["rss_anon_pages"]
    machine["measured_in"] = "python -I -S (minimal interpreter)" if isolated else "the caller"
    points = tuple(_points(r["exit"]) + _points(r["sparse"]))
    base, per_pte, per_table = fit_fork(points)
    fork_exit, fork_exec, spawn = r["small"]
    meas = Measurements(fork=points, fault_anon=r["fault_anon"], fault_file=r["fault_file"],
                        fault_cow=r["fault_cow"], fork_exit_small=fork_exit,
                        fork_exec_small=fork_exec, posix_spawn_small=spawn, quick=quick,
                        elapsed=r["elapsed"], attempts=r["attempts"])
    return CostModel(fork_base=base, per_pte=per_pte, per_table=per_table,
                     fault_anon=max(meas.fault_anon, 0.0), fault_file=max(meas.fault_file, 0.0),
                     fault_cow=max(meas.fault_cow, 0.0),
                     exec_base=max(fork_exec - fork_exit, 0.0),
                     machine=machine, measurements=meas)


# --------------------------------------------------------------------------------------------
# Validation


@dataclasses.dataclass(frozen=True)
class ValidationRow:
    mib: int              #: populated MiB of the parent
    pages: int
    measured: float       #: median seconds of real fork + execv(/bin/true) + waitpid
    predicted: float      #: model.predict(fork_counters(pages, exec=True))
    error_pct: float      #: 100 * (predicted - measured) / measured
    held_out: bool        #: the size was not among the fitted ones


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    rows: tuple[ValidationRow, ...]
    fit_sizes: tuple[int, ...]        #: MiB the model was fitted on (fork + _exit)
    model: CostModel                  #: the model fitted on fit_sizes (and sparse points)
    max_error_pct: float              #: max |error_pct| over all rows
    max_held_out_error_pct: float     #: max |error_pct| over held-out rows
    target_pct: float = TARGET_ERROR_PCT

    @property
    def met(self) -> bool:
        """Every prediction within the target."""
        return self.max_error_pct <= self.target_pct

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dataclasses.asdict(r) for r in self.rows],
                "fit_sizes_mib": list(self.fit_sizes), "max_error_pct": self.max_error_pct,
                "max_held_out_error_pct": self.max_held_out_error_pct,
                "target_pct": self.target_pct, "met": self.met,
                "model": self.model.to_dict()}


def validate(quick: bool = False, progress: Progress | None = None, *,
             isolated: bool = True) -> ValidationReport:
    """Fit on the smaller half of the sizes, predict real fork+exec at every size.

    The model is fitted exactly as :func:`calibrate` fits it, but from fork + ``_exit`` of
    parents holding only the smaller half of the sizes (0–64 MiB; ``quick``: 0–32 MiB), plus the
    sparse points and the small-parent exec cost: it never sees a fork+exec of a populated
    parent, nor any of the larger sizes (up to 512 MiB; ``quick``: 128 MiB). Then fork +
    ``execv("/bin/true")`` + ``waitpid`` is measured at every size, in the same process, and
    compared with ``predict(fork_counters(pages, exec=True))``. About 4 s (``quick``: 1 s).
    """
    machine = describe_machine()
    r = _run("validate", quick, progress, isolated)
    machine["parent_rss_anon_pages"] = r["rss_anon_pages"]
    fit_sizes = _fit_sizes(_PLANS[quick])
    points = tuple(_points(r["exit"]) + _points(r["sparse"]))
    base, per_pte, per_table = fit_fork(points)
    fork_exit, fork_exec, spawn = r["small"]
    meas = Measurements(fork=points, fault_anon=0.0, fault_file=0.0, fault_cow=0.0,
                        fork_exit_small=fork_exit, fork_exec_small=fork_exec,
                        posix_spawn_small=spawn, quick=quick, elapsed=r["elapsed"],
                        attempts=r["attempts"])
    model = CostModel(fork_base=base, per_pte=per_pte, per_table=per_table, fault_anon=0.0,
                      fault_file=0.0, fault_cow=0.0, exec_base=max(fork_exec - fork_exit, 0.0),
                      machine=machine, measurements=meas)
    rows = []
    for p in _points(r["exec"]):
        mib = p.pages * PAGE // MiB
        predicted = model.predict(fork_counters(p.pages, exec=True))
        rows.append(ValidationRow(mib=mib, pages=p.pages, measured=p.seconds, predicted=predicted,
                                  error_pct=100.0 * (predicted - p.seconds) / p.seconds,
                                  held_out=mib not in fit_sizes))
    errs = [abs(row.error_pct) for row in rows]
    held = [abs(row.error_pct) for row in rows if row.held_out]
    return ValidationReport(rows=tuple(rows), fit_sizes=fit_sizes, model=model,
                            max_error_pct=max(errs), max_held_out_error_pct=max(held))


# --------------------------------------------------------------------------------------------
# Command line


def _fmt_s(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e9:.1f} ns"


def _print_model(console: Any, model: CostModel) -> None:
    from rich.table import Table

    meas = model.measurements
    if meas is not None:
        t = Table(title="fork + _exit + waitpid of a small Python parent holding a region",
                  caption="dense: every page of the region populated; sparse: one page per "
                          "2 MiB (one PTE per page table)")
        for col in ("layout", "region", "PTEs", "page tables", "measured", "fit", "residual"):
            t.add_column(col, justify="left" if col == "layout" else "right")
        for p in meas.fork:
            fit = model.predict({"forks": 1, "ptes_copied": p.pages,
                                 "tables_allocated": p.tables})
            region = p.pages * PAGE if p.layout == "dense" else p.tables * TABLE_SPAN
            t.add_row(p.layout,
                      f"{region // MiB} MiB", f"{p.pages:,}",
                      f"{p.tables:,}", _fmt_s(p.seconds), _fmt_s(fit),
                      f"{100 * (fit - p.seconds) / p.seconds:+.1f} %")
        console.print(t)
        t = Table(title="small parent: spawning /bin/true (median)")
        t.add_column("operation")
        t.add_column("time", justify="right")
        t.add_row("fork + _exit + waitpid", _fmt_s(meas.fork_exit_small))
        t.add_row("fork + execv + waitpid", _fmt_s(meas.fork_exec_small))
        t.add_row("posix_spawn + waitpid", _fmt_s(meas.posix_spawn_small))
        console.print(t)
    t = Table(title="fitted costs of this host's kernel")
    t.add_column("cost")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    meaning = {
        "fork_base": "fixed: fork + exit + wait of a small Python parent",
        "per_pte": "per PTE copied at fork (and torn down)",
        "per_table": "per page table allocated at fork (and freed)",
        "fault_anon": "per anonymous write fault (alloc + zero + map)",
        "fault_file": "per page, private read fault on a cached file",
        "fault_cow": "per page copied by a COW write fault",
        "exec_base": "fixed: exec of /bin/true and its exit",
    }
    for name, value in model.costs().items():
        t.add_row(name, _fmt_s(value), meaning[name])
    console.print(t)
    m = model.machine
    if m:
        console.print(f"[dim]{m.get('cpu_model')} × {m.get('cpu_count')}, Linux "
                      f"{m.get('kernel_release')}, {int(m.get('memory_bytes', 0)) / 2**30:.1f} "
                      f"GiB, Python {m.get('python')}, {m.get('date')}"
                      + (f"; measured in {meas.elapsed:.1f} s" if meas else "")
                      + (f" ({meas.attempts} attempts: disturbed runs measured again)"
                         if meas and meas.attempts > 1 else "") + "[/dim]")


def _print_validation(console: Any, rep: ValidationReport) -> None:
    from rich.table import Table

    t = Table(title=f"validation: real fork + execv(/bin/true) + waitpid vs the model fitted "
                    f"on {', '.join(map(str, rep.fit_sizes))} MiB (fork + _exit only)")
    for col in ("populated", "PTEs", "", "measured", "predicted", "error"):
        t.add_column(col, justify="right")
    for r in rep.rows:
        t.add_row(f"{r.mib} MiB", f"{r.pages:,}", "held out" if r.held_out else "fit size",
                  _fmt_s(r.measured), _fmt_s(r.predicted), f"{r.error_pct:+.1f} %")
    console.print(t)
    c = rep.model.costs()
    console.print(f"fitted: fork_base {_fmt_s(c['fork_base'])}, per_pte {_fmt_s(c['per_pte'])}, "
                  f"per_table {_fmt_s(c['per_table'])}, exec_base {_fmt_s(c['exec_base'])}")
    verdict = "[green]met[/green]" if rep.met else "[red]NOT met[/red]"
    console.print(f"max error {rep.max_error_pct:.1f} % (held-out sizes: "
                  f"{rep.max_held_out_error_pct:.1f} %); target within "
                  f"{rep.target_pct:g} %: {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    """``spawnfd calibrate [--quick] [--validate] [--out FILE] [--json]``."""
    ap = argparse.ArgumentParser(
        prog="spawnfd calibrate",
        description="Measure this host's Linux kernel (fork against populated size, anonymous, "
                    "file and COW faults, exec of a small binary), fit per-operation costs and "
                    "store the cost model.")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller sizes (about 1 s)")
    ap.add_argument("--validate", action="store_true",
                    help="also fit on the smaller half of the sizes and predict real fork+exec "
                         "of the others (target: within 15 %%)")
    ap.add_argument("--out", metavar="FILE",
                    help=f"where to store the model (default: {default_path()}; "
                         "$SPAWNFD_COST_MODEL or $XDG_CACHE_HOME override it)")
    ap.add_argument("--json", action="store_true",
                    help="print the model (and the validation) as JSON instead of tables")
    args = ap.parse_args(list(argv) if argv is not None else None)

    from rich.console import Console
    from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    console = Console()
    err = Console(stderr=True)

    def run(title: str, fn: Callable[[bool, Progress | None], Any]) -> Any:
        with Bar(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                 console=err, transient=True, disable=args.json or not err.is_terminal) as bar:
            task = bar.add_task(title, total=1)

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=f"{title}: {what}")
            return fn(args.quick, progress)

    model: CostModel = run("calibrate", lambda q, p: calibrate(quick=q, progress=p))
    path = model.save(args.out)
    report: ValidationReport | None = None
    if args.validate:
        report = run("validate", lambda q, p: validate(quick=q, progress=p))
    if args.json:
        out: dict[str, Any] = {"model": model.to_dict(), "path": str(path)}
        if report is not None:
            out["validation"] = report.to_dict()
        print(json.dumps(out, indent=2))
        return 0
    _print_model(console, model)
    console.print(f"stored: {path}")
    if report is not None:
        _print_validation(console, report)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(_worker(sys.argv[2:]))
    sys.exit(main())
