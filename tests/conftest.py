"""Shared fixtures. After every test, every kernel still alive recomputes its truth from
scratch (``Kernel.check()``): a leak or a wrong refcount fails the test that caused it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import spawnfd
from spawnfd.sim import kernel as _core


@pytest.fixture(autouse=True)
def _check_every_kernel() -> Iterator[None]:
    yield
    gc.collect()
    for k in list(_core._live_kernels):
        if not k.closed:
            k.check()


@pytest.fixture
def kernel() -> Iterator[spawnfd.Kernel]:
    """A 1 GiB machine, checked after the test and then torn down."""
    k = spawnfd.Kernel("1G")
    yield k
    k.check()
    k.close()


@pytest.fixture
def proc(kernel: spawnfd.Kernel) -> spawnfd.Process:
    """init of a fresh 1 GiB machine."""
    return kernel.init
