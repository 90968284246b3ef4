"""Initial values for soft prompts (METHODS.md §1): ``sample_vocab``, ``uniform``, ``text``, ``from_file``."""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from mtpt.errors import MtptError
from mtpt.contract import BuildContext
from mtpt.prompt_io import load_prompt_tensor

VOCAB_SAMPLE_ROWS = 5000
"""``sample_vocab`` draws from the first 5,000 vocabulary rows, as Lester et al. do."""


class PromptInit(str, Enum):
    SAMPLE_VOCAB = "sample_vocab"
    UNIFORM = "uniform"
    TEXT = "text"
    FROM_FILE = "from_file"


def initial_prompt(
    kind: PromptInit | str,
    length: int,
    ctx: BuildContext,
    *,
    text: str = "",
    path: str = "",
    generator: torch.Generator | None = None,
) -> Tensor:
    """An fp32 ``[length, d]`` prompt initialised as ``kind`` says."""
    kind = PromptInit(kind)
    if length < 1:
        raise MtptError(f"prompt_length must be at least 1, got {length}.")
    if kind is PromptInit.SAMPLE_VOCAB:
        rows = min(VOCAB_SAMPLE_ROWS, ctx.vocab_size)
        if length > rows:
            raise MtptError(f"sample_vocab cannot draw {length} distinct rows from a vocabulary of {rows}.")
        ids = torch.randperm(rows, generator=generator)[:length]
        return _embed(ctx, ids)
    if kind is PromptInit.UNIFORM:
        return torch.rand(length, ctx.hidden_size, generator=generator) - 0.5
    if kind is PromptInit.TEXT:
        if not text:
            raise MtptError("init 'text' needs a non-empty init_text.")
        ids = torch.tensor(ctx.tokenize(text), dtype=torch.long)
        # Repeat the text's tokens until the prompt is full, then cut to length.
        ids = ids.repeat((length + len(ids) - 1) // len(ids))[:length]
        return _embed(ctx, ids)
    if not path:
        raise MtptError("init 'from_file' needs init_path (a prompt .safetensors, checkpoint or PEFT adapter folder).")
    prompt = load_prompt_tensor(path)
    if prompt.shape != (length, ctx.hidden_size):
        raise MtptError(
            f"Prompt in {path} has shape {tuple(prompt.shape)}, but this run needs ({length}, {ctx.hidden_size}): "
            "set prompt_length to match or use a prompt trained on this backbone."
        )
    return prompt.float().clone()


def _embed(ctx: BuildContext, ids: Tensor) -> Tensor:
    with torch.no_grad():
        return ctx.embed_tokens(ids).detach().float().clone()
