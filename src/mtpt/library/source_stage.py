"""The source stage: prompt tuning on each source task from one shared initial prompt, into a library.

Every source (and every seed) is an ordinary ``pt`` run of :func:`mtpt.runner.train` whose prompt starts
from the library's stored ``init.safetensors`` (``init: from_file``), so all task vectors share one origin. The
backbone is loaded once and reused by every run. Runs live under ``<library>/_runs/<task>/seed-<n>/`` (a crashed
run resumes from its last checkpoint); a finished run becomes a library entry. Existing entries are skipped
unless ``overwrite`` is set, so re-running a config with more sources extends the library.

Which checkpoint becomes the entry: the best on validation; for source-only tasks (no validation data, e.g.
ReCoRD) the last one, since "best" would otherwise be the first evaluation.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import ArgumentParser

from mtpt.config import (DataConfig, EvalConfig, RunConfig, TrainConfig, config_parser, parse_config, resolve_path,
                         resolved_paths, to_plain)
from mtpt.checks import check_choice, check_range
from mtpt.errors import MtptError
from mtpt.run_folder import kept_checkpoint
from mtpt.library.format import MIXTURE, LibraryEntry, SourceLibrary, entry_folder
from mtpt.prompt_io import load_prompt_tensor

__all__ = ["SourceStageConfig", "StageOutcome", "open_or_create_library", "parse_source_config", "source_parser",
           "train_sources"]


@dataclass
class SourceStageConfig:
    """Source stage: prompt tuning on each source task separately, from one shared stored initial prompt."""

    backbone: str = "smollm2-135m"
    """Built-in alias, local model folder, hub id (or tiny-<family> for tests); fixed for the library's lifetime."""
    sources: list[str] = field(default_factory=lambda: ["demo-sst2"])
    """Registered task names (or YAML task specs) to tune one prompt each on."""
    library: str = "libraries/latest"
    """Library folder: created when missing, extended when it exists (same backbone and prompt length only)."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """Training seeds; one entry per (task, seed). The initial prompt is the same for every seed."""
    prompt_length: int = 100
    """Virtual tokens L of every prompt in the library."""
    init: Literal["sample_vocab", "uniform", "text"] = "sample_vocab"
    """How the shared initial prompt P_init is made (only when the library is created)."""
    init_text: str = ""
    """Text for init: text."""
    init_seed: int = 0
    """Seed of P_init (only when the library is created)."""
    mixture: bool = False
    """Also tune one prompt on the mixture of all sources (generic SPoT), stored as the _mixture entry."""
    learned_margin: float = 2.0
    """An entry has `learned` when its best validation score beats the best constant answer's by this many points
    (recorded per entry; transfer methods warn about, and can leave out, sources that did not learn). Train each
    source until its validation stops improving with --train.early_stopping_patience and a step cap
    (--train.steps)."""
    overwrite: bool = False
    """Retrain entries that already exist (their training runs are discarded first)."""
    runs_dir: str | None = None
    """Where the training runs go; default <library>/_runs."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(final_splits=["validation"]))

    def __post_init__(self) -> None:
        _check_config(self)
        self.library = resolve_path(self.library)
        self.runs_dir = resolve_path(self.runs_dir)
        self.sources = resolved_paths({"tasks": self.sources})["tasks"]


@dataclass
class StageOutcome:
    """What happened to one (task, seed)."""

    task: str
    seed: int
    status: str
    """``trained``, ``skipped`` (already in the library) or ``skipped-stale`` (mixture of other sources)."""
    best_metric: float | None = None


# --- parsing ----------------------------------------------------------------------------------------------------
def source_parser(prog: str = "mtpt train-source") -> ArgumentParser:
    """The parser of a source-stage config: one flag per field, help from the field docstrings."""
    return config_parser(SourceStageConfig, prog)


def parse_source_config(argv: list[str]) -> SourceStageConfig:
    """Parse ``[CONFIG.yaml] [--field value ...]`` (dotted fields: ``--train.steps 50``)."""
    return parse_config(SourceStageConfig, argv, "mtpt train-source", "source-stage")


# --- the stage --------------------------------------------------------------------------------------------------
def train_sources(config: SourceStageConfig, backbone=None) -> list[StageOutcome]:
    """Tune every missing (source, seed) prompt (and the mixture when asked) into ``config.library``."""
    from mtpt.backbones import load_backbone  # heavy imports only when the stage really runs

    _check_config(config)
    tasks = _resolve_tasks(config.sources)  # entry name -> the task reference a run config takes
    _check_runs(config, tasks)  # every source checked before the library (or anything else) is created
    backbone = backbone or load_backbone(config.backbone)
    library = open_or_create_library(config, backbone)
    runs_dir = Path(config.runs_dir) if config.runs_dir else library.root / "_runs"
    outcomes = []
    for seed in config.seeds:
        for name, reference in tasks.items():
            outcomes.append(_one_entry(config, library, backbone, runs_dir, name, [reference], seed))
        if config.mixture:
            outcomes.append(_one_entry(config, library, backbone, runs_dir, MIXTURE, list(tasks.values()), seed))
    return outcomes


def _check_runs(config: SourceStageConfig, tasks: dict[str, str]) -> None:
    """Build (and so check) the run config of every entry, and check that each task's data can be found."""
    from mtpt.tasks import get_task

    init = Path(config.library) / "init.safetensors"
    groups = [[reference] for reference in tasks.values()] + ([list(tasks.values())] if config.mixture else [])
    for group in groups:
        run = _run_config(config, init, 0, group, config.seeds[0], Path(config.library) / "_runs")
        for reference in group:
            get_task(reference).data_root(run.data_root())


def _check_config(config: SourceStageConfig) -> None:
    if not config.sources:
        raise MtptError("The source stage needs at least one task in 'sources'.")
    if len(set(config.sources)) != len(config.sources):
        raise MtptError(f"'sources' lists a task twice: {config.sources}.")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise MtptError(f"'seeds' must be a non-empty list of distinct seeds, got {config.seeds}.")
    for seed in config.seeds:
        check_range("seeds", seed, at_least=0, below=2**63)
    check_range("prompt_length", config.prompt_length, at_least=1)
    check_range("init_seed", config.init_seed, at_least=0)
    check_choice("init", config.init, ("sample_vocab", "uniform", "text"))
    if not isinstance(config.library, str) or not config.library.strip():
        raise MtptError(f"library must name a folder, got {config.library!r}.")


def _resolve_tasks(names: list[str]) -> dict[str, str]:
    """Each source's entry name (the task's own name) -> how a run config names it (registered name, or the
    resolved path of a YAML task spec, which is registered under no name)."""
    from mtpt.config import known_task

    resolved: dict[str, str] = {}
    for name in names:
        task = known_task(name)
        entry_folder(task.name, 0)  # refuses names that cannot be folders, before any training
        if task.name in resolved:
            raise MtptError(f"'sources' names task {task.name!r} twice ({resolved[task.name]} and {name}).")
        resolved[task.name] = name
    return resolved


def open_or_create_library(config: SourceStageConfig, backbone) -> SourceLibrary:
    """The library of ``config``, created (with its P_init) when missing; an existing one must fit the backbone and
    prompt length."""
    from mtpt.prompt_init import initial_prompt
    from mtpt.runtime import build_context

    root = Path(config.library)
    if (root / "manifest.json").exists():
        library = SourceLibrary.open(root)
        library.check_compatible(backbone.name, backbone.weights_hash, config.prompt_length, backbone.hidden_size)
        return library
    ctx = build_context(backbone, [], config.init_seed)
    generator = torch.Generator().manual_seed(config.init_seed)
    init = initial_prompt(config.init, config.prompt_length, ctx, text=config.init_text, generator=generator)
    info = {"kind": config.init, "seed": config.init_seed, "text": config.init_text}
    return SourceLibrary.create(root, backbone=backbone.name, weights_hash=backbone.weights_hash,
                                init_prompt=init, init_info=info)


def _one_entry(config, library: SourceLibrary, backbone, runs_dir: Path, task: str, tasks: list[str], seed: int):
    from mtpt.tasks import get_task

    names = [get_task(reference).name for reference in tasks]
    if library.has(task, seed) and not config.overwrite:
        stale = task == MIXTURE and list(library.entry(task, seed).sources) != names
        return StageOutcome(task, seed, "skipped-stale" if stale else "skipped", library.entry(task, seed).best_metric)
    run_dir = runs_dir / entry_folder(task, seed)
    if config.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)  # otherwise the trainer would resume the old, finished run
    run_config = source_run_config(config, library, tasks, seed, run_dir)
    from mtpt.runner import train

    result = train(run_config, backbone=backbone)
    prompt, which, steps = _kept_prompt(run_dir)
    best = None if result.best_metric is None or not math.isfinite(result.best_metric) else float(result.best_metric)
    constant = constant_score(run_config) if config.train.metric_for_best == "score" else None
    learned = None if best is None or constant is None else best >= constant + config.learned_margin
    entry = LibraryEntry(task=task, seed=seed, path=entry_folder(task, seed), best_metric=best,
                         metric_for_best=config.train.metric_for_best, steps=steps, best_step=result.best_step,
                         sources=tuple(names) if task == MIXTURE else (), constant_score=constant, learned=learned)
    meta = {"run_dir": str(run_dir), "checkpoint": which, "tasks": names, "final": result.final,
            "run_config": to_plain(run_config)}
    library.add_entry(entry, prompt, meta, overwrite=config.overwrite)
    return StageOutcome(task, seed, "trained", best)


def constant_score(run_config: RunConfig) -> float | None:
    """The best validation ``score`` a constant answer gets on the run's validation sets (the mean over its tasks,
    as the run's own score is); None when a task has none (no validation data, generation or regression)."""
    from mtpt.metrics import best_constant_score
    from mtpt.tasks import get_task
    from mtpt.training.evaluate import split_examples

    scores = []
    for name in run_config.tasks:
        task = get_task(name)
        examples = split_examples(run_config, task, "validation")
        if not examples or task.kind not in ("classification", "multiple_choice"):
            return None
        labels = [ex.label for ex in examples]
        groups = [ex.group for ex in examples] if any(ex.group is not None for ex in examples) else None
        scores.append(best_constant_score(task.metrics, labels, max(len(ex.choices) for ex in examples), groups))
    return sum(scores) / len(scores) if scores else None


def source_run_config(config: SourceStageConfig, library: SourceLibrary, tasks: list[str], seed: int,
                      run_dir: Path) -> RunConfig:
    """The ``pt`` run that tunes one entry, starting from the library's initial prompt."""
    return _run_config(config, library.root / "init.safetensors", library.prompt_length, tasks, seed, run_dir)


def _run_config(config: SourceStageConfig, init: Path, length: int, tasks: list[str], seed: int,
                run_dir: Path) -> RunConfig:
    method = {"name": "pt", "prompt_length": length or config.prompt_length, "init": "from_file",
              "init_path": str(init)}
    return RunConfig(backbone=config.backbone, tasks=list(tasks), method=method, data=replace(config.data),
                     train=replace(config.train, seed=seed), eval=replace(config.eval), output_dir=str(run_dir))


def _kept_prompt(run_dir: Path) -> tuple[Any, str, int]:
    from mtpt.training.checkpoint import read_meta

    folder = kept_checkpoint(run_dir)
    steps = int(read_meta(run_dir / "checkpoints" / "last").get("step", 0))
    return load_prompt_tensor(folder / "method.safetensors"), folder.name, steps
