"""The short prompt-tuning run on a target task from the library's ``P_init``.

SPoT's retrieval run and DTVG's stage I are this same run: PT on the target, starting from the stored initial
prompt so that the target prompt (and its task vector) is comparable with the sources', validated so that its best
checkpoint can be kept, with no final evaluation (only the prompt is wanted). ``mtpt bench quality`` trains it
once per target and seed and hands it to every method that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtpt.errors import MtptError
from mtpt.library.format import INIT_FILE, SourceLibrary
from mtpt.contract import BuildContext

__all__ = ["ensure_target_run", "run_backbone", "target_run_config"]


def target_run_config(base, library: SourceLibrary, steps: int, lr: float, run_dir: str | Path):
    """The PT run on ``base``'s tasks and data from the library's ``P_init``: ``steps`` steps at ``lr``, warm-up
    and validation interval taken from ``base`` (capped to the shorter run), no early stopping."""
    from mtpt.config import RunConfig

    if steps < 1:
        raise MtptError(f"The target PT run needs at least 1 step, got {steps}.")
    method = {"name": "pt", "prompt_length": library.prompt_length, "init": "from_file",
              "init_path": str(library.root / INIT_FILE)}
    train = replace(base.train, steps=steps, lr=lr, warmup_steps=min(base.train.warmup_steps, steps // 10),
                    eval_every=min(base.train.eval_every, steps), early_stopping_patience=None)
    return RunConfig(backbone=base.backbone, tasks=list(base.tasks), method=method, data=replace(base.data),
                     train=train, eval=replace(base.eval, final_splits=[]), output_dir=str(run_dir))


def ensure_target_run(run_config, backbone: Callable[[], Any]) -> Path:
    """Train the run unless it has finished already (an interrupted one resumes from its last checkpoint).

    ``backbone`` is called only when the run must train, so reusing a finished run loads no model. A finished
    run recorded with another config than ``run_config`` is an error (:func:`mtpt.runs.refuse_changed_run`),
    not silently reused."""
    from mtpt.runs import refuse_changed_run
    from mtpt.training.loop import train

    run_dir = Path(run_config.output_dir)
    refuse_changed_run(run_config)
    if not (run_dir / "results.json").exists():
        train(run_config, backbone=backbone())
    return run_dir


def run_backbone(ctx: BuildContext, name: str):
    """The backbone a builder trains its internal run on: the run's own (``build_run`` hands it over), or, for a
    builder called by hand, ``name`` loaded again and checked to have the run's weights."""
    backbone = ctx.extras.get("backbone")
    if backbone is not None:
        return backbone
    from mtpt.backbones import load_backbone

    backbone = load_backbone(name)
    if ctx.weights_hash and backbone.weights_hash != ctx.weights_hash:
        raise MtptError(f"Reloading backbone {name!r} gave other weights than the run's; pass method.target_prompt.")
    return backbone
