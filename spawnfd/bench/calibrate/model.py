"""The cost model: per-operation costs of this host's kernel, and what they were fitted from.

:class:`CostModel` turns simulator counters (:data:`COUNTERS`; :func:`fork_counters` and
:func:`counters_between` make them) into the seconds this host's kernel would take, and is
stored as JSON (:meth:`CostModel.save`, :func:`try_load`, at :func:`default_path`).
:class:`Measurements` and :class:`ForkPoint` are the medians it was fitted from. The page
geometry and the other constants of the package live here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

__all__ = [
    "COSTS", "COUNTERS", "FORMAT", "FORMAT_VERSION", "PAGE", "PTES_PER_TABLE", "TABLE_SPAN",
    "TARGET_ERROR_PCT", "CostModel", "ForkPoint", "Measurements", "MiB", "counters_between",
    "default_path", "fork_counters", "try_load",
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


@dataclasses.dataclass(frozen=True)
class ForkPoint:
    """One measured fork: the parent's populated layout and the median time of fork+_exit+wait
    (or fork+exec+wait, in :func:`.run.validate`)."""

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

