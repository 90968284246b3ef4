"""The short prompt-tuning run on a target task from the library's ``P_init``, and the target prompt it gives.

SPoT's retrieval run and DTVG's stage I are this same run: PT on the target, starting from the stored initial
prompt so that the target prompt (and its task vector) is comparable with the sources', validated so that its best
checkpoint can be kept, with no final evaluation (only the prompt is wanted). The methods declare it as a
prerequisite run (:class:`mtpt.contract.Prerequisite`); ``mtpt bench quality`` trains it once per target and seed
and hands it to every method that needs it (``{target_stage1}``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import Tensor

from mtpt.contract import BuildContext, Prerequisite
from mtpt.errors import MtptError
from mtpt.library.access import read_prompt
from mtpt.library.format import INIT_FILE, SourceLibrary

__all__ = ["target_prompt", "target_run_config", "target_run_prerequisite"]


def target_run_config(base, library: SourceLibrary, steps: int, lr: float, run_dir: str | Path):
    """The PT run on ``base``'s tasks and data from the library's ``P_init`` into ``run_dir``: ``steps`` steps at
    ``lr``, warm-up and validation interval taken from ``base`` (capped to the shorter run), no early stopping."""
    from mtpt.config import RunConfig

    if steps < 1:
        raise MtptError(f"The target PT run needs at least 1 step, got {steps}.")
    method = {"name": "pt", "prompt_length": library.prompt_length, "init": "from_file",
              "init_path": str(library.root / INIT_FILE)}
    train = replace(base.train, steps=steps, lr=lr, warmup_steps=min(base.train.warmup_steps, steps // 10),
                    eval_every=min(base.train.eval_every, steps), early_stopping_patience=None)
    return RunConfig(backbone=base.backbone, tasks=list(base.tasks), method=method, data=replace(base.data),
                     train=train, eval=replace(base.eval, final_splits=[]), output_dir=str(run_dir))


def target_run_prerequisite(key: str, library_path: str, run, steps: int, lr: float | None,
                            steps_option: str) -> list[Prerequisite]:
    """The target's PT run from the library's ``P_init`` as a prerequisite run named ``key``: ``steps`` steps (the
    method option ``steps_option``) at ``lr`` (null: the run's ``train.lr``). None without a library path: the
    builder then says what is missing."""
    if steps < 1:
        raise MtptError(f"{steps_option} must be at least 1, got {steps}.")
    if not library_path:
        return []
    library = SourceLibrary.open(library_path)
    # placed where the runner puts a prerequisite: its key under the run folder
    return [Prerequisite(key, target_run_config(run, library, steps, lr or run.train.lr,
                                                Path(run.output_dir) / key))]


def target_prompt(path: str, ctx: BuildContext, prerequisite: str, library: SourceLibrary) -> tuple[Tensor, str]:
    """The target's prompt trained from the library's ``P_init``, ``[L, d]`` in fp32, and where it came from: the
    prompt file, export or run folder ``path`` when given, else the finished prerequisite run ``prerequisite``."""
    if path:
        # A non-PT run is rebuilt to ask for its prompt: reuse this run's backbone rather than load another.
        prompt, origin = read_prompt(path, ctx.backbone), path
    else:
        run = ctx.prerequisite(prerequisite)
        prompt, origin = read_prompt(run.checkpoint), str(run.folder)
    if tuple(prompt.shape) != (library.prompt_length, library.hidden_size):
        raise MtptError(f"The target prompt {origin} has shape {tuple(prompt.shape)}; the library's prompts are "
                        f"({library.prompt_length}, {library.hidden_size}).")
    return prompt.float(), origin
