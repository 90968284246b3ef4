"""Configuration of DTVG (dynamic task vector grouping, METHODS.md §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtpt.checks import check_lr, check_range
from mtpt.config import path_option


@dataclass
class DtvgConfig:
    """DTVG (dynamic task vector grouping): P_mix = P_init + a_t*(P_t - P_init) + sum over a group G of a_s*T_s.

    Stage I: the source task vectors T_s come from a source-prompt library (one shared P_init, best validation
    checkpoint per source); the target's stage-I prompt is target_prompt when given, else a PT run on the target
    from the library's P_init, written to <output_dir>/stage1/ (reused on resume and when the run is rebuilt).
    Stage II: P_t (from its stage-I optimum), per-token scales a_t [L] and a_s [S, L] (init 1) train; G is
    regrouped on every training forward pass; evaluation uses a fixed merged prompt saved with each checkpoint.
    """

    source_library: str = path_option()
    """Source-prompt library folder (built by `mtpt train-source`)."""
    sources: list[str] = field(default_factory=list)
    """Source tasks (their order is the source index order, which breaks TS ties); empty = every library task
    that is not the run's target."""
    source_seed: int | None = None
    """Which seed's library entries; null = per task, the seed with the best validation metric."""
    skip_unlearned: bool = False
    """Leave out library sources whose entry did not learn (`learned: false` in the manifest: their validation score
    never beat a constant answer); they are warned about either way."""
    ablation: Literal["full", "only_positive", "target_only", "all_sources", "fixed_group", "spot"] = "full"
    """full (regroup every step), only_positive (every source with TS >= threshold), target_only (no sources),
    all_sources (every source, no grouping), fixed_group (the full group of the first step, kept), spot (the
    SPoT baseline: P_t starts from the source prompt most cosine-similar to the stage-I target prompt, then
    plain prompt tuning)."""
    similarity: Literal["dot", "cosine"] = "dot"
    """dot: (1/d)<mean_rows(X), mean_rows(Y)> (the authors' code); cosine of the token-averaged vectors."""
    objective: Literal["kc_prefix", "ts_plus_kc"] = "kc_prefix"
    """kc_prefix: k* = argmax_k KC(R[:k]) (the authors' code); ts_plus_kc: argmax_k mean TS(R[:k]) + lam*KC(k)
    (the paper's figure, our reading)."""
    threshold: float = 0.0
    """Sources with TS below this are never grouped (the authors: 0)."""
    lam: float = 1.0
    """Weight of KC in objective ts_plus_kc."""
    eval_group: Literal["after_step", "last_forward"] = "after_step"
    """Group inside the fixed evaluation prompt, refreshed after every optimizer step with the updated parameters:
    after_step regroups once with them (the authors recompute the merged prompt when saving a checkpoint);
    last_forward keeps the group of the step's last training forward pass. Evaluation itself never regroups."""
    target_prompt: str = path_option()
    """Stage-I target prompt trained from the library's P_init: a prompt file, export folder or finished run
    (e.g. LIBRARY/<target>/seed-42/prompt.safetensors when the library holds the target); empty = run stage I."""
    stage1_steps: int | None = None
    """Steps of the internal stage-I PT run on the target; null = the run's train.steps."""
    stage1_lr: float | None = None
    """Learning rate of the stage-I run; null = the run's train.lr (use the library's source recipe so that the
    target and source vectors are comparable)."""
    lr_target_prompt: float | None = None
    """Learning rate of P_t; null = the run's train.lr (the authors: 1e-3)."""
    lr_target_scale: float | None = None
    """Learning rate of a_t; null = the run's train.lr (the authors: 1e-3)."""
    lr_source_scales: float | None = None
    """Learning rate of a_s; null = the run's train.lr (the authors: 1e-3, grid {1e-4, 1e-3, 1e-2})."""

    def __post_init__(self) -> None:
        check_range("method.threshold", self.threshold)
        check_range("method.lam", self.lam, at_least=0)
        check_range("method.stage1_steps", self.stage1_steps, at_least=1, optional=True)
        for name in ("stage1_lr", "lr_target_prompt", "lr_target_scale", "lr_source_scales"):
            check_lr(f"method.{name}", getattr(self, name), optional=True)
