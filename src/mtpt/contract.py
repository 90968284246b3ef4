"""The method contract: what a prompt method gives the trainer, and what it may optionally add.

A method is a ``torch.nn.Module`` whose ``forward(batch: PromptBatch) -> Tensor`` returns one prompt per
example, shape ``[B, L, d]``. Everything else is optional, each capability a small protocol below checked with
``isinstance``; the trainer, the CLI, the checkpoint code and the benchmarks never name a method or probe an
attribute by name.

A builder receives a :class:`BuildContext` of plain values. Runs a method needs finished before it can be built
(a target's prompt-tuning run, say) are declared in its registry entry (:class:`Prerequisite`); the runner
(:mod:`mtpt.runner`) trains or reuses them first and hands them to the builder as :class:`FinishedRun` values, so
building never trains.

This module sits at the bottom of the import graph: it imports torch and :mod:`mtpt.errors`, nothing else of mtpt.

Evaluation-time behaviour: a method whose evaluation prompt differs from its training prompt (DTVG's fixed
merged prompt) switches on ``self.training``, exactly as dropout does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from mtpt.errors import MtptError

if TYPE_CHECKING:
    from mtpt.backbones import Backbone
    from mtpt.config import RunConfig


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


@dataclass(frozen=True)
class Prerequisite:
    """A run a method needs finished before it can be built, declared by its registry entry.

    The runner trains it into ``<run folder>/<key>`` (or reuses it there when it has finished with the same
    config), then hands it to the builder as ``ctx.prerequisites[key]``."""

    key: str
    """The name the builder reads it by; also its sub-folder of the run folder."""
    config: "RunConfig"
    """The run to train (its ``output_dir`` is set by the runner)."""


@dataclass(frozen=True)
class FinishedRun:
    """A finished run handed to a builder: its folder and the checkpoint it stands for."""

    folder: Path
    checkpoint: Path
    """``best`` when the run had a validation metric, else ``last`` (see :func:`mtpt.run_folder.kept_checkpoint`)."""


@dataclass(frozen=True)
class CheckpointContents:
    """What a checkpoint holds, handed to a method's ``restore`` (:attr:`mtpt.registry.MethodSpec.restore`)."""

    tensors: dict[str, Tensor]
    """The method's saved ``state_dict`` (parameters and persistent buffers), on the CPU."""
    extra_state: dict[str, Any]
    """Its JSON extra state (:class:`ExtraState`; empty for a method without one)."""
    meta: dict[str, Any]
    """The checkpoint's ``meta.json``: method, backbone, tasks, source tasks, step, metrics."""


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
    run_dir: Path | None = None
    """The run's folder; ``None`` when a method is built outside a run (the speed benchmark, a test)."""
    backbone: "Backbone | None" = None
    """The frozen backbone (e.g. to rebuild another method's run and read its prompt); not to be trained."""
    prerequisites: dict[str, FinishedRun] = field(default_factory=dict)
    """The finished prerequisite runs the method's registry entry declared, by key."""

    def prerequisite(self, key: str) -> FinishedRun:
        """The finished prerequisite ``key``; a clear error when the method is built without it."""
        try:
            return self.prerequisites[key]
        except KeyError:
            raise MtptError(f"This method needs its prerequisite run {key!r}, which was not supplied: build it "
                            "through mtpt.runner (mtpt train) or set the option that names a finished run.") from None


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
    ``lr`` use the run's learning rate. ``embedding_power`` (default 1) says how the group's values scale with the
    backbone's embeddings: 1 for prompts, 0 for dimensionless parameters (gates, scales, coefficients), a fraction
    for one factor of a product; under ``train.lr_units: embedding_rms`` the group's rate is multiplied by the
    embedding RMS to that power. Without this capability all trainable parameters form one group (power 1).
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


@runtime_checkable
class ParameterCounts(Protocol):
    """Splits the trainable parameters into those shared by every task and those of one task (``mtpt params``);
    without it every trainable parameter counts as shared."""

    def parameter_counts(self) -> dict[str, int]:
        """``{"shared": int, "per_task": int}``."""
        ...


@runtime_checkable
class HookedLayers(Protocol):
    """A method whose backbone hooks act inside some layers (after :meth:`BackboneHooks.attach`)."""

    def hooked_layers(self) -> list[int]:
        """Indices of the layers the hooks act in."""
        ...


@runtime_checkable
class SkippableTaskBlock(Protocol):
    """A switch that takes a method's per-task block out of the backbone pass, for timing what the block costs
    inside a training step. Skipped, every hooked layer returns its base output and the method's input prompt
    trains in the block's place, so a backward pass still runs through every layer. Never for results."""

    def skip_task_block(self, skip: bool) -> None: ...


@runtime_checkable
class PromptParts(Protocol):
    """Names the tensors a method's prompts are made of (a shared prompt, per-task blocks, a target prompt), so
    that a run's step-0 record can give each one's scale against the backbone's embeddings. Without it only the
    prompts the method returns are measured."""

    def prompt_parts(self) -> dict[str, Tensor]:
        """Name -> tensor in embedding units (``[..., d]``)."""
        ...
