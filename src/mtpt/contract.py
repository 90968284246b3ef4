"""The method contract: what a prompt method gives the trainer, and what it may optionally add.

A method is a ``torch.nn.Module`` whose ``forward(batch: PromptBatch) -> Tensor`` returns one prompt per
example, shape ``[B, L, d]``. Everything else is optional and discovered by duck typing, each capability a
small protocol below; the trainer, the CLI and the checkpoint code never name a method.

Evaluation-time behaviour: a method whose evaluation prompt differs from its training prompt (DTVG's fixed
merged prompt) switches on ``self.training``, exactly as dropout does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class PromptBatch:
    """What a method sees of a batch."""

    input_embeds: Tensor
    """Token embeddings of the text, ``[B, T, d]`` (left-padded for decoder-only models)."""
    attention_mask: Tensor
    """``[B, T]``, 1 on real tokens."""
    task_ids: Tensor
    """``[B]`` long: index of each example's task in the run's task list."""


@dataclass
class LossContext:
    """Handed to :meth:`ExtraLosses.extra_losses` after the main forward pass."""

    batch: PromptBatch
    prompts: Tensor
    """The prompts the method returned for this batch, ``[B, L, d]``."""
    logits: Tensor
    """Logits on the target positions only, ``[B, K, V]``."""
    hidden: Tensor | None
    """Last hidden states on the same positions ``[B, K, d]`` when the method asked for them."""
    target_mask: Tensor
    """``[B, K]``, 1 where a target token is scored."""
    run_with_prompts: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    """Runs the frozen backbone on the same batch with other prompts, returning (logits, hidden) on the
    same positions; teachers call it under ``torch.no_grad()``."""


@dataclass
class BuildContext:
    """What a method's builder may use; plain values, no trainer objects."""

    hidden_size: int
    vocab_size: int
    task_names: list[str]
    embed_tokens: Callable[[Tensor], Tensor]
    """Maps token ids ``[N]`` to input embeddings ``[N, d]`` (the backbone's own embedding module, so
    embedding scaling such as Gemma's is applied)."""
    tokenize: Callable[[str], list[int]]
    backbone_name: str = ""
    weights_hash: str = ""
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    """Anything run-level a method may need (e.g. the resolved source library path)."""


@runtime_checkable
class ExtraLosses(Protocol):
    """Adds loss terms to the task loss; each is logged under its name."""

    def extra_losses(self, ctx: LossContext) -> dict[str, Tensor]: ...


@runtime_checkable
class WantsHiddenStates(Protocol):
    """Asks the trainer to return last hidden states on target positions in :class:`LossContext`."""

    wants_hidden_states: bool


@runtime_checkable
class ParamGroups(Protocol):
    """Optimizer parameter groups with their own learning rates.

    Each group is a dict with ``params``, ``name`` and optionally ``lr`` / ``weight_decay``; groups without an
    ``lr`` use the run's learning rate. Without this capability all trainable parameters form one group.
    """

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]: ...


@runtime_checkable
class BackboneHooks(Protocol):
    """Attaches to the frozen backbone (e.g. attention-level injections) and detaches cleanly."""

    def attach(self, model: torch.nn.Module) -> None: ...

    def detach(self, model: torch.nn.Module) -> None: ...


@runtime_checkable
class StepCallbacks(Protocol):
    """Called after every optimizer step; a returned dict is appended to the run's ``method_log.jsonl``."""

    def after_step(self, step: int) -> dict[str, Any] | None: ...


@runtime_checkable
class ExtraState(Protocol):
    """JSON-serialisable state saved beside the tensors of a checkpoint (tensors go in ``state_dict``)."""

    def extra_state(self) -> dict[str, Any]: ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class TaskPrompts(Protocol):
    """Exports one fixed prompt per task (for PEFT export and serving); ``[L, d]`` each."""

    def task_prompt(self, task_index: int) -> Tensor: ...
