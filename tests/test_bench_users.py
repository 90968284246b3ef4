"""Speed as users see it (issue 33): PEFT as documented, the step profile, time to a result against a PEFT user's
script, the levers and their switches, the GPU check's dry mode. Tiny models, seconds each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import encode, pt_model, toy_task

from mtpt.backbones import Backbone
from mtpt.bench.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def bench(*argv: str) -> int:
    return COMMANDS["bench"][1](list(argv))


def peft_arm_like(model, tok, batch, documented: bool, kind: str = "pt"):
    """A PEFT arm on ``model``'s backbone whose prompt is ``model``'s (PT)."""
    from mtpt.bench.arms import PeftArm

    backbone = Backbone(model.backbone, tok.tokenizer, "tiny-llama", "-")
    arm = PeftArm(kind, backbone, batch, "no", model.method.prompt.shape[0], documented=documented)
    arm.enter()
    with torch.no_grad():
        arm.peft_model.prompt_encoder["default"].embedding.weight.copy_(model.method.prompt)
    return arm


# --- PEFT as documented ------------------------------------------------------------------------------------------
def test_documented_peft_loss_is_mtpts_task_loss_on_the_same_rows_and_prompt():
    """labels=, full logits and PEFT's own loss give exactly mtpt's task loss (mean over the target tokens), on rows
    of different input and target lengths: the two arms do the same learning problem."""
    from mtpt.model import task_loss

    model, tok = pt_model(length=4)
    batch = encode(tok)  # inputs of 22, 4 and 63 tokens; targets of 5, 4 and 10
    assert len(set(batch.input_mask.sum(1).tolist())) == 3 and len(set(batch.target_mask.sum(1).tolist())) == 3
    model.eval()
    with torch.no_grad():
        expected = task_loss(model(batch))
        documented = peft_arm_like(model, tok, batch, documented=True).loss()
        same_work = peft_arm_like(model, tok, batch, documented=False).loss()
    torch.testing.assert_close(documented, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(same_work, expected, atol=1e-5, rtol=1e-5)


def test_documented_inputs_label_only_the_target_tokens():
    from mtpt.bench.arms import IGNORE_INDEX, documented_inputs

    _, tok = pt_model()
    batch = encode(tok)
    ids, mask, labels = documented_inputs(batch)
    for row in range(len(batch)):
        text = batch.input_ids[row][batch.input_mask[row].bool()]
        target = batch.target_ids[row][batch.target_mask[row].bool()]
        n, t = len(text), len(target)
        assert ids[row, :n + t].tolist() == text.tolist() + target.tolist()
        assert mask[row].tolist() == [1] * (n + t) + [0] * (ids.shape[1] - n - t)  # padded on the right
        assert labels[row, n:n + t].tolist() == target.tolist()
        assert (labels[row, :n] == IGNORE_INDEX).all() and (labels[row, n + t:] == IGNORE_INDEX).all()


def test_documented_peft_computes_logits_on_every_position_and_the_same_work_arm_does_not():
    model, tok = pt_model(length=4)
    batch = encode(tok)
    seen: list[int] = []
    handle = model.backbone.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(args[0].shape[1]))
    try:
        peft_arm_like(model, tok, batch, documented=True).step()
        peft_arm_like(model, tok, batch, documented=False).step()
    finally:
        handle.remove()
    full = 4 + batch.input_mask.sum(1).max() + batch.target_mask.sum(1).max()
    assert seen == [int(full), batch.target_ids.shape[1] + 1]


def test_speed_reports_both_peft_ratios_and_the_profile(tmp_path):
    out = tmp_path / "speed"
    assert bench("speed", "--backbone", "tiny-llama", "--methods", "pt", "mpt", "attempt", "--repeats", "2",
                 "--batch", "2", "--text-tokens", "8", "--prompt-length", "4", "--profile", "--profile-steps", "1",
                 "--out", str(out)) == 0
    rows = {r["method"]: r for r in json.loads((out / "speed.json").read_text())["methods"]}
    for label, peft in (("pt", "peft-pt"), ("mpt", "peft-mpt")):
        row = rows[label]
        assert row["peft"] == peft and row["peft_documented"] == f"{peft}-documented"
        assert len(row["peft_documented_times_ms"]) == 2 and row["vs_peft_documented"] > 0
        assert row["vs_peft"] > 0 and row["bare_vs_peft_documented"] > 0
        low, high = row["vs_peft_documented_iqr"]
        assert low <= row["vs_peft_documented"] <= high
    assert rows["attempt"]["vs_peft_documented"] is None  # PEFT has no ATTEMPT
    table = (out / "speed.md").read_text()
    assert "× PEFT same work (target) | × PEFT documented (target)" in table and "(≤ 0.7:" in table
    profile = json.loads((out / "profile.json").read_text())
    arms = profile["methods"]["pt"]
    assert set(arms) == {"pt", "peft-pt-documented", "peft-pt", "bare"}
    for arm in arms.values():
        groups = arm["groups"]
        # every group the step is made of was found, and the groups add up to the profiled step
        assert all(groups[g] > 0 for g in ("attention", "MLP", "norms", "LM head", "loss", "backward: attention"))
        assert sum(groups.values()) == pytest.approx(arm["wall_ms"], rel=0.02)
    assert groups["optimizer"] == 0  # the bare arm (last) optimises nothing ...
    assert arms["pt"]["groups"]["optimizer"] > 0  # ... the method does
    text = (out / "profile.md").read_text()
    assert "| backward: attention |" in text and "0.7× is" in text and "## mpt" in text


def test_profile_groups_backward_by_the_forward_that_made_it():
    """Each backward node's time goes to the group of the forward operator that created it."""
    from mtpt.bench.profile import profile_arm

    model, tok = pt_model(length=4)
    batch = encode(tok)
    documented = profile_arm(peft_arm_like(model, tok, batch, documented=True), model.backbone, 2)["groups"]
    same_work = profile_arm(peft_arm_like(model, tok, batch, documented=False), model.backbone, 2)["groups"]
    for groups in (documented, same_work):
        backward = {g: v for g, v in groups.items() if g.startswith("backward: ")}
        assert all(backward[f"backward: {g}"] > 0 for g in ("attention", "MLP", "norms", "LM head", "loss"))
        # autograd nodes are found through their forward operator: few are left unmatched (AccumulateGrad)
        assert backward["backward: other"] < 0.25 * sum(backward.values())


# --- the switches the levers measure ----------------------------------------------------------------------------
def test_full_logits_switch_runs_the_lm_head_everywhere_and_gives_the_same_logits():
    model, tok = pt_model()
    batch = encode(tok)
    model.eval()
    seen: list[int] = []
    handle = model.backbone.get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            target_only = model(batch).logits
            model.target_only_logits = False
            everywhere = model(batch).logits
    finally:
        handle.remove()
    assert seen[0] == batch.target_ids.shape[1] + 1 and seen[1] == 4 + batch.input_ids.shape[1] + batch.target_ids.shape[1]
    torch.testing.assert_close(everywhere, target_only, atol=1e-5, rtol=1e-5)


def test_prefix_sharing_switch_scores_the_same_with_one_pass_per_choice():
    from mtpt.evaluation import rank_choices
    from mtpt.tasks import Example

    model, tok = pt_model()
    model.eval()
    choices = (" yes", " no", " maybe so")
    texts = ("the film was a delight from the first scene to the last one", "dull, slow and far too long a story",
             "a weak plot held up by a strong cast and fine music", "fine, if you like this kind of thing at all")
    examples = [Example(t, choices[0], choices, 0, 0, "t") for t in texts]
    tokens: list[int] = []  # positions run through the backbone

    def count(module, args, kwargs):
        tokens.append(kwargs["inputs_embeds"].shape[:2].numel())

    handle = model.backbone.register_forward_pre_hook(count, with_kwargs=True)
    try:
        shared = rank_choices(model, tok, examples, [0] * 4, batch_size=4).values
        shared_tokens, tokens[:] = sum(tokens), []
        apart = rank_choices(model, tok, examples, [0] * 4, batch_size=4, share_prefix=False).values
    finally:
        handle.remove()
    assert shared == apart
    # shared: each input once, then only the choices' tokens; apart: the input again for each of the 3 choices
    assert shared_tokens < 0.6 * sum(tokens)


def test_length_grouping_keeps_each_windows_examples_pads_less_and_resumes_mid_window():
    from mtpt.training.sampling import LengthGroupedSampler, MixtureSampler

    lengths = [3, 40, 5, 38, 7, 36, 9, 34, 11, 32, 13, 30]
    plain = MixtureSampler([12], torch.ones(1), 5)
    grouped = LengthGroupedSampler(MixtureSampler([12], torch.ones(1), 5), lambda _t, i: lengths[i], 3)
    plain_steps = [plain.draw(s, 4) for s in range(6)]
    grouped_steps = [grouped.draw(s, 4) for s in range(6)]
    for w in (0, 3):  # every window holds the same examples, in batches of similar length
        assert sorted(p for step in plain_steps[w:w + 3] for p in step) == sorted(p for step in grouped_steps[w:w + 3] for p in step)
    def padded(steps):
        return sum(4 * max(lengths[i] for _, i in step) for step in steps)
    assert padded(grouped_steps) < padded(plain_steps)
    resumed = LengthGroupedSampler(MixtureSampler([12], torch.ones(1), 5), lambda _t, i: lengths[i], 3)
    replay = LengthGroupedSampler(MixtureSampler([12], torch.ones(1), 5), lambda _t, i: lengths[i], 3)
    for s in range(4):
        replay.draw(s, 4)
    resumed.load_state_dict(replay.state_dict())  # saved after step 4 of 6: mid-window
    assert [resumed.draw(s, 4) for s in (4, 5)] == grouped_steps[4:6]


def test_a_run_with_length_grouping_trains(tmp_path):
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from mtpt.errors import MtptError
    from mtpt.runner import train

    toy_task()

    def config(grouping: int, folder: str) -> RunConfig:
        return RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"], method={"name": "pt", "prompt_length": 4},
                         data=DataConfig(length_grouping=grouping), train=TrainConfig(steps=4, batch_size=4,
                         eval_every=4, log_every=1, precision="no"), eval=EvalConfig(batch_size=8,
                         final_splits=["validation"]), output_dir=str(tmp_path / folder))

    train(config(2, "grouped"))
    train(config(0, "plain"))
    def losses(folder):
        lines = (tmp_path / folder / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines if '"loss"' in line]
    assert len(losses("grouped")) == 4 and losses("grouped") != losses("plain")  # another order: opt-in
    with pytest.raises(MtptError, match="length_grouping"):
        train(config(-1, "bad"))


def test_compile_switch_routes_the_training_forward_through_torch_compile(monkeypatch):
    model, tok = pt_model()
    keys = set(model.state_dict())
    compiled_calls: list[int] = []

    def fake_compile(fn, **kwargs):  # compiling for real takes minutes on a CPU: check the wiring only
        assert kwargs.get("dynamic") is True
        def wrapper(*args, **kw):
            compiled_calls.append(1)
            return fn(*args, **kw)
        return wrapper

    monkeypatch.setattr(torch, "compile", fake_compile)
    model.compile_backbone()
    model(encode(tok))
    assert compiled_calls == [1] and set(model.state_dict()) == keys


def test_the_trainer_compiles_only_when_asked(tmp_path, monkeypatch):
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from mtpt.model import SoftPromptModel
    from mtpt.runner import train

    toy_task()
    asked: list[int] = []
    monkeypatch.setattr(SoftPromptModel, "compile_backbone", lambda self: asked.append(1))
    for flag in (False, True):
        train(RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"], method={"name": "pt", "prompt_length": 4},
                        data=DataConfig(), train=TrainConfig(steps=1, batch_size=4, eval_every=1, compile=flag),
                        eval=EvalConfig(final_splits=["validation"]), output_dir=str(tmp_path / str(flag))))
    assert asked == [1]


def test_levers_smoke(tmp_path):
    out = tmp_path / "levers"
    assert bench("levers", "--backbone", "tiny-llama", "--task", "demo-sst2", "--window", "2", "--rounds", "1",
                 "--eval-examples", "6", "--eval-batch-size", "2", "--eval-batch-sizes", "6", "--threads", "2",
                 "--skip", "torch.compile", "--out", str(out)) == 0
    rows = {r["lever"]: r for r in json.loads((out / "levers.json").read_text())["levers"]}
    assert set(rows) == {"target-only logits", "length grouping", "bf16", "threads (training)", "prefix sharing",
                         "length-sorted evaluation", "evaluation batch 6", "threads (evaluation)"}
    for name in ("target-only logits", "length grouping", "prefix sharing", "evaluation batch 6"):
        row = rows[name]
        assert row["with_ms"] > 0 and row["without_ms"] > 0 and row["verdict"] in ("helps", "hurts", "within noise")
    assert rows["threads (training)"]["without"] == "1 thread"
    assert "ratio" in rows["bf16"] or rows["bf16"]["status"].startswith("not measured")
    table = (out / "levers.md").read_text()
    assert "| length grouping | 2 training steps |" in table and "off (opt-in: data.length_grouping)" in table


# --- time to a result --------------------------------------------------------------------------------------------
def test_the_reference_starts_from_mtpts_prompt_and_draws_mtpts_batches():
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks import peft_reference as reference
    finally:
        sys.path.remove(str(REPO))
    from mtpt.bench.e2e import Protocol, protocol_argv
    from mtpt.config import DataConfig, RunConfig, TrainConfig
    from mtpt.runtime import build_run
    from mtpt.testing import tiny_backbone
    from mtpt.training.sampling import MixtureSampler, mixing_weights

    backbone = tiny_backbone("llama")
    parts = build_run(RunConfig(backbone="tiny-llama", tasks=["demo-sst2"], data=DataConfig(kshot=16, kshot_seed=13),
                                method={"name": "pt", "prompt_length": 20, "init": "sample_vocab"},
                                train=TrainConfig(seed=13)), backbone)
    torch.testing.assert_close(reference.initial_prompt(backbone.model.get_input_embeddings(), 20, 13),
                               parts.model.method.prompt.detach(), rtol=0, atol=0)
    sampler = MixtureSampler([32], mixing_weights([32], "proportional"), 13)
    assert [i for step in range(10) for _, i in sampler.draw(step, 8)] == reference.example_order(32, 13, 80)
    # the harness's flags are the reference's flags
    args = reference.parse_args(protocol_argv(Protocol(backbone="tiny-llama", max_eval_examples=9)) + ["--out", "x"])
    assert args.backbone == "tiny-llama" and args.max_eval_examples == 9 and args.eval_every == 20


def test_e2e_smoke_both_sides_learn_the_same_and_report(tmp_path):
    out = tmp_path / "e2e"
    # inputs of the byte-level tiny tokenizer reach 256 tokens: 512 keeps both sides from truncating (they cut
    # different ends, by design)
    assert bench("e2e", "--backbone", "tiny-llama", "--task", "demo-sst2", "--steps", "4", "--eval-every", "2",
                 "--warmup-steps", "0", "--max-eval-examples", "12", "--max-input-tokens", "512", "--rounds", "2",
                 "--length-grouping", "0", "--out", str(out)) == 0
    report = json.loads((out / "e2e.json").read_text())
    runs = report["runs"]
    assert [r["first"] for r in runs["mtpt"]] == [True, False]  # the side that starts alternates
    for side in ("mtpt", "reference"):
        for run in runs[side]:
            assert run["total"] > run["steps"] + run["validation"] + run["test"] > 0
            assert run["test_examples"] == 12 and run["validation_examples"] == 12
            # every 2 steps of 4; mtpt also scores the initial prompt (train.eval_at_start, on by default)
            assert run["validation_passes"] == (3 if side == "mtpt" else 2)
    mine, theirs = runs["mtpt"][0], runs["reference"][0]
    # the same learning problem: the same losses step by step, the same checkpoint, the same accuracy
    assert mine["losses"] == pytest.approx(theirs["losses"], rel=1e-4)
    assert mine["best_step"] == theirs["best_step"] and mine["test_accuracy"] == pytest.approx(theirs["test_accuracy"])
    summary = report["summary"]
    assert summary["accuracy_agrees"] and summary["ratios"]["total"]["ratio"] > 0
    text = (out / "e2e.md").read_text()
    assert "| mtpt / reference |" in text and "(within 2: ok)" in text and "(≤ 0.6:" in text


def test_e2e_marks_accuracies_that_disagree():
    from mtpt.bench.e2e import Protocol, render, summarise

    def run(accuracy: float, total: float) -> dict:
        return {"steps": 1.0, "validation": 1.0, "test": 1.0, "setup": total - 3, "total": total, "first": True,
                "best_step": 2, "test_accuracy": accuracy, "validation_examples": 32, "test_examples": 872, "threads": 2,
                "validation_passes": 5}

    runs = {"mtpt": [run(80.0, 5.0)], "reference": [run(83.0, 10.0)]}
    report = {"settings": {"protocol": vars(Protocol()), "levers": {"length_grouping": 0, "compile": False},
                           "rounds": 1}, "runs": runs, "summary": summarise(runs)}
    assert not report["summary"]["accuracy_agrees"] and report["summary"]["total_met"]
    text = render(report)
    assert "-3.00 points (within 2: MISSED)" in text and "**MISSED: the test accuracies differ" in text
    assert "0.500× [0.500–0.500] (≤ 0.6: ok)" in text


# --- GPU check ---------------------------------------------------------------------------------------------------
def test_random_smollm2_has_smollm2_135ms_shape():
    from mtpt.backbones import load_backbone

    backbone = load_backbone("random-smollm2-135m")
    config = backbone.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
            config.intermediate_size, config.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert 134_000_000 < sum(p.numel() for p in backbone.model.parameters()) < 135_000_000
    assert max(backbone.tokenizer("any text at all")["input_ids"]) < config.vocab_size


def test_gpu_check_dry_mode_runs_every_step_and_unpacks_missing_packages(tmp_path):
    """scripts/gpu-check.sh --dry: the device tests and the speed readings on the CPU; a package the Python lacks
    is unpacked from the wheels folder (here a made-up one)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "mtpt_gpu_check_probe-0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("mtpt_gpu_check_probe/__init__.py", "VALUE = 7\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, WHEELS=str(wheels),
               GPU_CHECK_EXTRA="mtpt_gpu_check_probe:mtpt_gpu_check_probe", OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--dry", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert "unpacked mtpt_gpu_check_probe-0.1-py3-none-any.whl" in summary and "all steps passed" in summary
    assert "device tests: exit 0" in summary
    assert json.loads((out / "environment.json").read_text())["cuda_available"] in (False, True)
    for tokens in ("8", "16"):
        row = json.loads((out / f"speed-{tokens}" / "speed.json").read_text())["methods"][0]
        assert row["method"] == "pt" and row["vs_peft_documented"] > 0


@pytest.mark.slow  # compiling even the tiny model takes one to two minutes on a CPU
def test_compiled_training_forward_computes_what_the_eager_one_does():
    from mtpt.model import task_loss

    model, tok = pt_model()
    batch = encode(tok)
    eager = task_loss(model(batch))
    eager.backward()
    eager_grad = model.method.prompt.grad.clone()
    model.method.prompt.grad = None
    model.compile_backbone()
    compiled = task_loss(model(batch))
    compiled.backward()
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.method.prompt.grad, eager_grad, atol=1e-4, rtol=1e-3)
