"""ATTEMPT attention (METHODS.md §3)."""

from __future__ import annotations

import math

import pytest
import torch

from mtpt.methods.attempt.attention import (
    AttemptAttention,
    attention_weights,
    default_temperature,
    max_pool_tokens,
    mix_prompts,
)


def test_max_pool_is_a_max_not_a_mean():
    x = torch.tensor([[[1.0, -5.0], [3.0, -1.0], [2.0, -2.0]]])
    torch.testing.assert_close(max_pool_tokens(x), torch.tensor([[3.0, -1.0]]))


def test_max_pool_ignores_padding():
    # The padded position holds the largest values; with the mask it must be ignored, even for negative rows.
    x = torch.tensor([[[-3.0, -4.0], [-1.0, -2.0], [9.0, 9.0]], [[0.0, 1.0], [5.0, 5.0], [7.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(max_pool_tokens(x, mask), torch.tensor([[-1.0, -2.0], [0.0, 1.0]]))
    torch.testing.assert_close(max_pool_tokens(x, mask.bool()), torch.tensor([[-1.0, -2.0], [0.0, 1.0]]))
    # Left padding works the same way.
    left_padded = torch.tensor([[0, 1, 1], [0, 0, 1]])
    torch.testing.assert_close(max_pool_tokens(x, left_padded), torch.tensor([[9.0, 9.0], [7.0, 7.0]]))


def test_max_pool_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least one real"):
        max_pool_tokens(torch.zeros(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="mask"):
        max_pool_tokens(torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\[B, T, d\]"):
        max_pool_tokens(torch.zeros(3, 4))


def test_attention_weights_hand_case():
    # H = [1, 0]; keys [2, 0] and [0, 5]; T = 2 -> scores [1, 0] -> softmax [e/(e+1), 1/(e+1)].
    weights = attention_weights(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 5.0]]), 2.0)
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([[e / (e + 1), 1 / (e + 1)]]))


def test_attention_weights_sum_to_one_and_temperature_flattens():
    gen = torch.Generator().manual_seed(0)
    hidden, keys = torch.randn(4, 8, generator=gen), torch.randn(5, 8, generator=gen)
    sharp = attention_weights(hidden, keys, 0.1)
    flat = attention_weights(hidden, keys, 1e4)
    torch.testing.assert_close(sharp.sum(dim=-1), torch.ones(4))
    torch.testing.assert_close(flat.sum(dim=-1), torch.ones(4))
    assert torch.all(sharp.max(dim=-1).values > flat.max(dim=-1).values)
    torch.testing.assert_close(flat, torch.full((4, 5), 0.2), atol=1e-3, rtol=0)  # T -> inf: uniform
    assert torch.equal(sharp.argmax(dim=-1), (hidden @ keys.T).argmax(dim=-1))  # order does not depend on T


def test_attention_weights_validation():
    with pytest.raises(ValueError, match="temperature"):
        attention_weights(torch.zeros(1, 2), torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="prompt_keys"):
        attention_weights(torch.zeros(1, 2), torch.zeros(3, 4), 1.0)
    with pytest.raises(ValueError, match="candidate"):
        attention_weights(torch.zeros(1, 2), torch.zeros(0, 2), 1.0)


def test_mix_prompts_hand_case():
    prompts = torch.stack([torch.ones(2, 3), 3 * torch.ones(2, 3)])
    weights = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    mixed = mix_prompts(weights, prompts)
    assert mixed.shape == (2, 2, 3)
    torch.testing.assert_close(mixed[0], torch.full((2, 3), 2.5))
    torch.testing.assert_close(mixed[1], torch.ones(2, 3))
    with pytest.raises(ValueError):
        mix_prompts(torch.ones(2, 3), prompts)


def test_default_temperature_is_d_times_e():
    assert default_temperature(768) == pytest.approx(2087.6, abs=0.1)
    assert AttemptAttention(16, r=4).temperature == pytest.approx(16 * math.e)
    assert AttemptAttention(16, r=4, temperature=3.0).temperature == 3.0
    with pytest.raises(ValueError):
        AttemptAttention(16, r=4, temperature=-1.0)


def _module_inputs(batch=3, tokens=5, d=8, candidates=4, length=2):
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(batch, tokens, d, generator=gen)
    mask = torch.ones(batch, tokens, dtype=torch.long)
    mask[0, 3:] = 0
    prompts = torch.randn(candidates, length, d, generator=gen)
    return embeds, mask, prompts


def test_module_shapes_and_normalisation():
    torch.manual_seed(0)
    module = AttemptAttention(8, r=4, temperature=1.0)
    embeds, mask, prompts = _module_inputs()
    weights, mixed = module(embeds, mask, prompts)
    assert weights.shape == (3, 4) and mixed.shape == (3, 2, 8)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3))
    torch.testing.assert_close(mixed, mix_prompts(weights, prompts))
    assert module.down.bias is None and module.up.bias is None  # ATTEMPT's projections have no bias


def test_module_matches_the_formula_and_ignores_padding():
    torch.manual_seed(0)
    module = AttemptAttention(8, r=4, temperature=2.0)
    embeds, mask, prompts = _module_inputs()
    weights, _ = module(embeds, mask, prompts)
    pooled = torch.stack([embeds[0, :3].max(dim=0).values, embeds[1].max(dim=0).values, embeds[2].max(dim=0).values])
    hidden = module.norm(module.up(torch.nn.functional.silu(module.down(pooled))))
    expected = torch.softmax(hidden @ prompts.max(dim=1).values.T / 2.0, dim=-1)
    torch.testing.assert_close(weights, expected)
    changed = embeds.clone()
    changed[0, 3:] = 100.0  # padding content must not matter
    torch.testing.assert_close(module(changed, mask, prompts)[0], weights)


def test_gradients_reach_every_trainable_part():
    torch.manual_seed(0)
    module = AttemptAttention(8, r=4, temperature=1.0)
    embeds, mask, prompts = _module_inputs()
    target_prompt = prompts[-1].clone().requires_grad_()
    candidates = torch.cat([prompts[:-1], target_prompt[None]])  # target prompt is the last candidate
    _, mixed = module(embeds, mask, candidates)
    final = mixed + target_prompt  # the caller adds P_t
    (final * torch.randn_like(final)).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert target_prompt.grad is not None and target_prompt.grad.abs().sum() > 0


def test_module_validates_shapes():
    module = AttemptAttention(8, r=4)
    embeds, mask, prompts = _module_inputs()
    with pytest.raises(ValueError, match="candidate_prompts"):
        module(embeds, mask, prompts[..., :4])
    with pytest.raises(ValueError, match="input_embeds"):
        module(embeds[..., :4], mask, prompts)
