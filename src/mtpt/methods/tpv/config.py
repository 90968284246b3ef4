"""Configuration of task prompt vectors (TPV)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtpt.checks import check_range
from mtpt.config import path_option
from mtpt.errors import MtptError
from mtpt.methods.tpv.arithmetic import DEFAULT_LAMBDAS


@dataclass
class TpvConfig:
    """Task prompt vectors (Belanec et al. 2024): P = P_init + sum_k lambda_k tau_k over library task vectors.

    init: cross-task initialisation — a combination starts a trainable prompt, then plain prompt tuning on the run's
    tasks: by default lambda times the mean of the task vectors of the top_k sources most similar to the target
    (init_selection), or the sum over every source (init_selection all, lambda = `lambdas`). combine: the combination itself is the prompt; `mtpt tpv-grid`
    picks lambda on validation from `grid` (the paper's use, no training); under `mtpt train` the lambdas
    (one scalar per source) are learned instead — our option, the vectors stay frozen.
    """

    source_library: str = path_option()
    """Source-prompt library folder (built by `mtpt train-source`)."""
    mode: Literal["init", "combine"] = "init"
    """init: combination then prompt tuning; combine: the combination is the prompt (lambda from the grid)."""
    sources: list[str] = field(default_factory=list)
    """Task vectors to combine; empty = every library task that is not a task of this run."""
    source_seed: int | None = None
    """Which seed's library entries; null = per task, the seed with the best validation metric."""
    skip_unlearned: bool = False
    """Leave out library sources whose entry did not learn (`learned: false` in the manifest: their validation score
    never beat a constant answer); they are warned about either way."""
    lambdas: list[float] = field(default_factory=lambda: [1.0])
    """One coefficient for every source, or one per source (in `sources` order; init_selection all only)."""
    init_selection: Literal["top_k", "all"] = "top_k"
    """mode init: top_k (default) starts from P_init + lambda * the mean of the top_k source vectors most similar
    to the target's task vector (cosine, token-averaged), the TPV authors' use of related sources; all: P_init +
    sum of lambda_k * every source vector (with lambda = 1 and unrelated sources, several times P_init's norm)."""
    top_k: int = 2
    """init_selection top_k: how many sources."""
    target_prompt: str = path_option()
    """init_selection top_k: the target's prompt trained from the library's P_init (a prompt file, export folder or
    finished run); empty = a short PT run on the target from P_init (a prerequisite run, <output_dir>/stage1/)."""
    target_steps: int = 50
    """Steps of that PT run."""
    target_lr: float | None = None
    """Its learning rate; null = the run's train.lr."""
    grid: list[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))
    """mtpt tpv-grid: the values one coefficient may take."""
    grid_mode: Literal["shared", "per_task"] = "shared"
    """mtpt tpv-grid: one lambda for all sources, or every combination of per-source lambdas."""
    max_combinations: int = 1331
    """mtpt tpv-grid: refuse per_task grids larger than this."""

    def __post_init__(self) -> None:
        if not self.lambdas:
            raise MtptError("method.lambdas must hold one coefficient (for every source) or one per source.")
        for value in self.lambdas:
            check_range("method.lambdas", value)
        if not self.grid:
            raise MtptError("method.grid must hold at least one value.")
        for value in self.grid:
            check_range("method.grid", value)
        check_range("method.max_combinations", self.max_combinations, at_least=1)
