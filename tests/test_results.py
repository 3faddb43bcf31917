"""The README's "Results" says what the committed run (docs/results/bench.json) measured.

Each figure the prose and the system table quote is recomputed here from the JSON and printed
the way the README prints it; a regenerated bench.json that changes a figure fails this test
until the README is brought in line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = json.loads((ROOT / "docs" / "results" / "bench.json").read_text())["scenarios"]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Results"):README.index("## Measured")]
TEXT = re.sub(r"\s+", " ", SECTION)  # prose wrapped anywhere


def rows(scenario: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in RESULTS[scenario]["rows"] if all(r[k] == v for k, v in match.items())]


def one(scenario: str, **match: Any) -> dict[str, Any]:
    (r,) = rows(scenario, **match)
    return r


def ms(x: float) -> str:
    """The README's precision: two decimals below 10 ms, one below 100, none above."""
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms" if x < 100 else f"{x:,.0f} ms"


def test_system_table() -> None:
    table = {m.group(1): [c.strip() for c in m.group(2).split("|")]
             for m in re.finditer(r"^\| (\d+) GiB +\|(.*)\|$", SECTION, re.M)}
    assert sorted(map(int, table)) == [0, 1, 8, 64]
    methods = ["fork+exec (copy)", "fork+exec (cow-pt)", "vfork+exec", "spawnfd"]
    for gib, cells in table.items():
        want = [ms(one("system", gib=int(gib), method=m)["ms"]) for m in methods]
        copy = one("system", gib=int(gib), method="fork+exec (copy)")
        want.append(f"{copy['ptes_copied']:,}")
        model = copy["host_model_ms"]
        want.append(f"{model:.1f} ms" if model < 10 else f"{model:,.0f} ms")
        assert cells == want, gib


def test_system_prose() -> None:
    g = RESULTS["system"]["summary"]["growth"]
    assert f"(time {g['spawnfd']['time_pct']:+.1f} % from 0 to 64 GiB)" in TEXT
    copy = [one("system", gib=g, method="fork+exec (copy)")["ms"] for g in (0, 64)]
    assert f"(×{copy[1] / copy[0]:.0f} in time" in TEXT
    tables64 = one("system", gib=64, method="fork+exec (copy)")["tables"]
    assert f"{tables64:,} tables at 64 GiB" in TEXT
    cow = [one("system", gib=g, method="fork+exec (cow-pt)")["tables"] for g in (0, 64)]
    assert f"{cow[0]} → {cow[1]} tables" in TEXT


def test_host_prose() -> None:
    fork = [one("host", gib=g, method="os.fork+exec")["ms"] for g in (0, 8)]
    assert f"×{fork[1] / fork[0]:.0f} from 0 to 8 GiB ({fork[0]:.1f} → {fork[1]:.0f} ms)" in TEXT
    sp = [r["ms"] for r in rows("host", method="spawnfd (host)")]
    assert f"spawnfd {min(sp):.2f}–{max(sp):.2f} ms" in TEXT
    flat = [one("host", gib=8, method=m)["ms"] / one("host", gib=0, method=m)["ms"]
            for m in ("subprocess", "os.posix_spawn", "trio.run_process", "spawnfd (host)")]
    assert f"stay flat (×{min(flat):.2f}–{max(flat):.2f};" in TEXT
    sp_ps = one("host", gib=8, method="spawnfd (host)")["ms"] / one(
        "host", gib=8, method="os.posix_spawn")["ms"]
    assert f"{sp_ps:.2f}× posix_spawn" in TEXT


def test_fork_prose() -> None:
    f = {(r["gib"], r["mode"]): r for r in RESULTS["fork"]["rows"]}
    speed = [f[(g, "copy")]["fork_ms"] / f[(g, "cow-pt")]["fork_ms"] for g in (1, 8, 64)]
    assert "cow-pt forks {:.0f}× / {:.0f}× / {:.0f}× faster".format(*speed) in TEXT
    sweep = {(r["series"], r["fraction_pct"]): r for r in RESULTS["fork"]["sweep"]}
    cross = RESULTS["fork"]["summary"]["crossover_pct"]
    assert f"cow-pt stops paying at {cross['spread']:g} %" in TEXT
    # clustered: the README says cow-pt stayed ahead at every fraction of that run
    assert cross["clustered"] is None and "stayed ahead of copy at every fraction" in TEXT
    for pct in (1.0, 50.0):
        cow, copy = (sweep[(f"{m}, clustered", pct)]["total_ms"] for m in ("cow-pt", "copy"))
        shown = (f"{cow:.2f} vs {copy:.2f} ms at {pct:g} %" if pct < 10 else
                 f"{cow:.1f} vs {copy:.1f} ms at {pct:g} %")
        assert shown in TEXT, shown
    cow, copy = (sweep[(f"{m}, clustered", 100.0)]["total_ms"] for m in ("cow-pt", "copy"))
    assert f"by {100 * (1 - cow / copy):.0f} % at 100 % ({cow:.1f} vs {copy:.1f} ms)" in TEXT
    tables = [sweep[("cow-pt, clustered", p)]["tables_copied"] for p in (1.0, 50.0)]
    assert f"({tables[0]} at 1 %, {tables[1]} at 50 %)" in TEXT
    eager = [f[(64, m)]["fork_ms"] for m in ("cow-pt-eager", "copy")]
    assert f"({eager[0]:.1f} vs {eager[1]:.1f} ms at 64 GiB)" in TEXT


def test_database_and_zygote_prose() -> None:
    private = one("database", procs=256, tables="private")
    shared = one("database", procs=256, tables="shared")
    assert (f"{private['pagetable_mib']:,.0f} MiB of page tables without sharing, "
            f"{shared['pagetable_mib']:.0f} MiB with") in TEXT
    assert f"{shared['faults']:,} faults instead of {private['faults']:,}" in TEXT
    msh = RESULTS["database"]["summary"]["mshare"]
    assert f"{msh['unshared_total_gb']:.0f} GB without sharing" in TEXT
    assert f"{msh['shared_total_gb']:.1f} GB with" in TEXT
    z = {r["method"]: r for r in RESULTS["zygote"]["rows"]}
    huge = z["fork, THP copy-huge"]
    assert f"{huge['total_frames']:,} frames and {huge['total_pss_mib'] / 1024:.0f} GiB " \
           f"({huge['total_pss_mib']:,.0f} MiB) of PSS" in TEXT
    ratio = huge["total_pss_mib"] / z["fork, THP split"]["total_pss_mib"]
    assert f"PSS — {ratio:.0f}× more" in TEXT
    assert (f"{z['fork, THP split']['total_frames']:,} vs "
            f"{z['fork, 4 KiB pages']['total_frames']:,} frames") in TEXT


@pytest.mark.parametrize("anchor,shown", [
    ("RFC (2022): 1 GiB child's page tables, copy", "| 2,096 kB | {:,.0f} kB |"),
    ("RFC v2: fork of 512 MB, copy / COW page tables", "| {:.0f}× |"),
    ("On-demand-fork (2021): fork of 1 GB, speed-up", "| 65× | {:.0f}× |"),
])
def test_anchor_table(anchor: str, shown: str) -> None:
    assert shown.format(one("anchors", anchor=anchor)["simulator"]) in SECTION


# ---- realspawn: docs/results/realspawn.json, a run of its own ---------------------------------

REALSPAWN = json.loads((ROOT / "docs" / "results" / "realspawn.json").read_text())["scenarios"][
    "realspawn"]


def window(spawner: str, mib: int, mode: str) -> dict[str, Any]:
    (r,) = [r for r in REALSPAWN["rows"]
            if (r["spawner"], r["parent_mib"], r["fork_mode"]) == (spawner, mib, mode)]
    return r


def test_realspawn_table_is_the_tools() -> None:
    from spawnfd.bench import realspawn

    table = realspawn.summary(REALSPAWN["rows"])
    assert table == REALSPAWN["summary"]["table"]  # what the run wrote
    assert "\n" + table + "\n" in SECTION  # the README shows it as the tool printed it
    assert REALSPAWN["summary"]["sizes_mib"] == [0, 1024, 8192]
    assert "![realspawn](docs/results/realspawn.png)" in SECTION


def test_realspawn_prose() -> None:
    from spawnfd.bench import realspawn

    rows = REALSPAWN["rows"]
    assert all(r["repeatable"] for r in rows)
    assert f"gave the same counters in all {len(rows)}." in TEXT
    fork = "CPython os.fork + os.execv"
    copy, cow = window(fork, 8192, "copy"), window(fork, 8192, "cow-pt")
    eager = window(fork, 8192, "cow-pt-eager")
    assert (f"copies {copy['ptes_copied']:,} PTEs under `copy` and {cow['ptes_copied']:,} "
            f"under `cow-pt` (×{copy['ptes_copied'] / cow['ptes_copied']:,.0f} fewer), and "
            f"allocates {cow['tables_allocated']} page tables instead of "
            f"{copy['tables_allocated']:,} and {cow['frames_allocated']:,} frames instead of "
            f"{copy['frames_allocated']:,} (×{copy['frames_allocated'] / cow['frames_allocated']:.1f}"
            " fewer)") in TEXT
    shared1 = window(fork, 1024, "cow-pt")["tables_shared"]
    assert f"({cow['tables_shared']:,} at 8 GiB, {shared1:,} at 1 GiB)" in TEXT
    zero = window(fork, 0, "cow-pt")["ptes_copied"]
    assert f"copies the {cow['ptes_copied']:,} PTEs of chunks" in TEXT
    assert f"({zero:,} of them at 0 GiB too)" in TEXT
    same = ("pages_copied", "tables_copied", "instructions", "child_instructions")
    assert [copy[c] for c in same[:1] + same[2:]] == [cow[c] for c in same[:1] + same[2:]]
    assert (f"{cow['pages_copied']} pages copied by COW faults, {cow['tables_copied']} shared "
            f"tables broken by writes, and {cow['instructions']:,} instructions, "
            f"{cow['child_instructions']:,} of them the child's") in TEXT
    assert all(eager[c] == cow[c] for c in realspawn.COUNTERS)  # "the same counters"
    # the vfork spawners
    vforks = ["CPython subprocess.run", "CPython os.posix_spawn", "CPython os.system"]
    vrows = [r for r in rows if r["spawner"] in vforks + ["dash -c"]]
    assert all(r["ptes_copied"] == 0 and r["parent_instructions"] == 0 for r in vrows)
    frames = sorted({r["frames_allocated"] for r in vrows if r["spawner"] != "CPython os.system"})
    system = {r["frames_allocated"] for r in vrows if r["spawner"] == "CPython os.system"}
    tables = {r["tables_allocated"] for r in vrows if r["spawner"] != "CPython os.system"}
    sys_tables = {r["tables_allocated"] for r in vrows if r["spawner"] == "CPython os.system"}
    assert (f"{frames[0]}–{frames[-1]} frames allocated, {tables.pop()} of them page tables "
            f"({system.pop()} and {sys_tables.pop()} for `os.system`)") in TEXT
    assert not tables and not system and not sys_tables  # one figure each
    dash = window("dash -c", 0, "copy")["child_instructions"]
    sub = window("CPython subprocess.run", 8192, "copy")["child_instructions"]
    assert max(r["child_instructions"] for r in vrows) == sub
    assert f"runs {dash:,} (dash) to {sub:,} (`subprocess.run`) instructions" in TEXT
    bash = window("bash -c", 0, "copy")
    assert (f"{bash['ptes_copied']} PTEs and {bash['pages_copied']} pages copied, "
            f"{bash['frames_allocated']} frames, {bash['instructions']:,} instructions") in TEXT
    fd = [r for r in rows if r["spawner"] == realspawn.FD_MODEL]
    assert {(r["ptes_copied"], r["frames_allocated"], r["instructions"]) for r in fd} == {
        (0, fd[0]["frames_allocated"], 0)}
    assert f"allocates {fd[0]['frames_allocated']} frames whatever the parent holds" in TEXT
    assert {r["tables_allocated"] for r in fd} == {fd[0]["tables_allocated"]}
    assert f"(the new process's {fd[0]['tables_allocated']} tables" in TEXT
    fdf = fd[0]["frames_allocated"]
    assert (f"allocates {cow['frames_allocated'] / fdf:.0f}× the fd model's frames under "
            f"`cow-pt` and {copy['frames_allocated'] / fdf:.0f}× under `copy`") in TEXT
    # the bytearray parent against the populated one, at 1 GiB, every policy
    diffs: dict[str, int] = {}
    for r in rows:
        if r["spawner"] == realspawn.BYTEARRAY:
            m = window(fork, r["parent_mib"], r["fork_mode"])
            for c in realspawn.COUNTERS:
                diffs[c] = max(diffs.get(c, 0), abs(r[c] - m[c]))
    load = json.loads((ROOT / "docs" / "results" / "realspawn.json").read_text())["machine"][
        "load_average"][0]
    assert f"on the shared VM (load average {load:.0f})" in TEXT
    assert (f"within {diffs['ptes_copied']} PTEs, {diffs['tables_shared']} table, "
            f"{diffs['pages_copied']} pages and {diffs['instructions']} instructions") in TEXT
