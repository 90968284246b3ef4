"""Using what was trained: `mtpt predict`, `mtpt.load_predictor`, `mtpt evaluate --predictions` and zero-shot from
the CLI, on never-seen tasks whose specs come from docs/tasks.md; mixed-task batches of multi-task runs."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from helpers import toy_task
from mtpt.cli import main as cli_main
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig, to_plain
from mtpt.errors import MtptError
from mtpt.inference import InputError, load_predictor
from mtpt.runs import load_run, zero_shot_config
from mtpt.tasks.label_words import LabelWordWarning
from mtpt.runner import train
from predict_helpers import REPO, labels, log_likelihoods, review_rows, review_task


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def assert_same_predictions(a: list[dict], b: list[dict], tol: float = 1e-5) -> None:
    assert len(a) == len(b)
    assert labels(a) == labels(b)
    for x, y in zip(log_likelihoods(a), log_likelihoods(b)):
        assert x == pytest.approx(y, abs=tol)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return review_task(tmp_path_factory.mktemp("never-seen"))


@pytest.fixture(scope="module")
def pt_run(tmp_path_factory, spec) -> Path:
    """A prompt-tuning run on the never-seen task, trained with `mtpt train` (fp32, so scores compare tightly)."""
    run = tmp_path_factory.mktemp("runs") / "pt"
    code = cli_main(["train", str(REPO / "configs" / "pt-demo.yaml"), "--backbone", "tiny-llama",
                     "--tasks", f"[{spec}]", "--method.prompt_length", "4", "--train.steps", "8",
                     "--train.eval_every", "4", "--train.lr", "0.1", "--train.precision", "no",
                     "--output_dir", str(run)])
    assert code == 0
    return run


def test_zero_shot_predict_agrees_with_zero_shot_evaluate(spec, tmp_path, capsys):
    assert cli_main(["predict", "--backbone", "tiny-llama", "--task", str(spec),
                     "--input", str(spec.parent / "reviews" / "test.csv"), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert cli_main(["evaluate", "--backbone", "tiny-llama", "--tasks", str(spec),
                     "--predictions", str(tmp_path / "e.jsonl")]) == 0
    predicted, evaluated = read_jsonl(tmp_path / "p.jsonl"), read_jsonl(tmp_path / "e.jsonl")
    assert len(predicted) == len(review_rows(spec)) == 10
    assert_same_predictions(predicted, evaluated)
    assert [r["index"] for r in evaluated] == list(range(10)) and {r["split"] for r in evaluated} == {"test"}
    gold = {"pos": "positive", "neg": "negative"}
    assert [r["gold"] for r in evaluated] == [gold[row["label"]] for row in review_rows(spec)]
    accuracy = 100 * sum(r["label"] == r["gold"] for r in evaluated) / 10
    assert f"accuracy={accuracy:.2f}" in capsys.readouterr().out  # the file and the printed metric agree


def test_predict_run_agrees_with_evaluate_predictions_and_the_python_api(pt_run, spec, tmp_path):
    test_csv = spec.parent / "reviews" / "test.csv"
    assert cli_main(["predict", str(pt_run), "--input", str(test_csv), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert cli_main(["evaluate", str(pt_run), "--predictions", str(tmp_path / "e.jsonl")]) == 0
    predictor = load_predictor(pt_run)
    try:
        api = predictor.predict(review_rows(spec))
    finally:
        predictor.close()
    from_file = read_jsonl(tmp_path / "p.jsonl")
    assert_same_predictions(from_file, read_jsonl(tmp_path / "e.jsonl"))
    assert_same_predictions(from_file, api)


def test_records_score_every_label_in_input_order(pt_run, spec):
    rows = review_rows(spec)
    predictor = load_predictor(pt_run, batch_size=3)
    try:
        batched = predictor.predict(rows)
        alone = [predictor.predict([row])[0] for row in rows]
        backwards = predictor.predict(rows[::-1])
    finally:
        predictor.close()
    for record in batched:
        assert record["task"] == "my-reviews" and [s["label"] for s in record["scores"]] == ["negative", "positive"]
        lls = [s["log_likelihood"] for s in record["scores"]]
        probs = [s["probability"] for s in record["scores"]]
        assert sum(probs) == pytest.approx(1.0)
        assert probs[1] / probs[0] == pytest.approx(math.exp(lls[1] - lls[0]))
        assert record["label_index"] == lls.index(max(lls)) and record["label"] == ["negative", "positive"][
            record["label_index"]]
        assert "generated" not in record
    # batches are sorted by length, the output is not: a row's record is the same alone, batched or reordered
    assert_same_predictions(batched, alone)
    assert_same_predictions(batched, backwards[::-1])


def test_predict_prints_records_a_progress_bar_and_the_label_word_warning(pt_run, spec, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default", LabelWordWarning)  # as Python shows warnings by default
        assert cli_main(["predict", str(pt_run), "--input", str(spec.parent / "reviews" / "test.csv")]) == 0
    out, err = capsys.readouterr()
    assert len([json.loads(line) for line in out.splitlines()]) == 10
    assert "10/10" in err and "row" in err  # tqdm on stderr
    assert "mtpt predict: warning: task 'my-reviews'" in err  # byte-level label words are many tokens long


def test_jsonl_tsv_and_headerless_inputs_give_the_same_records(pt_run, spec, tmp_path):
    rows = review_rows(spec)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    (tmp_path / "rows.tsv").write_text("label\ttext\n" + "".join(f"x\t{r['text']}\n" for r in rows))
    (tmp_path / "bare.csv").write_text("".join(f"\"{r['text']}\",{r['label']}\n" for r in rows))
    outputs = []
    for args in (["--input", str(tmp_path / "rows.jsonl")], ["--input", str(tmp_path / "rows.tsv")],
                 ["--input", str(tmp_path / "bare.csv"), "--columns", "text", "label"],
                 ["--input", str(spec.parent / "reviews" / "test.csv")]):
        out = tmp_path / f"out{len(outputs)}.jsonl"
        assert cli_main(["predict", str(pt_run), *args, "--out", str(out)]) == 0
        outputs.append(read_jsonl(out))
    for other in outputs[1:]:
        assert_same_predictions(outputs[0], other, tol=0)


def test_a_missing_field_names_the_line_and_the_field(pt_run, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("txt,label\ngood,pos\n")
    assert cli_main(["predict", str(pt_run), "--input", str(tmp_path / "bad.csv")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.csv'}:2: field 'text' is missing (task 'my-reviews' needs text)" in err
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": ["a", "list"]}\n')
    assert cli_main(["predict", str(pt_run), "--input", str(tmp_path / "bad.jsonl")]) == 1
    assert "bad.jsonl:2: field 'text' must be text or a number, got list" in capsys.readouterr().err


def test_input_errors_from_the_api_name_the_row_and_field(pt_run):
    predictor = load_predictor(pt_run)
    try:
        with pytest.raises(InputError, match=r"row 1: unknown task 'other'") as err:
            predictor.predict([{"text": "fine"}, {"text": "fine", "task": "other"}])
        assert (err.value.index, err.value.field) == (1, "task")
        with pytest.raises(InputError, match=r"row 0: a row must be an object"):
            predictor.predict(["just text"])
        with pytest.raises(MtptError, match="Unknown task 'nope'"):
            predictor.predict([{"text": "fine"}], task="nope")
    finally:
        predictor.close()
    with pytest.raises(MtptError, match="needs a task"):
        load_predictor("tiny-llama")


def test_a_zero_shot_run_folder_predicts_and_evaluates_without_checkpoints(spec, tmp_path):
    """The folder `mtpt train` writes for a method that trains nothing: config.yaml and results.json only."""
    run = tmp_path / "zs"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(to_plain(zero_shot_config("tiny-llama", [str(spec)]))))
    (run / "results.json").write_text(json.dumps({"final": {}}))
    parts = load_run(run)
    assert parts.spec.name == "zero_shot" and not (run / "checkpoints").exists()
    assert cli_main(["predict", str(run), "--input", str(spec.parent / "reviews" / "test.csv"),
                     "--out", str(tmp_path / "run.jsonl")]) == 0
    assert cli_main(["predict", "--backbone", "tiny-llama", "--task", str(spec), "--input",
                     str(spec.parent / "reviews" / "test.csv"), "--out", str(tmp_path / "bare.jsonl")]) == 0
    assert cli_main(["evaluate", str(run), "--predictions", str(tmp_path / "e.jsonl")]) == 0
    assert_same_predictions(read_jsonl(tmp_path / "run.jsonl"), read_jsonl(tmp_path / "bare.jsonl"), tol=0)
    assert_same_predictions(read_jsonl(tmp_path / "run.jsonl"), read_jsonl(tmp_path / "e.jsonl"))


def test_generation_and_regression_tasks(tmp_path):
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) + "\n" for i in range(6)))
    (tmp_path / "qa.yaml").write_text("name: qa\nkind: generation\ntemplate: 'Q: {q} A:'\nlabel_column: a\n"
                                      "files: {train: qa.jsonl}\n")
    (tmp_path / "sim.csv").write_text("s,score\n" + "".join(f"s{i},{i % 3}\n" for i in range(6)))
    (tmp_path / "sim.yaml").write_text("name: sim\nkind: regression\ntemplate: '{s} score:'\nlabel_column: score\n"
                                       "value_grid: [0, 2, 1]\nfiles: {train: sim.csv}\n")
    qa = load_predictor("tiny-llama", str(tmp_path / "qa.yaml")).predict([{"q": "why"}])[0]
    assert set(qa) == {"task", "generated"} and isinstance(qa["generated"], str)
    sim = load_predictor("tiny-llama", str(tmp_path / "sim.yaml")).predict([{"s": "alike"}])[0]
    assert [s["label"] for s in sim["scores"]] == ["0.0", "1.0", "2.0"]
    assert sim["value"] == float(sim["label"])


def test_load_predictor_is_exported_without_importing_torch():
    code = ("import sys, mtpt; assert 'torch' not in sys.modules; "
            "from mtpt.inference import load_predictor; assert mtpt.load_predictor is load_predictor")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})


# --- mixed-task batches ----------------------------------------------------------------------------------------------
def multi_task_config(folder: Path, method: dict) -> RunConfig:
    for name in ("toy-a", "toy-b"):
        toy_task(name, n_train=16, n_eval=6)
    return RunConfig(backbone="tiny-llama", tasks=["toy-a", "toy-b"], method=method, data=DataConfig(),
                     train=TrainConfig(steps=6, batch_size=4, lr=0.05, eval_every=6, log_every=1, precision="no"),
                     eval=EvalConfig(batch_size=4, final_splits=["validation"]), output_dir=str(folder))


@pytest.mark.parametrize("method", [
    {"name": "mpt", "stage": "source", "distill": False, "shared_init": "sample_vocab", "prompt_length": 4},
    {"name": "ta_lora", "stage": "source", "prompt_length": 4, "rank": 2, "lr_gate": 0.5},
], ids=["mpt", "ta_lora"])
def test_a_mixed_task_batch_gives_each_row_its_single_task_prediction(method, tmp_path):
    train(multi_task_config(tmp_path / "run", method))
    rows = [{"text": f"the {word} was {'good' if i % 3 else 'bad'}", "task": ("toy-a", "toy-b")[i % 2]}
            for i, word in enumerate(["plot", "cast", "score", "pace", "ending", "script", "set"])]
    predictor = load_predictor(tmp_path / "run", batch_size=8)
    try:
        mixed = predictor.predict(rows)
        alone = {task: predictor.predict([r for r in rows if r["task"] == task]) for task in ("toy-a", "toy-b")}
        by_default = predictor.predict([{"text": r["text"]} for r in rows if r["task"] == "toy-b"], task="toy-b")
        with pytest.raises(InputError, match="field 'task' is missing: this model has several tasks"):
            predictor.predict([{"text": "no task"}])
    finally:
        predictor.close()
    single = [alone[r["task"]][[x for x in rows if x["task"] == r["task"]].index(r)] for r in rows]
    with open(tmp_path / "rows.csv", "w", newline="") as f:  # the same rows from a file with a `task` column
        writer = csv.DictWriter(f, ["task", "text"])
        writer.writeheader()
        writer.writerows(rows)
    assert cli_main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "rows.csv"), "--batch-size", "8",
                     "--out", str(tmp_path / "p.jsonl")]) == 0
    assert_same_predictions(read_jsonl(tmp_path / "p.jsonl"), mixed, tol=0)
    assert [r["task"] for r in mixed] == [r["task"] for r in rows]
    assert_same_predictions(mixed, single, tol=1e-4)
    assert_same_predictions(by_default, alone["toy-b"], tol=0)
    # the tasks' prompts differ, so the same text scores differently under each task
    twins = predictor_scores_for_both_tasks(tmp_path / "run", rows[0]["text"])
    assert twins[0] != pytest.approx(twins[1], abs=1e-6)


def predictor_scores_for_both_tasks(run: Path, text: str) -> list[list[float]]:
    predictor = load_predictor(run)
    try:
        return log_likelihoods(predictor.predict([{"text": text, "task": "toy-a"}, {"text": text, "task": "toy-b"}]))
    finally:
        predictor.close()


def test_predict_command_line_errors(pt_run, spec, tmp_path, capsys):
    test_csv = str(spec.parent / "reviews" / "test.csv")
    with pytest.raises(SystemExit):
        cli_main(["predict", str(pt_run), "--backbone", "tiny-llama", "--input", test_csv])
    assert "give a run folder, or --backbone NAME with --task" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["predict", "--backbone", "tiny-llama", "--input", test_csv])
    assert "--backbone needs --task" in capsys.readouterr().err
    assert cli_main(["predict", str(pt_run), "--input", str(tmp_path / "absent.csv")]) == 1
    assert "Input file not found" in capsys.readouterr().err
    assert cli_main(["predict", str(pt_run), "--input", test_csv, "--checkpoint", "last",
                     "--out", str(tmp_path / "last.jsonl")]) == 0
    assert len(read_jsonl(tmp_path / "last.jsonl")) == 10
