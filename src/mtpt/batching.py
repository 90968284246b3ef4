"""Turning examples into padded token batches.

Layout (the same for every backbone): the input is **left**-padded and the target **right**-padded, so every
row's input ends at the same column and every row's target starts right after it. The soft prompt is later
placed after the left padding (see :mod:`mtpt.model`).

Truncation rule: an input longer than ``max_input_tokens`` keeps its leading special tokens (e.g. Gemma's
``<bos>``) and its **last** tokens — templates put the question and the answer cue at the end — so the
beginning of the text is what is lost. Targets are never truncated, so no label is ever dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase


@dataclass
class TokenBatch:
    input_ids: Tensor
    """``[B, N]`` left-padded input tokens."""
    input_mask: Tensor
    target_ids: Tensor
    """``[B, T]`` right-padded target tokens (``T`` may be 0 for pure inference)."""
    target_mask: Tensor
    task_ids: Tensor
    """``[B]`` index of each row's task in the run's task list."""

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(*(t.to(device) for t in (self.input_ids, self.input_mask, self.target_ids, self.target_mask, self.task_ids)))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, index: Tensor) -> "TokenBatch":
        """The batch of rows ``index`` (repeats allowed), padding unchanged."""
        return TokenBatch(*(t[index] for t in (self.input_ids, self.input_mask, self.target_ids, self.target_mask, self.task_ids)))


class Tokenizer:
    """Tokenises inputs and targets once, with the truncation rule above."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_input_tokens: int = 256, target_eos: bool = True):
        if max_input_tokens < 8:
            raise ValueError(f"max_input_tokens must be at least 8, got {max_input_tokens}")
        self.tokenizer = tokenizer
        self.max_input_tokens = max_input_tokens
        self.target_eos = target_eos
        self._special = set(tokenizer.all_special_ids)

    def input_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text)["input_ids"]
        if len(ids) <= self.max_input_tokens:
            return ids
        head = 1 if ids[0] in self._special else 0
        return ids[:head] + ids[len(ids) - (self.max_input_tokens - head):]

    def target_ids(self, target: str, *, eos: bool | None = None) -> list[int]:
        ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        if (self.target_eos if eos is None else eos) and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        return ids

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def pad_batch(inputs: Sequence[list[int]], targets: Sequence[list[int]], task_ids: Sequence[int], pad_id: int) -> TokenBatch:
    """Left-pad the inputs and right-pad the targets into a :class:`TokenBatch`."""
    if not inputs:
        raise ValueError("cannot build an empty batch")
    n = max(len(x) for x in inputs)
    t = max((len(y) for y in targets), default=0)
    input_ids = torch.full((len(inputs), n), pad_id, dtype=torch.long)
    input_mask = torch.zeros((len(inputs), n), dtype=torch.long)
    target_ids = torch.full((len(inputs), t), pad_id, dtype=torch.long)
    target_mask = torch.zeros((len(inputs), t), dtype=torch.long)
    for row, (x, y) in enumerate(zip(inputs, targets)):
        if x:
            input_ids[row, n - len(x):] = torch.tensor(x)
            input_mask[row, n - len(x):] = 1
        if y:
            target_ids[row, : len(y)] = torch.tensor(y)
            target_mask[row, : len(y)] = 1
    return TokenBatch(input_ids, input_mask, target_ids, target_mask, torch.tensor(list(task_ids), dtype=torch.long))
