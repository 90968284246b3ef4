"""ATTEMPT: instance-wise attention over frozen source prompts plus trainable target prompts."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mtpt.errors import MtptError
from mtpt.library.access import learned_sources, open_for_run, select_sources
from mtpt.methods.attempt.attention import AttemptAttention
from mtpt.methods.attempt.config import AttemptConfig
from mtpt.contract import BuildContext, CheckpointContents, PromptBatch
from mtpt.prompt_init import initial_prompt


class Attempt(nn.Module):
    """Prompt of example b with target slot k: ``sum_j a_bj P_j + P_t[k]`` over the candidates
    ``[P_1..P_S, P_t[k]]``; the frozen sources are buffers saved with the checkpoint."""

    def __init__(self, sources: Tensor, source_names: list[str], targets: Tensor, attention: AttemptAttention,
                 per_task_target: bool = True, attention_lr: float | None = None):
        super().__init__()
        if sources.dim() != 3 or targets.dim() != 3 or sources.shape[1:] != targets.shape[1:]:
            raise ValueError(f"sources [S, L, d] and targets [K, L, d] expected, got {tuple(sources.shape)}, "
                             f"{tuple(targets.shape)}")
        self.register_buffer("sources", sources.detach().float().clone())
        self.targets = nn.Parameter(targets.detach().float().clone())
        self.attention = attention
        self.source_names = list(source_names)
        self.per_task_target = per_task_target
        self.attention_lr = attention_lr
        self._weight_sum = torch.zeros(len(source_names) + 1)
        self._weight_rows = 0

    def forward(self, batch: PromptBatch) -> Tensor:
        slots = batch.task_ids if self.per_task_target else torch.zeros_like(batch.task_ids)
        if int(slots.max()) >= self.targets.shape[0]:
            raise MtptError(f"Task id {int(slots.max())} has no target prompt ({self.targets.shape[0]} built).")
        rows_per_slot, chunks = [], []
        for slot in torch.unique(slots).tolist():
            rows = (slots == slot).nonzero().flatten()
            target = self.targets[slot]
            candidates = torch.cat([self.sources, target.unsqueeze(0)])
            weights, mixed = self.attention(batch.input_embeds[rows], batch.attention_mask[rows], candidates)
            self._record(weights)
            rows_per_slot.append(rows)
            chunks.append(mixed + target)
        # Put the per-slot chunks back into batch order.
        order = torch.cat(rows_per_slot)
        return torch.cat(chunks)[torch.argsort(order)]

    def _record(self, weights: Tensor) -> None:
        if self.training:
            self._weight_sum += weights.detach().float().sum(dim=0).cpu()
            self._weight_rows += weights.shape[0]

    def after_step(self, step: int) -> dict[str, Any] | None:
        """Mean attention weight of each source (and of the target prompt) over the step's examples."""
        if not self._weight_rows:
            return None
        means = (self._weight_sum / self._weight_rows).tolist()
        self._weight_sum.zero_()
        self._weight_rows = 0
        return {"attention": dict(zip(self.source_names + ["target"], means))}

    def prompt_parts(self) -> dict[str, Tensor]:
        """Each target prompt and the mean of the frozen sources (:class:`mtpt.contract.PromptParts`)."""
        return {"sources_mean": self.sources.mean(dim=0),
                **{f"target_prompt/{k}": target.detach() for k, target in enumerate(self.targets)}}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        # the target prompts are in embedding units, the attention's weights are not (train.lr_units)
        attention = {"name": "attention", "params": list(self.attention.parameters()), "embedding_power": 0.0}
        if self.attention_lr is not None:
            attention["lr"] = self.attention_lr
        return [{"name": "target_prompts", "params": [self.targets]}, attention]

    def extra_state(self) -> dict[str, Any]:
        return {"sources": self.source_names}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("sources") and list(state["sources"]) != self.source_names:
            raise MtptError(
                f"Checkpoint attends over sources {state['sources']}, this configuration over {self.source_names}: "
                "list the run's sources explicitly in method.sources."
            )


def restore(config: AttemptConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> Attempt:
    """The trained module from its checkpoint, without the library (``MethodSpec.restore``): the frozen source
    prompts are saved with it."""
    tensors = checkpoint.tensors
    return Attempt(tensors["sources"], checkpoint.extra_state.get("sources", []), tensors["targets"],
                   _attention(config, ctx), config.per_task_target, config.attention_lr)


def _attention(config: AttemptConfig, ctx: BuildContext) -> AttemptAttention:
    try:
        return AttemptAttention(ctx.hidden_size, config.bottleneck, config.temperature)
    except ValueError as err:
        raise MtptError(f"Invalid ATTEMPT options: {err}") from None


def build(config: AttemptConfig, ctx: BuildContext) -> Attempt:
    library = open_for_run(config.source_library, ctx)
    names = learned_sources(library, select_sources(library, config.sources, ctx.task_names), config.source_seed,
                            config.skip_unlearned)
    sources = library.prompts(names, config.source_seed)
    slots = len(ctx.task_names) if config.per_task_target else 1
    target = _target_init(config, library, sources, ctx)
    return Attempt(sources, names, target.unsqueeze(0).repeat(max(1, slots), 1, 1), _attention(config, ctx),
                   config.per_task_target, config.attention_lr)


def _target_init(config: AttemptConfig, library, sources: Tensor, ctx: BuildContext) -> Tensor:
    if config.target_init == "library_init":
        return library.init_prompt()
    if config.target_init == "mean_sources":
        return sources.mean(dim=0)
    generator = torch.Generator().manual_seed(ctx.seed)
    return initial_prompt(config.target_init, library.prompt_length, ctx, generator=generator)
