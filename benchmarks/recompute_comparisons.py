"""Recompute a quality benchmark's paired comparisons from its cell files alone, to check the report against.

    python benchmarks/recompute_comparisons.py CONFIG [--out FOLDER] [--checkpoint best|last] [--json]

Reads the benchmark config (YAML: ``methods`` with their own ``targets``/``seeds``, ``targets``, ``seeds``,
``baseline``, ``report_split``, ``comparisons``) and every ``<out>/cells/<method>/<target>/seed-<s>/results.json``,
and prints one line per comparison: the mean score difference over the (target, seed) cells both rows have, wins /
losses, the two-sided sign-test p, the 95 % percentile bootstrap interval of the mean difference and the standard
deviation of the differences (ddof 1: what sizes a larger benchmark; the report does not show it). It imports
nothing from mtpt, on purpose: it is written apart from the report code (mtpt.bench.quality_compare and
mtpt.bench.paired) from the protocol as documented, so that agreement between the two is a check of both.

The protocol: a row's score in a cell is ``results.json``'s ``final`` (best-on-validation checkpoint) or
``final_last`` (last step) ``[report_split][target]["score"]``. Comparisons: with ``comparisons.versus_baseline``
every section without targets of its own against ``baseline`` (config order), then each pair of
``comparisons.pairs``; each split into the cells of non-control targets ("related") and of
``comparisons.controls`` ("control"). Differences are taken in sorted (target, seed) order; the bootstrap draws
``rng.integers(0, n, size=(resamples, n))`` from ``numpy.random.default_rng(bootstrap_seed)`` and takes
``numpy.percentile(..., [2.5, 97.5])`` of the resampled means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cell_scores(out: Path, label: str, targets: list[str], seeds: list[int], split: str,
                key: str) -> dict[tuple[str, int], float]:
    """(target, seed) -> score of every finished cell of a section."""
    scores = {}
    for target in targets:
        for seed in seeds:
            path = out / "cells" / label / target / f"seed-{seed}" / "results.json"
            if path.exists():
                metrics = (json.loads(path.read_text()).get(key) or {}).get(split, {}).get(target)
                if metrics:
                    scores[(target, seed)] = float(metrics["score"])
    return scores


def compare(a: dict, b: dict, resamples: int, seed: int) -> dict | None:
    import numpy as np
    from scipy.stats import binomtest

    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    diffs = np.array([a[k] - b[k] for k in keys])
    wins, losses = int(np.sum(diffs > 0)), int(np.sum(diffs < 0))
    low = high = sd = None
    if len(keys) > 1:
        sd = float(diffs.std(ddof=1))
        draws = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
        low, high = (float(x) for x in np.percentile(diffs[draws].mean(axis=1), [2.5, 97.5]))
    return {"cells": len(keys), "wins": wins, "losses": losses, "mean": float(diffs.mean()),
            "p": float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0,
            "ci_low": low, "ci_high": high, "sd": sd, "targets": sorted({k[0] for k in keys})}


def recompute(config_path: str | Path, out: str | Path | None = None, checkpoint: str = "best") -> list[dict]:
    """Every comparison of the config, from the cell files."""
    import yaml

    config = yaml.safe_load(Path(config_path).read_text())
    out = Path(out or config["out"])
    methods = config["methods"]
    settings = config.get("comparisons") or {}
    baseline = config.get("baseline", "pt")
    split = config.get("report_split", "test")
    key = {"best": "final", "last": "final_last"}[checkpoint]
    scores = {label: cell_scores(out, label, section.get("targets") or config["targets"],
                                 section.get("seeds") or config.get("seeds", [13, 21, 42]), split, key)
              for label, section in methods.items()}
    pairs = []
    if settings.get("versus_baseline") and baseline in methods:
        pairs += [(label, baseline) for label, section in methods.items()
                  if label != baseline and section.get("targets") is None]
    pairs += [tuple(pair) for pair in settings.get("pairs", [])]
    controls = set(settings.get("controls", []))
    results = []
    for row, base in dict.fromkeys(pairs):
        for group in ("related", "control"):
            mine = {k: v for k, v in scores[row].items() if (k[0] in controls) == (group == "control")}
            found = compare(mine, scores[base], settings.get("bootstrap_resamples", 10000),
                            settings.get("bootstrap_seed", 0))
            if found:
                results.append({"row": row, "baseline": base, "group": group, "checkpoint": checkpoint, **found})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the benchmark's YAML config")
    parser.add_argument("--out", default=None, help="its output folder (default: the config's out)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--json", action="store_true", help="print the comparisons as JSON")
    args = parser.parse_args(argv)
    results = recompute(args.config, args.out, args.checkpoint)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        interval = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        sd = "-" if r["sd"] is None else f"{r['sd']:.2f}"
        print(f"{r['row']} vs {r['baseline']} ({r['group']}: {', '.join(r['targets'])}; {r['checkpoint']}): "
              f"{r['cells']} cells, {r['wins']} wins / {r['losses']} losses, mean {r['mean']:+.2f}, "
              f"95% bootstrap {interval}, sign-test p={r['p']:.3f}, sd of the differences {sd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
