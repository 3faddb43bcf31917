"""Shared fixtures. After every test, every kernel still alive recomputes its truth from
scratch (``Kernel.check()``): a leak or a wrong refcount fails the test that caused it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import spawnfd
from spawnfd.sim import kernel as _core


# The suite runs on every core: ``pytest -n auto`` (pytest-xdist; the README's test command and
# .ci/run). Two things keep the workers busy to the end:
#  - a module whose module-scoped fixture is expensive (a host run of every scenario, the whole
#    quick bench) runs in one worker, so that the fixture runs once, not once per worker (the
#    scheduler below; xdist's own ``--dist loadgroup`` does not group under pytest 9);
#  - the longest tests start first, so no worker is left alone with one of them at the end.
ONE_WORKER = ("test_fork_differential.py", "test_bench_suite.py", "test_bench_zygote.py",
              "test_fuzz.py")
LONGEST_FIRST = ("test_model_fork.py::TestForkModel", "test_model_fork.py::TestThpForkModel",
                 "test_model.py::TestMemoryModel", "test_model.py::TestThpMemoryModel")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        where = "::".join([item.path.name, *item.nodeid.split("::")[1:2]])
        return LONGEST_FIRST.index(where) if where in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)   # stable: the rest keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n``'s default ``--dist load``, one test at a time to whichever worker is free, except
    that each module of :data:`ONE_WORKER` is one unit of work (handed out first: the largest
    units go first)."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.rsplit("/", 1)[-1] in ONE_WORKER else nodeid

    return Scheduling(config, log)


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
