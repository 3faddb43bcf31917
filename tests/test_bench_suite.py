"""`spawnfd bench --quick` runs every scenario, so the benchmark code never rots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spawnfd.__main__ import main
from spawnfd.bench import suite


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    d = tmp_path_factory.mktemp("bench")
    main(["bench", "--quick", "--json", str(d / "out.json"), "--plots", str(d / "plots")])
    return json.loads((d / "out.json").read_text()), d


def test_every_scenario_ran_with_a_plot(quick: tuple[dict, Path]) -> None:
    out, d = quick
    assert set(out["scenarios"]) == set(suite.SCENARIOS)
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
    assert "unknown scenario" in capsys.readouterr().err
