"""Configuration of multitask prompt tuning (MPT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtpt.checks import check_lr, check_range
from mtpt.config import path_option


@dataclass
class MptConfig:
    """MPT (Wang et al. 2023): a shared prompt P* and a rank-r factor u_k v_k per task; task prompt
    P*_k = P* ∘ (u_k v_k).

    stage source: multi-task training on the run's tasks (the sources), with prompt distillation from each task's
    single-task prompt in source_library: loss = task + distill_weight * (KL + MSE). stage target: new factors
    for the run's tasks initialised from a finished source-stage run (source_run), P* trained too
    (train_shared) and shared by every target of the run.
    """

    stage: Literal["source", "target"] = "source"
    """source: distil the library's single-task prompts into P* and per-task factors; target: adapt to new tasks."""
    source_library: str = path_option()
    """source stage: library holding a prompt (the teacher) for every task of the run; also supplies P_init."""
    source_seed: int | None = None
    """Which seed's library entries; null = per task, the seed with the best validation metric."""
    prompt_length: int | None = None
    """L; null = the library's (or the source run's). Needed only for a source stage without a library."""
    rank: int = 1
    """source stage: r of the per-task factors (paper: 1); the target stage takes the source run's."""
    shared_init: Literal["library_init", "teacher_mean", "sample_vocab", "uniform"] = "library_init"
    """source stage: start of P*: the library's P_init, the mean of the teachers, or a fresh PT init."""
    factor_init: Literal["normal", "ones"] = "normal"
    """source stage: factors N(0, factor_std) (PEFT) or constant so that u_k v_k = 1 (every task starts at P*)."""
    factor_std: float = 0.02
    """Standard deviation of normal (and random target) factor inits."""
    distill: bool = True
    """source stage: add the distillation terms (needs source_library)."""
    distill_weight: float = 1.0
    """lambda: weight of KL and MSE, each logged as loss/distill_kl and loss/distill_mse."""
    distill_temperature: float = 1.0
    """Softmax temperature of the KL term."""
    hidden_distance: Literal["mse", "normalized_mse"] = "mse"
    """Hidden-state term: mse on the raw last hidden states (the paper), or normalized_mse on each position's
    standardised hidden vector (our addition: scale-free, for backbones with large activations such as Gemma 3)."""
    source_run: str = path_option()
    """target stage: a finished MPT source-stage run folder (or one of its checkpoint folders)."""
    source_checkpoint: Literal["best", "last"] = "best"
    """target stage: which checkpoint of source_run (when source_run is a run folder): best = the checkpoint the run
    stands for (its best on validation; its last when it had no validation), or last."""
    target_init: Literal["shared", "mean", "source", "random"] = "shared"
    """target stage: new factors with u v = 1, so the target starts at the shared prompt P* (default: what the
    sources share, at its trained scale); mean: the mean of the source factors, u and v averaged separately (PEFT's
    AVERAGE_SOURCE_TASKS; with near-orthogonal factors the initial prompt is close to 0); source: one source's
    factors (init_source); random: N(0, factor_std) (PEFT's default)."""
    init_source: str = ""
    """target stage, target_init source: the source task whose factors start the target."""
    train_shared: bool = True
    """target stage: P* keeps training (MPT); false freezes it and trains the factors only."""
    factor_lr: float | None = None
    """Learning rate of the factors; null = the run's train.lr."""

    def __post_init__(self) -> None:
        check_range("method.prompt_length", self.prompt_length, at_least=1, optional=True)
        check_range("method.rank", self.rank, at_least=1)
        check_range("method.factor_std", self.factor_std, above=0)
        check_range("method.distill_weight", self.distill_weight, at_least=0)
        check_range("method.distill_temperature", self.distill_temperature, above=0)
        check_lr("method.factor_lr", self.factor_lr, optional=True)
