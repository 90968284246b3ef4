"""The bare backbone: an empty prompt (zero-shot baseline; nothing to train)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtpt.contract import PromptBatch
from mtpt.registry import MethodSpec, register_method


@dataclass
class ZeroShotConfig:
    """No options: the backbone sees the text alone."""


class ZeroShot(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size

    def forward(self, batch: PromptBatch) -> Tensor:
        embeds = batch.input_embeds
        return torch.zeros(embeds.shape[0], 0, self.hidden_size, dtype=embeds.dtype, device=embeds.device)


register_method(MethodSpec(
    name="zero_shot", config_cls=ZeroShotConfig, build=lambda config, ctx: ZeroShot(ctx.hidden_size),
    summary="The bare backbone with no prompt (evaluation-only baseline).", trains=False,
))
