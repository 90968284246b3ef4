"""The TA-LoRA module: theta0, the shared slow weight B, per-task fast weights (u_i, v_i) and zero-initialised gates.

State-dict names: ``theta0 [L, d]``, ``slow_b [L, r]``, ``fast_u [T, r]``, ``fast_v [T, d]``, ``gates`` (``[n, 1]`` or
``[n, H]`` for gated_attention over n layers, ``[1]`` for additive). Frozen tensors stay parameters with
``requires_grad=False`` so that every checkpoint is self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from torch import Tensor, nn

from mtpt.errors import MtptError
from mtpt.contract import LossContext, PromptBatch
from mtpt.methods.ta_lora.config import GateShape, Injection
from mtpt.methods.ta_lora.injection import GatedDeltaAttention, attention_layers, select_layers
from mtpt.methods.ta_lora.orthogonality import low_rank_delta, orthogonality_penalty

FAST_LR_RATIO = 10.0
"""lr_fast = 10 x lr_slow unless set (METHODS.md §7)."""


@dataclass
class TaLoraOptions:
    """Resolved settings of one TA-LoRA module (the config minus what only the builder needs)."""

    scale: float
    injection: Injection = Injection.GATED_ATTENTION
    layers: Union[str, Sequence[int]] = "all"
    gate_shape: GateShape = GateShape.LAYER
    train_theta0: bool = False
    train_slow: bool = True
    train_gates: bool = True
    lr_slow: float | None = None
    lr_fast: float | None = None
    lr_gate: float | None = None
    orthogonality: str = "cross"
    orthogonality_weight: float = 0.0
    gate_log_every: int = 10


class TaLora(nn.Module):
    """Per example: prompt theta0 and task block ``Delta P_t = s B (u_t v_t^T)``, ``t`` = the example's task.

    additive: the prompt is ``theta0 + tanh(g) Delta P_t``. gated_attention: the prompt is theta0 and
    ``Delta P_t`` is stored for the attention hook (installed by :meth:`attach`), which runs during the backbone
    pass that follows this forward.
    """

    def __init__(self, theta0: Tensor, slow_b: Tensor, fast_u: Tensor, fast_v: Tensor, options: TaLoraOptions, *,
                 gates: Tensor | None = None, source_u: Tensor | None = None, source_v: Tensor | None = None,
                 record: dict[str, Any] | None = None):
        super().__init__()
        _check_shapes(theta0, slow_b, fast_u, fast_v)
        self.options = options
        self.theta0 = nn.Parameter(theta0.detach().float().clone(), requires_grad=options.train_theta0)
        self.slow_b = nn.Parameter(slow_b.detach().float().clone(), requires_grad=options.train_slow)
        self.fast_u = nn.Parameter(fast_u.detach().float().clone())
        self.fast_v = nn.Parameter(fast_v.detach().float().clone())
        if gates is None:
            # additive: one scalar gate. gated_attention: sized by attach(), which knows the layers and heads.
            gates = torch.zeros(1 if options.injection is Injection.ADDITIVE else 0)
        self.gates = nn.Parameter(gates.detach().float().clone(), requires_grad=options.train_gates)
        # Frozen source factors the orthogonality penalty compares against (target stage); rebuilt, not saved.
        self.register_buffer("source_u", _frozen(source_u, fast_u.shape[1]), persistent=False)
        self.register_buffer("source_v", _frozen(source_v, fast_v.shape[1]), persistent=False)
        self.record = dict(record or {})
        self.current_delta: Tensor | None = None
        self.layer_indices: list[int] = []
        self._hook = GatedDeltaAttention(lambda: self.current_delta, lambda slot: self.gates[slot])

    @property
    def num_tasks(self) -> int:
        return int(self.fast_u.shape[0])

    def task_delta(self, task_ids: Tensor) -> Tensor:
        """``[N, L, d]`` task blocks ``s B u_t v_t^T`` (vectorised over a mixed-task batch)."""
        return low_rank_delta(self.slow_b, self.fast_u, self.fast_v, task_ids, self.options.scale)

    def forward(self, batch: PromptBatch) -> Tensor:
        delta = self.task_delta(batch.task_ids.to(self.fast_u.device))
        prompts = self.theta0.unsqueeze(0).expand(delta.shape[0], -1, -1)
        if self.options.injection is Injection.ADDITIVE:
            return prompts if self._hook.skip_block else prompts + torch.tanh(self.gates[0]) * delta
        self.current_delta = delta
        return prompts

    def skip_task_block(self, skip: bool) -> None:
        """Timing switch (:class:`mtpt.contract.SkippableTaskBlock`): while on, the hooked layers return their base
        attention's output (the hook stays attached: dispatch and bookkeeping still run; additive: the prompt is
        theta0 alone) and theta0 trains in the block's place, so a backward pass still runs through every layer. For measuring what the block costs
        inside a step; build a separate instance for it, never train results with it."""
        self._hook.skip_block = skip
        self.theta0.requires_grad_(skip or self.options.train_theta0)

    def prompt_parts(self) -> dict[str, Tensor]:
        """theta0 and each task's block ``s B u_t v_t^T`` before its gate (:class:`mtpt.contract.PromptParts`)."""
        ids = torch.arange(self.num_tasks, device=self.fast_u.device)
        blocks = self.task_delta(ids).detach()
        return {"theta0": self.theta0.detach(), **{f"task_block/{i}": block for i, block in enumerate(blocks)}}

    def hooked_layers(self) -> list[int]:
        """The layers the gated attention acts in (:class:`mtpt.contract.HookedLayers`; empty for additive)."""
        return list(self.layer_indices)

    # --- backbone hooks -----------------------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """gated_attention: size the gates for this backbone (zeros) and install the attention hook."""
        if self.options.injection is Injection.ADDITIVE:
            return  # the additive form only changes the input prompt: nothing to install, any backbone works
        layers = attention_layers(model)
        self.layer_indices = select_layers(self.options.layers, len(layers))
        heads = int(model.config.get_text_config().num_attention_heads)
        shape = (len(self.layer_indices), heads if self.options.gate_shape is GateShape.HEAD else 1)
        if self.gates.numel() == 0:
            self.gates = nn.Parameter(torch.zeros(shape, device=self.theta0.device),
                                      requires_grad=self.options.train_gates)
        elif tuple(self.gates.shape) != shape:
            raise MtptError(f"TA-LoRA gates have shape {tuple(self.gates.shape)} but this backbone with layers "
                            f"{self.options.layers!r} and gate {self.options.gate_shape.value!r} needs {shape}.")
        self._hook.attach(model, self.layer_indices)

    def detach(self, model: nn.Module) -> None:
        self._hook.detach(model)
        self.current_delta = None

    # --- training-loop capabilities -----------------------------------------------------------------------------
    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """slow (B, theta0 if trained) at lr_slow, fast (u, v) at lr_fast, gate at lr_gate (no weight decay)."""
        opts = self.options
        lr_slow = base_lr if opts.lr_slow is None else opts.lr_slow
        lr_fast = FAST_LR_RATIO * lr_slow if opts.lr_fast is None else opts.lr_fast
        lr_gate = lr_slow if opts.lr_gate is None else opts.lr_gate
        for name, value in (("lr_slow", lr_slow), ("lr_fast", lr_fast), ("lr_gate", lr_gate)):
            if not value > 0:
                raise MtptError(f"TA-LoRA {name} must be positive, got {value}.")
        trainable = lambda params: [p for p in params if p.requires_grad]  # noqa: E731
        # train.lr_units: the block s B u v^T is a product of three factors started at balanced scales, so each
        # carries about the cube root of the embedding scale; theta0 (trained only on request) shares B's group
        # and rate; the gates are dimensionless.
        return [
            {"name": "slow", "params": trainable([self.slow_b, self.theta0]), "lr": lr_slow, "embedding_power": 1 / 3},
            {"name": "fast", "params": trainable([self.fast_u, self.fast_v]), "lr": lr_fast, "embedding_power": 1 / 3},
            # Decaying g pulls the gate shut, against what the task loss is opening: no weight decay.
            {"name": "gate", "params": trainable([self.gates]), "lr": lr_gate, "weight_decay": 0.0,
             "embedding_power": 0.0},
        ]

    def extra_losses(self, ctx: LossContext) -> dict[str, Tensor]:
        """``orthogonality``: lambda times the penalty over the run's fast weights (and, optionally, the sources')."""
        if self.options.orthogonality == "none":
            return {}
        return {"orthogonality": self.options.orthogonality_weight * self.orthogonality()}

    def orthogonality(self) -> Tensor:
        mode = self.options.orthogonality
        if not len(self.source_u):
            return orthogonality_penalty(self.fast_u, self.fast_v, mode)
        u, v = torch.cat([self.source_u, self.fast_u]), torch.cat([self.source_v, self.fast_v])
        both = orthogonality_penalty(u, v, mode)
        with torch.no_grad():  # pairs among the frozen sources are a constant: leave them out of the logged value
            among_sources = orthogonality_penalty(self.source_u, self.source_v, mode)
        return both - among_sources

    def after_step(self, step: int) -> dict[str, Any] | None:
        """Every gate_log_every steps: tanh(g) per gated layer (lists for per-head gates), or the additive gate."""
        every = self.options.gate_log_every
        if not every or step % every or self.gates.numel() == 0:
            return None
        values = torch.tanh(self.gates.detach().float()).cpu()
        if self.options.injection is Injection.ADDITIVE:
            return {"gate_tanh": float(values[0])}
        rows = values.tolist()
        return {"gate_tanh": {str(i): (row[0] if len(row) == 1 else row) for i, row in zip(self.layer_indices, rows)}}

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters shared by all tasks (B, gates, theta0 when trained) and per task (u_t, v_t: r + d)."""
        shared = sum(p.numel() for p in (self.theta0, self.slow_b, self.gates) if p.requires_grad)
        per_task = self.fast_u.shape[1] + self.fast_v.shape[1] if self.fast_u.requires_grad else 0
        return {"shared": int(shared), "per_task": int(per_task)}

    def task_prompt(self, task_index: int) -> Tensor:
        """additive: the fixed prompt ``theta0 + tanh(g) Delta P_i``; gated_attention has no single input prompt."""
        if not 0 <= task_index < self.num_tasks:
            raise MtptError(f"Task index {task_index} is outside the {self.num_tasks} tasks of this TA-LoRA run.")
        if self.options.injection is not Injection.ADDITIVE:
            raise MtptError("A gated_attention TA-LoRA run has no single prompt per task (its task part lives in the "
                            "attention layers); only injection: additive runs export as plain prompts.")
        with torch.no_grad():
            delta = self.task_delta(torch.tensor([task_index], device=self.fast_u.device))[0]
            return self.theta0 + torch.tanh(self.gates[0]) * delta

    def extra_state(self) -> dict[str, Any]:
        return {"ta_lora": self.record}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.record = dict(state.get("ta_lora", self.record))


def _check_shapes(theta0: Tensor, b: Tensor, u: Tensor, v: Tensor) -> None:
    if theta0.dim() != 2 or b.dim() != 2 or u.dim() != 2 or v.dim() != 2:
        raise ValueError("theta0 [L, d], B [L, r], u [T, r] and v [T, d] must all be 2-D")
    (length, dim), rank, tasks = theta0.shape, b.shape[1], u.shape[0]
    if b.shape[0] != length or u.shape[1] != rank or v.shape != (tasks, dim) or tasks < 1:
        raise ValueError(f"inconsistent TA-LoRA shapes: theta0 {tuple(theta0.shape)}, B {tuple(b.shape)}, "
                         f"u {tuple(u.shape)}, v {tuple(v.shape)}")


def _frozen(factors: Tensor | None, width: int) -> Tensor:
    if factors is None:
        return torch.zeros(0, width)
    if factors.dim() != 2 or factors.shape[1] != width:
        raise ValueError(f"source factors must be [S, {width}], got {tuple(factors.shape)}")
    return factors.detach().float().clone()
