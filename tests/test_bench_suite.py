"""`spawnfd bench --quick` runs every scenario, so the benchmark code never rots."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spawnfd.__main__ import main
from spawnfd.bench import cpu, suite


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    d = tmp_path_factory.mktemp("bench")
    main(["bench", "--quick", "--json", str(d / "out.json"), "--plots", str(d / "plots")])
    return json.loads((d / "out.json").read_text()), d


def test_every_scenario_ran_with_a_plot(quick: tuple[dict, Path]) -> None:
    out, d = quick
    assert set(out["scenarios"]) == set(suite.DEFAULT) == set(suite.SCENARIOS) - {"mm", "cpu", "realspawn",
                                                                        "abi"}
    assert out["quick"] is True and out["machine"]["cpus"] >= 1 and out["machine"]["kernel"]
    for name, sc in out["scenarios"].items():
        assert sc["rows"], name
        png = d / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_system_counters(quick: tuple[dict, Path]) -> None:
    rows = quick[0]["scenarios"]["system"]["rows"]
    by = {(r["gib"], r["method"]): r for r in rows}
    assert by[(1, "fork+exec (copy)")]["ptes_copied"] >= 262_144
    assert by[(0, "spawnfd")]["ptes_copied"] == by[(1, "spawnfd")]["ptes_copied"] == 0
    assert by[(0, "spawnfd")]["tables"] == by[(1, "spawnfd")]["tables"]
    rates = quick[0]["scenarios"]["system"]["summary"]["spawns_per_second"]
    assert set(rates) == {"spawnfd, async with create_process()", "spawnfd, sim.spawn()",
                          "fork+exec (copy)", "vfork+exec"}
    assert all(r["wall"] > 0 and r["cpu"] > 0 and r["ratio"] > 0 for r in rates.values())
    assert rates["vfork+exec"]["ratio"] == 1.0  # each round's ratio to itself


def test_fork_sweep_counts(quick: tuple[dict, Path]) -> None:
    sc = quick[0]["scenarios"]["fork"]
    sweep = sc["sweep"]
    full = [r for r in sweep if r["fraction_pct"] == 100]
    assert {r["pages_copied"] for r in full} == {sc["summary"]["sweep_bytes"] // 4096}
    none = [r for r in sweep if r["fraction_pct"] == 0 and r["mode"] == "cow-pt"]
    assert all(r["ptes_copied"] == 0 and r["pages_copied"] == 0 for r in none)
    # spread writes copy every shared table; clustered ones only the tables they touch
    one = {r["pattern"]: r for r in sweep if r["mode"] == "cow-pt" and r["fraction_pct"] == 1}
    assert one["spread"]["tables_copied"] > one["clustered"]["tables_copied"]


def test_database_and_anchors(quick: tuple[dict, Path]) -> None:
    db = quick[0]["scenarios"]["database"]
    shared = [r for r in db["rows"] if r["tables"] == "shared"]
    private = [r for r in db["rows"] if r["tables"] == "private"]
    assert max(r["pagetable_mib"] for r in shared) < max(r["pagetable_mib"] for r in private) / 4
    assert 700 < db["summary"]["mshare"]["unshared_total_gb"] < 1100
    anchors = {r["anchor"]: r for r in quick[0]["scenarios"]["anchors"]["rows"]}
    rfc = next(r for a, r in anchors.items() if "page tables, copy" in a)
    assert abs(rfc["simulator"] - rfc["published"]) / rfc["published"] < 0.05


def test_unknown_scenario_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "nosuch"])
    err = capsys.readouterr().err
    assert "unknown scenario nosuch" in err
    assert all(name in err.rsplit("choose from", 1)[1] for name in suite.SCENARIOS)


def test_every_column_is_explained(quick: tuple[dict, Path]) -> None:
    """Each column has a legend; growth and speed-ups are printed one way (×N), never as
    a percentage beside a ratio."""
    for name, sc in quick[0]["scenarios"].items():
        assert sc["columns"], name
        for key, col in sc["columns"].items():
            assert len(col["help"]) > 10, (name, key)
        for note in sc["notes"]:
            assert not re.search(r"[+-]\d[\d.,]* ?%", note), (name, note)
            assert not re.search(r"\bx\d", note), (name, note)
    system = quick[0]["scenarios"]["system"]
    if "host_model_ms" in system["columns"]:  # a cost model is stored: say what it is
        assert "spawnfd calibrate" in system["columns"]["host_model_ms"]["help"]
    else:  # none: say how to get the column
        assert any("spawnfd calibrate" in n for n in system["notes"])
    assert any(re.search(r"time ×\d", n) for n in system["notes"])


def fake_scenario(quick: bool, tick: suite.Tick) -> suite.Result:
    rows = [{"gib": g, "method": m, "ms": 0.5 + g} for g in (0, 1) for m in ("a", "b")]
    return suite.Result("fake", "a fake scenario",
                        [suite.Column("gib", "GiB", "{}", "memory of the parent"),
                         suite.Column("method", "method", help="how"),
                         suite.Column("ms", "host model ms", "{:.2f}", suite.MODEL_HELP)],
                        rows, ["a note"], {},
                        suite.PlotSpec("gib", "ms", "method", "GiB", "ms"))


def test_outputs_say_what_they_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(suite.SCENARIOS, "fake", fake_scenario)
    js, md, plots = tmp_path / "o.json", tmp_path / "o.md", tmp_path / "plots"
    suite.run(["fake"], True, json_path=str(js), plots=str(plots), markdown_path=str(md))
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"wrote {js} (every figure and the machine, JSON)",
                                f"wrote {md} (the tables, Markdown)",
                                f"wrote {plots / 'fake.png'} (plot of fake)"]
    assert (plots / "fake.png").exists() and js.exists()
    # the legend follows the table, on the terminal and in Markdown; numbers align right
    assert "host model ms: what this host's real kernel would take" in out
    text = md.read_text()
    assert "|---:|---|---:|" in text and "- GiB: memory of the parent" in text


def test_plots_without_matplotlib_name_the_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    monkeypatch.setitem(suite.SCENARIOS, "fake", fake_scenario)
    with pytest.raises(SystemExit) as e:
        main(["bench", "fake", "--plots", str(tmp_path)])
    assert "pip install 'spawnfd[plots]'" in str(e.value.code)
    assert not list(tmp_path.iterdir())  # refused before running anything


def test_the_bench_without_matplotlib_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(suite.SCENARIOS, "fake", fake_scenario)
    main(["bench", "fake", "--json", str(tmp_path / "o.json")])
    assert "a fake scenario" in capsys.readouterr().out


def test_mm_is_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["bench", "mm", "--quick", "--json", str(tmp_path / "mm.json")])
    out = json.loads((tmp_path / "mm.json").read_text())["scenarios"]["mm"]
    assert [r["gib"] for r in out["rows"]] == [1]
    assert out["rows"][0]["pagetable_mib"] == pytest.approx(2.0, abs=0.1)
    assert "boots in" in out["notes"][0]


def test_memory_cap() -> None:
    """--max-gib leaves out the sizes that would hold more of this machine's memory."""
    assert suite.host_sizes(False) == [0, 1, 4, 8]
    assert suite.host_sizes(False, 1) == [0, 1]
    assert suite.host_sizes(False, 2) == [0, 1, 2]
    assert suite.host_sizes(True, 1) == [0, 0.25]
    assert suite.database_procs(False) == [1, 4, 16, 64, 256]
    assert suite.database_procs(False, 1) == [1, 4, 16, 64]
    cap, notice = suite.memory_cap(suite.DEFAULT, False, 8, avail=20)
    assert cap == 8 and notice and "8 GiB" in notice and "--max-gib 1" in notice
    cap, notice = suite.memory_cap(suite.DEFAULT, False, 8, avail=3.5)
    assert cap == 2 and notice and "only 3.5 GiB" in notice
    assert suite.memory_cap(suite.DEFAULT, True, 8, avail=3.5) == (8, None)  # quick: small
    assert suite.memory_cap(["system"], False, 8, avail=3.5) == (8, None)


def test_help_lists_every_scenario_without_markup(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["demo", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "`" not in out, (argv, out)
        if argv == ["bench", "--help"]:
            assert all(f"  {name} " in out for name in suite.SCENARIOS), out
            assert "--max-gib" in out and "8.0 GiB" in out
        if argv == ["--help"]:
            assert all(name in out for name in suite.SCENARIOS), out


def test_version() -> None:
    from spawnfd import __version__

    proc = subprocess.run([sys.executable, "-m", "spawnfd", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == f"spawnfd {__version__}\n"


@pytest.mark.parametrize("argv", [["demo"], ["bench", "mm", "--quick"], ["--help"],
                                  ["bench", "--help"]])
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    """spawnfd demo | head -1: when the reader has gone, spawnfd ends as a Unix tool killed by
    SIGPIPE would (status 141), without a traceback."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    env = dict(os.environ, PYTHONUNBUFFERED="1") if argv == ["demo"] else None  # fail fast
    try:
        proc = subprocess.run([sys.executable, "-m", "spawnfd", *argv], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    finally:
        os.close(w)
    assert proc.stderr == ""
    # argparse swallows the error of writing --help (then exits 0 as usual)
    assert proc.returncode == (0 if "--help" in argv else 141)


def test_head_of_the_demo() -> None:
    """The case as a user types it."""
    proc = subprocess.run(f"'{sys.executable}' -m spawnfd demo | head -1", shell=True,
                          capture_output=True, text=True, timeout=300)
    assert proc.stderr == "" and proc.stdout.count("\n") == 1


def test_cpu_scenario_runs_real_programs() -> None:
    # spawnfd bench cpu: each real program ran to its native status with real instructions.
    r = suite.scenario_cpu(True, lambda what: None)
    by = {row["argv"]: row for row in r.rows}
    assert set(by) == {" ".join(argv) for argv in cpu.PROGRAMS}
    for row in r.rows:
        assert row["status"] == 0 and row["cpu_instructions"] > 10_000, row
        assert row["syscalls"] > 5 and row["tlb_fills"] > 0 and row["ms"] > 0, row
    assert {c.key for c in r.columns} <= set(r.rows[0]) and all(c.help for c in r.columns)


def test_sizes_is_realspawns(capsys: pytest.CaptureFixture[str]) -> None:
    """--sizes sets realspawn's parents; elsewhere, or not numbers, it is refused before any
    run (spawnfd bench fork --sizes 1 8 stays the fork script's own option)."""
    for argv, said in ((["bench", "anchors", "--sizes", "1"], "--sizes applies to realspawn"),
                       (["bench", "realspawn", "--sizes", "1,x"], "--sizes takes GiB"),
                       (["bench", "realspawn", "--sizes", "-1"], "between 0 and 4096")):
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err, argv
