"""What a run records about transfer before and while it trains: the step-0 score and prompt scale, learning
rates in units of the backbone's embeddings, and whether each library source learned its task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import toy_task
from torch import nn

from mtpt.backbones import embedding_rms
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
from mtpt.metrics import best_constant_score
from mtpt.runner import train
from mtpt.testing import tiny_backbone
from mtpt.training.loop import optimizer_groups


def run_config(tmp_path, steps=4, method=None, **train) -> RunConfig:
    toy_task("protocol-toy", n_train=12, n_eval=8)
    return RunConfig(backbone="tiny-llama", tasks=["protocol-toy"], method=method or {"name": "pt", "prompt_length": 4},
                     data=DataConfig(),
                     train=TrainConfig(**{"steps": steps, "batch_size": 4, "lr": 0.1, "eval_every": 2, **train}),
                     eval=EvalConfig(batch_size=8, final_splits=["test"]), output_dir=str(tmp_path / "run"))


def validation_lines(run) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("split") == "validation"]


# --- step 0 -------------------------------------------------------------------------------------------------------
def test_every_run_logs_its_initial_prompts_score_and_scale_as_step_0(tmp_path):
    result = train(run_config(tmp_path))
    lines = validation_lines(result.run_dir)
    assert [line["step"] for line in lines] == [0, 2, 4]
    start = lines[0]
    assert math.isfinite(start["score"]) and set(start["tasks"]) == {"protocol-toy"}
    scale = start["prompt_scale"]
    backbone = tiny_backbone("llama")
    assert scale["embedding_rms"] == pytest.approx(embedding_rms(backbone))
    # PT's sample_vocab init is made of embedding rows: its scale is about one embedding's
    assert 0.5 < scale["prompt"]["protocol-toy"]["rms"] < 2.0
    assert result.best_step != 0  # logged, not a candidate


def test_step_0_can_be_switched_off_or_made_a_candidate(tmp_path):
    off = train(run_config(tmp_path / "off", eval_at_start=False))
    assert [line["step"] for line in validation_lines(off.run_dir)] == [2, 4]
    # with a rate too small to change any score, no step beats the untrained prompt: step 0 stays the best
    kept = train(run_config(tmp_path / "kept", lr=1e-12, step0_candidate=True))
    assert kept.best_step == 0 and (kept.run_dir / "checkpoints" / "best").is_dir()
    assert "prompt_scale" in validation_lines(kept.run_dir)[0]


def test_prompt_parts_are_measured_for_methods_that_name_them(tmp_path):
    backbone = tiny_backbone("llama")
    source = train(run_config(tmp_path / "source", steps=2, method={"name": "ta_lora", "prompt_length": 4, "rank": 2,
                                                                   "injection": "additive"}), backbone=backbone)
    line = validation_lines(source.run_dir)[0]
    assert set(line["prompt_scale"]["parts"]) == {"theta0", "task_block/0"}


# --- learning rates in embedding units -----------------------------------------------------------------------------
def test_optimizer_groups_scale_each_rate_by_the_embedding_rms_to_the_groups_power():
    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.prompt, self.gate, self.factor = (nn.Parameter(torch.zeros(2)) for _ in range(3))

        def param_groups(self, base_lr):
            return [{"name": "prompt", "params": [self.prompt]},
                    {"name": "gate", "params": [self.gate], "lr": 0.5, "embedding_power": 0.0},
                    {"name": "factor", "params": [self.factor], "embedding_power": 1 / 3}]

    groups = {g["name"]: g for g in optimizer_groups(Three(), 0.1, 0.0, unit=8.0)}
    assert groups["prompt"]["lr"] == pytest.approx(0.8)
    assert groups["gate"]["lr"] == pytest.approx(0.5)
    assert groups["factor"]["lr"] == pytest.approx(0.2)
    assert all("embedding_power" not in g for g in groups.values())
    unchanged = {g["name"]: g["lr"] for g in optimizer_groups(Three(), 0.1, 0.0)}
    assert unchanged == {"prompt": 0.1, "gate": 0.5, "factor": 0.1}


def test_a_run_in_embedding_units_records_the_scaled_rate(tmp_path):
    result = train(run_config(tmp_path, steps=2, lr_units="embedding_rms"))
    groups = json.loads((result.run_dir / "param_groups.json").read_text())
    assert groups[0]["lr"] == pytest.approx(0.1 * embedding_rms(tiny_backbone("llama")))


# --- sources that learned --------------------------------------------------------------------------------------------
def test_the_best_constant_answer_is_not_always_the_majority_class():
    labels = [0, 0, 0, 1]
    assert best_constant_score(["accuracy"], labels, 2) == pytest.approx(75.0)
    # macro F1: always 0 gives (0.857 + 0) / 2, always 1 gives (0 + 0.4) / 2
    assert best_constant_score(["macro_f1"], labels, 2) == pytest.approx(100 * 6 / 7 / 2)
    # F1 of the positive class (MRPC, QQP): the majority answer (0) scores 0, always answering 1 scores 40
    assert best_constant_score(["f1"], labels, 2) == pytest.approx(40.0)


def test_the_source_stage_records_whether_each_source_learned(tmp_path, capsys):
    from mtpt.cli import main
    from mtpt.library.format import SourceLibrary
    from mtpt.library.source_stage import SourceStageConfig, train_sources

    toy_task("protocol-toy", n_train=12, n_eval=8)
    config = SourceStageConfig(backbone="tiny-llama", sources=["protocol-toy"], library=str(tmp_path / "lib"),
                               prompt_length=4, learned_margin=0.0,
                               train=TrainConfig(steps=2, batch_size=4, eval_every=2, lr=1e-9),
                               eval=EvalConfig(batch_size=8, final_splits=["validation"]))
    train_sources(config, backbone=tiny_backbone("llama"))
    entry = SourceLibrary.open(tmp_path / "lib").entry("protocol-toy")
    assert entry.constant_score == pytest.approx(50.0)  # the toy validation set is balanced
    assert entry.learned == (entry.best_metric >= entry.constant_score)
    assert main(["library", str(tmp_path / "lib")]) == 0
    assert "constant answer 50.00" in capsys.readouterr().out


def test_transfer_methods_warn_about_unlearned_sources_and_can_leave_them_out(tmp_path):
    from mtpt.library.access import UnlearnedSourceWarning, learned_sources
    from mtpt.library.format import LibraryEntry, SourceLibrary

    backbone = tiny_backbone("llama")
    library = SourceLibrary.create(tmp_path / "lib", backbone=backbone.name, weights_hash=backbone.weights_hash,
                                   init_prompt=torch.zeros(2, backbone.hidden_size))
    for name, learned in (("good", True), ("stuck", False), ("old", None)):
        entry = LibraryEntry(task=name, seed=0, path=f"{name}/seed-0", best_metric=60.0, learned=learned)
        library.add_entry(entry, torch.zeros(2, backbone.hidden_size), {})
    library = SourceLibrary.open(tmp_path / "lib")
    # entries recorded before the gate (learned None) count as learned
    with pytest.warns(UnlearnedSourceWarning, match="stuck"):
        assert learned_sources(library, ["good", "stuck", "old"], None, skip=False) == ["good", "stuck", "old"]
    with pytest.warns(UnlearnedSourceWarning, match="left out"):
        assert learned_sources(library, ["good", "stuck", "old"], None, skip=True) == ["good", "old"]
    with pytest.raises(Exception, match="did not learn"), pytest.warns(UnlearnedSourceWarning):
        learned_sources(library, ["stuck"], None, skip=True)


def test_the_step_0_check_compares_each_transfer_method_with_the_baseline_per_seed(tmp_path, capsys):
    """benchmarks/step0_check.py (issue 29's reading): per-seed step-0 scores from the cells' metrics.jsonl."""
    import importlib.util

    import yaml

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step0_check.py"
    spec = importlib.util.spec_from_file_location("step0_check", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    out = tmp_path / "bench"
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({"out": str(out), "targets": ["cr"], "seeds": [13, 21, 42], "methods": {
        "p_init": {"name": "pt"}, "pt": {"name": "pt"}, "spot": {"name": "spot"}, "mpt": {"name": "mpt"}}}))

    def cell(label, seed, score):
        folder = out / "cells" / label / "cr" / f"seed-{seed}"
        folder.mkdir(parents=True)
        lines = [{"step": 0, "split": "validation", "score": score,
                  "prompt_scale": {"prompt": {"cr": {"rms": 0.5}}}}, {"step": 10, "loss": 0.3}]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    for seed, bar, spot, mpt in [(13, 60.0, 70.0, 60.0), (21, 55.0, 50.0, 50.0), (42, 58.0, 62.5, 61.0)]:
        cell("p_init", seed, bar)
        cell("spot", seed, spot)
        cell("mpt", seed, mpt)
    assert check.main([str(config)]) == 1  # mpt: equal on 13, below on 21: 1 of 3 (pt is not checked)
    text = capsys.readouterr()
    assert "| spot | cr | 13: 70.0 (60.0), 21: 50.0 (55.0), 42: 62.5 (58.0) | 2/3 | 0.5 |" in text.out
    assert "| mpt | cr |" in text.out and "| pt |" not in text.out
    assert "not above p_init at step 0 on 2 seeds: mpt on cr (1 of 3 seeds)" in text.err
    assert check.main([str(config), "--methods", "spot"]) == 0
    assert "every checked method starts above p_init" in capsys.readouterr().out
    (out / "cells" / "spot" / "cr" / "seed-42" / "metrics.jsonl").write_text('{"step": 10, "loss": 0.3}\n')
    assert check.main([str(config), "--methods", "spot"]) == 1
    assert "no step-0 line (cell missing or unfinished): spot cr seed 42" in capsys.readouterr().err
