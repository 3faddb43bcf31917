"""Every public name has a docstring (issue 17): ``help()`` must answer for each of them."""

from __future__ import annotations

import enum
import inspect
from types import ModuleType
from typing import Any

import pytest

import spawnfd
import spawnfd.host


def _public(obj: Any) -> list[str]:
    names = getattr(obj, "__all__", None) if isinstance(obj, ModuleType) else None
    return [n for n in (names if names is not None else dir(obj)) if not n.startswith("_")]


def _undocumented() -> list[str]:
    missing: list[str] = []
    for mod in (spawnfd, spawnfd.host):
        for name in _public(mod):
            value = getattr(mod, name)
            if isinstance(value, (ModuleType, int, str, tuple, frozenset)):
                continue  # constants and subpackages: documented where they are defined
            if not inspect.getdoc(value):
                missing.append(f"{mod.__name__}.{name}")
            if not inspect.isclass(value) or issubclass(value, (BaseException, enum.Enum)):
                continue
            for member in _public(value):
                attr = inspect.getattr_static(value, member)
                if isinstance(attr, (staticmethod, classmethod)):
                    attr = attr.__func__
                if not (inspect.isfunction(attr) or isinstance(attr, property)):
                    continue  # data attributes: documented in the class docstring
                if getattr(attr, "__qualname__", value.__qualname__).split(".")[0] not in (
                        value.__qualname__,) and not isinstance(attr, property):
                    continue  # inherited from elsewhere (object, a dataclass's machinery)
                if not inspect.getdoc(attr):
                    missing.append(f"{mod.__name__}.{name}.{member}")
    return sorted(set(missing))


def test_every_public_name_has_a_docstring() -> None:
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
