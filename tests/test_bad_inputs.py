"""Hostile inputs (issue 32): every bad config value, corrupted file, degenerate data file and crafted library
manifest gives a clear error naming the field or file, before a run creates anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from helpers import toy_task
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig, parse_run_config
from mtpt.errors import MtptError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tasks"


# --- config values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--train.eval_every", "0"], "train.eval_every must be >= 1, got 0"),
    (["--train.batch_size", "0"], "train.batch_size must be >= 1"),
    (["--train.grad_accum", "0"], "train.grad_accum must be >= 1"),
    (["--eval.batch_size", "0"], "eval.batch_size must be >= 1"),
    (["--eval.max_new_tokens", "0"], "eval.max_new_tokens must be >= 1"),
    (["--data.kshot", "0"], "data.kshot must be >= 1 (or null)"),
    (["--data.max_eval_examples", "0"], "data.max_eval_examples must be >= 1"),
    (["--data.max_input_tokens", "0"], "data.max_input_tokens must be >= 1"),
    (["--data.mixing_temperature", "0"], "data.mixing_temperature must be > 0"),
    (["--train.steps", "0"], "train.steps must be >= 1"),
    (["--train.steps", "-5"], "train.steps must be >= 1"),
    (["--train.lr", "-0.1"], "train.lr must be > 0"),
    (["--train.lr", "1e38"], "train.lr must be > 0 and < 1e+30"),
    (["--train.lr", "nan"], "train.lr"),
    (["--train.max_grad_norm", "-1"], "train.max_grad_norm must be > 0 (or null)"),
    (["--train.warmup_steps", "-4"], "train.warmup_steps must be >= 0"),
    (["--train.warmup_steps", "100"], "train.warmup_steps (100) must be below train.steps (100): lower it too"),
    (["--train.weight_decay", "-1"], "train.weight_decay must be >= 0"),
    (["--train.log_every", "0"], "train.log_every must be >= 1"),
    (["--train.early_stopping_patience", "0"], "train.early_stopping_patience must be >= 1"),
    (["--train.seed", "-1"], "train.seed must be >= 0"),
    (["--train.divergence_factor", "0.5"], "train.divergence_factor must be > 1"),
    (["--train.batch_size", "5", "--train.grad_accum", "2"], "multiple of train.grad_accum"),
    (["--tasks", "[]"], "tasks must not be empty"),
    (["--tasks", "[toy-sentiment, toy-sentiment]"], "tasks lists a value twice"),
    (["--tasks", "[toy-sentimnet]"], "unknown task 'toy-sentimnet'. Did you mean 'toy-sentiment'"),
    (["--train.metric_for_best", "acuracy"], "train.metric_for_best must be one of score, accuracy; got 'acuracy'. "
                                             "Did you mean 'accuracy'"),
    (["--eval.final_splits", "[tset]"], "eval.final_splits must be one of train, validation, test; got 'tset'. "
                                        "Did you mean 'test'"),
    (["--method", "{name: promt}"], "Unknown method 'promt'"),
    (["--method", "{name: pt, prompt_length: 0}"], "method.prompt_length must be >= 1"),
    (["--method", "{name: mpt, rank: 0}"], "method.rank must be >= 1"),
    (["--method", "{name: spot, retrieval_steps: 0}"], "method.retrieval_steps must be >= 1"),
    (["--method", "{name: dtvg, stage1_lr: -1}"], "method.stage1_lr must be > 0"),
    (["--method", "{name: ta_lora, orthogonality_weight: -1}"], "method.orthogonality_weight must be >= 0"),
    (["--method", "{name: attempt, temperature: 0}"], "method.temperature must be > 0"),
    (["--method", "{name: tpv, lambdas: []}"], "method.lambdas must hold"),
])
def test_a_bad_config_value_names_its_field_at_parse_time(argv, message):
    toy_task()
    with pytest.raises(MtptError) as err:
        parse_run_config(["--tasks", "[toy-sentiment]", *argv])
    assert message in str(err.value)


def test_configs_built_in_code_are_checked_too():
    with pytest.raises(MtptError, match="train.steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(MtptError, match="eval.final_splits"):
        EvalConfig(final_splits=["dev"])
    with pytest.raises(MtptError, match="data.kshot"):
        DataConfig(kshot=0)


def test_a_bad_value_set_after_construction_is_caught_before_training(tmp_path):
    from mtpt.runner import train

    toy_task()
    config = RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"], train=TrainConfig(steps=2),
                       output_dir=str(tmp_path / "run"))
    config.train.eval_every = 0  # would divide by zero in the loop
    with pytest.raises(MtptError, match="train.eval_every"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_the_cli_reports_a_bad_value_and_creates_nothing(tmp_path, capsys):
    from mtpt.cli import main

    toy_task()
    code = main(["train", "--backbone", "tiny-llama", "--tasks", "[toy-sentiment]", "--train.eval_every", "0",
                 "--output_dir", str(tmp_path / "run")])
    assert code == 1 and "train.eval_every must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- paths stored resolved ----------------------------------------------------------------------------------------
def test_paths_in_a_run_config_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(FIXTURES.parent)
    config = RunConfig(backbone="tiny-llama", tasks=["tasks/reviews.yaml"],
                       method={"name": "spot", "source_library": "lib", "target_prompt": "p.safetensors"},
                       data=DataConfig(data_root="data"), output_dir=str(tmp_path / "run"))
    assert config.tasks == [str(FIXTURES / "reviews.yaml")]
    assert config.method["source_library"] == str(FIXTURES.parent / "lib")
    assert config.method["target_prompt"] == str(FIXTURES.parent / "p.safetensors")
    assert config.data.data_root == str(FIXTURES.parent / "data")


def test_a_recorded_relative_path_compares_equal_to_the_same_file_named_absolutely(tmp_path, monkeypatch):
    """Recorded benchmark cells store paths relative to the repository; re-planned, they are absolute."""
    from mtpt.config import to_plain
    from mtpt.run_folder import recorded_changes, refuse_changed_run

    monkeypatch.chdir(tmp_path)
    toy_task()
    planned = RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"],
                        method={"name": "attempt", "source_library": "bench/library"}, output_dir="bench/cell")
    recorded = to_plain(planned)
    recorded["method"]["source_library"] = "bench/library"  # as an older run recorded it
    (tmp_path / "bench" / "cell").mkdir(parents=True)
    (tmp_path / "bench" / "cell" / "config.yaml").write_text(yaml.safe_dump(recorded))
    (tmp_path / "bench" / "cell" / "results.json").write_text("{}")
    assert recorded_changes(planned) == []
    refuse_changed_run(planned)
    other = RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"],
                      method={"name": "attempt", "source_library": "bench/other"}, output_dir="bench/cell")
    with pytest.raises(MtptError, match="method.source_library"):
        refuse_changed_run(other)


# --- corrupted files ----------------------------------------------------------------------------------------------
def test_damaged_prompt_files_name_themselves(tmp_path):
    from mtpt.prompt_io import load_prompt_tensor

    cases = {"short.safetensors": b"\x01\x00", "garbage.safetensors": os.urandom(64),
             "empty.safetensors": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MtptError, match=f"{tmp_path / name} is not a readable safetensors file"):
            load_prompt_tensor(tmp_path / name)
    save_file({"prompt": torch.tensor([[1.0, float("nan")]])}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(MtptError, match=r"nan.safetensors: tensor 'prompt' holds 1 non-finite"):
        load_prompt_tensor(tmp_path / "nan.safetensors")
    save_file({"prompt": torch.tensor([[1.0, float("inf")]])}, str(tmp_path / "inf.safetensors"))
    with pytest.raises(MtptError, match="inf.safetensors: tensor 'prompt'"):
        load_prompt_tensor(tmp_path / "inf.safetensors")


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe\x00\x01binary", "is not UTF-8 text"),
    (b"{not: valid: yaml: [", "is not valid YAML"),
    (b"- a list\n- of things\n", "must hold a mapping"),
])
def test_a_damaged_config_file_names_itself(tmp_path, content, message):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    with pytest.raises(MtptError, match=message) as err:
        parse_run_config([str(path)])
    assert str(path) in str(err.value)


def test_damaged_task_specs_and_data_files_name_themselves(tmp_path):
    from mtpt.tasks import TaskDataError, get_task

    spec = tmp_path / "binary.yaml"
    spec.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(TaskDataError, match=f"{spec}: not UTF-8"):
        get_task(spec)
    data = tmp_path / "train.csv"
    data.write_bytes(b"text,label\ngood\x00 film,1\nbad,0\n")
    spec = tmp_path / "nul.yaml"
    spec.write_text(yaml.safe_dump({"name": "nul", "template": "{text}", "label_column": "label",
                                    "label_words": {0: "no", 1: "yes"}, "files": {"train": "train.csv"}}))
    with pytest.raises(TaskDataError, match=f"{data}:2: NUL byte"):
        get_task(spec).examples("train")


def write_spec(folder: Path, rows: str, header: str = "text,label", **extra) -> Path:
    (folder / "train.csv").write_text(header + "\n" + rows, encoding="utf-8")
    spec = {"name": f"user-{len(list(folder.iterdir()))}", "template": "Review: {text}", "label_column": "label",
            "label_words": {0: "no", 1: "yes"}, "files": {"train": "train.csv"}, **extra}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("rows, header, extra, message", [
    ("a,1\nb,1\nc,1\nd,1\ne,1\n", "text,label", {}, "train.csv: every row of the train file has the same class"),
    ("a,1\nb,1\n", "text,label", {"label_words": {1: "yes"}}, "needs at least two classes"),
    ("a,1,x\nb,0,y\n", "text,label,text", {}, "names column(s) ['text'] twice"),
    ("a,1\n,0\nc,1\n", "text,label", {}, ":3: every field the template uses (text) is empty"),
    ("a,1\nb\x07ell,0\n", "text,label", {}, ":3: field 'text' holds the control character"),
])
def test_degenerate_data_is_refused_naming_the_file(tmp_path, rows, header, extra, message):
    from mtpt.tasks import TaskDataError, get_task

    spec = write_spec(tmp_path, rows, header, **extra)
    with pytest.raises(TaskDataError) as err:
        get_task(spec).examples("train")
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value) or "task 'user-" in str(err.value)


def test_a_one_class_split_of_any_classification_task_is_refused():
    from mtpt.tasks import Example, Task, TaskDataError, register

    words = (" no", " yes")

    def build(_root):
        return {"train": [Example(f"t{i}", words[i % 2], words, i % 2, i % 2) for i in range(8)],
                "validation": [Example(f"v{i}", words[1], words, 1, 1) for i in range(4)]}

    task = register(Task(name="one-class-validation", family="t", language="en", kind="classification",
                         metrics=("accuracy",), label_words=words, size_class="small", template="", notes="",
                         build=build, needs_data_root=False), replace=True)
    with pytest.raises(TaskDataError, match="every example of the validation split has the same class"):
        task.examples("train")


def test_a_pickled_backbone_folder_is_refused_with_our_message(tmp_path):
    from mtpt.backbones import load_backbone

    folder = tmp_path / "model"
    folder.mkdir()
    # a tiny config: were the pickle ever loaded, transformers would build this model, not a 7B default one
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
                                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                                    "num_key_value_heads": 2, "vocab_size": 32}))
    torch.save({"weight": torch.zeros(2)}, folder / "pytorch_model.bin")
    with pytest.raises(MtptError, match="pickle files .pytorch_model.bin.*safetensors only") as err:
        load_backbone(str(folder))
    assert "weights_only" not in str(err.value)


def test_a_truncated_backbone_weight_file_names_the_backbone(tmp_path):
    from mtpt.backbones import load_backbone
    from mtpt.testing import tiny_backbone

    tiny = tiny_backbone("llama")
    folder = tmp_path / "model"
    tiny.model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5])
    with pytest.raises(MtptError, match=f"Could not load backbone '{folder}'"):
        load_backbone(str(folder))


# --- library manifests --------------------------------------------------------------------------------------------
def damaged_library(lib: str, tmp_path: Path, edit) -> Path:
    import shutil

    copy = tmp_path / "lib"
    shutil.copytree(lib, copy, symlinks=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("path", ["../outside/seed-42", "/etc", "fx-alpha/../../outside", ".", ""])
def test_a_manifest_path_outside_the_library_is_refused(lib, tmp_path, path):
    from mtpt.library.format import SourceLibrary

    outside = tmp_path / "outside" / "seed-42"
    outside.mkdir(parents=True)
    save_file({"prompt": torch.zeros(4, 32)}, str(outside / "prompt.safetensors"))
    copy = damaged_library(lib, tmp_path, lambda m: m["entries"][0].update(path=path))
    with pytest.raises(MtptError, match="leads outside the library") as err:
        SourceLibrary.open(copy)
    assert str(copy / "manifest.json") in str(err.value)


def test_a_link_inside_the_library_that_points_out_is_refused(lib, tmp_path):
    from mtpt.library.format import SourceLibrary

    copy = damaged_library(lib, tmp_path, lambda m: None)
    entry = json.loads((copy / "manifest.json").read_text())["entries"][0]
    target = copy / entry["path"]
    import shutil

    shutil.rmtree(target) if not target.is_symlink() else target.unlink()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", target)
    with pytest.raises(MtptError, match="leads outside the library"):
        SourceLibrary.open(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(entries=[1, 2]), "an entry must be a JSON object"),
    (lambda m: m["entries"][0].update(seed="x"), "'seed' must be a int"),
    (lambda m: m.pop("backbone"), "KeyError"),
    (lambda m: m.update(prompt_length="long"), "ValueError"),
])
def test_a_manifest_with_wrong_types_names_itself(lib, tmp_path, edit, message):
    from mtpt.library.format import SourceLibrary

    copy = damaged_library(lib, tmp_path, edit)
    with pytest.raises(MtptError, match=f"{copy / 'manifest.json'} is damaged.*{message}"):
        SourceLibrary.open(copy)


def test_truncated_or_binary_manifests_and_nan_entries_name_their_file(lib, tmp_path):
    from mtpt.library.format import SourceLibrary

    copy = damaged_library(lib, tmp_path, lambda m: None)
    manifest = copy / "manifest.json"
    text = manifest.read_bytes()
    manifest.write_bytes(text[: len(text) // 2])
    with pytest.raises(MtptError, match=f"{manifest} is not valid JSON"):
        SourceLibrary.open(copy)
    manifest.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MtptError, match=f"{manifest} is not UTF-8"):
        SourceLibrary.open(copy)
    manifest.write_bytes(text)
    library = SourceLibrary.open(copy)
    entry = library.entries[0]
    prompt = copy / entry.path / "prompt.safetensors"
    save_file({"prompt": torch.full((library.prompt_length, library.hidden_size), float("nan"))}, str(prompt))
    with pytest.raises(MtptError, match=f"{prompt}: tensor 'prompt' holds"):
        library.prompt(entry.task, entry.seed)


# --- train-source -------------------------------------------------------------------------------------------------
def test_train_source_takes_task_specs_as_its_help_says(tmp_path, capsys):
    from mtpt.cli import main
    from mtpt.library.format import SourceLibrary

    spec = FIXTURES / "reviews.yaml"
    argv = ["train-source", "--backbone", "tiny-llama", "--sources", f"[{spec}]", "--library", str(tmp_path / "lib"),
            "--prompt_length", "3", "--mixture", "true", "--train.steps", "1", "--train.batch_size", "2",
            "--train.eval_every", "1", "--data.max_eval_examples", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    library = SourceLibrary.open(tmp_path / "lib")
    assert library.tasks == ["user-reviews"] and library.entry("_mixture").sources == ("user-reviews",)
    assert library.entry_run_config("user-reviews")["tasks"] == [str(spec)]
    assert main(argv) == 0  # a second run finds both entries and skips them
    assert capsys.readouterr().out.count("skipped") == 2


@pytest.mark.parametrize("sources, message", [
    (["toy-sentiment", "glue-rtee"], "unknown task 'glue-rtee'. Did you mean 'glue-rte'"),
    (["toy-sentiment", "glue-rte"], "needs the benchmark data"),
    (["toy-sentiment", str(FIXTURES / "missing.yaml")], "task spec not found"),
])
def test_train_source_checks_every_source_before_it_creates_anything(tmp_path, monkeypatch, sources, message):
    from mtpt.library.source_stage import SourceStageConfig, train_sources

    monkeypatch.delenv("MTPT_DATA_ROOT", raising=False)
    toy_task()
    with pytest.raises(MtptError, match=message):
        train_sources(SourceStageConfig(backbone="tiny-llama", sources=sources, library=str(tmp_path / "lib"),
                                        train=TrainConfig(steps=1, batch_size=2, eval_every=1)))
    assert not (tmp_path / "lib").exists()
