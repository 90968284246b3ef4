"""PEFT prompt-tuning export/import: PEFT loads mtpt's adapter and reproduces mtpt's logits."""

from __future__ import annotations

import json

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftModel

from helpers import TEXTS, pt_model, toy_task
from mtpt.backbones import load_backbone, local_reference
from mtpt.batching import pad_batch
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
from mtpt.errors import MtptError
from mtpt.peft_io import export_peft_prompt, import_peft_prompt
from mtpt.runs import export_run, load_run
from mtpt.testing import tiny_backbone
from mtpt.runner import train


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


def test_autopeft_loads_an_export_whose_base_is_a_local_folder(tmp_path):
    """`AutoPeftModelForCausalLM.from_pretrained(EXPORT)` finds the base model by the path the export names: a
    run on a local model folder (here a tiny model saved with save_pretrained) names that folder, absolute."""
    tiny = tiny_backbone("llama")
    tiny.model.save_pretrained(tmp_path / "base")
    tiny.tokenizer.save_pretrained(tmp_path / "base")
    toy_task()
    train(RunConfig(backbone=str(tmp_path / "base"), tasks=["toy-sentiment"], method={"name": "pt", "prompt_length": 4},
                    data=DataConfig(), train=TrainConfig(steps=2, batch_size=4, eval_every=2, precision="no"),
                    eval=EvalConfig(final_splits=["validation"]), output_dir=str(tmp_path / "run")))
    out = export_run(tmp_path / "run", tmp_path / "export")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        (tmp_path / "base").resolve())
    parts = load_run(tmp_path / "run", backbone=load_backbone(str(tmp_path / "base")))
    ids = parts.tokenizer.input_ids(TEXTS[2])
    mtpt_logits = parts.model(pad_batch([ids[:-1]], [ids[-1:]], [0], parts.tokenizer.pad_id)).logits[0, 0]
    peft_model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    with torch.no_grad():
        peft_logits = peft_model(input_ids=torch.tensor([ids[:-1]])).logits[0, -1]
    torch.testing.assert_close(mtpt_logits, peft_logits, atol=1e-5, rtol=1e-4)


def test_an_alias_is_exported_as_its_converted_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MTPT_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "backbones" / "smollm2-135m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # an already converted alias
    assert local_reference("smollm2-135m") == str(folder.resolve())
    assert local_reference("tiny-llama") == "tiny-llama"  # no folder: the name is all there is
    assert local_reference("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a hub id stays one
