"""TA-LoRA's zero-initialised gated attention (METHODS.md §7 (a), the LLaMA-Adapter form), through transformers'
attention interface: no modeling file is vendored or patched.

Each chosen layer ``l`` computes, for the per-example task block ``Delta P [B, L, d]``:

    K_D = k_norm(k_proj(Delta P)),  V_D = v_proj(Delta P)          (the layer's frozen projections, no rotary)
    out_l = Attn(Q, K, V) + tanh(g^l) * softmax(Q K_D^T * scaling) V_D   (its own softmax; GQA: K_D, V_D repeated)

``Attn(Q, K, V)`` is the stock implementation the model had (``sdpa`` or ``eager``), called unchanged, so with
``g = 0`` the output is exactly the model's. ``k_norm`` is applied where the layer has one (Gemma 3) and
``scaling`` is the layer's own (Gemma 3's ``query_pre_attn_scalar``). Checked against transformers 5.23: Llama,
Qwen2 and Gemma 3 call the interface as ``fn(module, query, key, value, attention_mask, scaling=..., ...)`` with
query/key/value in ``[B, H, T, D]`` (rotary already applied) and expect ``([B, T, H, D], weights)`` back, which
the module then reshapes and sends through ``o_proj``.

Mechanics: one function per base implementation is registered with ``AttentionInterface`` (and the base's mask
builder with ``AttentionMaskInterface``, because masks are built per implementation name and an unknown name gets
no mask at all); ``model.set_attn_implementation`` selects it on attach and restores the base on detach. Attention
modules are bound to their hook in a weak table, so layers that are not chosen (and other models) run the base
implementation untouched.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from mtpt.errors import MtptError

SUPPORTED_MODEL_TYPES = {"llama": "Llama / SmolLM2", "qwen2": "Qwen2", "gemma3_text": "Gemma 3"}
"""model_type -> family, the architectures whose attention layout was checked (see the module docstring)."""
BASE_IMPLEMENTATIONS = ("sdpa", "eager")
_NAME_PREFIX = "mtpt_ta_lora_"

__all__ = ["BASE_IMPLEMENTATIONS", "GatedDeltaAttention", "SUPPORTED_MODEL_TYPES", "attention_layers",
           "delta_attention", "select_layers"]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a supported decoder, in layer order; a clear error for other architectures."""
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in SUPPORTED_MODEL_TYPES:
        families = ", ".join(SUPPORTED_MODEL_TYPES.values())
        raise MtptError(
            f"TA-LoRA's gated_attention injection does not support {type(model).__name__} (model_type "
            f"{model_type!r}); it supports {families}. Use method.injection: additive, which works with every "
            "backbone (T5 and GPT-2 included)."
        )
    layers = [m for m in model.modules() if all(hasattr(m, a) for a in ("layer_idx", "k_proj", "v_proj", "head_dim"))]
    layers.sort(key=lambda m: m.layer_idx)
    if not layers or [m.layer_idx for m in layers] != list(range(len(layers))):
        raise MtptError(f"Could not find one attention module per layer in {type(model).__name__}.")
    return layers


def select_layers(spec: str | Sequence[int], num_layers: int) -> list[int]:
    """Layer indices from ``'all'``, ``'top:<k>'`` (the k layers nearest the output) or a list of indices."""
    if isinstance(spec, str):
        if spec == "all":
            return list(range(num_layers))
        if spec.startswith("top:") and spec[4:].isdigit() and 1 <= int(spec[4:]) <= num_layers:
            return list(range(num_layers - int(spec[4:]), num_layers))
        raise MtptError(f"method.layers must be 'all', 'top:<k>' with 1 <= k <= {num_layers}, or a list of layer "
                        f"indices; got {spec!r}.")
    chosen = [int(i) for i in spec]
    if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= i < num_layers for i in chosen):
        raise MtptError(f"method.layers must list distinct layer indices in [0, {num_layers}), got {list(spec)}.")
    return sorted(chosen)


def delta_attention(module: nn.Module, query: Tensor, delta: Tensor, scaling: float, gate: Tensor,
                    softcap: float | None = None) -> Tensor:
    """``tanh(g) * softmax(Q K_D^T * scaling) V_D`` over the task block, returned as ``[B, T, H, D]``.

    query ``[B, H, T, D]`` (already rotated); delta ``[B, L, d]``; gate: the raw ``g`` of this layer (``[1]`` or one
    per query head). The block gets no rotary embedding (as LLaMA-Adapter's adaption prompts) and no mask: every
    query, prompt and text alike, sees the whole block. The gate scales the block's values (``[B, H, L, D]``, L
    rows) rather than the output (``[B, T, H, D]``): the same product, but one full-size multiply less forward and
    backward, and no full-size tensor kept for the gate's gradient.
    """
    batch, length, _ = delta.shape
    x = delta.to(module.k_proj.weight.dtype)
    keys = module.k_proj(x).view(batch, length, -1, module.head_dim).transpose(1, 2)
    values = module.v_proj(x).view(batch, length, -1, module.head_dim).transpose(1, 2)
    k_norm = getattr(module, "k_norm", None)
    if k_norm is not None:  # Gemma 3 normalises keys per head before attention; the block's keys must match
        keys = k_norm(keys)
    if query.shape[1] % keys.shape[1]:
        raise MtptError(f"{query.shape[1]} query heads are not a multiple of {keys.shape[1]} key/value heads.")
    repeats = query.shape[1] // keys.shape[1]  # grouped-query attention: share each kv head across its group
    keys, values = repeat_kv(keys, repeats).to(query.dtype), repeat_kv(values, repeats).to(query.dtype)
    values = values * torch.tanh(gate).to(query.dtype).view(1, -1, 1, 1)
    if softcap is None and not _slow_fused_backward(query):
        # The fused kernel keeps no [B, H, T, L] score/probability tensors for backward (measured on SmolLM2,
        # fp32: the explicit form below, with the gate on the output, made a gated step 1.14x a PT step).
        return F.scaled_dot_product_attention(query, keys, values, scale=scaling).transpose(1, 2)
    scores = torch.matmul(query, keys.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap  # attention soft-capping has no fused kernel
    probs = torch.softmax(scores.float(), dim=-1).to(values.dtype)
    return torch.matmul(probs, values).transpose(1, 2)


def _slow_fused_backward(query: Tensor) -> bool:
    """Whether the fused attention kernel's backward is the slow choice for the task block: on the CPU in bf16 /
    fp16 it is (measured on a Xeon with AMX, SmolLM2 shapes: 10.4 ms per layer against 2.6 ms in fp32, a gated
    step 1.31x a PT step), while the two small matmuls of the explicit form run on the bf16 units; the block is
    L keys long, so the probabilities the explicit form keeps for backward are small."""
    if query.device.type != "cpu":
        return False
    low = (torch.bfloat16, torch.float16)
    # under autocast the kernel runs in the autocast dtype whatever the query's dtype
    return query.dtype in low or (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in low)


@dataclass(eq=False)
class _Binding:
    hook: "GatedDeltaAttention"
    slot: int
    """Row of the gate tensor that belongs to this layer."""


_BINDINGS: "weakref.WeakKeyDictionary[nn.Module, _Binding]" = weakref.WeakKeyDictionary()


def _base_function(module: nn.Module, base: str) -> Callable[..., Any]:
    if base == "eager":
        # Each modeling file has its own eager function (Gemma's knows softcap): take the module's own.
        own = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if own is None:
            raise MtptError(f"{type(module).__name__} has no eager attention function to wrap.")
        return own
    return ALL_ATTENTION_FUNCTIONS[base]


def _make_interface(base: str) -> Callable[..., Any]:
    def gated_attention(module, query, key, value, attention_mask, **kwargs):
        out, weights = _base_function(module, base)(module, query, key, value, attention_mask, **kwargs)
        binding = _BINDINGS.get(module)
        if binding is None:
            return out, weights
        return binding.hook.add_gated(module, binding.slot, query, out, kwargs), weights

    gated_attention.__name__ = f"gated_attention_over_{base}"
    return gated_attention


def _register(base: str) -> str:
    """Register the gated function over ``base`` (idempotent) and return its implementation name."""
    name = _NAME_PREFIX + base
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _make_interface(base))
        # Masks are built per implementation name; ours are the base's, so the base part sees exactly its masks.
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


class GatedDeltaAttention:
    """Adds the gated task-block attention to chosen layers of one model.

    ``delta()`` returns the current batch's ``[B, L, d]`` block (the method stores it in its forward, which the
    wrapper runs before the backbone); ``gate(slot)`` returns the raw gate values ``g`` of one layer (``[1]`` or
    ``[H]``), passed through tanh here.
    """

    def __init__(self, delta: Callable[[], Tensor | None], gate: Callable[[int], Tensor]):
        self._delta = delta
        self._gate = gate
        self._model: nn.Module | None = None
        self._base: str | None = None
        self.skip_block = False
        """Timing switch: each hooked layer returns its base attention's output (see TaLora.skip_task_block)."""

    @property
    def attached(self) -> bool:
        return self._model is not None

    def attach(self, model: nn.Module, layer_indices: Sequence[int]) -> None:
        if self._model is not None:
            raise MtptError("This TA-LoRA module is already attached to a backbone; detach it first.")
        layers = attention_layers(model)
        if any(layer in _BINDINGS for layer in layers) or model.config._attn_implementation.startswith(_NAME_PREFIX):
            raise MtptError("This backbone already carries a TA-LoRA gated attention: detach the other method first.")
        base = model.config._attn_implementation
        if base not in BASE_IMPLEMENTATIONS:
            raise MtptError(
                f"TA-LoRA's gated_attention wraps the {' or '.join(BASE_IMPLEMENTATIONS)} attention implementation; "
                f"this backbone uses {base!r}. Load it with attn_implementation='sdpa'."
            )
        name = _register(base)
        for slot, index in enumerate(layer_indices):
            _BINDINGS[layers[index]] = _Binding(self, slot)
        model.set_attn_implementation(name)
        if model.config._attn_implementation != name:
            self._unbind(layers)
            raise MtptError(f"{type(model).__name__} refused a custom attention implementation.")
        self._model, self._base = model, base

    def detach(self, model: nn.Module) -> None:
        """Restore the model's own attention implementation and drop the bindings."""
        if self._model is None:
            return
        if model is not self._model:
            raise MtptError("detach() got another backbone than the one this TA-LoRA module is attached to.")
        model.set_attn_implementation(self._base)
        self._unbind(attention_layers(model))
        self._model, self._base = None, None

    def _unbind(self, layers: Sequence[nn.Module]) -> None:
        for layer in layers:
            binding = _BINDINGS.get(layer)
            if binding is not None and binding.hook is self:
                del _BINDINGS[layer]

    def add_gated(self, module: nn.Module, slot: int, query: Tensor, out: Tensor, kwargs: dict[str, Any]) -> Tensor:
        """``out + delta_attention(...)`` (gated by this layer's ``tanh(g)``); out is the base attention's
        ``[B, T, H, D]``."""
        if self.skip_block:
            return out
        delta = self._delta()
        if delta is None:
            raise MtptError("TA-LoRA's gated attention ran before the method produced its task block: run the "
                            "backbone through SoftPromptModel (the method's forward comes first).")
        if delta.shape[0] != query.shape[0]:
            raise MtptError(f"TA-LoRA's task block is for {delta.shape[0]} examples, the attention sees "
                            f"{query.shape[0]} (beam search and num_return_sequences > 1 are not supported).")
        scaling = kwargs.get("scaling")
        extra = delta_attention(module, query, delta, module.scaling if scaling is None else scaling,
                                self._gate(slot), kwargs.get("softcap"))
        return out + extra.to(out.dtype)
