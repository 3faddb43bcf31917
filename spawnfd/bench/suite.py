"""``spawnfd bench``: the comparison scenarios as one tool — tables, JSON, plots.

    spawnfd bench                          # every scenario, full sizes
    spawnfd bench system fork --quick      # some, at small sizes
    spawnfd bench --quick --json out.json --plots plots/

Each scenario answers one question of the 2022 discussion with figures measured in this run
(medians over repeats; ratios from the same run):

  system    system("true") by fork+exec (copy, cow-pt), vfork+exec and spawnfd as the parent grows
  host      spawning /bin/true on the real kernel from a Python parent holding 0 -> 8 GiB
  fork      fork policies by size, and the cost moved into faults: fork + child writing f %
  database  processes x shared-mapping size, with and without shared page tables; mshare case
  zygote    a template starting apps: fork, huge pages (split / copy-huge), cow-pt, map_cow
  anchors   the published figures beside the simulator's

The JSON file holds every figure and the machine; ``--plots DIR`` writes one PNG per scenario.
When ``spawnfd calibrate`` has stored a cost model for this host, the simulator's scenarios also
print the time a real kernel here would take for the same counters.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import __version__
from ..sim.kernel import Kernel

GIB = 1 << 30
MIB = 1 << 20
PAGE = 4096
RW = mmap.PROT_READ | mmap.PROT_WRITE


@dataclasses.dataclass
class Column:
    key: str
    header: str
    fmt: str = "{}"


@dataclasses.dataclass
class PlotSpec:
    """One line per series: y against x."""

    x: str
    y: str
    series: str
    xlabel: str
    ylabel: str
    logx: bool = False
    logy: bool = False
    kind: str = "line"  # or "bar": y per series, no x
    rows: str = "rows"  # which list of the result to plot


@dataclasses.dataclass
class Result:
    name: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    notes: list[str] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    plot: PlotSpec | None = None
    extra: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "summary": self.summary,
                "notes": self.notes, **self.extra}


Tick = Callable[[str], None]


def _cost_model() -> Any:
    """The cost model ``spawnfd calibrate`` stored for this host, or None."""
    from .calibrate import try_load

    try:
        return try_load()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a stale or foreign file: the bench runs without host predictions


# ---- system ----------------------------------------------------------------------------------

def scenario_system(quick: bool, tick: Tick) -> Result:
    from . import system

    sizes = [0, 1] if quick else [0, 1, 8, 64]
    model = _cost_model()
    rows = []
    for gib in sizes:
        for label in system.METHODS:
            tick(f"{gib} GiB, {label}")
            r = trio.run(system._row, gib, label, 3 if quick else 5)
            row = {"gib": gib, "method": label, "ms": r["seconds"] * 1e3,
                   "ptes_copied": int(r["ptes_copied"]), "tables": int(r["tables_allocated"]),
                   "frames": int(r["frames_allocated"]), "calls": r["calls"]}
            if model is not None:
                forks = 2 if label.startswith("fork") else 0  # the sh's fork and its own
                row["host_model_ms"] = 1e3 * model.predict({
                    "ptes_copied": row["ptes_copied"], "tables_allocated": row["tables"],
                    "frames_allocated": row["frames"], "forks": forks, "execs": 2})
            rows.append(row)
    tick("spawn rates, interleaved")
    rate_methods = {"spawnfd, async with create_process()": "builder",
                    "spawnfd, sim.spawn()": "spawnfd", "fork+exec (copy)": "copy",
                    "vfork+exec": "vfork-exec"}
    rates = trio.run(system.spawn_rates, rate_methods, 2.0 if quick else 12.0)
    lo, hi = min(sizes), max(sizes)
    growth = {}
    for label in system.METHODS:
        a = next(r for r in rows if r["method"] == label and r["gib"] == lo)
        b = next(r for r in rows if r["method"] == label and r["gib"] == hi)
        growth[label] = {"time_pct": 100 * (b["ms"] / a["ms"] - 1),
                         "tables_pct": 100 * (b["tables"] / a["tables"] - 1)}
    notes = [f"{label}: time {g['time_pct']:+.1f} %, tables {g['tables_pct']:+.1f} % "
             f"from {lo} to {hi} GiB" for label, g in growth.items()]
    notes += [f"spawns of /bin/true per second from an empty parent, {label}: "
              f"{r['wall']:,.0f} ({r['cpu']:,.0f} per CPU second), x{r['ratio']:.3f} "
              "vfork+exec's rate" for label, r in rates.items()]
    cols = [Column("gib", "parent GiB"), Column("method", "method"),
            Column("ms", "ms per call", "{:.3f}"), Column("ptes_copied", "PTEs copied", "{:,}"),
            Column("tables", "tables alloc.", "{:,}"), Column("frames", "frames alloc.", "{:,}")]
    if model is not None:
        cols.append(Column("host_model_ms", "host model ms", "{:.3f}"))
    return Result("system", 'system("true") on the simulator as the parent grows', cols, rows,
                  notes, {"growth": growth, "spawns_per_second": rates},
                  PlotSpec("gib", "ms", "method", "parent's populated memory (GiB)",
                           "time per system(\"true\") (ms)", logx=True, logy=True))


# ---- host ------------------------------------------------------------------------------------

HOST_METHODS = {"os.fork+exec": "fork+exec", "subprocess": "subprocess.run",
                "os.posix_spawn": "posix_spawn", "trio.run_process": "trio.run_process",
                "spawnfd (host)": "spawnfd.run_process"}


def _host_medians(sizes: list[float], repeats: int, names: list[str]) -> dict[str, Any]:
    """Run spawnfd.bench.host in a fresh, small interpreter (this process has grown with
    the simulator's scenarios, and a fork copies all of it), pinned to one CPU so the shared
    machine's scheduler does not add outliers. Returns its JSON."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "host.json"
        cmd = [sys.executable, "-m", "spawnfd.bench.host", "--sizes",
               ",".join(f"{g:g}" for g in sizes), "--repeats", str(repeats), "--children", "0",
               "--methods", ",".join(names), "--json", str(out)]
        if (os.cpu_count() or 1) > 1:
            cmd += ["--cpu", str((os.cpu_count() or 1) - 1)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def scenario_host(quick: bool, tick: Tick) -> Result:
    sizes = [0.0, 0.25] if quick else [0.0, 1.0, 4.0, 8.0]
    repeats = 5 if quick else 30
    names = list(HOST_METHODS.values())
    tick(f"{', '.join(f'{g:g}' for g in sizes)} GiB held, in a fresh interpreter")
    medians = _host_medians(sizes, repeats, names)["median_ms"]
    rows = []
    for gib in sizes:
        for label, name in HOST_METHODS.items():
            rows.append({"gib": gib, "method": label, "ms": medians[str(float(gib))][name],
                         "runs": repeats if name != "fork+exec" else max(5, repeats // 3)})
    lo, hi = min(sizes), max(sizes)
    by = {(r["gib"], r["method"]): r["ms"] for r in rows}
    notes = [f"{label}: x{by[(hi, label)] / by[(lo, label)]:.2f} from {lo:g} to {hi:g} GiB"
             for label in HOST_METHODS]
    notes.append(f"spawnfd (host) / os.posix_spawn at {hi:g} GiB: "
                 f"{by[(hi, 'spawnfd (host)')] / by[(hi, 'os.posix_spawn')]:.2f}")
    return Result("host", "spawning /bin/true on this host's real kernel",
                  [Column("gib", "parent GiB", "{:g}"), Column("method", "method"),
                   Column("ms", "ms (median)", "{:.3f}"), Column("runs", "runs")],
                  rows, notes, {"load_average": os.getloadavg()[0]},
                  PlotSpec("gib", "ms", "method", "parent's touched memory (GiB)",
                           "spawn + reap /bin/true (ms)", logy=True))


# ---- fork ------------------------------------------------------------------------------------

def _fork_and_write(size: int, mode: str, fraction: float, pattern: str) -> dict[str, Any]:
    """Fork a process with size bytes populated; the child then writes a fraction of its
    pages: "spread" evenly (every n-th page: every page table is touched) or "clustered" (the
    first fraction of the range). Wall time of the fork and the child's writes (C calls)."""
    k = Kernel(f"{3 * size // MIB + 64}M", fork_mode=mode)
    p = k.init
    a = p.mm.mmap(size, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    p.mm.populate(a, size, write=True)
    pages = size // PAGE
    before = k.statistics()
    t = time.perf_counter()
    c = p.fork()
    t_fork = time.perf_counter() - t
    if fraction and pattern == "spread":
        c.mm.touch(a, size, every=max(1, round(1 / fraction)))
    elif fraction:
        c.mm.touch(a, max(1, round(pages * fraction)) * PAGE)
    total = time.perf_counter() - t
    after = k.statistics()
    k.check()
    k.close()
    return {"mode": mode, "pattern": pattern, "series": f"{mode}, {pattern}",
            "fraction_pct": 100 * fraction, "fork_ms": t_fork * 1e3, "total_ms": total * 1e3,
            "ptes_copied": after.ptes_copied - before.ptes_copied,
            "tables_copied": after.tables_copied - before.tables_copied,
            "pages_copied": after.pages_copied - before.pages_copied}


def scenario_fork(quick: bool, tick: Tick) -> Result:
    from . import fork

    sizes = [1] if quick else [1, 8, 64]
    model = _cost_model()
    rows = []
    for gib in sizes:
        for mode in fork.MODES:
            tick(f"fork {gib} GiB, {mode}")
            r = fork.fork_row(gib, mode, 3)
            row = {"gib": gib, "mode": mode, "fork_ms": r["fork_s"] * 1e3,
                   "ptes_copied": r["ptes_copied"], "tables_shared": r["tables_shared"],
                   "child_private_kb": r["child_private_pagetable_bytes"] // 1024}
            if model is not None and mode == "copy":  # what this host's kernel would take
                row["host_model_ms"] = 1e3 * model.predict({
                    "ptes_copied": r["ptes_copied"], "forks": 1,
                    "tables_allocated": r["child_pagetable_bytes"] // PAGE})
            rows.append(row)
    size = (64 if quick else 1024) * MIB
    fractions = [0, 0.01, 0.05, 0.25, 1.0] if quick else [0, 0.01, 0.02, 0.05, 0.1, 0.25,
                                                            0.5, 1.0]
    sweep = []
    for pattern in ("spread", "clustered"):
        for mode in fork.MODES:
            for f in fractions:
                tick(f"fork + write {100 * f:g} % {pattern}, {mode}")
                sweep.append(_fork_and_write(size, mode, f, pattern))
    by = {(r["series"], r["fraction_pct"]): r["total_ms"] for r in sweep}
    crossover = {}
    for pattern in ("spread", "clustered"):
        crossover[pattern] = next(
            (r["fraction_pct"] for r in sweep if r["series"] == f"cow-pt, {pattern}"
             and r["total_ms"] >= by[(f"copy, {pattern}", r["fraction_pct"])]), None)
    fork_ms = {(r["gib"], r["mode"]): r["fork_ms"] for r in rows}
    notes = [f"{g} GiB: cow-pt forks {fork_ms[(g, 'copy')] / fork_ms[(g, 'cow-pt')]:.0f}x "
             "faster than copy" for g in sizes]
    for pattern, f_stop in crossover.items():
        notes.append(f"fork of {size // MIB} MiB + the child writing f % of its pages "
                     f"({pattern}): " + (f"cow-pt stops paying at f = {f_stop:g} %"
                                         if f_stop is not None
                                         else "cow-pt pays at every f measured"))
    return Result("fork", "fork policies, and the cost moved into faults",
                  [Column("gib", "GiB"), Column("mode", "policy"),
                   Column("fork_ms", "fork ms", "{:.3f}"),
                   Column("ptes_copied", "PTEs copied", "{:,}"),
                   Column("tables_shared", "tables shared", "{:,}"),
                   Column("child_private_kb", "child private tables kB", "{:,}")]
                  + ([Column("host_model_ms", "this host's kernel, ms (model)", "{:.2f}")]
                     if model is not None else []),
                  rows, notes, {"crossover_pct": crossover, "sweep_bytes": size},
                  PlotSpec("fraction_pct", "total_ms", "series",
                           "pages the child writes after fork (%)",
                           "fork + the child's writes (ms)", logx=True, logy=True,
                           rows="sweep"),
                  extra={"sweep": sweep})


# ---- database --------------------------------------------------------------------------------

def scenario_database(quick: bool, tick: Tick) -> Result:
    from . import fork

    gib = 1 if quick else 4
    procs = [1, 4, 16] if quick else [1, 4, 16, 64, 256]
    rows = []
    for share in (False, True):
        for n in procs:
            tick(f"{n} processes, shared tables {'on' if share else 'off'}")
            r = fork.db_row(n, gib, share)
            rows.append({"procs": n, "gib": gib,
                         "tables": "shared" if share else "private",
                         "pagetable_mib": r["pagetable_frames_bytes"] / MIB,
                         "faults": r["faults"], "seconds": r["seconds"]})
    ms = fork.mshare_extrapolation([{"procs": r["procs"], "gib": r["gib"],
                                     "share": r["tables"] == "shared",
                                     "pagetable_frames_bytes": r["pagetable_mib"] * MIB}
                                    for r in rows])
    notes = [f"mshare case ({fork.MSHARE_GB} GB x {fork.MSHARE_PROCS} processes), from this "
             f"run's accounting: {ms['unshared_total_gb']:.0f} GB of page tables without "
             f"sharing (published ~{fork.MSHARE_TABLES_GB} GB), {ms['shared_total_gb']:.1f} GB "
             "with"]
    return Result("database", f"N processes map one {gib} GiB file MAP_SHARED and touch it",
                  [Column("procs", "processes"), Column("tables", "page tables"),
                   Column("pagetable_mib", "page-table MiB", "{:,.1f}"),
                   Column("faults", "faults", "{:,}"), Column("seconds", "seconds", "{:.2f}")],
                  rows, notes, {"mshare": ms},
                  PlotSpec("procs", "pagetable_mib", "tables", "processes",
                           "page tables, whole machine (MiB)", logx=True, logy=True))


# ---- zygote ----------------------------------------------------------------------------------

def scenario_zygote(quick: bool, tick: Tick) -> Result:
    from . import zygote

    res = zygote.run(64 if quick else 512, 10 if quick else 100, progress=tick)
    rows = []
    for r in res["methods"]:
        a, t, f = r["per_app_median"], r["total"], r["first_write_of_first_app"]
        rows.append({"method": r["method"], "start_ms": a["start_seconds"] * 1e3,
                     "pagetable_kib": a["pagetable_bytes"] / 1024,
                     "frames": a["frames_allocated"], "pss_mib": a["pss_bytes"] / MIB,
                     "total_frames": t["frames_allocated"], "total_pss_mib": t["pss_bytes"] / MIB,
                     "first_write": f"{f['frames_allocated']}/{f['tables_allocated']}/"
                                    f"{f['pages_copied']}"})
    notes = [f"template {res['size_mib']} MiB ({res['heap_bytes'] // MIB} MiB heap), "
             f"{res['apps']} apps writing {res['pages_written_per_app']} random heap pages each",
             "first write: frames / page tables allocated / pages copied by the first app's "
             "first write (split: one 4 KiB frame plus one page table)"]
    return Result("zygote", "a template process starting apps",
                  [Column("method", "start an app by"), Column("start_ms", "start ms", "{:.3f}"),
                   Column("pagetable_kib", "tables KiB/app", "{:,.0f}"),
                   Column("frames", "frames/app", "{:,.0f}"),
                   Column("pss_mib", "PSS MiB/app", "{:,.2f}"),
                   Column("total_frames", "frames, all apps", "{:,}"),
                   Column("total_pss_mib", "PSS MiB, all", "{:,.0f}"),
                   Column("first_write", "first write")],
                  rows, notes, {"raw": res},
                  PlotSpec("method", "total_frames", "method", "",
                           "frames allocated by all apps", logy=True, kind="bar"))


# ---- anchors ---------------------------------------------------------------------------------

def _fork_pair(size: int) -> dict[str, dict[str, Any]]:
    out = {}
    for mode in ("copy", "cow-pt"):
        k = Kernel(f"{2 * size // MIB + 64}M", fork_mode=mode)
        p = k.init
        a = p.mm.mmap(size, RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        p.mm.populate(a, size, write=True)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            c = p.fork()
            times.append(time.perf_counter() - t)
            st = c.mm.statistics()
            c.exit(0)
            p.wait(c.pid)
        out[mode] = {"fork_ms": statistics.median(times) * 1e3,
                     "child_kb": st.pagetable_bytes // 1024,
                     "private_kb": (st.pagetable_bytes - st.shared_pagetable_bytes) // 1024}
        k.close()
    return out


def _host_flatness(gib: float) -> dict[str, float]:
    medians = _host_medians([0.0, gib], 15, ["posix_spawn", "fork+exec"])["median_ms"]
    out = {}
    for g in (0.0, gib):
        for name in ("posix_spawn", "fork+exec"):
            out[f"{name}@{g:g}"] = medians[str(float(g))][name]
    return out


def scenario_anchors(quick: bool, tick: Tick) -> Result:
    from . import fork

    tick("1 GiB fork, copy and cow-pt")
    g1 = _fork_pair(GIB)
    tick("512 MiB fork, copy and cow-pt")
    m512 = _fork_pair(512 * MIB)
    tick("mshare arithmetic")
    db = [fork.db_row(1, 1, False), fork.db_row(4, 1, True)]
    ms = fork.mshare_extrapolation(db)
    tick("host: posix_spawn and fork+exec, small and big parent")
    big = 0.25 if quick else 2.0
    hf = _host_flatness(big)
    rows = [
        {"anchor": "RFC (2022): 1 GiB child's page tables, copy", "published": 2096,
         "simulator": g1["copy"]["child_kb"], "unit": "kB"},
        {"anchor": "RFC (2022): 1 GiB child's page tables, COW page tables", "published": 44,
         "simulator": g1["cow-pt"]["private_kb"], "unit": "kB (private)"},
        {"anchor": "RFC v2: fork of 512 MB, copy / COW page tables", "published": 10 / 0.625,
         "simulator": m512["copy"]["fork_ms"] / m512["cow-pt"]["fork_ms"], "unit": "x faster"},
        {"anchor": "On-demand-fork (2021): fork of 1 GB, speed-up", "published": 65,
         "simulator": g1["copy"]["fork_ms"] / g1["cow-pt"]["fork_ms"], "unit": "x faster"},
        {"anchor": "mshare: 300 GB x 1500 processes, page tables", "published": 878,
         "simulator": ms["unshared_total_gb"], "unit": "GB"},
        {"anchor": f"A fork() in the road: posix_spawn, {big:g} GiB / 0 GiB parent (host)",
         "published": 1.0, "simulator": hf[f"posix_spawn@{big:g}"] / hf["posix_spawn@0"],
         "unit": "ratio (flat = 1)"},
        {"anchor": f"A fork() in the road: fork+exec, {big:g} GiB / 0 GiB parent (host)",
         "published": None, "simulator": hf[f"fork+exec@{big:g}"] / hf["fork+exec@0"],
         "unit": "ratio (grows with size)"},
    ]
    notes = ["published: RFC 'Introduce Copy-On-Write to Page Table' (2022) and its v2; "
             "On-demand-fork (EuroSys 2021); the mshare proposal's arithmetic; Baumann et al., "
             "'A fork() in the road' (HotOS 2019): posix_spawn's cost does not grow with the "
             "parent",
             "the simulator's fork times are its C core's; ratios compare like with like"]
    return Result("anchors", "published figures beside the simulator's",
                  [Column("anchor", "anchor"), Column("published", "published", "{:,.1f}"),
                   Column("simulator", "this run", "{:,.1f}"), Column("unit", "unit")],
                  rows, notes, {"fork_1gib": g1, "fork_512mib": m512, "mshare": ms,
                                "host_ms": hf},
                  PlotSpec("anchor", "simulator", "anchor", "", "value (see unit)", logy=True,
                           kind="anchors"))


SCENARIOS: dict[str, Callable[[bool, Tick], Result]] = {
    "system": scenario_system, "host": scenario_host, "fork": scenario_fork,
    "database": scenario_database, "zygote": scenario_zygote, "anchors": scenario_anchors}


# ---- output ----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration):
        pass
    u = platform.uname()
    return {"system": u.system, "kernel": u.release, "machine": u.machine, "cpu": cpu,
            "cpus": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "spawnfd": __version__, "load_average": os.getloadavg(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def render(result: Result) -> Table:
    t = Table(title=result.title, title_justify="left")
    for c in result.columns:
        t.add_column(c.header, justify="left" if c.key in ("method", "mode", "anchor", "unit",
                                                            "tables", "first_write")
                     else "right")
    for r in result.rows:
        cells = []
        for c in result.columns:
            v = r.get(c.key)
            cells.append("-" if v is None else c.fmt.format(v))
        t.add_row(*cells)
    return t


def plot(result: Result, directory: Path) -> Path | None:
    """One PNG for the scenario (matplotlib, no display)."""
    spec = result.plot
    if spec is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows if spec.rows == "rows" else result.extra[spec.rows]
    fig, ax = plt.subplots(figsize=(10, 5) if spec.kind != "line" else (7.5, 4.5), dpi=110)
    if spec.kind == "line":
        for name in dict.fromkeys(r[spec.series] for r in rows):
            pts = sorted((r[spec.x], r[spec.y]) for r in rows if r[spec.series] == name)
            xs = [x for x, _ in pts]
            ax.plot(xs, [y for _, y in pts], marker="o", label=str(name))
        if spec.logx:
            ax.set_xscale("symlog", linthresh=1)
        ax.legend(fontsize=8)
    elif spec.kind == "bar":
        labels = [str(r[spec.x]) for r in rows]
        ax.barh(labels, [r[spec.y] for r in rows])
        ax.invert_yaxis()
        if spec.logy:
            ax.set_xscale("log")
        ax.set_xlabel(spec.ylabel)
    else:  # anchors: published vs this run, side by side, per anchor
        labels = [str(r["anchor"]) for r in rows]
        ys = range(len(rows))
        ax.barh([y - 0.2 for y in ys], [r["published"] or 0 for r in rows], height=0.4,
                label="published")
        ax.barh([y + 0.2 for y in ys], [r["simulator"] for r in rows], height=0.4,
                label="this run")
        ax.set_yticks(list(ys), [f"{lb} ({r['unit']})" for lb, r in zip(labels, rows)],
                      fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    if spec.kind == "line":
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(spec.ylabel)
        if spec.logy:
            ax.set_yscale("log")
    ax.set_title(result.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(result: Result) -> str:
    """The scenario's table and notes in Markdown (for the README's Results)."""
    head = [c.header for c in result.columns]
    lines = [f"**{result.title}**", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for r in result.rows:
        cells = []
        for c in result.columns:
            v = r.get(c.key)
            cells.append("-" if v is None else c.fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def run(names: list[str], quick: bool, console: Console | None = None,
        json_path: str | None = None, plots: str | None = None,
        markdown_path: str | None = None) -> dict[str, Any]:
    if console is None:  # not a terminal: wide enough for the tables anyway
        console = Console(width=None if os.isatty(1) else 150)
    results: dict[str, Result] = {}
    with Progress(TextColumn("[bold]{task.fields[scenario]:<9}"), BarColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("", total=len(names), scenario="")
        for name in names:
            progress.update(task, scenario=name, description="starting")

            def tick(what: str) -> None:
                progress.update(task, description=what)

            results[name] = SCENARIOS[name](quick, tick)
            progress.advance(task)
    out: dict[str, Any] = {"machine": machine(), "quick": quick,
                           "scenarios": {n: r.as_json() for n, r in results.items()}}
    for r in results.values():
        console.print(render(r))
        for note in r.notes:
            console.print(f"  {note}")
        console.print()
        if plots:
            path = plot(r, Path(plots))
            if path:
                out["scenarios"][r.name]["plot"] = str(path)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2, default=str)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write("\n".join(markdown(r) for r in results.values()))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench", description=(__doc__ or "").splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="scenarios: " + ", ".join(SCENARIOS))
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="any of " + ", ".join(SCENARIOS) + " (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes: every scenario in "
                    "under a minute")
    ap.add_argument("--json", metavar="FILE", help="write every figure and the machine here")
    ap.add_argument("--plots", metavar="DIR", help="write a PNG per scenario here")
    ap.add_argument("--markdown", metavar="FILE", help="write the tables in Markdown here")
    args = ap.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    run(args.scenarios or list(SCENARIOS), args.quick, json_path=args.json, plots=args.plots,
        markdown_path=args.markdown)
