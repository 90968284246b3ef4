"""Paired comparisons of two benchmark rows over the (target, seed) cells both have: a pure function of the scores.

For cells ``c`` shared by the row and the baseline, ``d_c = row_c - baseline_c``:

- ``mean``: the mean of the ``d_c``; ``wins`` / ``losses``: cells with ``d_c > 0`` / ``< 0`` (ties count for
  neither);
- ``p``: the two-sided exact sign test (scipy's ``binomtest`` of the wins among wins + losses at 1/2; 1.0 when
  every cell ties): how often a split at least this uneven comes from a row no better or worse than the baseline;
- ``ci``: a 95 % percentile bootstrap interval of the mean difference. The ``d_c`` are taken in sorted (target,
  seed) order; ``numpy.random.default_rng(seed)`` draws ``resamples`` × n cell indices with replacement
  (``rng.integers(0, n, size=(resamples, n))``), each row of indices gives one resampled mean, and the interval
  is ``numpy.percentile`` (linear interpolation) of those means at 2.5 and 97.5. None with fewer than two cells.

The same seed and cells give the same interval on every machine (numpy's PCG64 stream is stable). The interval
resamples cells as if they were independent; cells of one target share a test set, so it is optimistic when
targets differ a lot: read it with the per-target table.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

__all__ = ["Paired", "paired_comparison"]


@dataclass(frozen=True)
class Paired:
    """One comparison's numbers (see the module docstring)."""

    cells: int
    wins: int
    losses: int
    mean: float
    p: float
    ci_low: float | None
    ci_high: float | None

    def to_json(self) -> dict:
        return asdict(self)


def paired_comparison(row: Mapping[Hashable, float], baseline: Mapping[Hashable, float], *,
                      resamples: int = 10000, seed: int = 0) -> Paired | None:
    """Compare ``row`` with ``baseline`` (both: cell -> score, cells being sortable keys such as (target, seed))
    over the cells both have; None when they share none."""
    import numpy as np
    from scipy.stats import binomtest

    shared = sorted(row.keys() & baseline.keys())
    if not shared:
        return None
    differences = np.array([float(row[c]) - float(baseline[c]) for c in shared])
    wins, losses = int((differences > 0).sum()), int((differences < 0).sum())
    p = float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    low = high = None
    if len(shared) >= 2:
        rng = np.random.default_rng(seed)
        means = differences[rng.integers(0, len(shared), size=(resamples, len(shared)))].mean(axis=1)
        low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    return Paired(len(shared), wins, losses, float(differences.mean()), p, low, high)
