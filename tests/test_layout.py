"""The layout is the architecture: what if a module reaches across the layers?

Python: the import graph of ``spawnfd/`` (every import a module makes when it runs, at module
level or inside a function) has no cycles; the simulator and the host backend never import
each other; only ``spawnfd.sim._bindings`` imports the C kernel. Imports under
``if TYPE_CHECKING:`` are annotations, not imports that run, and are left out.

C: a file in ``csrc/<dir>/`` includes its own directory's header and those below it
(mm < fs < kernel < arch); an include of a higher directory's header is one of the few
upward calls ``csrc/README.md`` names, and says why on its own line (``// up: ...``).
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "spawnfd"
CSRC = ROOT / "csrc"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The spawnfd modules that module ``name`` imports when it runs."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()

    def resolve(base: str, names: list[str]) -> None:
        for n in names:
            full = f"{base}.{n}" if base else n
            out.add(full if full in modules else base)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "spawnfd")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] == "spawnfd":
                resolve(base, [a.name for a in node.names])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return {m for m in out if m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_is_read() -> None:
    # The checks below would pass on an empty graph: make sure it has the known edges.
    g = _graph()
    assert "spawnfd.sim.kernel" in g["spawnfd"]
    assert "spawnfd.sim._bindings" in g["spawnfd.sim.kernel"]
    assert "spawnfd.elf" in g["spawnfd.sim.builder"]
    assert "spawnfd._subprocess" in g["spawnfd.host._subprocess"]
    assert "spawnfd.sim.runtime" in g["spawnfd.sim.machine"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]


@pytest.mark.parametrize("world,other", [("spawnfd.sim", "spawnfd.host"),
                                         ("spawnfd.host", "spawnfd.sim")])
def test_the_worlds_do_not_import_each_other(world: str, other: str) -> None:
    g = _graph()
    crossing = {(m, d) for m, deps in g.items() if m.startswith(world + ".") or m == world
                for d in deps if d == other or d.startswith(other + ".")}
    assert crossing == set()


def test_neutral_modules_import_neither_world() -> None:
    g = _graph()
    for m in ("spawnfd._subprocess", "spawnfd.elf", "spawnfd._constants"):
        assert {d for d in g[m] if d.startswith(("spawnfd.sim", "spawnfd.host"))} == set(), m


def test_only_bindings_import_the_c_kernel() -> None:
    users = [p for p in PKG.rglob("*.py")
             if re.search(r"^\s*from \._kernel import|import spawnfd\.sim\._kernel",
                          p.read_text(), re.M)]
    assert [_module_name(p) for p in users] == ["spawnfd.sim._bindings"]


LAYERS = ["lib", "mm", "fs", "kernel", "arch"]


def _c_includes() -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted(CSRC.rglob("*.[ch]")):
        rel = path.relative_to(CSRC)
        if len(rel.parts) < 2 or rel.parts[0] not in LAYERS:
            continue
        for line in path.read_text().splitlines():
            m = re.match(r'#include "([a-z0-9_]+)/[a-z0-9_]+\.h"(.*)', line)
            if m:
                rows.append((str(rel), m.group(1), m.group(2)))
    return rows


def test_c_includes_go_down_or_say_why() -> None:
    rows = _c_includes()
    assert len(rows) > 15  # every C file includes its directory's header
    bad = [(f, d) for f, d, rest in rows
           if LAYERS.index(d) > LAYERS.index(f.split("/")[0]) and "// up:" not in rest]
    assert bad == []


def test_c_upward_includes_are_few_and_named_in_the_readme() -> None:
    readme = (CSRC / "README.md").read_text()
    up = sorted({f for f, d, _ in _c_includes()
                 if LAYERS.index(d) > LAYERS.index(f.split("/")[0])})
    assert len(up) <= 8
    for f in up:
        assert f"`{f}`" in readme, f"csrc/README.md does not name the upward call of {f}"
