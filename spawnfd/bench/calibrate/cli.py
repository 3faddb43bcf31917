"""``spawnfd calibrate``: the command line, and the tables it prints.

:func:`main` parses the arguments, runs :func:`.run.calibrate` (and :func:`.run.validate`)
behind a progress bar, stores the model, and prints it as tables (rich) or as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from .measure import Progress
from .model import PAGE, TABLE_SPAN, CostModel, MiB, default_path
from .run import ValidationReport, calibrate, validate

__all__ = ["main"]


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

