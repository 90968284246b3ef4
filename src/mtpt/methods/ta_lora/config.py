"""Configuration of TA-LoRA (METHODS.md §7, our reconstruction; docs/methods/ta_lora.md explains each choice)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal, Union

from mtpt.checks import check_lr, check_range
from mtpt.config import path_option


class Stage(str, Enum):
    SOURCE = "source"
    TARGET = "target"


class Injection(str, Enum):
    GATED_ATTENTION = "gated_attention"
    ADDITIVE = "additive"


class GateShape(str, Enum):
    LAYER = "layer"
    HEAD = "head"


class TargetInit(str, Enum):
    PRINCIPAL = "principal"
    MEAN = "mean"
    RANDOM = "random"
    SOURCE = "source"
    REUSE = "reuse"


@dataclass
class TaLoraConfig:
    """TA-LoRA: a shared prompt theta0 plus a task-specific low-rank block Delta P_i = s * B (u_i v_i^T), with B the
    shared slow weight and (u_i, v_i) the task's fast weight, each with its own learning rate. gated_attention
    (default) feeds Delta P_i to every chosen layer as extra keys/values behind a zero-initialised tanh gate;
    additive adds tanh(g) * Delta P_i to theta0. Loss = task + orthogonality_weight * orthogonality penalty.

    stage source: multi-task training of B, the fast weights and the gates on the run's tasks (theta0 frozen).
    stage target: new fast weights for the run's tasks on top of a finished source run (source_run), B, theta0 and
    the gates frozen by default. target_init reuse = the unseen-data protocol (each run task is a source task and
    continues from its own fast weight).
    """

    stage: Literal["source", "target"] = "source"
    """source: multi-task training on the run's tasks; target: new fast weights on top of source_run."""
    injection: Literal["gated_attention", "additive"] = "gated_attention"
    """gated_attention: Delta P_i as gated extra keys/values in each chosen layer (Llama/SmolLM, Qwen2, Gemma 3);
    additive: input prompt theta0 + tanh(g) * Delta P_i (any backbone, T5 included)."""
    prompt_length: int | None = None
    """L. null = the length of the prompt theta0 comes from, or 20 for sample_vocab/uniform (target stage: the
    source run's)."""
    rank: int = 8
    """r: B is [L, r], u_i is [r] (source stage; the target stage takes the source run's)."""
    alpha: float = 8.0
    """LoRA-style alpha: s = alpha / rank unless scale is set."""
    scale: float | None = None
    """s, the factor on B A_i; null = alpha / rank."""
    theta0_init: Literal["sample_vocab", "uniform", "from_file", "library_mixture"] = "sample_vocab"
    """Source stage start of theta0: from_file (theta0_path: a prompt file, PEFT/export folder, PT checkpoint or PT
    run folder), library_mixture (theta0_path: a source-prompt library; its prompt tuned on the source mixture =
    the paper's theta0), or sample_vocab/uniform for standalone use."""
    theta0_path: str = path_option()
    """The prompt file / run folder (from_file) or library folder (library_mixture) theta0 is read from."""
    train_theta0: bool = False
    """Source stage: train theta0 too (in the slow group). The paper trains theta0 beforehand with PT and keeps it."""
    init_delta_rms: float | None = None
    """Expected RMS of Delta P_i's entries at init (B, u, v all N(0, sigma^2) with the sigma that gives it);
    null = theta0's RMS: the task block starts at the scale of the prompt it complements."""
    layers: Union[str, list[int]] = "all"
    """gated_attention: 'all', 'top:<k>' (the k layers nearest the output, as LLaMA-Adapter) or a list of indices."""
    gate: Literal["layer", "head"] = "layer"
    """gated_attention: one gate g^l per layer, or one per attention head of each layer."""
    lr_slow: float | None = None
    """Learning rate of B (and theta0 when trained); null = the run's train.lr."""
    lr_fast: float | None = None
    """Learning rate of the fast weights u_i, v_i; null = 10 x lr_slow."""
    lr_gate: float | None = None
    """Learning rate of the gates; null = lr_slow."""
    orthogonality: Literal["cross", "paper", "none"] = "cross"
    """cross: sum_{i!=j} ||A_i A_j^T||^2 (reaches 0); paper: the printed sum ||A_i^T A_j - I||^2 (bounded below by
    T(T-1)(d-1), offered for fidelity); none."""
    orthogonality_weight: float = 1e-2
    """lambda; the term is logged as loss/orthogonality (already multiplied by lambda)."""
    source_run: str = path_option()
    """Target stage: a finished TA-LoRA source-stage run folder (its kept checkpoint) or a checkpoint folder."""
    target_init: Literal["principal", "mean", "random", "source", "reuse"] = "principal"
    """Target stage fast weights: principal (default: the block is the best rank-1 approximation of the mean source
    block, at the mean source block's norm: what the sources share, at one block's size), mean (u and v averaged
    separately, as MPT's PEFT init: with near-orthogonal v_i the block nearly cancels), random, one source's
    (init_source), or reuse (each run task must be a source task and starts from its own factors: the unseen-data
    protocol)."""
    init_source: str = ""
    """Target stage, target_init source: the source task whose fast weight starts every target."""
    train_slow: bool | None = None
    """Train B; null = true in the source stage, false in the target stage (then at lr_slow)."""
    train_gates: bool | None = None
    """Train the gates; null = true in the source stage, false in the target stage."""
    orthogonality_with_sources: bool = False
    """Target stage: also penalise overlap between the new fast weights and the frozen source ones (source tasks that
    are run tasks themselves, under reuse, are left out). Off by default: it would push a mean-initialised target
    away from the sources it is meant to start from; the penalty among the run's own tasks always applies."""
    gate_log_every: int = 10
    """Append the gate values tanh(g) to method_log.jsonl every N steps (0 = never)."""

    def __post_init__(self) -> None:
        check_range("method.prompt_length", self.prompt_length, at_least=1, optional=True)
        check_range("method.rank", self.rank, at_least=1)
        check_range("method.alpha", self.alpha, above=0)
        check_range("method.scale", self.scale, optional=True)
        check_range("method.init_delta_rms", self.init_delta_rms, above=0, optional=True)
        for name in ("lr_slow", "lr_fast", "lr_gate"):
            check_lr(f"method.{name}", getattr(self, name), optional=True)
        check_range("method.orthogonality_weight", self.orthogonality_weight, at_least=0)
        check_range("method.gate_log_every", self.gate_log_every, at_least=0)
