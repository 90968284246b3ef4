"""Tests that run on a device: ``$MTPT_TEST_DEVICE`` (``cpu`` by default, so the suite runs them everywhere).

``scripts/gpu-check.sh`` runs ``MTPT_TEST_DEVICE=cuda pytest -m device`` on a GPU machine: the model, a training
step, rank scoring, a short run and the speed benchmark, each checked against the CPU where that is meaningful.
Only tiny random models (no weights travel), and nothing here needs scikit-learn except the short run.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import encode, pt_model, toy_task

pytestmark = pytest.mark.device


def test_forward_on_the_device_matches_the_cpu(device):
    model, tok = pt_model()
    batch = encode(tok)
    model.eval()
    with torch.no_grad():
        expected = model(batch).logits
        model.to(device)
        got = model(batch.to(device)).logits
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_a_training_step_on_the_device_updates_the_prompt(device):
    from mtpt.precision import make_accelerator
    from mtpt.training.step import MicroBatch, TrainingStep

    accelerator = make_accelerator("no")
    if accelerator.device.type != device.type:
        pytest.skip(f"the accelerator runs on {accelerator.device} (it takes the GPU whenever there is one)")
    model, tok = pt_model()
    batch = encode(tok)
    before = model.method.prompt.detach().clone()
    optimizer = torch.optim.AdamW(model.method.parameters(), lr=0.1)
    prepared, optimizer = accelerator.prepare(model, optimizer)
    result = TrainingStep(prepared, optimizer, accelerator, max_grad_norm=1.0).run(
        [MicroBatch(batch, float(batch.target_mask.sum()))], 0)
    after = model.method.prompt.detach()
    assert after.device.type == device.type
    assert torch.isfinite(result.terms["task"]) and not torch.allclose(after.cpu(), before)


def test_rank_scoring_on_the_device_picks_what_the_cpu_picks(device):
    from mtpt.evaluation import rank_choices
    from mtpt.tasks import Example

    model, tok = pt_model()
    choices = (" yes", " no", " maybe so")
    examples = [Example(text, choices[0], choices, 0, 0, "t") for text in
                ("the film was a delight", "dull", "an overlong story", "fine acting, a weak plot")]
    model.eval()
    expected = rank_choices(model, tok, examples, [0] * 4, batch_size=3).values
    model.to(device)
    assert rank_choices(model, tok, examples, [0] * 4, batch_size=3, device=device).values == expected


def test_a_short_run_trains_and_scores_on_the_device(tmp_path, device):
    pytest.importorskip("sklearn")  # the run's metrics
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from mtpt.precision import make_accelerator
    from mtpt.runner import train

    if make_accelerator("no").device.type != device.type:
        pytest.skip("the trainer runs on the GPU whenever there is one")
    toy_task()
    config = RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"], method={"name": "pt", "prompt_length": 4},
                       data=DataConfig(), train=TrainConfig(steps=2, batch_size=4, eval_every=2, precision="no"),
                       eval=EvalConfig(batch_size=8), output_dir=str(tmp_path / "run"))
    result = train(config)
    assert 0.0 <= result.final["test"]["toy-sentiment"]["accuracy"] <= 100.0
    environment = json.loads((tmp_path / "run" / "results.json").read_text())["environment"]
    assert environment["processes"] == 1


def test_the_speed_benchmark_runs_on_the_device(tmp_path, device):
    from mtpt.bench.commands import COMMANDS
    from mtpt.precision import make_accelerator

    if make_accelerator("no").device.type != device.type:
        pytest.skip("the benchmark runs on the GPU whenever there is one")
    out = tmp_path / "speed"
    assert COMMANDS["bench"][1](["speed", "--backbone", "tiny-llama", "--methods", "pt", "--repeats", "1",
                                 "--batch", "2", "--text-tokens", "8", "--prompt-length", "4", "--out", str(out)]) == 0
    row = json.loads((out / "speed.json").read_text())["methods"][0]
    assert row["vs_peft"] > 0 and row["vs_peft_documented"] > 0
    if device.type == "cuda":  # peak memory per arm, reset before each
        for role in ("method", "bare", "peft", "peft_documented"):
            assert row[f"{role}_gpu_memory"]["peak"] > 0
