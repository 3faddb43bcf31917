"""The README's first command (`spawnfd demo`) keeps working and tells the truth."""

from __future__ import annotations

import re

import pytest

from spawnfd import demo
from spawnfd.__main__ import main


def test_system_comparison_counters(capsys: pytest.CaptureFixture[str]) -> None:
    demo.system_comparison(sizes_gib=(0, 1), repeat=1)
    out = capsys.readouterr().out
    rows = {(int(m.group(1)), m.group(2).strip()): tuple(int(x.replace(",", "")) for x in
                                                         m.group(3, 4, 5))
            for m in re.finditer(r"^\s+(\d+)\s+(\S.*?\S)\s+[\d.]+ ms\s+([\d,]+)\s+([\d,]+)\s+"
                                 r"([\d,]+)$", out, re.M)}
    assert len(rows) == 8
    # 1 GiB = 262,144 PTEs copied by the classic fork, plus the few of the parent's own stack
    assert rows[(1, "fork+exec (copy)")][0] >= 262_144
    for gib in (0, 1):
        assert rows[(gib, "spawnfd")][0] == 0
        assert rows[(gib, "vfork+exec")][0] == 0
    # spawnfd and vfork allocate the same tables whatever the parent holds: flat
    assert rows[(0, "spawnfd")][1:] == rows[(1, "spawnfd")][1:]
    assert rows[(0, "vfork+exec")][1:] == rows[(1, "vfork+exec")][1:]
    assert rows[(1, "fork+exec (copy)")][1] > 512  # a table per 2 MiB of the parent
    # growth is printed as the bench prints it (×N), and the columns are explained
    assert len(re.findall(r"^ +\S.*\S +time +×[\d.,]+ +page tables allocated", out, re.M)) == 4
    assert "PTEs copied, tables alloc.," in out


def test_builder_walkthrough(capsys: pytest.CaptureFixture[str]) -> None:
    demo.builder_walkthrough()
    out = capsys.readouterr().out
    assert "b'hello from an embryo\\n', exit status 0" in out
    assert "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent'" in out
    assert "[stack]" in out and "/usr/bin/echo" in out


def test_cli_demo_tour_runs(capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "system_comparison", lambda: print("(comparison skipped)"))
    assert main(["demo", "--tour"]) == 0
    out = capsys.readouterr().out
    assert "hello from an embryo" in out and "check(): every refcount" in out
