"""The soft-prompt wrapper: layout, padding invariance, target-only logits, gradients, generation."""

from __future__ import annotations

import pytest
import torch

from helpers import TARGETS, TEXTS, encode, pt_model
from mtpt.batching import pad_batch
from mtpt.model import place_prompts, task_loss
from mtpt.testing import TINY_ARCHS


def test_place_prompts_puts_prompt_after_left_padding():
    prompts = torch.arange(2 * 2 * 1, dtype=torch.float).view(2, 2, 1) + 100
    text = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 5.0]]).unsqueeze(-1)
    mask = torch.tensor([[1, 1, 1], [0, 0, 1]])
    embeds, full_mask, positions = place_prompts(prompts, text, mask)
    assert embeds.squeeze(-1).tolist() == [[100, 101, 0, 1, 2], [0, 0, 102, 103, 5]]
    assert full_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert positions[1, 2:].tolist() == [0, 1, 2]  # prompt takes 0..L-1, text continues from L


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_logits_do_not_depend_on_batch_padding(arch):
    model, tok = pt_model(arch)
    batch = model(encode(tok))
    for row, (text, target) in enumerate(zip(TEXTS, TARGETS)):
        alone = model(encode(tok, [text], [target]))
        n = int(alone.target_mask.sum())
        torch.testing.assert_close(alone.logits[0, :n], batch.logits[row, :n], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_target_logits_match_a_full_forward_pass(arch):
    """The kept logits are those a plain forward pass over [prompt, input, target] gives at the same places."""
    model, tok = pt_model(arch)
    batch = encode(tok, TEXTS[:1], TARGETS[:1])
    out = model(batch)
    prompt = model.method.prompt.unsqueeze(0)
    text = model.embed(torch.cat([batch.input_ids, batch.target_ids], dim=1))
    full = model.backbone(inputs_embeds=torch.cat([prompt, text], dim=1)).logits
    t = batch.target_ids.shape[1]
    torch.testing.assert_close(out.logits[0], full[0, -(t + 1):-1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_gradients_reach_only_the_method(arch):
    model, tok = pt_model(arch)
    task_loss(model(encode(tok))).backward()
    assert model.method.prompt.grad is not None and model.method.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gpt2", "t5"])
def test_generate_first_token_is_the_argmax_of_forward(arch):
    model, tok = pt_model(arch)
    inputs = [tok.input_ids(t) for t in TEXTS]
    generated = model.generate(pad_batch(inputs, [[] for _ in inputs], [0, 0, 0], tok.pad_id), max_new_tokens=3)
    first = model(pad_batch(inputs, [[5]] * 3, [0, 0, 0], tok.pad_id)).logits[:, 0].argmax(-1).tolist()
    for row, tokens in enumerate(generated):
        if tokens:  # an immediate EOS yields an empty row
            assert tokens[0] == first[row]
        else:
            assert first[row] == tok.tokenizer.eos_token_id


def test_prompt_stays_fp32_under_bf16_autocast():
    model, tok = pt_model("llama")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = task_loss(model(encode(tok)))
    loss.backward()
    assert model.method.prompt.dtype == torch.float32
    assert model.method.prompt.grad.dtype == torch.float32
