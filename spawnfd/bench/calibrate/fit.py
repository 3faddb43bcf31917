"""Fitting: the per-PTE and per-page-table costs of fork, by weighted least squares.

:func:`fit_fork` fits ``fork = fork_base + per_pte * PTEs + per_table * page_tables`` to measured
forks; :func:`least_squares` is its solver (standard library only, for 2–4 parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .model import ForkPoint

__all__ = ["fit_fork", "least_squares"]


def least_squares(rows: Sequence[Sequence[float]], y: Sequence[float],
                  weights: Sequence[float] | None = None) -> tuple[float, ...]:
    """Ordinary (or, with ``weights``, weighted) least squares: the ``b`` minimising
    ``sum(w_i * (y_i - rows_i · b)^2)``. Solves the normal equations by Gaussian elimination with
    partial pivoting after scaling every column to a maximum of 1 (PTE counts are ~1e5 times the
    intercept's column). Meant for 2–4 parameters; ``ValueError`` if the columns are linearly
    dependent or there are fewer points than parameters."""
    n = len(rows)
    if n == 0 or n != len(y):
        raise ValueError("need as many rows as observations, and at least one")
    k = len(rows[0])
    if any(len(r) != k for r in rows):
        raise ValueError("rows differ in length")
    if n < k:
        raise ValueError(f"{n} points cannot determine {k} parameters")
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    if len(w) != n or any(not v > 0 or not math.isfinite(v) for v in w):
        raise ValueError("weights must be finite and positive, one per row")
    scale = [max(abs(float(r[j])) for r in rows) or 1.0 for j in range(k)]
    xs = [[float(r[j]) / scale[j] for j in range(k)] for r in rows]
    # normal equations A b = c, A = X^T W X, c = X^T W y, as an augmented matrix
    a = [[math.fsum(w[i] * xs[i][p] * xs[i][q] for i in range(n)) for q in range(k)]
         + [math.fsum(w[i] * xs[i][p] * float(y[i]) for i in range(n))] for p in range(k)]
    norm = max(abs(a[p][p]) for p in range(k)) or 1.0
    for col in range(k):
        piv = max(range(col, k), key=lambda r: abs(a[r][col]))
        if abs(a[piv][col]) <= 1e-12 * norm:
            raise ValueError("the columns are linearly dependent: the fit is not determined")
        a[col], a[piv] = a[piv], a[col]
        for r in range(col + 1, k):
            f = a[r][col] / a[col][col]
            for c in range(col, k + 1):
                a[r][c] -= f * a[col][c]
    b = [0.0] * k
    for r in reversed(range(k)):
        b[r] = (a[r][k] - math.fsum(a[r][c] * b[c] for c in range(r + 1, k))) / a[r][r]
    return tuple(b[j] / scale[j] for j in range(k))


def fit_fork(points: Sequence[ForkPoint]) -> tuple[float, float, float]:
    """``(fork_base, per_pte, per_table)`` by least squares over ``points``, weighted by
    1/seconds² (minimising relative error). A coefficient the noise drives negative is dropped
    (fixed at 0) and the rest refitted: a cost cannot be negative. Needs at least one dense and
    one sparse point beside size 0 to tell per_pte from per_table."""
    cols = [0, 1, 2]
    while True:
        rows = [[(1.0, float(p.pages), float(p.tables))[c] for c in cols] for p in points]
        b = least_squares(rows, [p.seconds for p in points],
                          [1.0 / max(p.seconds, 1e-9) ** 2 for p in points])
        neg = [c for c, v in zip(cols, b) if v < 0 and c != 0]
        if not neg:
            out = [0.0, 0.0, 0.0]
            for c, v in zip(cols, b):
                out[c] = v
            return out[0], out[1], out[2]
        cols.remove(min(neg, key=lambda c: b[cols.index(c)]))

