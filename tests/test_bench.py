"""Smoke tests of ``mtpt bench``: both benchmarks on the tiny random backbone, in seconds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers import toy_task

from mtpt.bench.commands import COMMANDS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench(*argv: str) -> int:
    return COMMANDS["bench"][1](list(argv))


def test_bench_without_subcommand_prints_usage(capsys):
    assert bench("--help") == 0
    assert "speed" in capsys.readouterr().out
    assert bench("nope") == 2


def test_speed_smoke(tmp_path):
    out = tmp_path / "speed"
    assert bench("speed", "--backbone", "tiny-llama", "--repeats", "2", "--batch", "4", "--text-tokens", "16",
                 "--prompt-length", "4", "--out", str(out)) == 0
    report = json.loads((out / "speed.json").read_text())
    rows = {r["method"]: r for r in report["methods"]}
    assert set(rows) == {"pt", "spot", "tpv", "attempt", "mpt", "mpt_distill", "dtvg", "ta_lora", "ta_lora_additive"}
    for row in rows.values():
        assert len(row["method_times_ms"]) == len(row["bare_times_ms"]) == 2
        assert row["vs_bare"] > 0 and row["method_memory"]["total"] > 0
        low, high = row["vs_bare_iqr"]
        assert low <= row["vs_bare"] <= high
    assert rows["attempt"]["vs_peft"] is None  # PEFT has no ATTEMPT
    assert rows["mpt"]["peft"] == "peft-mpt" and rows["pt"]["peft"] == "peft-pt"
    assert rows["mpt"]["inference"]["ratio"] > 0
    # the distillation stage's teacher pass is timed apart and left out of its step time, and only there
    distill = rows["mpt_distill"]
    assert distill["excluded_ms"] > 0 and "excluded_ms" not in rows["mpt"]
    assert distill["with_excluded_vs_bare"] > distill["vs_bare"]
    assert distill["peft"] == "peft-mpt" and "inference" not in distill
    skipped = rows["ta_lora"]["block_skipped"]  # the gated step against itself with the task block skipped
    assert skipped["ms"] > 0 and skipped["layers"] == 2 and len(skipped["times_ms"]) == 2
    assert skipped["block_factor"] > 0 and skipped["vs_bare"] > 0 and skipped["vs_peft"] > 0
    assert "block_skipped" not in rows["ta_lora_additive"]
    grouping = report["extras"]["dtvg"]  # DTVG's own measurement, declared by its speed variant
    assert set(grouping["results"]) == {"6", "26"}
    assert grouping["results"]["6"]["fraction_of_step"] > 0
    table = (out / "speed.md").read_text()
    assert "| dtvg |" in table and "DTVG grouping" in table and "Mixed-task inference" in table
    assert "mpt_distill: method ms leave out the teacher pass" in table
    assert "ta_lora: the same step with the task block skipped in its 2 layers" in table


def synthetic_arms(tmp_path):
    """The speed benchmark's parts on the tiny backbone: settings, synthetic library, an accelerator."""
    from mtpt.backbones import load_backbone
    from mtpt.bench.speed import SpeedSettings, Synthetic
    from mtpt.bench.synthetic import TARGET_FILE, synthetic_library
    from mtpt.precision import make_accelerator

    backbone = load_backbone("tiny-llama")
    settings = SpeedSettings(backbone="tiny-llama", batch=2, text_tokens=8, prompt_length=4)
    library = synthetic_library(tmp_path / "lib", backbone, 4).root
    synthetic = Synthetic(str(library), str(library), str(library / TARGET_FILE))
    return backbone, settings, synthetic, make_accelerator("no")


def test_peft_wrapping_leaves_the_method_output_unchanged(tmp_path):
    """The PEFT arm wraps the shared backbone: the methods measured after it must still compute the same thing."""
    from mtpt.bench.arms import PeftArm
    from mtpt.bench.speed import build_method_arm

    backbone, settings, synthetic, acc = synthetic_arms(tmp_path)
    arm = build_method_arm("pt", backbone, settings, synthetic, acc)
    arm.model.eval()
    with torch.no_grad():
        before = arm.model(arm.batch).logits
    peft = PeftArm("pt", backbone, arm.batch, "no", 4)
    peft.enter()
    peft.step()
    with torch.no_grad():
        after = arm.model(arm.batch).logits
    torch.testing.assert_close(before, after)


def test_method_arm_times_the_trainers_own_step(tmp_path):
    """The speed benchmark's method step is the trainer's TrainingStep: the same update from the same start."""
    from mtpt.bench.arms import LR, MAX_GRAD_NORM
    from mtpt.bench.speed import build_method_arm
    from mtpt.training.loop import optimizer_groups
    from mtpt.training.step import MicroBatch, TrainingStep

    backbone, settings, synthetic, acc = synthetic_arms(tmp_path)
    arm = build_method_arm("pt", backbone, settings, synthetic, acc)
    twin = build_method_arm("pt", backbone, settings, synthetic, acc)
    twin.method.load_state_dict(arm.method.state_dict())
    stepper = TrainingStep(twin.model, torch.optim.AdamW(optimizer_groups(twin.method, LR, 0.0)), acc,
                           max_grad_norm=MAX_GRAD_NORM)
    arm.step()
    stepper.run([MicroBatch(twin.batch, float(twin.batch.target_mask.sum()))], 0)
    torch.testing.assert_close(arm.method.prompt, twin.method.prompt)
    assert not torch.equal(arm.method.prompt, build_method_arm("pt", backbone, settings, synthetic, acc).method.prompt)


def test_block_skipped_arm_runs_the_gated_model_without_its_block_and_restores_it(tmp_path):
    """While entered, the skipped arm computes what the gated model computes with its gates at 0 (the block adds
    nothing); once it exits, the gated arm's block is back."""
    from mtpt.bench.speed import build_method_arm

    backbone, settings, synthetic, acc = synthetic_arms(tmp_path)
    gated = build_method_arm("ta_lora", backbone, settings, synthetic, acc)
    skipped = build_method_arm("ta_lora", backbone, settings, synthetic, acc, skip_task_block=True)
    skipped.method.load_state_dict(gated.method.state_dict())
    assert skipped.method.theta0.requires_grad and not gated.method.theta0.requires_grad

    def logits(arm, gates: float | None = None):
        arm.enter()
        try:
            with torch.no_grad():
                if gates is not None:
                    arm.method.gates.fill_(gates)
                return arm.model.eval()(arm.batch).logits
        finally:
            arm.exit()

    with_block = logits(gated, gates=0.5)
    skipped.method.gates.data.fill_(0.5)
    torch.testing.assert_close(logits(skipped), logits(gated, gates=0.0))
    assert not torch.allclose(logits(skipped), with_block)
    torch.testing.assert_close(logits(gated, gates=0.5), with_block)  # the skip did not leak into the gated arm


@pytest.fixture
def quality_config(tmp_path):
    for name in ("bench-src-a", "bench-src-b", "bench-target"):
        toy_task(name, n_train=16, n_eval=8)
    config = {
        "backbone": "tiny-llama", "out": str(tmp_path / "quality"),
        "library": {"sources": ["bench-src-a", "bench-src-b"], "steps": 1, "eval_every": 1, "max_train_examples": 8},
        "target_stage1": {"steps": 1}, "targets": ["bench-target"], "kshot": 2, "seeds": [1, 2], "steps": 1, "prompt_length": 4,
        "methods": {
            "zero_shot": {"name": "zero_shot"},
            "pt": {"name": "pt"},
            # SPoT's retrieval prompt and DTVG's stage I: one shared run per target and seed
            "spot": {"name": "spot", "mode": "retrieve", "target_prompt": "{target_stage1}"},
            "dtvg": {"name": "dtvg", "target_prompt": "{target_stage1}"},
            "mpt": {"name": "mpt", "stage": "target", "source_stage": {"name": "mpt", "stage": "source"}},
            "ta_lora": {"name": "ta_lora", "stage": "target", "injection": "additive",
                        "source_stage": {"name": "ta_lora", "stage": "source", "injection": "additive"}},
            # the unseen-data protocol: its own targets (a source task), each reusing its own source fast weight;
            # the same source stage as the row above, so it is trained once
            "ta_lora_unseen_data": {
                "name": "ta_lora", "stage": "target", "injection": "additive", "target_init": "reuse",
                "targets": ["bench-src-a"],
                "source_stage": {"name": "ta_lora", "stage": "source", "injection": "additive"},
            },
        },
        "data": {"max_eval_examples": 4},
        "train": {"batch_size": 2, "lr": 0.01},
        "eval": {"batch_size": 4, "final_splits": ["test"]},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, tmp_path / "quality"


def test_quality_smoke_and_resume(quality_config, capsys):
    path, out = quality_config
    assert bench("quality", str(path)) == 0
    statuses = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if " seed " in line]
    assert statuses.count("evaluated") == 2 and statuses.count("trained") == 12
    stage1 = sorted(p.name for p in (out / "target-stage1" / "bench-target").iterdir() if not p.name.startswith("."))
    assert stage1 == ["seed-1-steps1-lr0.01", "seed-2-steps1-lr0.01"]
    for seed in (1, 2):  # both methods read the shared run instead of training their own
        shared = str(out / "target-stage1" / "bench-target" / f"seed-{seed}-steps1-lr0.01")
        for method in ("spot", "dtvg"):
            cell = out / "cells" / method / "bench-target" / f"seed-{seed}"
            assert yaml.safe_load((cell / "config.yaml").read_text())["method"]["target_prompt"] == shared
            assert not (cell / "stage1").exists() and not (cell / "retrieval").exists()
    for method in ("zero_shot", "pt", "spot", "dtvg", "mpt"):
        for seed in (1, 2):
            cell = out / "cells" / method / "bench-target" / f"seed-{seed}"
            assert (cell / "results.json").exists() and (cell / "params.json").exists()
    assert (out / "library" / "manifest.json").exists() and len(list(out.glob("source-stages/mpt-*/results.json"))) == 1
    assert not list(out.rglob(".gitignore"))  # every run finished: nothing is hidden from git any more
    assert len(list(out.glob("source-stages/ta_lora-*"))) == 1
    assert (out / "results.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "cells" / "ta_lora_unseen_data" / "bench-src-a" / "seed-1" / "results.json").exists()
    assert not (out / "cells" / "ta_lora_unseen_data" / "bench-target").exists()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"zero_shot", "pt", "spot", "dtvg", "mpt", "ta_lora", "ta_lora_unseen_data"}
    assert {r["task"] for r in rows if r["method"] == "ta_lora_unseen_data"} == {"bench-src-a"}
    assert all(r["seeds"] == 2 for r in rows)
    assert next(r for r in rows if r["method"] == "zero_shot")["trainable"] == 0
    assert "bench-target" in (out / "results.csv").read_text()
    table = (out / "results.md").read_text()
    assert "| pt |" in table
    # what the transfer started from: each library prompt and each multi-task source stage, with its users
    assert "| bench-src-a (seed 42) |" in table and "| mixture of bench-src-a, bench-src-b (seed 42) |" in table
    stages = [line for line in table.splitlines() if line.startswith(("| mpt-", "| ta_lora-"))]
    assert len(stages) == 2 and any("| ta_lora, ta_lora_unseen_data |" in line for line in stages)

    # A second run skips every finished cell; a selection keeps the other methods in the table.
    assert bench("quality", str(path), "--methods", "pt", "--seeds", "1") == 0
    statuses = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if " seed " in line]
    assert statuses == ["skipped"]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"zero_shot", "pt", "spot", "dtvg", "mpt", "ta_lora", "ta_lora_unseen_data"}

    # --status reads the folder only: every cell done, nothing run
    assert bench("quality", str(path), "--status") == 0
    status = capsys.readouterr().out
    assert "| pt | 2/0/0 |" in status and "14 done, 0 partial, 0 to do (0 of them running in a worker now); library: complete" in status
    moved = out / "cells" / "pt" / "bench-target" / "seed-1"
    moved.rename(moved.with_name("elsewhere"))
    assert bench("quality", str(path), "--status", "--methods", "pt") == 0
    assert "| pt | 1/0/1 |" in capsys.readouterr().out
    # --tables rewrites the results from the finished cells and runs nothing: the missing cell stays missing
    assert bench("quality", str(path), "--tables") == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if " seed " in line] and not moved.exists()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert next(r for r in rows if r["method"] == "pt")["seeds"] == 1
    moved.with_name("elsewhere").rename(moved)

    # --targets filters a section's own targets instead of replacing them
    assert bench("quality", str(path), "--methods", "ta_lora_unseen_data", "--targets", "bench-target") == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if " seed " in line]


def files_git_add_would_track(folder: Path) -> list[str]:
    """The files `git add .` commits from ``folder`` (made a fresh repository for the check)."""
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "add", "."], check=True)
    return subprocess.run(["git", "-C", str(folder), "ls-files"], check=True, capture_output=True, text=True).stdout.splitlines()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_add_of_the_results_folder_skips_an_interrupted_cell(quality_config, monkeypatch):
    from mtpt.training.loop import Trainer

    path, out = quality_config
    assert bench("quality", str(path), "--methods", "pt", "--seeds", "1") == 0

    def interrupted(self):
        (Path(self.parts.config.output_dir) / "checkpoints").mkdir()  # what an interrupted run leaves behind
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench("quality", str(path), "--methods", "pt", "--seeds", "2")
    tracked = files_git_add_would_track(out)
    assert "cells/pt/bench-target/seed-1/results.json" in tracked
    assert not [name for name in tracked if name.startswith("cells/pt/bench-target/seed-2/")]
    assert (out / "cells" / "pt" / "bench-target" / "seed-2" / "checkpoints").is_dir()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_add_of_the_results_folder_skips_an_interrupted_library(quality_config, monkeypatch):
    import mtpt.library.source_stage as source_stage

    path, out = quality_config

    def interrupted(stage, backbone):
        (Path(stage.library) / "bench-src-a").mkdir(parents=True)  # a source prompt half-way through training
        (Path(stage.library) / "bench-src-a" / "prompt.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(source_stage, "train_sources", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench("quality", str(path), "--methods", "spot", "--seeds", "1")
    tracked = files_git_add_would_track(out)
    assert (out / "library" / "bench-src-a" / "prompt.safetensors").exists()
    assert not [name for name in tracked if name.startswith("library/")]


def test_methods_without_transfer_run_before_the_library_exists(quality_config, capsys):
    from mtpt.bench.quality_config import needs_library
    from mtpt.errors import MtptError

    path, out = quality_config
    assert bench("quality", str(path), "--methods", "zero_shot", "pt", "--seeds", "1") == 0
    statuses = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if " seed " in line]
    assert statuses == ["evaluated", "trained"]
    assert not (out / "library").exists() and "| pt |" in (out / "results.md").read_text()
    assert not needs_library({"name": "pt", "init": "sample_vocab"})

    # a finished cell is not skipped once the config gives it another protocol: the table would mix them
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, "steps": 2}, sort_keys=False))
    with pytest.raises(MtptError, match=r"seed-1 finished with another configuration .*train\.steps: 1 -> 2"):
        bench("quality", str(path), "--methods", "pt", "--seeds", "1")
    assert bench("quality", str(path), "--methods", "zero_shot", "--seeds", "1") == 0  # records no run config
    for options in ({"name": "pt", "init": "from_file", "init_path": "{library}"}, {"name": "spot"}, {"name": "attempt"},
                    {"name": "dtvg", "target_prompt": "{target_stage1}"},
                    {"name": "mpt", "stage": "target", "source_stage": {"name": "mpt", "stage": "source"}}):
        assert needs_library(options), options


def test_changed_fields_ignores_fields_only_one_side_has():
    from mtpt.run_folder import changed_fields

    recorded = {"train": {"steps": 50, "lr": 0.03}, "data": {"kshot": 16}, "removed": 1}
    planned = {"train": {"steps": 50, "lr": 0.01}, "data": {"kshot": 16, "added": True}}
    assert changed_fields(recorded, planned) == ["train.lr: 0.03 -> 0.01"]
    assert changed_fields(recorded, recorded) == []
    assert changed_fields(recorded, planned, ignore=frozenset({"train.lr"})) == []
    assert changed_fields(recorded, planned, ignore=frozenset({"train.steps"})) == ["train.lr: 0.03 -> 0.01"]


def test_quality_rejects_unknown_method_selector(quality_config):
    from mtpt.errors import MtptError

    path, _ = quality_config
    with pytest.raises(MtptError, match="not in the config"):
        bench("quality", str(path), "--methods", "nope")


def test_shipped_bench_configs_parse():
    from pathlib import Path

    from mtpt.bench.quality_compare import comparison_plan
    from mtpt.bench.quality_config import QualityConfig, fill_options, section_targets
    from mtpt.bench.quality_grid import searched_labels
    from mtpt.config import method_config, parse_config

    configs = sorted(Path(__file__).resolve().parents[1].glob("configs/bench/*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        config = parse_config(QualityConfig, [str(path)], "test", "bench")
        assert config.methods and config.targets and config.library.sources
        for label in config.methods:  # every section (and its source stage) is a valid method config
            method = fill_options(config.methods[label], "LIBRARY", "SOURCE_RUN")
            method_config(method)
            if "source_stage" in config.methods[label]:
                method_config(fill_options(config.methods[label]["source_stage"], "LIBRARY"))
            assert section_targets(config, label), f"{path.name}: {label} has no targets"
            if config.methods[label].get("target_init") == "reuse":  # unseen data: held-out data of the sources
                assert set(section_targets(config, label)) <= set(config.library.sources), f"{path.name}: {label}"
        searched_labels(config)  # a search that cannot decide fails here, not hours into a benchmark
        comparison_plan(config)


def test_target_data_overrides_the_shared_kshot_split():
    from mtpt.bench.quality_config import QualityConfig, target_data
    from mtpt.errors import MtptError

    config = QualityConfig(kshot=16, target_data={"few": {"kshot": 32, "kshot_seed": 0}, "bad": {"kshots": 1}})
    assert (target_data(config, "few", 21).kshot, target_data(config, "few", 21).kshot_seed) == (32, 0)
    assert (target_data(config, "other", 21).kshot, target_data(config, "other", 21).kshot_seed) == (16, 21)
    with pytest.raises(MtptError, match="target_data.bad: unknown data field"):
        target_data(config, "bad", 21)


def test_paired_ratio_and_verdicts():
    from mtpt.bench.speed import _check, paired_ratio

    median, (q1, q3) = paired_ratio([10.0, 11.0, 12.0, 30.0], [10.0, 10.0, 10.0, 10.0])
    assert median == pytest.approx(1.15) and q1 == pytest.approx(1.075) and q3 == pytest.approx(1.65)
    assert paired_ratio([2.0], [4.0]) == (0.5, [0.5, 0.5])
    assert _check(1.02, 1.05, iqr=[1.0, 1.04]).endswith("(≤ 1.05: ok)")
    assert "MISSED, within noise" in _check(1.02, 1.0, iqr=[0.99, 1.04])
    assert _check(1.06, 1.0, iqr=[1.03, 1.08]).endswith("(≤ 1: MISSED)")
    assert "MISSED, within noise" in _check(0.93, 0.95, at_most=False, iqr=[0.9, 0.96])


def test_results_table_shows_no_std_for_a_single_seed(tmp_path):
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.bench.quality_report import plot, render

    row = {"method": "pt", "task": "rte", "mean": 57.55, "seeds": 1, "trainable": 11520}
    rows = [dict(row, std=None, scores={13: 57.55}),
            dict(row, method="dtvg", mean=60.0, std=1.25, seeds=3, scores={13: 58.5, 21: 60.0, 42: 61.5})]
    text = render(QualityConfig(methods={"pt": {"name": "pt"}, "dtvg": {"name": "dtvg"}}), rows)
    assert "| pt | 57.5 (n=1) |" in text and "| dtvg | 60.0 ± 1.2 (n=3) |" in text
    plot(rows, tmp_path / "plot.png", "title")  # an unknown std draws no error bar instead of failing
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG_MAGIC


def row(method, task, scores):
    """A results-table row as collect() returns it (trainable parameters 10)."""
    return {"method": method, "task": task, "mean": sum(scores.values()) / len(scores), "std": None,
            "seeds": len(scores), "scores": scores, "trainable": 10}


def test_paired_column_compares_only_the_cells_both_methods_have():
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.bench.quality_report import paired_difference, render

    rows = [row("pt", "rte", {13: 50.0, 21: 60.0}), row("pt", "cb", {13: 40.0}),
            row("dtvg", "rte", {13: 55.0, 21: 58.0, 42: 99.0}), row("dtvg", "cb", {13: 46.0}),
            row("spot", "mrpc", {13: 70.0})]
    # seed 42 on rte and spot's mrpc have no pt cell: they are not compared
    assert paired_difference(rows, "dtvg", "pt") == pytest.approx((3.0, 2, 3, 1.0))  # 2 wins, 1 loss: p = 1
    assert paired_difference(rows, "spot", "pt") is None
    # the sign test: 8 wins of 8 is a 2 * 0.5**8 chance under no difference; ties are left out of it
    sweep = [row("pt", "t", {s: 50.0 for s in range(10)}),
             row("spot", "t", {s: 50.0 + (s < 8) for s in range(10)})]
    assert paired_difference(sweep, "spot", "pt")[1:] == pytest.approx((8, 10, 2 * 0.5 ** 8))
    config = QualityConfig(methods={label: {"name": label} for label in ("pt", "dtvg", "spot")})
    text = render(config, rows)
    assert "vs pt: Δ (wins/cells, sign-test p)" in text
    assert "| dtvg | " in text and "| +3.0 (2/3, p=1.00) | 10 |" in text
    assert [line for line in text.splitlines() if line.startswith("| pt |")][0].endswith("| - | 10 |")
    assert "vs pt" not in render(QualityConfig(methods=config.methods, baseline=""), rows)


def test_majority_class_reference_needs_only_the_data():
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.bench.quality_report import render
    from mtpt.bench.reference import majority_scores

    toy_task("bench-majority", n_eval=7)  # test labels 0, 1, 0, 1, 0, 1, 0: answering 0 everywhere is 4 of 7 right
    rows = [row("pt", "bench-majority", {1: 60.0, 2: 70.0}), row("pt", "no-such-task", {1: 50.0})]
    config = QualityConfig(methods={"pt": {"name": "pt"}}, report_split="test")
    with pytest.warns(UserWarning, match="left out for no-such-task: .*no-such-task"):
        majority = majority_scores(config, rows)
    assert majority == pytest.approx({"bench-majority": 400 / 7})  # a task without readable data is left out
    assert "majority class (every example answered with the split's most frequent label, no model): " \
           "bench-majority 57.1." in render(config, rows, majority)


def test_rows_with_their_own_targets_are_compared_with_their_own_baseline():
    """TA-LoRA's unseen-data row runs on source tasks, where the main baseline has no cells: its table compares it
    with the row named by own_targets_baseline (PT on the same source k-shot data)."""
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.bench.quality_report import render

    own = {"targets": ["mnli"]}
    methods = {"pt": {"name": "pt"}, "ta_lora_unseen_data": {"name": "ta_lora", **own},
               "pt_unseen_data": {"name": "pt", **own}}
    rows = [row("pt", "rte", {13: 50.0}), row("ta_lora_unseen_data", "mnli", {13: 40.0, 21: 36.0}),
            row("pt_unseen_data", "mnli", {13: 38.0, 21: 37.0})]
    text = render(QualityConfig(methods=methods, own_targets_baseline="pt_unseen_data"), rows)
    own_table = text.split("Rows with their own targets")[1]
    assert "vs pt_unseen_data: Δ (wins/cells, sign-test p)" in own_table
    assert "| ta_lora_unseen_data | 38.0 ± 2.0 (n=2) | 38.0 | +0.5 (1/2, p=1.00) | 10 |" in own_table
    assert "vs pt_unseen_data: the row's score minus" in text
    assert "vs pt_unseen_data" not in render(QualityConfig(methods=methods), rows)


# --- mtpt bench docs: pasted tables stay identical to the files the benchmarks wrote --------------------------
def test_bench_docs_refills_a_generated_block_and_check_reports_stale_ones(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    table = tmp_path / "results" / "table.md"
    table.write_text("# run title\n\n| a |\n|---|\n| 1 |\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nprose\n<!-- begin generated: results/table.md, headings: 4 -->\nold\n"
                    "<!-- end generated -->\nmore prose\n")
    assert bench("docs", str(page), "--check") == 1
    assert "stale" in capsys.readouterr().out
    assert "old" in page.read_text()  # --check writes nothing
    assert bench("docs", str(page)) == 0
    assert page.read_text() == ("# Page\n\nprose\n<!-- begin generated: results/table.md, headings: 4 -->\n"
                                "#### run title\n\n| a |\n|---|\n| 1 |\n<!-- end generated -->\nmore prose\n")
    assert bench("docs", str(page), "--check") == 0  # refilling is idempotent
    table.write_text("# run title\n\n| a |\n|---|\n| 2 |\n")
    assert bench("docs", str(page), "--check") == 1


def test_bench_docs_names_the_page_line_of_a_bad_block(tmp_path):
    from mtpt.bench.docs import refresh
    from mtpt.errors import MtptError

    page = tmp_path / "page.md"
    page.write_text("x\n<!-- begin generated: missing.md -->\n<!-- end generated -->\n")
    with pytest.raises(MtptError, match=r"page.md:2: .*'missing.md', which does not exist"):
        refresh(page)
    page.write_text("x\n<!-- begin generated: page.md -->\nno end\n")
    with pytest.raises(MtptError, match=r"page.md:2: .*no '<!-- end generated -->' line"):
        refresh(page)


def test_docs_results_tables_are_the_recorded_benchmark_files():
    """docs/results.md pastes benchmarks/results/*/…md; rerunning a benchmark without `mtpt bench docs
    docs/results.md` (or editing a pasted table by hand) fails here."""
    from pathlib import Path

    from mtpt.bench.docs import BEGIN, render

    page = Path(__file__).resolve().parents[1] / "docs" / "results.md"
    blocks = [line for line in page.read_text().splitlines() if BEGIN.match(line.strip())]
    assert len(blocks) >= 2, "docs/results.md should paste the speed and quality tables as generated blocks"
    assert render(page) == page.read_text(), "stale tables: run `mtpt bench docs docs/results.md`"


def test_speed_rounds_rotate_the_order_of_the_arms():
    """A fixed order would bias every ratio by position (one arm always first, or always after the same one)."""
    from mtpt.bench.speed import interleave

    calls: list[str] = []

    class FakeArm:
        def __init__(self, name):
            self.name = name

        def enter(self):
            pass

        def exit(self):
            pass

        def step(self):
            calls.append(self.name)

        def excluded_ms(self):
            return 0.0

    arms = [FakeArm(name) for name in ("method", "bare", "peft")]
    times, _ = interleave(arms, repeats=6)
    assert all(len(values) == 6 for values in times.values())  # the warm-up round is not timed
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert all(sorted(r) == ["bare", "method", "peft"] for r in rounds)
    timed_rounds = rounds[1:]
    for position in range(3):  # every arm takes every position equally often
        assert sorted(r[position] for r in timed_rounds) == ["bare", "bare", "method", "method", "peft", "peft"]
