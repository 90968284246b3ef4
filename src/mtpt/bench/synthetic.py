"""Synthetic inputs of the speed benchmark: a fixed token batch and an in-memory-built source library.

Speed does not depend on the values of prompts or tokens, only on their shapes, so the benchmark needs no data
and no trained library: it writes random prompts of the right shape into a temporary library folder and lets
every method's own builder read it the normal way (so the measured modules are exactly the ones training uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mtpt.backbones import Backbone
from mtpt.batching import TokenBatch, Tokenizer, pad_batch
from mtpt.library.format import LibraryEntry, SourceLibrary, entry_folder
from mtpt.prompt_io import save_prompt

# Real English text, so that the token ids look like a real input (frequent and rare ids, real lengths).
PASSAGE = (
    "premise: A man in a blue shirt is playing an acoustic guitar on a small stage while the audience claps. "
    "hypothesis: Somebody is making music in front of people. question: does the premise entail the "
    "hypothesis? The review says the film was an overlong, tedious and badly acted story of very little worth, "
    "yet the soundtrack is lovely and the photography of the northern coast is breathtaking at times. "
)
LABELS = (" yes", " no")
TARGET_FILE = "bench-target.safetensors"
"""The synthetic stage-I target prompt DTVG reads (``method.target_prompt``), inside the library folder."""


def token_batch(backbone: Backbone, batch: int, text_tokens: int, num_tasks: int = 1) -> TokenBatch:
    """``batch`` rows of exactly ``text_tokens`` input tokens (no padding, so every arm sees the same length),
    each a different window of :data:`PASSAGE`, with a one-word label target (plus EOS). Task ids cycle over
    ``num_tasks`` tasks."""
    tok = Tokenizer(backbone.tokenizer, max_input_tokens=max(8, text_tokens))
    stream = backbone.tokenizer(PASSAGE * (1 + text_tokens // 16), add_special_tokens=False)["input_ids"]
    stride = max(1, (len(stream) - text_tokens) // max(1, batch))
    inputs = [stream[row * stride:row * stride + text_tokens] for row in range(batch)]
    targets = [tok.target_ids(LABELS[row % 2]) for row in range(batch)]
    return pad_batch(inputs, targets, [row % num_tasks for row in range(batch)], tok.pad_id)


def synthetic_library(root: str | Path, backbone: Backbone, prompt_length: int, sources: int = 6,
                      seed: int = 0, names: Sequence[str] | None = None) -> SourceLibrary:
    """A library of ``sources`` random prompts (``src-0`` ..., or the given ``names``, e.g. the benchmark's tasks
    when they need teachers) around a random ``P_init``, plus a mixture entry and a target prompt file for DTVG.
    Prompts are ``P_init`` plus small noise correlated with the target, so that DTVG's grouping keeps several
    sources (a realistic amount of work)."""
    gen = torch.Generator().manual_seed(seed)
    dim = backbone.hidden_size
    init = 0.1 * torch.randn(prompt_length, dim, generator=gen)
    direction = torch.randn(prompt_length, dim, generator=gen)
    library = SourceLibrary.create(root, backbone=backbone.name, weights_hash=backbone.weights_hash,
                                   init_prompt=init, init_info={"kind": "synthetic-benchmark"})
    names = list(names) if names is not None else [f"src-{i}" for i in range(sources)]
    for name in names + ["_mixture"]:
        prompt = init + 0.01 * (0.5 * direction + torch.randn(prompt_length, dim, generator=gen))
        entry = LibraryEntry(task=name, seed=0, path=entry_folder(name, 0), best_metric=50.0, steps=1,
                             sources=tuple(names) if name == "_mixture" else ())
        library.add_entry(entry, prompt, {"synthetic": True})
    save_prompt(init + 0.01 * direction, library.root / TARGET_FILE)
    return library
