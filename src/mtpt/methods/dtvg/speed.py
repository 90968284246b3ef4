"""DTVG's extra speed measurement: the cost of regrouping, reported by ``mtpt bench speed`` beside its step time
(declared by its registry entry's speed variant, :attr:`mtpt.registry.SpeedVariant.extra`)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from mtpt.methods.dtvg.grouping import select_group

GROUPING_SOURCES = (6, 26)
GROUPING_TARGET = 0.02
"""Regrouping should cost at most 2 % of a training step."""


def grouping_cost(prompt_length: int, hidden_size: int, repeats: int, step_ms: float | None) -> dict[str, Any]:
    """Median ms of one ``select_group`` call at 6 and 26 random sources correlated with the target, and its share
    of a DTVG step (``step_ms``, the step measured beside it)."""
    rows, results = [], {}
    for sources in GROUPING_SOURCES:
        gen = torch.Generator().manual_seed(0)
        target = torch.randn(prompt_length, hidden_size, generator=gen)
        vectors = 0.5 * target + torch.randn(sources, prompt_length, hidden_size, generator=gen)
        scales = (torch.ones(prompt_length, requires_grad=True), torch.ones(sources, prompt_length, requires_grad=True))
        select_group(target, vectors, *scales)  # warm-up
        times = []
        for _ in range(max(repeats, 20)):
            start = time.perf_counter()
            select_group(target, vectors, *scales)
            times.append((time.perf_counter() - start) * 1e3)
        median = statistics.median(times)
        share = median / step_ms if step_ms else None
        results[str(sources)] = {"median_ms": median, "fraction_of_step": share}
        verdict = "-" if share is None else (f"{100 * share:.2f}% (≤ {100 * GROUPING_TARGET:g}%: "
                                             f"{'ok' if share <= GROUPING_TARGET else 'MISSED'})")
        rows.append([str(sources), f"{median:.3f}", verdict])
    return {"title": f"DTVG grouping (L={prompt_length}, d={hidden_size})",
            "columns": ["sources", "ms per call", "share of a DTVG step (target)"], "rows": rows,
            "prompt_length": prompt_length, "hidden_size": hidden_size, "step_ms": step_ms,
            "target": GROUPING_TARGET, "results": results}
