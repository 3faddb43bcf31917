"""Hostile-input fuzz test (issue 16): random sequences of system calls and builder steps with
hostile integers, over every kernel option and small memories, each example in a fresh
kernel with ``check()`` after every call (the engine is ``tests/fuzz_engine.py``). Every
failure must be an OSError with an errno, a ValueError or a TypeError: never a crash, a hang,
a KernelPanic or a host MemoryError.

Bounded for CI by the ``ci`` hypothesis profile (``SPAWNFD_FUZZ_PROFILE=long`` for more);
``benchmarks/fuzz_long.py`` runs seeds for as long as it is given.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzz_engine import run_seed
from .helpers import examples

settings.register_profile("ci", max_examples=examples(60), deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("SPAWNFD_FUZZ_PROFILE", "ci")
STEPS = 40
HANG_SECONDS = 30


@pytest.fixture(scope="module")
def no_hang() -> Iterator[None]:
    """A sequence that runs for HANG_SECONDS is a hang: fail instead of waiting forever."""
    def hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"a fuzz sequence ran for {HANG_SECONDS} s: hang")
    old = signal.signal(signal.SIGALRM, hang)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@settings(settings.get_profile(PROFILE))
@given(seed=st.integers(0, 2**64 - 1))
def test_hostile_call_sequences(no_hang: None, seed: int) -> None:
    signal.alarm(HANG_SECONDS)
    try:
        assert run_seed(seed, STEPS) > 0
    finally:
        signal.alarm(0)
