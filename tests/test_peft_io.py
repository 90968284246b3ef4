"""PEFT prompt-tuning export/import: PEFT loads mtpt's adapter and reproduces mtpt's logits."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from helpers import TEXTS, pt_model
from mtpt.batching import pad_batch
from mtpt.errors import MtptError
from mtpt.peft_io import export_peft_prompt, import_peft_prompt


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_peft_reproduces_mtpt_logits_on_unpadded_inputs(arch, tmp_path):
    model, tok = pt_model(arch, length=5)
    export_peft_prompt(model.method.prompt, tmp_path / "adapter", model.backbone)
    ids = tok.input_ids(TEXTS[0])
    mtpt_logits = model(pad_batch([ids[:-1]], [ids[-1:]], [0], tok.pad_id)).logits[0, 0]
    peft_model = PeftModel.from_pretrained(model.backbone, str(tmp_path / "adapter"))
    peft_logits = peft_model(input_ids=torch.tensor([ids[:-1]])).logits[0, -1]
    torch.testing.assert_close(mtpt_logits, peft_logits, atol=1e-5, rtol=1e-4)


def test_peft_round_trip_returns_the_same_prompt(tmp_path):
    model, _ = pt_model("t5", length=3)
    export_peft_prompt(model.method.prompt, tmp_path / "a", model.backbone)
    assert torch.equal(import_peft_prompt(tmp_path / "a"), model.method.prompt.detach())


def test_import_refuses_folders_that_are_not_prompt_tuning(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(MtptError, match="LORA"):
        import_peft_prompt(tmp_path)
