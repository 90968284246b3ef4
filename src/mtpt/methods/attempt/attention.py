"""ATTEMPT's input-dependent prompt attention (METHODS.md §3).

Per example: ``x^ = max-pool_tokens(input embeddings)``; ``H = LayerNorm(W_up SiLU(W_down x^))``; each candidate
prompt ``P_j`` (frozen sources, then the target prompt last) is summarised by ``P^_j = max-pool_tokens(P_j)``;
``a_j = softmax_j(P^_j . H / T)`` with ``T = d * e``; the mixture ``sum_j a_j P_j`` is returned, and **the caller
adds the target prompt**: final prompt = ``mixed + P_t`` (per example).

The pure functions below do the tensor work; :class:`AttemptAttention` holds the trainable projections.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AttemptAttention", "attention_weights", "default_temperature", "max_pool_tokens", "mix_prompts"]


def default_temperature(d: int) -> float:
    """ATTEMPT's softmax temperature ``T = d * e`` (2087.6 for d = 768): keeps the dot products of
    d-dimensional vectors in a range where the softmax is not saturated at initialisation."""
    return d * math.e


def max_pool_tokens(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Max over the token axis, ignoring padded positions.

    Args:
        x: ``[B, T, d]``.
        mask: ``[B, T]`` (1/True = real token, 0/False = padding) or ``None`` (all real).

    Returns:
        ``[B, d]``. Raises ``ValueError`` if a row has no real token (the max would be undefined).
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, T, d], got shape {tuple(x.shape)}")
    if mask is None:
        return x.amax(dim=1)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    real = mask.bool()
    if not bool(real.any(dim=1).all()):
        raise ValueError("every row of mask needs at least one real (non-padding) token")
    # -inf at padding so a pad can never be the maximum, whatever the sign of the real values.
    return x.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(dim=1)


def attention_weights(query_hidden: Tensor, prompt_keys: Tensor, temperature: float) -> Tensor:
    """``softmax_j(prompt_keys[j] . query_hidden / temperature)``.

    Args:
        query_hidden: ``[B, d]`` the projected input ``H``.
        prompt_keys: ``[C, d]`` the max-pooled candidate prompts ``P^_j``.
        temperature: ``T > 0``.

    Returns:
        ``[B, C]``; every row sums to 1.
    """
    if query_hidden.dim() != 2 or prompt_keys.dim() != 2 or query_hidden.shape[1] != prompt_keys.shape[1]:
        raise ValueError(
            f"expected query_hidden [B, d] and prompt_keys [C, d], got {tuple(query_hidden.shape)} "
            f"and {tuple(prompt_keys.shape)}"
        )
    if prompt_keys.shape[0] == 0:
        raise ValueError("need at least one candidate prompt")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    scores = query_hidden @ prompt_keys.transpose(0, 1) / temperature
    return scores.softmax(dim=-1)


def mix_prompts(weights: Tensor, prompts: Tensor) -> Tensor:
    """Per-example weighted sum of candidate prompts: ``[B, C] x [C, L, d] -> [B, L, d]``."""
    if weights.dim() != 2 or prompts.dim() != 3 or weights.shape[1] != prompts.shape[0]:
        raise ValueError(
            f"expected weights [B, C] and prompts [C, L, d], got {tuple(weights.shape)} and {tuple(prompts.shape)}"
        )
    return torch.einsum("bc,cld->bld", weights, prompts)


class AttemptAttention(nn.Module):
    """The trainable part of ATTEMPT's attention: ``W_down`` (d -> r), SiLU, ``W_up`` (r -> d), LayerNorm(d).

    The projections have no bias, as in the ATTEMPT code (``bias=True`` is available). The module computes in
    its parameters' dtype: the pooled input is cast to it, the prompt keys are cast to it, and the mixture is
    returned in the candidate prompts' dtype.

    Args:
        d: hidden size of the backbone.
        r: bottleneck size (ATTEMPT: 100).
        temperature: softmax temperature; ``None`` = ``d * e`` (:func:`default_temperature`).
        bias: whether the two projections have a bias.
    """

    def __init__(self, d: int, r: int = 100, temperature: float | None = None, bias: bool = False):
        super().__init__()
        if d < 1 or r < 1:
            raise ValueError(f"d and r must be >= 1, got d={d}, r={r}")
        self.d, self.r = d, r
        self.temperature = default_temperature(d) if temperature is None else float(temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        self.down = nn.Linear(d, r, bias=bias)
        self.activation = nn.SiLU()
        self.up = nn.Linear(r, d, bias=bias)
        self.norm = nn.LayerNorm(d)

    def project(self, pooled_input: Tensor) -> Tensor:
        """``H = LayerNorm(W_up SiLU(W_down x^))``: ``[B, d] -> [B, d]``."""
        pooled_input = pooled_input.to(self.down.weight.dtype)
        return self.norm(self.up(self.activation(self.down(pooled_input))))

    def forward(self, input_embeds: Tensor, mask: Tensor | None, candidate_prompts: Tensor) -> tuple[Tensor, Tensor]:
        """Attention over the candidates for each example.

        Args:
            input_embeds: ``[B, T, d]`` input embeddings (without any prompt).
            mask: ``[B, T]`` attention mask (1 = token, 0 = padding) or ``None``.
            candidate_prompts: ``[C, L, d]``: the frozen source prompts followed by the target prompt **last**.

        Returns:
            ``(weights [B, C], mixed [B, L, d])``. The prompt fed to the backbone is ``mixed + P_t``; adding
            ``P_t`` is the caller's job (it owns the target prompt, possibly one per task id).
        """
        if candidate_prompts.dim() != 3 or candidate_prompts.shape[-1] != self.d:
            raise ValueError(f"candidate_prompts must be [C, L, {self.d}], got {tuple(candidate_prompts.shape)}")
        if input_embeds.dim() != 3 or input_embeds.shape[-1] != self.d:
            raise ValueError(f"input_embeds must be [B, T, {self.d}], got {tuple(input_embeds.shape)}")
        hidden = self.project(max_pool_tokens(input_embeds, mask))
        keys = max_pool_tokens(candidate_prompts).to(hidden.dtype)
        weights = attention_weights(hidden, keys, self.temperature)
        return weights, mix_prompts(weights.to(candidate_prompts.dtype), candidate_prompts)
