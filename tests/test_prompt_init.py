"""The four prompt inits of METHODS.md §1."""

from __future__ import annotations

import pytest
import torch

from mtpt.errors import MtptError
from mtpt.peft_io import export_peft_prompt
from mtpt.prompt_init import VOCAB_SAMPLE_ROWS, initial_prompt
from mtpt.prompt_io import save_prompt
from mtpt.runtime import build_context
from mtpt.testing import tiny_backbone


@pytest.fixture(scope="module")
def ctx():
    return build_context(tiny_backbone("llama"), ["t"], seed=0)


def embedding_rows(ctx, ids):
    return ctx.embed_tokens(torch.tensor(ids)).detach()


def test_sample_vocab_uses_distinct_rows_of_the_first_5000(ctx):
    prompt = initial_prompt("sample_vocab", 6, ctx, generator=torch.Generator().manual_seed(1))
    table = embedding_rows(ctx, list(range(min(VOCAB_SAMPLE_ROWS, ctx.vocab_size))))
    matches = [int(torch.nonzero((table == row).all(dim=1))[0]) for row in prompt]
    assert len(set(matches)) == 6


def test_uniform_lies_in_minus_half_to_half(ctx):
    prompt = initial_prompt("uniform", 50, ctx, generator=torch.Generator().manual_seed(0))
    assert prompt.shape == (50, ctx.hidden_size) and prompt.min() >= -0.5 and prompt.max() <= 0.5


def test_text_repeats_the_text_tokens_to_the_prompt_length(ctx):
    ids = ctx.tokenize("ab")
    prompt = initial_prompt("text", 5, ctx, text="ab")
    expected = embedding_rows(ctx, (ids * 5)[:5])
    torch.testing.assert_close(prompt, expected)


@pytest.mark.parametrize("fmt", ["safetensors", "peft"])
def test_from_file_reads_prompt_files_and_peft_adapters(ctx, tmp_path, fmt):
    saved = torch.randn(4, ctx.hidden_size)
    if fmt == "peft":
        export_peft_prompt(saved, tmp_path / "adapter", tiny_backbone("llama").model)
        path = tmp_path / "adapter"
    else:
        path = tmp_path / "p.safetensors"
        save_prompt(saved, path)
    torch.testing.assert_close(initial_prompt("from_file", 4, ctx, path=str(path)), saved)


def test_from_file_refuses_a_prompt_of_another_shape(ctx, tmp_path):
    save_prompt(torch.randn(3, ctx.hidden_size), tmp_path / "p.safetensors")
    with pytest.raises(MtptError, match="shape"):
        initial_prompt("from_file", 4, ctx, path=str(tmp_path / "p.safetensors"))


@pytest.mark.parametrize("kind, kwargs, message", [("text", {}, "init_text"), ("from_file", {}, "init_path")])
def test_missing_init_arguments_are_reported(ctx, kind, kwargs, message):
    with pytest.raises(MtptError, match=message):
        initial_prompt(kind, 4, ctx, **kwargs)
