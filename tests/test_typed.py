"""The package is typed for its users (PEP 561), and CI holds it to strict mypy (issue 17)."""

from __future__ import annotations

import importlib.resources
import pathlib

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_py_typed_is_shipped() -> None:
    assert importlib.resources.files("spawnfd").joinpath("py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["spawnfd"]


def test_ci_runs_mypy() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(d.startswith("mypy") for d in project["project"]["optional-dependencies"]["test"])
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    readme_cmd = next(i for i, line in enumerate(lines) if ".venv/bin/python -m pytest" in line)
    assert lines[readme_cmd + 1] == ".venv/bin/python -m mypy"
