"""spawnfd bench: the comparison scenarios as one tool: tables, JSON, plots.

    spawnfd bench                          # every scenario but mm, full sizes
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
  mm        the simulator itself: populate and munmap speed, host memory per simulated GiB
            (run by name only: it measures the tool, not a question)
  cpu       real programs on the simulated CPU against their native runs (by name only)
  realspawn the fork-to-exec window of real spawners (CPython, dash, bash) under each fork
            policy, beside the fd model, from parents of 0, 1 and 8 GiB (by name only;
            --sizes 0,1,8,64 sets the parents)
  abi       a C parent spawning /bin/true by glibc posix_spawn, fork+execve, vfork+execve and the
            fd model's system calls (examples/c/compare.c; by name only, needs a C compiler)

Memory of this machine: a full run peaks at 8.0 GiB (the host scenario's parent touches 8 GiB
of real memory; the database scenario's 256 processes hold 2 GiB of simulated page tables,
which are real memory too). --max-gib N caps what any scenario holds at about N GiB, by
leaving out the bigger sizes: --max-gib 1 keeps the run under 1.5 GiB. --quick needs 0.3 GiB.
A cap above what the machine has available is lowered, and the run says so before it starts.

Below each table a legend explains its columns. The JSON file holds every figure and the
machine; --plots DIR writes one PNG per scenario (needs matplotlib); --markdown FILE the tables.
When spawnfd calibrate has stored a cost model for this host, the simulator's scenarios also
show the time this host's real kernel would take for the same counters ("host model" columns).
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
    help: str = ""  # what the column is: the legend printed below the table


MODEL_HELP = ("what this host's real kernel would take for the same counters, priced by the "
              "cost model spawnfd calibrate stores (the column appears once it has run)")
NO_MODEL_NOTE = ("no cost model for this host: run spawnfd calibrate once to add a column "
                 "with what its real kernel would take for these counters")


def ratio(x: float) -> str:
    """Growth or speed-up, printed one way everywhere: ×1.02, ×12.3, ×176."""
    return f"×{x:,.2f}" if x < 10 else f"×{x:,.1f}" if x < 100 else f"×{x:,.0f}"


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
    kind: str = "line"  # or "bar": y per series, no x; "panels": a line plot per panel
    panels: tuple[tuple[str, str], ...] = ()  # kind "panels": (y, ylabel) of each panel
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
    lead: str = ""  # Markdown printed before the table by --markdown: a condensed table

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "summary": self.summary,
                "notes": self.notes,
                "columns": {c.key: {"header": c.header, "help": c.help} for c in self.columns},
                **self.extra}

    def numeric(self, c: Column) -> bool:
        """Is the column a number (right-aligned)?"""
        return any(isinstance(r.get(c.key), (int, float)) and not isinstance(r.get(c.key), bool)
                   for r in self.rows)

    def legend(self) -> list[str]:
        return [f"{c.header}: {c.help}" for c in self.columns if c.help]


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
    rates = trio.run(system.spawn_rates, system.RATE_METHODS, 2.0 if quick else 12.0)
    lo, hi = min(sizes), max(sizes)
    growth = {}
    for label in system.METHODS:
        a = next(r for r in rows if r["method"] == label and r["gib"] == lo)
        b = next(r for r in rows if r["method"] == label and r["gib"] == hi)
        growth[label] = {"time_pct": 100 * (b["ms"] / a["ms"] - 1),
                         "tables_pct": 100 * (b["tables"] / a["tables"] - 1),
                         "time_ratio": b["ms"] / a["ms"], "tables_ratio": b["tables"] / a["tables"]}
    notes = [f"{label}, from {lo} to {hi} GiB: time {ratio(g['time_ratio'])}, "
             f"tables {ratio(g['tables_ratio'])}" for label, g in growth.items()]
    notes += [f"spawns of /bin/true per second from an empty parent, {label}: "
              f"{r['wall']:,.0f} ({r['cpu']:,.0f} per CPU second), {ratio(r['ratio'])} "
              "vfork+exec's rate (interleaved rounds)" for label, r in rates.items()]
    cols = [Column("gib", "parent GiB", help="private memory the parent has populated"),
            Column("method", "method", help="how sh -c true and its true are started"),
            Column("ms", "ms per call", "{:.3f}",
                   "wall time of one system(\"true\") on the simulator (median)"),
            Column("ptes_copied", "PTEs copied", "{:,}",
                   "page-table entries copied by the call (a fork copies the parent's)"),
            Column("tables", "tables alloc.", "{:,}", "page-table pages allocated by the call"),
            Column("frames", "frames alloc.", "{:,}",
                   "4 KiB frames allocated by the call (tables included)")]
    if model is not None:
        cols.append(Column("host_model_ms", "host model ms", "{:,.3f}", MODEL_HELP))
    else:
        notes.append(NO_MODEL_NOTE)
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


def host_sizes(quick: bool, max_gib: float = 8.0) -> list[float]:
    """The parents the host scenario measures, in GiB: 0 up to 8 (0.25 with quick), none
    above max_gib, and max_gib itself if it cuts the list."""
    sizes = [0.0, 0.25] if quick else [0.0, 1.0, 4.0, 8.0]
    return sorted({g for g in sizes if g < max_gib} | {min(max_gib, max(sizes))})


def scenario_host(quick: bool, tick: Tick, max_gib: float = 8.0) -> Result:
    sizes = host_sizes(quick, max_gib)
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
    notes = [f"{label}, from {lo:g} to {hi:g} GiB: time {ratio(by[(hi, label)] / by[(lo, label)])}"
             for label in HOST_METHODS]
    notes.append(f"spawnfd (host) / os.posix_spawn at {hi:g} GiB: "
                 f"{ratio(by[(hi, 'spawnfd (host)')] / by[(hi, 'os.posix_spawn')])}")
    return Result("host", "spawning /bin/true on this host's real kernel",
                  [Column("gib", "parent GiB", "{:g}",
                          "memory the Python parent has touched (real, on this machine)"),
                   Column("method", "method", help="how the parent spawns /bin/true"),
                   Column("ms", "ms (median)", "{:.3f}",
                          "wall time to spawn and reap /bin/true (median of the runs)"),
                   Column("runs", "runs", help="spawns timed")],
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
    notes = [f"{g} GiB: cow-pt forks {ratio(fork_ms[(g, 'copy')] / fork_ms[(g, 'cow-pt')])} "
             "faster than copy" for g in sizes]
    for pattern, f_stop in crossover.items():
        notes.append(f"fork of {size // MIB} MiB + the child writing f % of its pages "
                     f"({pattern}): " + (f"cow-pt stops paying at f = {f_stop:g} %"
                                         if f_stop is not None
                                         else "cow-pt pays at every f measured"))
    return Result("fork", "fork policies, and the cost moved into faults",
                  [Column("gib", "GiB", help="private memory the parent has populated"),
                   Column("mode", "policy", help="the fork policy (Kernel(fork_mode=...))"),
                   Column("fork_ms", "fork ms", "{:.3f}",
                          "wall time of the simulator's fork (median of 3)"),
                   Column("ptes_copied", "PTEs copied", "{:,}",
                          "page-table entries the fork copied"),
                   Column("tables_shared", "tables shared", "{:,}",
                          "last-level page tables shared copy-on-write instead of copied"),
                   Column("child_private_kb", "child private tables kB", "{:,}",
                          "page tables the child owns alone (shared ones not counted)")]
                  + ([Column("host_model_ms", "host model ms", "{:,.2f}",
                             MODEL_HELP + "; copy only")]
                     if model is not None else []),
                  rows, notes, {"crossover_pct": crossover, "sweep_bytes": size},
                  PlotSpec("fraction_pct", "total_ms", "series",
                           "pages the child writes after fork (%)",
                           "fork + the child's writes (ms)", logx=True, logy=True,
                           rows="sweep"),
                  extra={"sweep": sweep})


# ---- database --------------------------------------------------------------------------------

def database_procs(quick: bool, max_gib: float = 8.0) -> list[int]:
    """The process counts the database scenario measures: up to 256, none whose private page
    tables (2 MiB per GiB mapped, per process; real memory of this machine) pass max_gib."""
    gib = 1 if quick else 4
    procs = [1, 4, 16] if quick else [1, 4, 16, 64, 256]
    return [n for n in procs if n == 1 or n * gib * 2 * MIB <= max_gib * GIB]


def scenario_database(quick: bool, tick: Tick, max_gib: float = 8.0) -> Result:
    from . import fork

    gib = 1 if quick else 4
    procs = database_procs(quick, max_gib)
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
    notes = [f"mshare case ({fork.MSHARE_GB} GB × {fork.MSHARE_PROCS} processes), from this "
             f"run's accounting: {ms['unshared_total_gb']:.0f} GB of page tables without "
             f"sharing (published ~{fork.MSHARE_TABLES_GB} GB), {ms['shared_total_gb']:.1f} GB "
             "with"]
    return Result("database", f"N processes map one {gib} GiB file MAP_SHARED and touch it",
                  [Column("procs", "processes", help="processes mapping the file"),
                   Column("tables", "page tables",
                          help="private: each process its own; shared: "
                               "Kernel(share_pagetables=True)"),
                   Column("pagetable_mib", "page-table MiB", "{:,.1f}",
                          "page tables of the whole machine"),
                   Column("faults", "faults", "{:,}", "page faults taken to touch the file"),
                   Column("seconds", "seconds", "{:.2f}", "wall time of the mapping and touching")],
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
             "first write of the THP split policy: one 4 KiB frame plus one page table"]
    return Result("zygote", "a template process starting apps",
                  [Column("method", "start an app by", help="how the template starts an app"),
                   Column("start_ms", "start ms", "{:.3f}",
                          "wall time to start one app (median)"),
                   Column("pagetable_kib", "tables KiB/app", "{:,.0f}",
                          "page tables of one app after its writes (median)"),
                   Column("frames", "frames/app", "{:,.0f}",
                          "4 KiB frames allocated for one app (median)"),
                   Column("pss_mib", "PSS MiB/app", "{:,.2f}",
                          "proportional set size of one app (median)"),
                   Column("total_frames", "frames, all apps", "{:,}",
                          "frames allocated for all apps together"),
                   Column("total_pss_mib", "PSS MiB, all", "{:,.0f}", "PSS of all apps together"),
                   Column("first_write", "first write",
                          help="frames / page tables allocated / pages copied by the first "
                               "app's first write")],
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


def scenario_anchors(quick: bool, tick: Tick, max_gib: float = 8.0) -> Result:
    from . import fork

    tick("1 GiB fork, copy and cow-pt")
    g1 = _fork_pair(GIB)
    tick("512 MiB fork, copy and cow-pt")
    m512 = _fork_pair(512 * MIB)
    tick("mshare arithmetic")
    db = [fork.db_row(1, 1, False), fork.db_row(4, 1, True)]
    ms = fork.mshare_extrapolation(db)
    tick("host: posix_spawn and fork+exec, small and big parent")
    big = min(0.25 if quick else 2.0, max_gib)
    hf = _host_flatness(big)
    rows = [
        {"anchor": "RFC (2022): 1 GiB child's page tables, copy", "published": 2096,
         "simulator": g1["copy"]["child_kb"], "unit": "kB"},
        {"anchor": "RFC (2022): 1 GiB child's page tables, COW page tables", "published": 44,
         "simulator": g1["cow-pt"]["private_kb"], "unit": "kB (private)"},
        {"anchor": "RFC v2: fork of 512 MB, copy / COW page tables", "published": 10 / 0.625,
         "simulator": m512["copy"]["fork_ms"] / m512["cow-pt"]["fork_ms"], "unit": "× faster"},
        {"anchor": "On-demand-fork (2021): fork of 1 GB, speed-up", "published": 65,
         "simulator": g1["copy"]["fork_ms"] / g1["cow-pt"]["fork_ms"], "unit": "× faster"},
        {"anchor": "mshare: 300 GB × 1500 processes, page tables", "published": 878,
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
                  [Column("anchor", "anchor", help="a published figure and where it is from"),
                   Column("published", "published", "{:,.1f}", "the figure as published"),
                   Column("simulator", "this run", "{:,.1f}",
                          "the same figure measured in this run"),
                   Column("unit", "unit", help="the unit of both figures")],
                  rows, notes, {"fork_1gib": g1, "fork_512mib": m512, "mshare": ms,
                                "host_ms": hf},
                  PlotSpec("anchor", "simulator", "anchor", "", "value (see unit)", logy=True,
                           kind="anchors"))


# ---- mm ----------------------------------------------------------------------------------------

def _mm_child(*args: str) -> dict[str, float]:
    """spawnfd.bench.mm in a fresh interpreter, so host RSS is measured cleanly."""
    out = subprocess.run([sys.executable, "-m", "spawnfd.bench.mm", *args], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def scenario_mm(quick: bool, tick: Tick) -> Result:
    sizes = [1] if quick else [1, 8, 64]
    tick("Kernel(memory='1T'), in a fresh interpreter")
    boot = _mm_child("--boot")
    rows = []
    for gib in sizes:
        tick(f"populate {gib} GiB, in a fresh interpreter")
        r = _mm_child("--child", str(gib))
        rows.append({"gib": gib, "populate_mpages_s": r["populate_pages_per_s"] / 1e6,
                     "munmap_mpages_s": r["munmap_pages_per_s"] / 1e6,
                     "pagetable_mib": r["pagetable_bytes"] / MIB,
                     "host_rss_mib": r["host_rss_mib"],
                     "host_mib_per_gib": r["host_rss_mib_per_gib"]})
    notes = [f"Kernel(memory=\"1T\") boots in {boot['boot_1t_s'] * 1e3:.1f} ms and costs the "
             f"host {boot['boot_1t_host_rss_mib']:.1f} MiB"]
    return Result("mm", "the simulator's memory manager: populate, munmap, host memory",
                  [Column("gib", "populated GiB",
                          help="private anonymous memory populated with write faults"),
                   Column("populate_mpages_s", "populate M pages/s", "{:,.1f}",
                          "pages faulted in per second by one populate call"),
                   Column("munmap_mpages_s", "munmap M pages/s", "{:,.1f}",
                          "pages unmapped per second by one munmap call"),
                   Column("pagetable_mib", "page tables MiB", "{:,.1f}",
                          "simulated page tables of the populated range"),
                   Column("host_rss_mib", "host RSS MiB", "{:,.0f}",
                          "what the simulation costs this machine (resident memory)"),
                   Column("host_mib_per_gib", "host MiB per GiB", "{:,.1f}",
                          "host memory per simulated GiB populated")],
                  rows, notes, {"boot": boot})


# ---- cpu -------------------------------------------------------------------------------------

def scenario_cpu(quick: bool, tick: Tick) -> Result:
    from . import cpu

    tick("real programs on the simulated CPU, and natively")
    rows, extra = trio.run(cpu._run, 3 if quick else 20)
    for r in rows:
        r["minsn_s"] = r["cpu_instructions"] / r["ms"] / 1e3 if r["ms"] else 0.0
        r["slowdown"] = r["ms"] / r["native_ms"] if r["native_ms"] else 0.0
    notes = [f"{r['argv']}: {ratio(r['slowdown'])} native" for r in rows]
    notes.append(f"host memory per running real process beyond its simulated frames: "
                 f"{extra['host_bytes_per_process'] / 1024:,.0f} KiB ({extra['processes']} "
                 f"cat processes blocked at once)")
    return Result("cpu", "real x86-64 programs on the simulated kernel's CPU",
                  [Column("argv", "program", help="built through the fd model, launched by "
                          "closing the builder fd, run to exit on open_kernel(cpu=True)"),
                   Column("status", "status", "{}", "wait status (0: exited 0)"),
                   Column("ms", "sim ms", "{:,.2f}", "launch to exit on the simulator (median)"),
                   Column("native_ms", "native ms", "{:,.2f}",
                          "subprocess.run of the same argv on this host (median)"),
                   Column("cpu_instructions", "instructions", "{:,}",
                          "x86-64 instructions the CPU executed (one run)"),
                   Column("minsn_s", "M insn/s", "{:,.1f}", "instructions per second, millions"),
                   Column("syscalls", "syscalls", "{:,}", "system calls the program made"),
                   Column("tlb_fills", "TLB fills", "{:,}",
                          "TLB misses served by a page-table walk (and faults)"),
                   Column("tlb_flushes", "TLB flushes", "{:,}",
                          "flushes the memory manager asked of the CPU")],
                  rows, notes, summary=extra)


# ---- realspawn ---------------------------------------------------------------------------

def scenario_realspawn(quick: bool, tick: Tick, sizes: list[float] | None = None) -> Result:
    from . import realspawn

    sizes_mib = None if sizes is None else tuple(round(g * 1024) for g in sizes)
    rows = trio.run(realspawn.run, quick, tick, sizes_mib)
    for r in rows:
        r["parent_gib"] = r["parent_mib"] / 1024
    kinds = realspawn.fault_kinds(rows)
    for r in rows:
        r["faults"] = " / ".join(f"{r[f'faults_{f}']:,}" for f in kinds)
    top = max(r["parent_mib"] for r in rows)
    at = {(r["spawner"], r["fork_mode"]): r for r in rows if r["parent_mib"] == top}
    fork, fd = "CPython os.fork + os.execv", realspawn.FD_MODEL
    notes = []
    size = f"{top / 1024:g} GiB" if top >= 1024 else f"{top} MiB"
    for mode in realspawn.MODES:
        f = at.get((fork, mode))
        if f:
            notes.append(f"{mode}, CPython fork+exec from {size}: {f['ptes_copied']:,} PTEs "
                         f"copied, {f['tables_shared']:,} tables shared, {f['tables_copied']:,} "
                         f"broken and {f['tables_allocated']:,} allocated, "
                         f"{f['pages_copied']:,} pages copied, "
                         f"{f['frames_allocated']:,} frames allocated in the window")
    copy, cow = at.get((fork, "copy")), at.get((fork, "cow-pt"))
    if copy and cow and cow["ptes_copied"]:
        notes.append(f"cow-pt against copy, CPython fork+exec from {size}: PTEs copied "
                     f"{ratio(copy['ptes_copied'] / cow['ptes_copied'])} fewer, frames "
                     f"allocated {ratio(copy['frames_allocated'] / cow['frames_allocated'])} "
                     f"fewer, instructions in the window {cow['instructions']:,} under both"
                     if cow["instructions"] == copy["instructions"] else
                     f"cow-pt against copy, CPython fork+exec from {size}: PTEs copied "
                     f"{ratio(copy['ptes_copied'] / cow['ptes_copied'])} fewer")
    fdr = at.get((fd, "copy"))
    if fdr:
        for name in [n for n in dict.fromkeys(r["spawner"] for r in rows) if n != fd]:
            s = at.get((name, "copy"))
            if s:
                notes.append(f"{name} from {size} (copy) against the fd model: frames allocated "
                             f"{s['frames_allocated']:,} vs {fdr['frames_allocated']:,}, PTEs "
                             f"copied {s['ptes_copied']:,} vs {fdr['ptes_copied']:,}, "
                             f"instructions {s['instructions']:,} vs {fdr['instructions']:,}")
    by = {(r["spawner"], r["parent_mib"], r["fork_mode"]): r for r in rows}
    for r in rows:
        if r["spawner"] == realspawn.BYTEARRAY:
            m = by[(fork, r["parent_mib"], r["fork_mode"])]
            diff = {c: r[c] - m[c] for c in realspawn.COUNTERS if r[c] != m[c]}
            notes.append(f"a parent that wrote a bytearray of {r['parent_mib']:,} MiB, "
                         f"{r['fork_mode']}, against one that populated it: "
                         + (", ".join(f"{c} {d:+,}" for c, d in diff.items()) or "the same")
                         + f" ({r['seconds']:.1f} s against {m['seconds']:.1f} s a cell)")
    bad = [f"{r['spawner']}, {r['parent_mib']} MiB, {r['fork_mode']}" for r in rows
           if not r["repeatable"]]
    notes.append(f"every cell ran twice: the counters were the same in all {len(rows)} cells"
                 if not bad else "cells whose two runs differed: " + "; ".join(bad))
    notes.append(f"slowest cell: {max(r['seconds'] for r in rows):.1f} s (wall time of one run)")
    return Result("realspawn", "the fork-to-exec window of real spawners (simulated CPU)",
                  [Column("spawner", "spawner", help="a real program on the simulated CPU "
                          "starting /bin/true once (the fd model: init through a builder)"),
                   Column("parent_mib", "parent MiB", "{:,}",
                          "private memory the parent mapped and write-faulted before spawning "
                          "(python's mmap with MAP_POPULATE; the shells hold none)"),
                   Column("fork_mode", "fork policy", help="Kernel(fork_mode=...)"),
                   Column("ptes_copied", "PTEs copied", "{:,}", "entries fork copied"),
                   Column("tables_shared", "tables shared", "{:,}",
                          "last-level tables shared instead of copied (cow-pt)"),
                   Column("tables_copied", "tables broken", "{:,}",
                          "shared tables copied when a write broke them in the window"),
                   Column("tables_allocated", "tables alloc", "{:,}",
                          "page tables allocated in the window: the fork's copies (copy), its "
                          "upper levels, the tables broken and those faults filled"),
                   Column("pages_copied", "pages copied", "{:,}",
                          "4 KiB pages copied by COW faults, parent's and child's"),
                   Column("frames_allocated", "frames alloc", "{:,}",
                          "frames allocated: page tables and pages"),
                   Column("faults", "faults " + " / ".join(kinds), "{}",
                          "faults in the window by kind: " + ", ".join(
                              f"{k}: {realspawn.FAULT_HELP[k]}" for k in kinds)),
                   Column("parent_instructions", "parent insns", "{:,}",
                          "instructions the parent ran in the window (fork to the child's "
                          "exec; a vforked parent is suspended)"),
                   Column("child_instructions", "child insns", "{:,}",
                          "instructions the child ran from fork to exec")],
                  rows, notes, {"sizes_mib": sorted({r["parent_mib"] for r in rows}),
                                "table": realspawn.summary(rows)},
                  PlotSpec(x="parent_gib", y="ptes_copied", series="series",
                           xlabel="parent's memory (GiB)", ylabel="PTEs copied",
                           logy=True, kind="panels",
                           panels=(("ptes_copied", "PTEs copied"),
                                   ("frames_allocated", "frames allocated"),
                                   ("instructions", "instructions, parent + child"))),
                  lead=realspawn.summary(rows))


# ---- abi ----------------------------------------------------------------------------------

def scenario_abi(quick: bool, tick: Tick) -> Result:
    from . import abi

    rows = trio.run(abi.run, quick, tick)
    big = max(r["parent_mib"] for r in rows)
    at = {(r["method"], r["parent_mib"]): r for r in rows}
    notes = []
    fork, fd, vf = at[("fork", big)], at[("fdspawn", big)], at[("vfork", big)]
    notes.append(f"from {big:,} MiB: fork+execve copies {fork['ptes_copied']:,.0f} PTEs and "
                 f"allocates {fork['tables_allocated']:,.0f} page tables per spawn; fdspawn "
                 f"copies {fd['ptes_copied']:,.0f} and allocates {fd['tables_allocated']:,.0f} "
                 f"(from 0 MiB: {at[('fdspawn', 0)]['tables_allocated']:,.0f})")
    notes.append(f"the cost of the fd model: the parent runs the ELF loading execve does in the "
                 f"kernel: {fd['parent_instructions']:,.0f} instructions and "
                 f"{fd['parent_syscalls']:,.0f} system calls per spawn, against "
                 f"{vf['parent_instructions']:,.0f} and {vf['parent_syscalls']:,.0f} for "
                 f"vfork+execve (kernel work is not counted as instructions)")
    return Result("abi", "the fd model's system calls from C against glibc's spawners "
                  "(simulated CPU, per spawn of /bin/true)",
                  [Column("method", "method", help="examples/c/compare.c: glibc posix_spawn, "
                          "fork+execve, vfork+execve, fdspawn (ELF loading in the parent), "
                          "fdspawn-ldso (ld.so loads the program)"),
                   Column("parent_mib", "parent MiB", "{:,}",
                          "anonymous memory the parent mapped and wrote first"),
                   Column("parent_instructions", "parent insns", "{:,.0f}",
                          "x86-64 instructions the parent ran per spawn (spawn and wait)"),
                   Column("child_instructions", "child insns", "{:,.0f}",
                          "instructions of the child, to its exit (ld.so, libc, true)"),
                   Column("parent_syscalls", "parent calls", "{:,.0f}",
                          "system calls the parent made per spawn"),
                   Column("child_syscalls", "child calls", "{:,.0f}",
                          "system calls the child made (execve included)"),
                   Column("tables_allocated", "tables", "{:,.0f}",
                          "page tables allocated per spawn"),
                   Column("ptes_copied", "PTEs copied", "{:,.0f}", "entries fork copied"),
                   Column("pages_copied", "pages copied", "{:,.0f}",
                          "4 KiB pages copied by COW faults"),
                   Column("faults_file", "file faults", "{:,.0f}", "faults on file pages"),
                   Column("faults_anon", "anon faults", "{:,.0f}",
                          "faults that allocated anonymous pages"),
                   Column("faults_cow", "COW faults", "{:,.0f}", "copy-on-write faults")],
                  rows, notes, {},
                  PlotSpec(x="parent_mib", y="tables_allocated", series="method",
                           xlabel="parent MiB", ylabel="page tables allocated per spawn",
                           logy=True))


SCENARIOS: dict[str, Callable[..., Result]] = {
    "system": scenario_system, "host": scenario_host, "fork": scenario_fork,
    "database": scenario_database, "zygote": scenario_zygote, "anchors": scenario_anchors,
    "mm": scenario_mm, "cpu": scenario_cpu, "realspawn": scenario_realspawn,
    "abi": scenario_abi}
# What `spawnfd bench` runs without names: mm measures the tool, not a question; cpu and
# realspawn and abi run real programs on the simulated CPU (minutes): asked for by name.
DEFAULT = [n for n in SCENARIOS if n not in ("mm", "cpu", "realspawn", "abi")]
# Scenarios that hold real memory on this machine, up to --max-gib GiB.
HOLDS_MEMORY = ("host", "anchors", "database")
# Scenarios whose parent sizes --sizes sets.
TAKES_SIZES = ("realspawn",)


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
        t.add_column(c.header, justify="right" if result.numeric(c) else "left")
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
    if spec.kind == "panels":
        return _plot_panels(result, spec, rows, directory, plt)
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


def _plot_panels(result: Result, spec: PlotSpec, rows: list[dict[str, Any]], directory: Path,
                 plt: Any) -> Path:
    """One line plot per panel, side by side, a line per series; the legend below them.
    x takes its values evenly spaced; a log y scale is symmetric (zero is drawn on a linear
    stretch up to 1)."""
    fig, axes = plt.subplots(1, len(spec.panels), figsize=(5 * len(spec.panels), 5.8), dpi=110)
    rows = [r for r in rows if r[spec.series] is not None]  # None: a row left out of the plot
    names = list(dict.fromkeys(r[spec.series] for r in rows))
    xs = sorted({r[spec.x] for r in rows})  # evenly spaced, each labelled with its value
    styles = ["-", "--", ":", "-."]
    for ax, (y, ylabel) in zip(axes, spec.panels):
        for i, name in enumerate(names):
            pts = sorted({(xs.index(r[spec.x]), r[y]) for r in rows if r[spec.series] == name})
            ax.plot([x for x, _ in pts], [v for _, v in pts], marker="o", markersize=4,
                    clip_on=False, linestyle=styles[i // 10 % len(styles)], label=str(name))
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_xlim(-0.2, len(xs) - 0.8)
        if spec.logy:
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylim(0, 3 * max([r[y] for r in rows] + [1]))  # counters: none below 0
        ax.set_xlabel(spec.xlabel)
        ax.set_title(ylabel, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(result.title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.022 * ((len(names) + 2) // 3), 1, 1))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(result: Result) -> str:
    """The scenario's table and notes in Markdown (for the README's Results)."""
    head = [c.header for c in result.columns]
    lines = [f"**{result.title}**", ""]
    if result.lead:
        lines += [result.lead.rstrip("\n"), "", "Every row:", ""]
    lines += ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if result.numeric(c) else "---" for c in result.columns)
             + "|"]
    for r in result.rows:
        cells = []
        for c in result.columns:
            v = r.get(c.key)
            cells.append("-" if v is None else c.fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.notes]
    lines += ["", "Columns:", ""] + [f"- {h}" for h in result.legend()]
    return "\n".join(lines) + "\n"


def available_gib() -> float | None:
    """MemAvailable of this machine, in GiB (None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(ln for ln in f if ln.startswith("MemAvailable")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None
    return kib / (1 << 20)


def memory_cap(names: list[str], quick: bool, max_gib: float,
               avail: float | None = None) -> tuple[float, str | None]:
    """The GiB a scenario may hold on this machine, and what to tell the user before the run.
    ``avail``: MemAvailable in GiB (default: this machine's)."""
    if quick or not any(n in HOLDS_MEMORY for n in names):
        return max_gib, None
    avail = available_gib() if avail is None else avail
    held = min(max_gib, 8.0)
    if avail is not None and held + 1 > avail:  # leave a GiB for the rest of the run
        lowered = max(0.25, float(int(avail - 1)))
        return lowered, (f"memory: only {avail:.1f} GiB of this machine's memory is available, "
                         f"so no scenario holds more than about {lowered:g} GiB (asked: "
                         f"{held:g}); the bigger sizes are left out. --max-gib sets the cap.")
    if held >= 2:
        return held, (f"memory: this run holds up to {held:g} GiB of this machine's memory "
                      "(the host scenario's parent); --max-gib 1 keeps it under 1.5 GiB")
    return held, None


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (spawnfd bench | head): let spawnfd's main end quietly with
        the status of a tool killed by SIGPIPE (rich would exit 1)."""
        self.quiet = True
        raise BrokenPipeError


def run(names: list[str], quick: bool, console: Console | None = None,
        json_path: str | None = None, plots: str | None = None,
        markdown_path: str | None = None, max_gib: float = 8.0,
        sizes: list[float] | None = None) -> dict[str, Any]:
    if console is None:  # not a terminal: wide enough for the tables anyway
        console = _Console(width=None if os.isatty(1) else 150)
    if plots:
        require_matplotlib()  # before the run, not after it
    max_gib, notice = memory_cap(names, quick, max_gib)
    if notice:
        print(notice, file=sys.stderr)
    results: dict[str, Result] = {}
    with Progress(TextColumn("[bold]{task.fields[scenario]:<9}"), BarColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("", total=len(names), scenario="")
        for name in names:
            progress.update(task, scenario=name, description="starting")

            def tick(what: str) -> None:
                progress.update(task, description=what)

            kw: dict[str, Any] = {"max_gib": max_gib} if name in HOLDS_MEMORY else {}
            if name in TAKES_SIZES and sizes is not None:
                kw["sizes"] = sizes
            results[name] = SCENARIOS[name](quick, tick, **kw)
            progress.advance(task)
    out: dict[str, Any] = {"machine": machine(), "quick": quick, "max_gib": max_gib,
                           "scenarios": {n: r.as_json() for n, r in results.items()}}
    written: list[str] = []
    for r in results.values():
        console.print(render(r))
        for note in r.notes:
            console.print(f"  {note}")
        console.print("  [dim]columns:[/dim]")
        for line in r.legend():
            console.print(f"    {line}", style="dim", highlight=False)
        console.print()
        if plots:
            path = plot(r, Path(plots))
            if path:
                out["scenarios"][r.name]["plot"] = str(path)
                written.append(f"{path} (plot of {r.name})")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2, default=str)
        written.insert(0, f"{json_path} (every figure and the machine, JSON)")
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write("\n".join(markdown(r) for r in results.values()))
        written.insert(1 if json_path else 0, f"{markdown_path} (the tables, Markdown)")
    for w in written:
        print(f"wrote {w}", file=sys.stderr)
    return out


def require_matplotlib() -> None:
    """--plots needs matplotlib, which is the optional extra spawnfd[plots]."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("spawnfd bench: --plots needs matplotlib, which is not installed; "
                         "install it with: pip install 'spawnfd[plots]'") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="spawnfd bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="any of " + ", ".join(SCENARIOS)
                    + " (default: all but mm, cpu, realspawn and abi)")
    ap.add_argument("--quick", action="store_true", help="small sizes: every scenario in "
                    "under a minute")
    ap.add_argument("--json", metavar="FILE", help="write every figure and the machine here")
    ap.add_argument("--plots", metavar="DIR", help="write a PNG per scenario here "
                    "(needs matplotlib: pip install 'spawnfd[plots]')")
    ap.add_argument("--markdown", metavar="FILE", help="write the tables in Markdown here")
    ap.add_argument("--max-gib", metavar="N", type=float, default=8.0,
                    help="the most memory of this machine a scenario may hold, in GiB: bigger "
                         "sizes of host, anchors and database are left out (default 8: a full "
                         "run peaks at 8.0 GiB; 1 keeps it under 1.5 GiB)")
    ap.add_argument("--sizes", metavar="GIB,...", help="the parents' sizes of realspawn, in "
                    "GiB (default 0,1,8; with --quick 0 and 1/32)")
    args = ap.parse_args(argv)
    sizes = None
    if args.sizes is not None:
        try:
            sizes = [float(g) for g in args.sizes.split(",")]
        except ValueError:
            ap.error(f"--sizes takes GiB separated by commas, not {args.sizes!r}")
        if any(g < 0 or g > 4096 for g in sizes):
            ap.error("--sizes: each size between 0 and 4096 GiB")
        if not any(n in TAKES_SIZES for n in args.scenarios):
            ap.error("--sizes applies to " + ", ".join(TAKES_SIZES) + ": name it")
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.max_gib <= 0:
        ap.error("--max-gib must be positive")
    run(args.scenarios or DEFAULT, args.quick, json_path=args.json, plots=args.plots,
        markdown_path=args.markdown, max_gib=args.max_gib, sizes=sizes)
