"""Calibrating and validating: measure the host, fit, build the cost model.

:func:`calibrate` and :func:`validate` run the measurements of :mod:`.measure` in a fresh
minimal interpreter (or, with ``isolated=False``, in this process), measure again a run whose
fit inputs are implausible (disturbed by another process), fit them with
:func:`.fit.fit_fork` and build a :class:`.model.CostModel`; :func:`validate` also compares its
predictions with real fork+exec (:class:`ValidationReport`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .fit import fit_fork
from .measure import (Progress, check_host, describe_machine, fit_sizes_mib, measure_here,
                      measure_isolated)
from .model import PAGE, TARGET_ERROR_PCT, CostModel, ForkPoint, Measurements, MiB, fork_counters

__all__ = ["ValidationReport", "ValidationRow", "calibrate", "validate"]


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
    check_host()
    for attempt in range(1, _ATTEMPTS + 1):
        if isolated and sys.executable:
            r = measure_isolated(mode, quick, progress)
        else:
            r = measure_here(mode, quick, progress)
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
    fit_sizes = fit_sizes_mib(quick)
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

