"""`spawnfd bench zygote` runs, and its figures say what the huge-page issue asks."""

from __future__ import annotations

import pytest

from spawnfd.__main__ import main
from spawnfd.bench import zygote


@pytest.fixture(scope="module")
def result() -> dict:
    return zygote.run(size_mib=24, apps=4, seed=7)


def by(result: dict, label: str) -> dict:
    return next(r for r in result["methods"] if r["method"] == label)


def test_split_copies_one_page_and_one_table_on_the_first_write(result: dict) -> None:
    assert by(result, "fork, THP split")["first_write_of_first_app"] == {
        "frames_allocated": 2, "tables_allocated": 1, "pages_copied": 1}
    assert by(result, "fork, THP copy-huge")["first_write_of_first_app"] == {
        "frames_allocated": 512, "tables_allocated": 0, "pages_copied": 512}
    assert by(result, "fork, 4 KiB pages")["first_write_of_first_app"]["pages_copied"] == 1


def test_template_is_huge_only_with_thp(result: dict) -> None:
    heap = result["heap_bytes"]
    for r in result["methods"]:
        huge = r["template"]["anon_huge_bytes"]
        assert huge == (heap if "THP" in r["method"] else 0)


def test_every_method_copies_the_same_pages_except_copy_huge(result: dict) -> None:
    written = result["apps"] * result["pages_written_per_app"]
    for r in result["methods"]:
        if "copy-huge" in r["method"]:
            assert r["thp_copied"] > 0 and r["pages_copied"] == 512 * r["thp_copied"]
        else:
            assert r["pages_copied"] == written
    split = by(result, "fork, THP split")
    assert split["thp_split_pmd"] == by(result, "fork, THP copy-huge")["thp_copied"]
    assert by(result, "cow-pt fork")["tables_shared"] > 0
    assert by(result, "map_cow into embryos")["tables_shared"] > 0


def test_pss_of_copy_huge_is_the_whole_touched_heap(result: dict) -> None:
    small = by(result, "fork, 4 KiB pages")["per_app_median"]
    huge = by(result, "fork, THP copy-huge")["per_app_median"]
    # 1 % random writes touch (nearly) every 2 MiB chunk: copy-huge leaves each app its own
    # copy of (nearly) the whole heap, where 4 KiB pages keep it shared five ways
    assert huge["pss_bytes"] >= 0.9 * huge["rss_bytes"]
    assert huge["pss_bytes"] > 3 * small["pss_bytes"]


def test_cli_quick(capsys: pytest.CaptureFixture[str]) -> None:
    main(["bench", "zygote", "--size", "16", "--apps", "2"])
    out = capsys.readouterr().out
    assert "map_cow into embryos" in out and "first write of the first app" in out
