"""The training loop end to end on tiny models: logs, checkpoints, resume, errors, CLI, two processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import launch_processes, toy_task, two_process_run_with_a_nan, two_process_toy_run
from mtpt.cli import main as cli_main
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
from mtpt.errors import MtptError
from mtpt.runs import evaluate_run, export_run
from mtpt.training.checkpoint import load_method_state
from mtpt.runner import train


def toy_config(tmp_path, steps=6, **train_overrides) -> RunConfig:
    toy_task()
    return RunConfig(
        backbone="tiny-llama",
        tasks=["toy-sentiment"],
        method={"name": "pt", "prompt_length": 4},
        data=DataConfig(),
        train=TrainConfig(**{"steps": steps, "batch_size": 4, "lr": 0.1, "eval_every": 3, "log_every": 1, **train_overrides}),
        eval=EvalConfig(batch_size=8),
        output_dir=str(tmp_path / "run"),
    )


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_writes_config_logs_checkpoints_and_results(tmp_path):
    result = train(toy_config(tmp_path))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "param_groups.json", "results.json"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "best" / "method.safetensors").exists()
    assert (run / "checkpoints" / "last" / "trainer.pt").exists()
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert set(result.final) == {"validation", "test"}
    environment = json.loads((run / "results.json").read_text())["environment"]
    assert environment["torch_threads"] == torch.get_num_threads() and environment["processes"] == 1
    assert {"torch", "transformers", "git_sha"} <= environment.keys()
    assert environment["precision"] in ("no", "bf16") and environment["cpu"] and environment["cpu_kernels"]
    meta = json.loads((run / "checkpoints" / "best" / "meta.json").read_text())
    assert meta["method"] == "pt" and meta["tasks"] == ["toy-sentiment"] and "torch" in meta["versions"]


def test_the_final_validation_pass_reuses_the_best_checkpoints_metrics(tmp_path, monkeypatch):
    """The best checkpoint was chosen on the validation examples, so the final pass reads its saved metrics
    instead of scoring them again; they must be exactly what a fresh evaluation of that checkpoint gives."""
    import mtpt.training.loop as loop

    calls = []
    real = loop.evaluate_sets
    monkeypatch.setattr(loop, "evaluate_sets", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = train(toy_config(tmp_path, steps=6, eval_every=3))
    assert len(calls) == 1 + 2 + 1  # step 0, the two in-training validations and the test pass, no third validation
    logged = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("split") == "validation"]
    assert result.final["validation"] == next(r["tasks"] for r in logged if r["step"] == result.best_step)
    fresh = evaluate_run(tmp_path / "run", splits=["validation"])["validation"]
    assert fresh.keys() == result.final["validation"].keys()
    for task, metrics in fresh.items():
        assert metrics == pytest.approx(result.final["validation"][task])


def test_score_last_scores_the_last_steps_model_besides_the_best_checkpoint(tmp_path):
    """eval.score_last: results.json's final_last holds the model after the last step on the final splits (the
    last checkpoint's scores), final the best checkpoint's, whichever step that was."""
    from dataclasses import replace

    config = toy_config(tmp_path, steps=6, eval_every=2)
    config = replace(config, eval=replace(config.eval, score_last=True))
    result = train(config)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["final_last"] == result.final_last and set(result.final_last) == {"validation", "test"}
    for which, scores in (("last", result.final_last), ("best", result.final)):
        fresh = evaluate_run(tmp_path / "run", which=which, splits=["validation", "test"])
        for split in ("validation", "test"):
            assert fresh[split]["toy-sentiment"] == pytest.approx(scores[split]["toy-sentiment"]), (which, split)
    logged = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("split") == "validation"]
    assert result.final_last["validation"] == next(r["tasks"] for r in logged if r["step"] == 6)
    assert train(toy_config(tmp_path / "plain")).final_last is None  # off by default: results.json as before
    assert "final_last" not in json.loads((tmp_path / "plain" / "run" / "results.json").read_text())


def test_score_last_scores_once_when_the_best_checkpoint_is_the_last_step(tmp_path, monkeypatch):
    """When the last validation is the best one, best and last are the same model: its test set is scored once,
    and both records hold what a fresh evaluation of the best checkpoint gives."""
    from dataclasses import replace

    import mtpt.training.loop as loop

    calls = []
    real = loop.evaluate_sets
    monkeypatch.setattr(loop, "evaluate_sets", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = toy_config(tmp_path, steps=30, lr=0.3, eval_every=30)  # learns: step 30 beats step 0
    config = replace(config, eval=replace(config.eval, final_splits=["test"], score_last=True))
    result = train(config)
    assert result.best_step == 30
    assert len(calls) == 2 + 1  # steps 0 and 30, and one test pass for both records
    assert result.final["test"] == result.final_last["test"]
    fresh = evaluate_run(tmp_path / "run", which="best", splits=["test"])["test"]["toy-sentiment"]
    assert fresh == pytest.approx(result.final["test"]["toy-sentiment"])


def test_a_run_without_a_checkpoint_starts_its_log_anew(tmp_path):
    """A run folder whose checkpoints are gone (e.g. a recorded run without them) retrains from step 0; the
    stale log lines of the earlier attempt must not stay mixed into the new log."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(json.dumps({"step": 99, "loss": 1.0}) + "\n")
    train(toy_config(tmp_path, steps=2))
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2]


def test_training_lowers_the_loss(tmp_path):
    train(toy_config(tmp_path, steps=30, lr=0.3, log_every=1, eval_every=30))
    losses = [r["loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def last_prompt(run_dir, length=4, hidden=32):
    from mtpt.methods.pt.module import PromptTuning

    method = PromptTuning(torch.zeros(length, hidden))
    load_method_state(run_dir / "checkpoints" / "last", method)
    return method.prompt.detach()


def test_resume_after_a_crash_reproduces_an_uninterrupted_run(tmp_path, monkeypatch):
    train(toy_config(tmp_path / "a", steps=6))
    from mtpt.training.loop import Trainer

    original = Trainer._train_step

    def crash_at_step_five(self):
        if self.step == 4:
            raise KeyboardInterrupt("simulated crash")
        return original(self)

    monkeypatch.setattr(Trainer, "_train_step", crash_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path / "b", steps=6))
    monkeypatch.setattr(Trainer, "_train_step", original)
    train(toy_config(tmp_path / "b", steps=6))  # the same command again resumes from step 3
    torch.testing.assert_close(last_prompt(tmp_path / "a" / "run"), last_prompt(tmp_path / "b" / "run"))
    events = read_jsonl(tmp_path / "b" / "run" / "metrics.jsonl")
    assert any(r.get("event") == "resumed" and r["step"] == 3 for r in events)


def test_gradient_accumulation_gives_the_same_update(tmp_path):
    # fp32: under bf16 autocast (precision auto on a CPU with AMX / AVX512-BF16) the two batchings round apart
    one = train(toy_config(tmp_path / "one", steps=2, grad_accum=1, eval_every=2, precision="no"))
    two = train(toy_config(tmp_path / "two", steps=2, grad_accum=2, eval_every=2, precision="no"))
    # Token-level means differ slightly between one batch of 4 and two of 2 when lengths differ.
    torch.testing.assert_close(last_prompt(tmp_path / "one" / "run"), last_prompt(tmp_path / "two" / "run"), atol=1e-5, rtol=1e-4)
    assert one.best_step and two.best_step


def test_nan_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    """The message names the checkpoint that is left (saved with finite values), not "the last good checkpoint"."""
    import mtpt.training.step as step

    calls = []

    def nan_from_the_second_step(out, normalizer):
        calls.append(1)
        loss = step_task_loss(out, normalizer)
        return loss * float("nan") if len(calls) > 1 else loss

    step_task_loss = step.task_loss
    monkeypatch.setattr(step, "task_loss", nan_from_the_second_step)
    with pytest.raises(MtptError, match=r"'task' loss became nan at step 2") as err:
        train(toy_config(tmp_path, steps=3, eval_every=1))
    assert "last good checkpoint" not in str(err.value)
    assert f"{tmp_path / 'run' / 'checkpoints' / 'last'} holds step 1" in str(err.value)


def test_a_non_finite_prompt_is_never_saved(tmp_path, monkeypatch):
    """A step that leaves NaN in the prompt while its loss was still finite: the checkpoint write refuses it."""
    from mtpt.training.step import TrainingStep

    step = TrainingStep.run

    def poisoned(self, micro_batches, index):
        result = step(self, micro_batches, index)
        with torch.no_grad():
            self.unwrapped.method.prompt[0, 0] = float("nan")
        return result

    monkeypatch.setattr(TrainingStep, "run", poisoned)
    with pytest.raises(MtptError, match="non-finite value.*Nothing was saved"):
        train(toy_config(tmp_path, steps=2, eval_every=1))
    assert not (tmp_path / "run" / "checkpoints" / "best").exists()


def test_batch_size_must_split_evenly(tmp_path):
    with pytest.raises(MtptError, match="multiple of train.grad_accum"):
        train(toy_config(tmp_path, batch_size=5, grad_accum=2))


def test_evaluate_and_export_a_finished_run(tmp_path):
    train(toy_config(tmp_path))
    results = evaluate_run(tmp_path / "run", splits=["test"])
    assert "accuracy" in results["test"]["toy-sentiment"]
    out = export_run(tmp_path / "run", tmp_path / "peft")
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()


def test_cli_train_with_overrides(tmp_path, capsys):
    toy_task()
    config = tmp_path / "run.yaml"
    config.write_text(
        "backbone: tiny-gpt2\ntasks: [toy-sentiment]\nmethod: {name: pt, prompt_length: 3, init: uniform}\n"
        "train: {steps: 2, batch_size: 2, eval_every: 2}\n"
    )
    code = cli_main(["train", str(config), "--train.lr", "0.05", "--output_dir", str(tmp_path / "out")])
    assert code == 0
    resolved = (tmp_path / "out" / "config.yaml").read_text()
    assert "lr: 0.05" in resolved and "tiny-gpt2" in resolved
    assert "toy-sentiment" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train.lrr", "1"], "lrr"),
        (["--train.precision", "fp8"], "precision"),
        (["--method", "{name: nosuch}"], "Unknown method"),
        (["--method", "{name: pt, prompt_len: 3}"], "prompt_len"),
        (["--backbone", "nosuch-model"], "Unknown backbone"),
    ],
)
def test_cli_reports_bad_configs_clearly(tmp_path, capsys, argv, message):
    toy_task()
    code = cli_main(["train", "--tasks", "[toy-sentiment]", "--output_dir", str(tmp_path / "x"), *argv])
    assert code == 1
    assert message in capsys.readouterr().err


def test_cli_help_lists_every_command(capsys):
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "evaluate", "export", "demo", "tasks", "methods"):
        assert f"  {name}" in out


def test_two_processes_train_with_the_same_semantics(tmp_path):
    launch_processes(two_process_toy_run, args=(str(tmp_path / "ddp"),), num_processes=2)
    train(toy_config(tmp_path / "single", steps=4, precision="no"))
    # The same examples per step, split across processes; gradients are averaged, so the runs agree closely (in
    # fp32: bf16 autocast, which precision auto picks on a CPU with AMX, rounds the two apart).
    torch.testing.assert_close(last_prompt(tmp_path / "ddp" / "run"), last_prompt(tmp_path / "single" / "run"), atol=1e-5, rtol=1e-4)


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tasks"


@pytest.mark.parametrize("spec, scorer", [("reviews.yaml", "rank"), ("sts.yaml", "rank"), ("qa.yaml", "generate")])
def test_a_user_task_spec_trains_and_evaluates_through_the_cli(tmp_path, capsys, spec, scorer):
    """A CSV/JSONL task described only by a YAML spec works wherever a task name does."""
    out = tmp_path / "run"
    argv = ["train", "--backbone", "tiny-llama", "--tasks", f"[{FIXTURES / spec}]", "--method", "{name: pt, prompt_length: 3}",
            "--train.steps", "2", "--train.batch_size", "2", "--train.eval_every", "2", "--eval.scorer", scorer,
            "--eval.max_new_tokens", "3", "--eval.final_splits", "[validation, test]", "--output_dir", str(out)]
    assert cli_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["final"]["validation"]  # every spec has validation data (given or carved from train)
    assert cli_main(["evaluate", str(out), "--splits", "validation"]) == 0
    assert "score" in capsys.readouterr().out


def test_early_stopping_stops_after_patience_evaluations(tmp_path):
    cfg = toy_config(tmp_path, steps=40, lr=1e-12, eval_every=2, early_stopping_patience=2)
    result = train(cfg)  # lr ~0: the metric never improves after the first evaluation
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("split") == "validation"]
    assert steps == [0, 2, 4, 6] and result.best_step == 2  # step 0 is logged, not a candidate


def test_a_non_finite_loss_on_one_process_stops_every_process(tmp_path):
    """Process 1's loss becomes NaN at step 2: both processes raise at that step (none waits for the other in the
    gradient all-reduce), process 1 with its loss terms, process 0 naming process 1; no checkpoint of step 2."""
    run = tmp_path / "ddp"
    launch_processes(two_process_run_with_a_nan, args=(str(run),), num_processes=2)
    assert "The 'task' loss became nan at step 2" in (run / "error-1.txt").read_text()
    assert "Stopped at step 2: the loss of process 1 (of 2) is not finite" in (run / "error-0.txt").read_text()
    steps = [record["step"] for record in read_jsonl(run / "run" / "metrics.jsonl") if "loss" in record]
    assert steps == [1]
