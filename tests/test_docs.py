"""Every Python block of the documentation runs, and prints what the text says it prints.

The README and every ``docs/*.md`` (found by glob, so a new page is covered the day it is
added) are split into fenced blocks. Each ```` ```python ```` block runs as a complete program in
a fresh interpreter, in an empty temporary directory, and must exit 0 with nothing on stderr.
When the block is followed directly (only blank lines between) by a ```` ```text ```` block, its
standard output must equal that block exactly: that is how a page shows output the tests keep
true. Blocks in other languages (``sh``, unlabelled diagrams and transcripts) are not run.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
TIMEOUT = 120  # seconds per block; each takes a few seconds at most

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    output: str | None = None  # the text block that follows it, if any

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order; a python block gets the text block
    that follows it as its expected output."""
    lines = page.read_text().splitlines()
    found: list[tuple[Block, int]] = []  # block, index of the line after its closing fence
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        body, j = [], i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.name}:{i + 1}: unclosed code block")
        found.append((Block(page, i + 1, m["lang"].lower(),
                            "\n".join(body) + "\n" if body else ""), j + 1))
        i = j + 1
    out = [b for b, _ in found]
    for (b, end), (nxt, _) in zip(found, found[1:]):
        between = lines[end:nxt.line - 1]
        if b.lang in PYTHON and nxt.lang == "text" and all(not s.strip() for s in between):
            b.output = nxt.code
    return out


ALL = [b for page in PAGES for b in blocks(page)]
RUNNABLE = [b for b in ALL if b.lang in PYTHON]


def test_the_extractor_finds_the_blocks() -> None:
    """The test below cannot pass by finding nothing: the README alone has four Python
    blocks, and every page of docs/ is read."""
    assert {p.name for p in PAGES} >= {"README.md", "host.md", "fd-model.md"}
    per_page = {p.name: sum(b.page == p for b in RUNNABLE) for p in PAGES}
    assert per_page["README.md"] >= 4 and per_page["host.md"] >= 2, per_page
    assert per_page["fd-model.md"] >= 3, per_page
    assert len(RUNNABLE) >= 9, per_page
    assert sum(b.output is not None for b in RUNNABLE) >= 3  # some outputs are checked
    assert any(b.lang == "sh" for b in ALL)  # and the other languages are seen, not run


def test_no_python_block_is_skipped() -> None:
    """A block whose language only looks like Python (``pycon``, ``ipython``, ...) would be
    skipped silently: spell it ``python`` (it is run) or ``text`` (it is not)."""
    skipped = [b.id for b in ALL if "py" in b.lang and b.lang not in PYTHON]
    assert not skipped, skipped


def test_blocks_of_a_small_page(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("intro\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
                    "  ```sh\n  ls\n  ```\n```python\nx = 2\n```\nprose\n```text\nnot it\n```\n")
    bs = blocks(page)
    assert [(b.lang, b.code, b.output) for b in bs] == [
        ("python", "print(1)\n", "1\n"), ("text", "1\n", None), ("sh", "ls\n", None),
        ("python", "x = 2\n", None), ("text", "not it\n", None)]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", block.code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0 and proc.stderr == "", (
        f"{block.id} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    if block.output is not None:
        assert proc.stdout == block.output, f"{block.id} printed:\n{proc.stdout}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_stay_in_the_repository(page: Path) -> None:
    """The docs are self-contained: every link is a file of this repository."""
    for target in LINK.findall(page.read_text()):
        path = target.split("#", 1)[0]
        assert "://" not in target and not target.startswith("/"), (page.name, target)
        resolved = (page.parent / path).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), (page.name, target)
