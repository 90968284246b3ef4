"""Microbenchmark of DTVG regrouping (:func:`mtpt.methods.dtvg.grouping.select_group`).

DTVG regroups on every training forward pass, so its cost is paid once per step. This times one call with
the paper's 6 sources and with 26 (every dataset as a source), L = 100 virtual tokens and d = 576 (SmolLM2's
hidden size), on 2 CPU threads, and reports the median and minimum milliseconds per call.

Run: ``PYTHONPATH=src python -m benchmarks.grouping_microbench`` (or ``python benchmarks/grouping_microbench.py``).
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import torch

from mtpt.methods.dtvg.grouping import select_group


def _inputs(num_sources: int, length: int, dim: int, seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(length, dim, generator=gen, dtype=dtype)
    # Sources correlated with the target so that several pass the threshold and the KC prefix scan has work.
    sources = 0.5 * target + torch.randn(num_sources, length, dim, generator=gen, dtype=dtype)
    target_scale = torch.ones(length, dtype=dtype, requires_grad=True)  # as trainable scales are in stage II
    source_scales = torch.ones(num_sources, length, dtype=dtype, requires_grad=True)
    return target, sources, target_scale, source_scales


def _time_ms(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run(
    sources: Sequence[int] = (6, 26),
    L: int = 100,
    d: int = 576,
    repeats: int = 200,
    warmup: int = 10,
    threads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Time ``select_group`` for each number of sources.

    Returns:
        ``{"L", "d", "threads", "repeats", "dtype", "results": {S: {"median_ms", "min_ms", "group_size"}}}``.
        The process-wide torch thread count is restored afterwards.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = {}
        for num_sources in sources:
            args = _inputs(num_sources, L, d, seed, dtype)
            times = _time_ms(lambda: select_group(*args), repeats, min(warmup, repeats))
            results[num_sources] = {
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "group_size": len(select_group(*args)),
            }
    finally:
        torch.set_num_threads(threads_before)
    return {"L": L, "d": d, "threads": threads, "repeats": repeats, "dtype": str(dtype), "results": results}


def format_table(report: dict) -> str:
    """A plain-text table of :func:`run`'s report."""
    lines = [
        f"select_group  L={report['L']} d={report['d']} threads={report['threads']} "
        f"repeats={report['repeats']} {report['dtype']}",
        f"{'sources':>8} {'median ms':>10} {'min ms':>8} {'group':>6}",
    ]
    for num_sources, row in report["results"].items():
        lines.append(f"{num_sources:>8} {row['median_ms']:>10.3f} {row['min_ms']:>8.3f} {row['group_size']:>6}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(run()))
