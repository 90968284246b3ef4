"""The paired comparisons of a quality benchmark's report (``comparisons`` in its config): which rows are compared
with which, on which cells, and their table. The numbers come from :func:`mtpt.bench.paired.paired_comparison`.

Plan: with ``versus_baseline`` every row of the main table (sections without targets of their own) against
``baseline``, then every ``[row, baseline]`` of ``pairs``. Each comparison is made twice: over the cells of the
targets that are not ``controls`` (group ``related``) and over those of the controls (group ``control``); a group
without shared cells is left out. Scores: the report split's ``score`` of the best-on-validation checkpoint
(``best``) or of the last step (``last``, from ``final_last``).
"""

from __future__ import annotations

from typing import Any

from mtpt.bench.paired import paired_comparison
from mtpt.bench.quality_config import QualityConfig
from mtpt.errors import MtptError

SCORES = {"best": "scores", "last": "last"}
"""Which row field holds a checkpoint's per-seed scores (:func:`mtpt.bench.quality_report.collect`)."""


def comparison_plan(config: QualityConfig) -> list[tuple[str, str]]:
    """(row, baseline) pairs, in the order the report lists them."""
    plan = []
    if config.comparisons.versus_baseline and config.baseline in config.methods:
        own = {label for label, options in config.methods.items() if options.get("targets") is not None}
        plan += [(label, config.baseline) for label in config.methods if label not in own | {config.baseline}]
    for i, pair in enumerate(config.comparisons.pairs):
        if len(pair) != 2 or any(label not in config.methods for label in pair) or pair[0] == pair[1]:
            raise MtptError(f"comparisons.pairs[{i}]: expected [row, baseline], two different method sections of "
                            f"the config, got {pair!r}.")
        plan.append((pair[0], pair[1]))
    return list(dict.fromkeys(plan))


def compare_rows(config: QualityConfig, rows: list[dict[str, Any]], which: str = "best") -> list[dict[str, Any]]:
    """One record per (row, baseline, group) with shared cells: the :class:`~mtpt.bench.paired.Paired` numbers and
    the targets compared."""
    cells: dict[str, dict[tuple[str, int], float]] = {}
    for r in rows:
        for seed, score in r.get(SCORES[which], {}).items():
            cells.setdefault(r["method"], {})[(r["task"], int(seed))] = score
    controls = set(config.comparisons.controls)
    out = []
    for label, baseline in comparison_plan(config):
        for group in ("related", "control"):
            mine = {c: v for c, v in cells.get(label, {}).items() if (c[0] in controls) == (group == "control")}
            result = paired_comparison(mine, cells.get(baseline, {}), resamples=config.comparisons.bootstrap_resamples,
                                       seed=config.comparisons.bootstrap_seed)
            if result is not None:
                targets = sorted({c[0] for c in mine} & {c[0] for c in cells.get(baseline, {})})
                out.append({"row": label, "baseline": baseline, "group": group, "checkpoint": which,
                            "targets": targets, **result.to_json()})
    return out


def comparison_lines(config: QualityConfig, comparisons: list[dict[str, Any]]) -> list[str]:
    """The report's comparison table (best-on-validation checkpoints)."""
    if not comparison_plan(config):
        return []
    lines = ["", "Paired comparisons (test score of the best-on-validation checkpoint, over the (target, seed) cells "
             "both rows have; related targets and controls apart):", "",
             "| row | vs | targets | cells | wins / losses | mean Δ | 95 % bootstrap interval | sign-test p |",
             "|---|---|---|---|---|---|---|---|"]
    if not comparisons:
        lines.append("| (pending: no cells both rows of a comparison have yet) | | | | | | | |")
    for c in comparisons:
        interval = "-" if c["ci_low"] is None else f"[{c['ci_low']:+.1f}, {c['ci_high']:+.1f}]"
        targets = ", ".join(c["targets"]) + (" (control)" if c["group"] == "control" else "")
        lines.append(f"| {c['row']} | {c['baseline']} | {targets} | {c['cells']} | {c['wins']} / {c['losses']} | "
                     f"{c['mean']:+.1f} | {interval} | {c['p']:.2f} |")
    cmp = config.comparisons
    lines += ["", f"mean Δ: the row's score minus the other's, averaged over the shared cells; wins / losses: cells "
              f"where it is higher / lower (ties neither); sign-test p: two-sided exact binomial test of the wins "
              f"among wins + losses; interval: 95 % percentile bootstrap of the mean Δ ({cmp.bootstrap_resamples} "
              f"resamples of the cells, numpy default_rng({cmp.bootstrap_seed}), cells in (target, seed) order; "
              f"mtpt.bench.paired). results.json holds the same for the last step's scores; "
              f"benchmarks/recompute_comparisons.py recomputes both from the cell files alone."]
    return lines
