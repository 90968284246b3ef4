"""Configuration of ATTEMPT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtpt.checks import check_lr, check_range
from mtpt.config import path_option


@dataclass
class AttemptConfig:
    """ATTEMPT (Asai et al. 2022): per-input attention over frozen library source prompts plus a trainable
    target prompt; prompt = sum_j a_j P_j + P_t. Trainable: W_down, W_up, LayerNorm and P_t (one per task when
    the run has several tasks and per_task_target is true)."""

    source_library: str = path_option()
    """Source-prompt library folder (built by `mtpt train-source`)."""
    sources: list[str] = field(default_factory=list)
    """Frozen source prompts to attend over; empty = every library task that is not a task of this run."""
    source_seed: int | None = None
    """Which seed's library entries; null = per task, the seed with the best validation metric."""
    skip_unlearned: bool = False
    """Leave out library sources whose entry did not learn (`learned: false` in the manifest: their validation score
    never beat a constant answer); they are warned about either way."""
    bottleneck: int = 100
    """r, the width of W_down (d -> r) and W_up (r -> d)."""
    temperature: float | None = None
    """Softmax temperature T; null = d * e (ATTEMPT)."""
    target_init: Literal["library_init", "mean_sources", "sample_vocab", "uniform"] = "library_init"
    """Start of P_t: the library's initial prompt, the mean of the source prompts, or a fresh PT init (our
    default: the library's P_init, the same start as every source)."""
    per_task_target: bool = True
    """Multi-task runs: one P_t per task id (ATTEMPT multi-task); false shares one P_t across tasks."""
    attention_lr: float | None = None
    """Learning rate of W_down, W_up and the LayerNorm; null = the run's train.lr."""

    def __post_init__(self) -> None:
        check_range("method.bottleneck", self.bottleneck, at_least=1)
        check_range("method.temperature", self.temperature, above=0, optional=True)
        check_lr("method.attention_lr", self.attention_lr, optional=True)
