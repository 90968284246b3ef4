"""Vanilla prompt tuning: a single trainable prompt, broadcast to every example."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtpt.contract import BuildContext, CheckpointContents, PromptBatch
from mtpt.methods.pt.config import PromptTuningConfig
from mtpt.prompt_init import initial_prompt


class PromptTuning(nn.Module):
    """One soft prompt ``[L, d]``; the same prompt for every example and task."""

    def __init__(self, prompt: Tensor):
        super().__init__()
        self.prompt = nn.Parameter(prompt.float())

    def forward(self, batch: PromptBatch) -> Tensor:
        return self.prompt.unsqueeze(0).expand(batch.input_embeds.shape[0], -1, -1)

    def task_prompt(self, task_index: int) -> Tensor:
        return self.prompt.detach()


def build(config: PromptTuningConfig, ctx: BuildContext) -> PromptTuning:
    generator = torch.Generator().manual_seed(ctx.seed)
    prompt = initial_prompt(
        config.init, config.prompt_length, ctx, text=config.init_text, path=config.init_path, generator=generator
    )
    return PromptTuning(prompt)


def restore(config: PromptTuningConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> PromptTuning:
    """The trained prompt from its checkpoint, without the init file (``MethodSpec.restore``)."""
    return PromptTuning(checkpoint.tensors["prompt"])
