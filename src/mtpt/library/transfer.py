"""A trainable prompt initialised from library knowledge (SPoT, TPV cross-task initialisation).

After initialisation these methods are plain prompt tuning; what they add is *where the prompt started*, kept as
a JSON record: logged once to ``method_log.jsonl`` (first optimizer step) and saved with every checkpoint.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from mtpt.contract import CheckpointContents, PromptBatch

__all__ = ["TransferredPrompt", "restored_transfer"]


class TransferredPrompt(nn.Module):
    """One trainable soft prompt ``[L, d]`` shared by every example, plus the record of how it was initialised."""

    def __init__(self, prompt: Tensor, record: dict[str, Any]):
        super().__init__()
        if prompt.dim() != 2:
            raise ValueError(f"prompt must be [L, d], got shape {tuple(prompt.shape)}")
        self.prompt = nn.Parameter(prompt.detach().float().clone())
        self.record = dict(record)
        self._logged = False

    def forward(self, batch: PromptBatch) -> Tensor:
        return self.prompt.unsqueeze(0).expand(batch.input_embeds.shape[0], -1, -1)

    def task_prompt(self, task_index: int) -> Tensor:
        return self.prompt.detach()

    def after_step(self, step: int) -> dict[str, Any] | None:
        # Once per process lifetime: the record does not change while training.
        if self._logged:
            return None
        self._logged = True
        return {"transfer": self.record}

    def extra_state(self) -> dict[str, Any]:
        return {"transfer": self.record}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "transfer" in state:
            self.record = copy.deepcopy(state["transfer"])


def restored_transfer(checkpoint: CheckpointContents) -> TransferredPrompt:
    """A :class:`TransferredPrompt` from its checkpoint alone (its record comes back with the extra state)."""
    return TransferredPrompt(checkpoint.tensors["prompt"], checkpoint.extra_state.get("transfer", {}))
