"""``mtpt tpv-grid``: choose TPV's lambda on validation (evaluation only, no training).

Each grid point sets the coefficients of a ``tpv`` (``mode: combine``) model, is scored on the validation splits
with :func:`mtpt.training.evaluate.evaluate_sets` (``train.metric_for_best``, averaged over tasks), and the
best point (first in grid order on ties; NaN never wins) is kept. The output is an ordinary run folder —
``config.yaml``, ``checkpoints/best``, ``results.json`` (+ ``grid.jsonl``, one line per point) — so ``mtpt
evaluate`` and ``mtpt export`` work on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mtpt.atomic import atomic_write_text
from mtpt.errors import MtptError

__all__ = ["GridResult", "cmd_tpv_grid", "run_grid", "select_best"]


@dataclass
class GridResult:
    run_dir: Path
    best_lambdas: dict[str, float]
    best_metric: float
    grid: list[dict] = field(default_factory=list)
    """One row per grid point: ``{"lambdas": {...}, "<metric>": value}``."""
    final: dict = field(default_factory=dict)


def select_best(candidates: Sequence[tuple[float, ...]], score: Callable[[tuple[float, ...]], float]):
    """``(best candidate, its score, [score of each candidate])``: the first maximum; NaN scores never win."""
    if not candidates:
        raise MtptError("The lambda grid is empty: give method.grid at least one value.")
    scores = [float(score(c)) for c in candidates]
    finite = [i for i, s in enumerate(scores) if not math.isnan(s)]
    if not finite:
        raise MtptError("Every grid point scored NaN on validation: does the run's task have validation data?")
    best = max(finite, key=lambda i: (scores[i], -i))
    return candidates[best], scores[best], scores


def run_grid(config, backbone=None) -> GridResult:
    """Evaluate every lambda of the grid on validation, keep the best, write a run folder (claimed for the
    search, as a training run claims its folder, so two searches never mix their files)."""
    from mtpt.locking import run_folder_lock

    with run_folder_lock(config.output_dir):
        return _build_and_search(config, backbone)


def _build_and_search(config, backbone) -> GridResult:
    from mtpt.methods.tpv.arithmetic import lambda_grid
    from mtpt.methods.tpv.module import PromptCombination
    from mtpt.runtime import build_run

    parts = build_run(config, backbone)
    try:
        method = parts.model.method
        if not isinstance(method, PromptCombination):
            raise MtptError("mtpt tpv-grid needs method: {name: tpv, mode: combine, ...}.")
        options = parts.method_config
        try:
            candidates = lambda_grid(len(method.sources), options.grid, options.grid_mode, options.max_combinations)
        except ValueError as err:
            raise MtptError(f"Bad lambda grid: {err}") from None
        return _search(parts, method, candidates)
    finally:
        parts.model.detach_method()


def _search(parts, method, candidates) -> GridResult:
    from mtpt.precision import make_accelerator
    from mtpt.training.evaluate import evaluate_sets, load_eval_sets, mean_metric

    config = parts.config
    acc = make_accelerator(config.train.precision)
    parts.model.to(acc.device)
    sets = load_eval_sets(parts, "validation")
    if not sets:
        raise MtptError(f"No validation data for {', '.join(parts.task_names)}: the grid is chosen on validation.")
    metric = config.train.metric_for_best

    def score(lambdas: tuple[float, ...]) -> float:
        method.set_lambdas(lambdas)
        return mean_metric(evaluate_sets(parts.model, parts, sets, acc), metric)

    best, value, scores = select_best(candidates, score)
    method.set_lambdas(best)
    grid = [{"lambdas": dict(zip(method.sources, c)), metric: s} for c, s in zip(candidates, scores)]
    final = {}
    for split in config.eval.final_splits:
        split_sets = sets if split == "validation" else load_eval_sets(parts, split)
        final[split] = evaluate_sets(parts.model, parts, split_sets, acc)
    result = GridResult(Path(config.output_dir), method.lambda_record(), value, grid, final)
    if acc.is_main_process:
        _write_run(parts, method, result, acc.mixed_precision)
    return result


def _write_run(parts, method, result: GridResult, precision: str) -> None:
    from mtpt.run_folder import write_run_config
    from mtpt.training.checkpoint import environment_versions, run_environment, save_checkpoint
    from mtpt.training.evaluate import leakage_report

    run_dir, config = result.run_dir, parts.config
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(run_dir, config, parts.spec.name, parts.method_config)
    meta = {"format": 1, "method": parts.spec.name, "backbone": parts.backbone.name,
            "weights_hash": parts.backbone.weights_hash, "tasks": parts.task_names,
            "source_tasks": parts.source_tasks, "seed": config.train.seed,
            "step": 0, "best_step": 0, "best_metric": result.best_metric,
            "metric_for_best": config.train.metric_for_best,
            "selection": "tpv-grid", "versions": environment_versions()}
    save_checkpoint(run_dir / "checkpoints" / "best", method, meta)
    atomic_write_text(run_dir / "grid.jsonl", "".join(json.dumps(row) + "\n" for row in result.grid))
    summary = {"best_step": 0, "best_metric": result.best_metric, "best_lambdas": result.best_lambdas,
               "final": result.final, "environment": run_environment(precision=precision)}
    leakage = leakage_report(parts)  # the test inputs removed as occurring in the sources' training data
    if leakage is not None:
        summary["leakage"] = leakage
    atomic_write_text(run_dir / "results.json", json.dumps(summary, indent=1))


def cmd_tpv_grid(argv: list[str]) -> int:
    """Choose TPV's lambda on validation from a run config whose method is tpv with mode: combine."""
    from mtpt.config import parse_run_config, run_parser

    if any(a in ("-h", "--help") for a in argv):
        run_parser("mtpt tpv-grid").print_help()
        return 0
    result = run_grid(parse_run_config(argv))
    metric = next((k for k in result.grid[0] if k != "lambdas"), "score") if result.grid else "score"
    for row in result.grid:
        shown = ", ".join(f"{k}={v:g}" for k, v in row["lambdas"].items())
        print(f"  {shown:<50} {metric}={row[metric]:.2f}")
    print(f"best: {result.best_lambdas}  {metric}={result.best_metric:.2f}")
    for split, per_task in result.final.items():
        for task, metrics in per_task.items():
            print(f"{split:>10}  {task:<20} " + ", ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    print(f"run folder: {result.run_dir}")
    return 0
