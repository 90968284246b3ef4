"""Running a run: its prerequisite runs first (trained, or reused when finished), then the build, then the trainer.

Every command that trains goes through here: ``mtpt train``, ``mtpt train-source``, the quality benchmark's cells
and shared stages, and the runs a method declares it needs (:class:`mtpt.contract.Prerequisite`), which are
ordinary runs trained by this same :func:`train`. Builders never train: by the time a method is built, what it
needs has finished and is handed to it as a plain value (``BuildContext.prerequisites``).

Data flow of :func:`train`: config -> backbone -> prerequisite runs (each one recursively the same) -> build
(tasks, method, model) -> :class:`mtpt.training.loop.Trainer` (or an evaluation for a method with nothing to
train) -> checkpoints and ``results.json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ContextManager

from mtpt.backbones import Backbone, load_backbone
from mtpt.config import RunConfig, method_config, validate
from mtpt.contract import FinishedRun, Prerequisite
from mtpt.errors import MtptError
from mtpt.locking import exclusive, lock_path_for
from mtpt.run_folder import is_finished, kept_checkpoint, refuse_changed_run
from mtpt.runtime import RunParts, build_run
from mtpt.training.loop import TrainResult, Trainer, evaluate_untrained
from mtpt.training.opening import claim

__all__ = ["build", "ensure_run", "finished_prerequisites", "prerequisites_of", "resolve_prerequisites", "train"]

BackboneSource = Callable[[], Backbone]
"""Gives the backbone when a run must train (a finished run is reused without loading a model)."""


def prerequisites_of(config: RunConfig) -> list[Prerequisite]:
    """The runs ``config``'s method declares, each placed in its sub-folder ``<output_dir>/<key>``."""
    spec, options = method_config(config.method)
    return [replace(p, config=replace(p.config, output_dir=str(Path(config.output_dir) / p.key)))
            for p in spec.prerequisite_runs(options, config)]


def resolve_prerequisites(config: RunConfig, backbone: BackboneSource) -> dict[str, FinishedRun]:
    """Train (or reuse) every prerequisite run of ``config``; returns them by key."""
    return {p.key: ensure_run(p.config, backbone) for p in prerequisites_of(config)}


def finished_prerequisites(config: RunConfig) -> dict[str, FinishedRun]:
    """The prerequisite runs of an already trained ``config``, which must lie finished in their sub-folders: a run
    rebuilt to predict or evaluate never trains one (an error names the missing folder instead)."""
    finished = {}
    for p in prerequisites_of(config):
        folder = Path(p.config.output_dir)
        if not is_finished(folder):
            raise MtptError(f"its prerequisite run {folder} is missing or unfinished (a run keeps its prerequisite "
                            "runs in its own sub-folders: copy that one with it).")
        refuse_changed_run(p.config)
        finished[p.key] = FinishedRun(folder, kept_checkpoint(folder))
    return finished


def ensure_run(config: RunConfig, backbone: BackboneSource,
               while_training: Callable[[Path], ContextManager] | None = None) -> FinishedRun:
    """The finished run of ``config``: reused when its folder holds one recorded with the same config (another
    config there is an error), else trained (an interrupted one resumes). Several processes asking for the same
    run train it once: the others wait for the lock beside its folder, then reuse it. ``while_training(folder)``
    wraps the training (the quality benchmark hides unfinished folders from git with it)."""
    run_dir = Path(config.output_dir)
    refuse_changed_run(config)
    if not is_finished(run_dir):
        with exclusive(lock_path_for(run_dir)):
            if not is_finished(run_dir):
                with (while_training or _no_wrapper)(run_dir):
                    train(config, backbone())
    return FinishedRun(run_dir, kept_checkpoint(run_dir))


def build(config: RunConfig, backbone: Backbone | None = None) -> RunParts:
    """The run's parts, its prerequisite runs trained or reused first (``mtpt params``, zero-shot evaluation; a
    finished run is rebuilt by :func:`mtpt.runs.load_run`, which never trains)."""
    backbone = backbone or load_backbone(config.backbone)
    return build_run(config, backbone, resolve_prerequisites(config, lambda: backbone))


def train(config: RunConfig, backbone: Backbone | None = None,
          on_built: Callable[[RunParts], None] | None = None) -> TrainResult:
    """Train a run end to end and evaluate its best checkpoint; a method with nothing to train (zero-shot) is
    evaluated and its run folder written all the same. ``on_built(parts)`` runs after the build, before training
    (the quality benchmark records parameter counts with it). The run folder is held for this launch from before the
    backbone loads: a second launch on it fails at once, naming the holder."""
    validate(config)
    with claim(config.output_dir):
        parts = build(config, backbone)
        try:
            if on_built is not None:
                on_built(parts)
            if not any(p.requires_grad for p in parts.model.method.parameters()):
                return evaluate_untrained(parts)
            return Trainer(parts).fit()
        finally:
            parts.model.detach_method()


@contextlib.contextmanager
def _no_wrapper(_folder: Path):
    yield
