"""The quality benchmark's learning-rate search (``lr_grid``): which multiplier of its learning rates each method
section runs at, chosen on one development target's validation set before any cell.

For a section and a multiplier ``m`` the search run is the section's cell on ``lr_grid.target`` and
``lr_grid.seed`` with ``train.lr`` and every learning-rate option of the method (the registry's
:attr:`~mtpt.registry.OptionRoles.learning_rates`, resolved: a rate left null follows ``train.lr``) multiplied by
``m``, scored on validation only. Its folder is ``<out>/lr-grid/<label>/x<m>/``. The chosen multiplier is the one
whose run has the highest best validation score; a tie goes to the multiplier closest to 1 (in ratio), then to the
smaller one. Sections of a method with nothing to train are not searched (multiplier 1), nor are those that
``same_as`` another section (they take its choice).

Everything here reads run folders and the config; :mod:`mtpt.bench.quality` trains the runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtpt.bench.quality_config import QualityConfig, method_roles, shared_dir
from mtpt.errors import MtptError

GRID = "lr-grid"


@dataclass(frozen=True)
class GridChoice:
    """One section's search: its scores by multiplier (None: run not finished) and the chosen multiplier (None
    until every run has finished). ``source``: the section whose search decides (itself, or its ``same_as``)."""

    label: str
    source: str
    scores: dict[float, float | None]
    chosen: float | None

    @property
    def searched(self) -> bool:
        return self.source == self.label and bool(self.scores)


def grid_enabled(config: QualityConfig) -> bool:
    return bool(config.lr_grid.multipliers)


def grid_dir(config: QualityConfig) -> Path:
    return Path(config.out) / GRID


def grid_run_dir(config: QualityConfig, label: str, multiplier: float) -> Path:
    return shared_dir(config, Path(GRID) / label / f"x{multiplier:g}")


def trains(options: dict[str, Any]) -> bool:
    """Whether the section's method has anything to train (the registry's ``trains``)."""
    from mtpt.registry import get_method

    return get_method(str(options["name"])).trains


def searched_labels(config: QualityConfig, labels: list[str] | None = None) -> list[str]:
    """The sections that get a search of their own (checked: see :func:`check_grid`)."""
    if not grid_enabled(config):
        return []
    check_grid(config)
    return [label for label in labels or list(config.methods)
            if label not in config.lr_grid.same_as and trains(config.methods[label])]


def check_grid(config: QualityConfig) -> None:
    """Refuse a search that cannot decide: no target, a ``same_as`` naming no searched section, or a section with
    its own targets (the development target is not one of them) searched on its own."""
    grid = config.lr_grid
    if not grid.target:
        raise MtptError("lr_grid.target: name the development target the search runs on (its validation set "
                        "decides the multiplier).")
    if any(m <= 0 for m in grid.multipliers) or len(set(grid.multipliers)) != len(grid.multipliers):
        raise MtptError(f"lr_grid.multipliers: expected distinct positive factors, got {grid.multipliers}.")
    for label, other in grid.same_as.items():
        if label not in config.methods or other not in config.methods:
            raise MtptError(f"lr_grid.same_as.{label}: {label!r} and {other!r} must both be method sections.")
        if other in grid.same_as:
            raise MtptError(f"lr_grid.same_as.{label}: {other!r} takes its multiplier from another section itself; "
                            "point at a section with a search of its own.")
    for label, options in config.methods.items():
        if options.get("targets") is not None and label not in grid.same_as and trains(options):
            raise MtptError(f"lr_grid: section {label!r} has its own targets, so the development target "
                            f"{grid.target!r} is not one of its tasks; give it lr_grid.same_as.{label}: <section>.")


def scale_learning_rates(options: dict[str, Any], multiplier: float) -> dict[str, Any]:
    """The section's method options with every learning-rate option the registry declares multiplied (resolved
    values: an option left null follows ``train.lr``, which the caller multiplies); unchanged for ``1``."""
    if multiplier == 1:
        return options
    from mtpt.config import method_config

    resolved = method_config(options)[1]
    scaled = dict(options)
    for name in method_roles(options).learning_rates:
        value = getattr(resolved, name)
        if value is not None:
            scaled[name] = value * multiplier
    return scaled


def best_validation(run_dir: Path) -> float | None:
    """A finished run's best validation score (results.json's ``best_metric``); None when unfinished."""
    results = run_dir / "results.json"
    if not results.exists():
        return None
    value = json.loads(results.read_text()).get("best_metric")
    return None if value is None or not math.isfinite(float(value)) else float(value)


def choose(scores: dict[float, float | None]) -> float | None:
    """The multiplier with the highest score (ties: closest to 1 in ratio, then the smaller); None while a score
    is missing."""
    if not scores or any(v is None for v in scores.values()):
        return None
    return max(scores, key=lambda m: (scores[m], -abs(math.log(m)), -m))


def grid_choice(config: QualityConfig, label: str) -> GridChoice:
    """The search that decides ``label``'s multiplier, read from the run folders (no search: multiplier 1)."""
    if not grid_enabled(config) or not trains(config.methods[label]):
        return GridChoice(label, label, {}, 1.0)
    source = config.lr_grid.same_as.get(label, label)
    scores = {m: best_validation(grid_run_dir(config, source, m)) for m in config.lr_grid.multipliers}
    return GridChoice(label, source, scores, choose(scores))


def write_grid_summary(config: QualityConfig) -> Path:
    """``<out>/lr-grid/lr-grid.json``: every section's scores and choice (what the tables' grid section shows)."""
    from mtpt.atomic import atomic_write_text

    path = grid_dir(config) / "lr-grid.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {label: {"decided_by": c.source, "chosen": c.chosen,
                    "validation": {f"{m:g}": v for m, v in c.scores.items()}}
            for label in config.methods for c in [grid_choice(config, label)] if c.scores}
    atomic_write_text(path, json.dumps({"target": config.lr_grid.target, "seed": config.lr_grid.seed,
                                        "train_lr": config.train.lr, "lr_units": config.train.lr_units,
                                        "multipliers": config.lr_grid.multipliers, "sections": rows}, indent=1))
    return path


def grid_lines(config: QualityConfig) -> list[str]:
    """The report's grid table: per section, the best validation score of each multiplier and the choice."""
    if not grid_enabled(config):
        return []
    grid = config.lr_grid
    ms = grid.multipliers
    lines = ["", f"Learning-rate search (lr_grid): best validation score on {grid.target} (seed {grid.seed}) with "
             f"every learning rate of the method multiplied by the factor (train.lr {config.train.lr:g}, "
             f"{config.train.lr_units}); the chosen factor is used in every cell of the row:", "",
             "| method | " + " | ".join(f"×{m:g}" for m in ms) + " | chosen |", "|---" * (len(ms) + 2) + "|"]
    for label in config.methods:
        choice = grid_choice(config, label)
        if not choice.scores:
            lines.append(f"| {label} | " + " | ".join("" for _ in ms) + " | nothing to train |")
            continue
        if not choice.searched:
            lines.append(f"| {label} | " + " | ".join("" for _ in ms) + f" | {_factor(choice.chosen)} "
                         f"(= {choice.source}'s) |")
            continue
        cells = ["-" if v is None else f"{v:.1f}" for v in choice.scores.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_factor(choice.chosen)} |")
    lines.append("(-: not run yet; a tie goes to the factor closest to ×1.)")
    return lines


def _factor(m: float | None) -> str:
    return "pending" if m is None else f"×{m:g}"
