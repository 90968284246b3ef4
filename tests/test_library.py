"""The source-prompt library: format, source stage, refusal on mismatch, extension, atomic writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures.library.tiny_tasks import (
    SOURCES, TARGET, quick_data, quick_eval, quick_train, register_fixture_tasks, shared_library,
)
import mtpt.atomic
from mtpt.cli import main as cli_main
from mtpt.errors import MtptError
from mtpt.library import MIXTURE, LibraryEntry, SourceLibrary
from mtpt.library import format as library_format
from mtpt.library.source_stage import SourceStageConfig, parse_source_config, train_sources
from mtpt.tasks import Example, Task, register
from mtpt.testing import tiny_backbone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library_path(tmp_path_factory, backbone) -> Path:
    return shared_library(tmp_path_factory, backbone)


def stage(tmp_path, sources, backbone_name="tiny-llama", **overrides) -> SourceStageConfig:
    register_fixture_tasks()
    options = dict(backbone=backbone_name, sources=list(sources), library=str(tmp_path / "lib"), seeds=[42],
                   prompt_length=4, data=quick_data(), train=quick_train(), eval=quick_eval())
    options.update(overrides)
    return SourceStageConfig(**options)


def blank_library(tmp_path, backbone, length=3) -> SourceLibrary:
    init = torch.randn(length, backbone.hidden_size)
    return SourceLibrary.create(tmp_path / "lib", backbone=backbone.name, weights_hash=backbone.weights_hash,
                                init_prompt=init)


def entry(task: str, seed: int = 0, metric: float | None = None) -> LibraryEntry:
    return LibraryEntry(task=task, seed=seed, path=f"{task}/seed-{seed}", best_metric=metric)


# --- format -----------------------------------------------------------------------------------------------------
def test_source_stage_writes_the_documented_format(library_path, backbone):
    manifest = json.loads((library_path / "manifest.json").read_text())
    assert manifest["format"] == library_format.FORMAT_VERSION
    assert (manifest["backbone"], manifest["weights_hash"]) == ("tiny-llama", backbone.weights_hash)
    assert (manifest["prompt_length"], manifest["hidden_size"]) == (4, backbone.hidden_size)
    rows = {(e["task"], e["seed"]): e for e in manifest["entries"]}
    assert set(rows) == {(t, 42) for t in (*SOURCES, TARGET, MIXTURE)}
    assert rows[(MIXTURE, 42)]["path"] == "_mixture/seed-42"
    assert rows[(MIXTURE, 42)]["sources"] == [*SOURCES, TARGET]
    init = load_file(str(library_path / "init.safetensors"))["prompt"]
    for row in rows.values():
        folder = library_path / row["path"]
        prompt = load_file(str(folder / "prompt.safetensors"))["prompt"]
        assert prompt.shape == init.shape and not torch.equal(prompt, init)  # trained away from the shared start
        assert row["steps"] == 2 and row["best_metric"] is not None
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["run_config"]["method"]["init_path"].endswith("init.safetensors")  # every run starts at P_init


def test_reading_api(library_path, backbone):
    library = SourceLibrary.open(library_path)
    assert library.tasks == [*SOURCES, TARGET]
    init = library.init_prompt()
    assert init.shape == (4, backbone.hidden_size) and init.dtype == torch.float32
    vectors = library.task_vectors(list(SOURCES))
    assert vectors.shape == (3, 4, backbone.hidden_size)
    assert torch.allclose(vectors[1], library.prompt("fx-beta") - init)
    assert torch.equal(library.task_vector("fx-beta"), vectors[1])
    assert library.task_vectors().shape[0] == 4  # default: every task, mixture excluded
    assert library.mixture_prompt().shape == init.shape
    assert library.entry_meta("fx-alpha")["checkpoint"] == "best"


def test_a_library_moved_whole_still_names_its_runs_and_init(tmp_path, library_path):
    """meta.json names the entry's training run and its P_init relative to the entry, not by where it was built."""
    moved = tmp_path / "elsewhere" / "lib"
    shutil.copytree(library_path, moved)
    for meta_file in moved.glob("*/seed-*/meta.json"):
        assert str(library_path) not in meta_file.read_text()
    library = SourceLibrary.open(moved)
    for task in [*SOURCES, MIXTURE]:
        run_dir = library.entry_run_dir(task)
        assert run_dir == (moved / "_runs" / task / "seed-42").resolve() and (run_dir / "results.json").exists()
        run_config = library.entry_run_config(task)
        assert run_config["method"]["init_path"] == str((moved / "init.safetensors").resolve())
        assert run_config["output_dir"] == str(run_dir)


def test_portable_meta_keeps_paths_outside_the_library_and_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")
    work = tmp_path / "work"
    entry_dir = work / "lib" / "t" / "seed-0"
    meta = {"run_dir": str(work / "lib" / "_runs" / "t" / "seed-0"), "checkpoint": "best",
            "run_config": {"tasks": [str(tmp_path / "spec.yaml")], "data": {"data_root": "/elsewhere/data"},
                           "method": {"name": "pt", "init": "from_file",
                                      "init_path": str(work / "lib" / "init.safetensors")},
                           "output_dir": str(work / "lib" / "_runs" / "t" / "seed-0")}}
    written = library_format.portable_meta(meta, entry_dir, work / "lib")
    assert written["run_dir"] == written["run_config"]["output_dir"] == "../../_runs/t/seed-0"
    assert written["run_config"]["method"]["init_path"] == "../../init.safetensors"
    assert written["run_config"]["data"]["data_root"] == "/elsewhere/data"  # outside both: stays absolute
    assert written["run_config"]["tasks"] == ["../../../../spec.yaml"]  # in the working folder with the entry
    assert written["checkpoint"] == "best" and meta["run_dir"].startswith("/")  # the input is not changed


def test_portable_records_rewrites_entries_written_with_absolute_paths(tmp_path, library_path, monkeypatch):
    """benchmarks/portable_records.py on a library whose meta.json files name their runs absolutely (as mtpt wrote
    them until 2026-12-06): rewritten to the form add_entry writes now, once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("portable_records", REPO / "benchmarks" / "portable_records.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(library_path, tmp_path / "lib")
    library = SourceLibrary.open(tmp_path / "lib")
    tasks = [entry.task for entry in library.entries]
    assert MIXTURE in tasks
    written = {task: library.entry_meta(task) for task in tasks}
    for task, meta in written.items():  # the old form: every path absolute
        old = {**meta, "run_dir": str(library.entry_run_dir(task)), "run_config": library.entry_run_config(task)}
        (library.entry_dir(library.entry(task)) / "meta.json").write_text(json.dumps(old))
        assert str(tmp_path) in (library.entry_dir(library.entry(task)) / "meta.json").read_text()
    assert sorted(script.portable_library(tmp_path / "lib")) == sorted(f"{t}/seed-42" for t in tasks)
    assert {task: library.entry_meta(task) for task in tasks} == written
    assert script.portable_library(tmp_path / "lib") == []  # once is enough


def test_entry_without_seed_is_the_best_seed(tmp_path, backbone):
    library = blank_library(tmp_path, backbone)
    prompts = {seed: torch.randn(3, backbone.hidden_size) for seed in (1, 2, 3)}
    for seed, metric in ((1, 60.0), (2, 80.0), (3, 80.0)):
        library.add_entry(entry("t", seed, metric), prompts[seed], {})
    assert library.entry("t").seed == 2  # best metric, ties to the lowest seed
    assert torch.equal(library.prompt("t"), prompts[2])
    assert torch.equal(library.prompt("t", seed=3), prompts[3])
    with pytest.raises(MtptError, match="not seed 9"):
        library.prompt("t", seed=9)
    with pytest.raises(MtptError, match="train-source"):
        library.prompt("missing")


# --- refusal ----------------------------------------------------------------------------------------------------
def test_refuses_another_backbone_or_prompt_length(library_path, backbone):
    library = SourceLibrary.open(library_path)
    library.check_compatible(backbone.name, backbone.weights_hash, 4, backbone.hidden_size)
    with pytest.raises(MtptError, match="weights"):
        library.check_compatible("tiny-qwen2", "0123456789abcdef", 4, backbone.hidden_size)
    with pytest.raises(MtptError, match="length 4"):
        library.check_compatible(backbone.name, backbone.weights_hash, 8, backbone.hidden_size)
    with pytest.raises(MtptError, match="hidden size"):
        library.check_compatible(backbone.name, backbone.weights_hash, 4, 64)


def test_source_stage_refuses_to_extend_with_another_backbone(tmp_path, library_path):
    shutil.copytree(library_path, tmp_path / "lib")
    before = (tmp_path / "lib" / "manifest.json").read_text()
    with pytest.raises(MtptError, match="weights"):
        train_sources(stage(tmp_path, ["fx-alpha"], backbone_name="tiny-qwen2"), backbone=tiny_backbone("qwen2"))
    with pytest.raises(MtptError, match="prompt_length: 4"):
        train_sources(stage(tmp_path, ["fx-alpha"], prompt_length=6), backbone=tiny_backbone("llama"))
    assert (tmp_path / "lib" / "manifest.json").read_text() == before


def test_open_refuses_a_folder_that_is_not_a_library(tmp_path):
    with pytest.raises(MtptError, match="mtpt train-source"):
        SourceLibrary.open(tmp_path)


# --- extension --------------------------------------------------------------------------------------------------
def test_extend_appends_and_skips_existing_entries(tmp_path, backbone):
    train_sources(stage(tmp_path, ["fx-alpha"]), backbone=backbone)
    first = (tmp_path / "lib" / "fx-alpha" / "seed-42" / "prompt.safetensors").read_bytes()
    init = (tmp_path / "lib" / "init.safetensors").read_bytes()
    outcomes = train_sources(stage(tmp_path, ["fx-alpha", "fx-beta"], init_seed=7), backbone=backbone)
    assert [(o.task, o.status) for o in outcomes] == [("fx-alpha", "skipped"), ("fx-beta", "trained")]
    library = SourceLibrary.open(tmp_path / "lib")
    assert library.tasks == ["fx-alpha", "fx-beta"]
    assert (tmp_path / "lib" / "fx-alpha" / "seed-42" / "prompt.safetensors").read_bytes() == first
    assert (tmp_path / "lib" / "init.safetensors").read_bytes() == init  # P_init is never regenerated
    outcomes = train_sources(stage(tmp_path, ["fx-alpha"], overwrite=True, train=quick_train(steps=3)),
                             backbone=backbone)
    assert outcomes[0].status == "trained"
    assert SourceLibrary.open(tmp_path / "lib").entry("fx-alpha").steps == 3
    assert SourceLibrary.open(tmp_path / "lib").tasks == ["fx-alpha", "fx-beta"]  # overwriting keeps the order


def test_source_only_task_keeps_the_last_checkpoint(tmp_path, backbone):
    def build(_root):
        words = (" yes", " no")
        return {"train": [Example(f"w{i}?", words[i % 2], words, i % 2, gold=i % 2) for i in range(8)]}

    register(Task(name="fx-source-only", family="fixture", language="en", kind="classification",
                  metrics=("accuracy",), label_words=(" yes", " no"), size_class="small", template="", notes="",
                  build=build, source_only=True, needs_data_root=False), replace=True)
    train_sources(stage(tmp_path, ["fx-source-only"], train=quick_train(steps=2)), backbone=backbone)
    library = SourceLibrary.open(tmp_path / "lib")
    assert library.entry("fx-source-only").best_metric is None
    meta = library.entry_meta("fx-source-only")
    assert meta["checkpoint"] == "last"
    last = load_file(str(library.entry_run_dir("fx-source-only") / "checkpoints" / "last" / "method.safetensors"))[
        "prompt"]
    assert torch.equal(library.prompt("fx-source-only"), last)


# --- atomicity --------------------------------------------------------------------------------------------------
def test_a_crash_while_writing_an_entry_leaves_the_library_as_it_was(tmp_path, backbone, monkeypatch):
    library = blank_library(tmp_path, backbone)
    library.add_entry(entry("kept", 0, 1.0), torch.ones(3, backbone.hidden_size), {})
    manifest = (tmp_path / "lib" / "manifest.json").read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(library_format, "_replace_dir", crash)
    with pytest.raises(OSError):
        library.add_entry(entry("new", 0), torch.zeros(3, backbone.hidden_size), {})
    with pytest.raises(OSError):
        library.add_entry(entry("kept", 0), torch.zeros(3, backbone.hidden_size), {}, overwrite=True)
    assert (tmp_path / "lib" / "manifest.json").read_text() == manifest
    assert not (tmp_path / "lib" / "new" / "seed-0").exists()
    assert not [p for p in (tmp_path / "lib").rglob(".*")]  # no staging leftovers
    reopened = SourceLibrary.open(tmp_path / "lib")
    assert [e.task for e in reopened.entries] == ["kept"]
    assert torch.equal(reopened.prompt("kept"), torch.ones(3, backbone.hidden_size))


def test_a_crash_while_writing_the_manifest_keeps_the_old_one(tmp_path, backbone, monkeypatch):
    blank_library(tmp_path, backbone)
    manifest = (tmp_path / "lib" / "manifest.json").read_text()

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(mtpt.atomic.os, "replace", crash)
    with pytest.raises(OSError):
        mtpt.atomic.atomic_write_text(tmp_path / "lib" / "manifest.json", "{broken")
    monkeypatch.undo()
    assert (tmp_path / "lib" / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["init.safetensors", "manifest.json"]


def test_entries_refuse_wrong_shapes_and_duplicates(tmp_path, backbone):
    library = blank_library(tmp_path, backbone)
    with pytest.raises(MtptError, match="shape"):
        library.add_entry(entry("t"), torch.zeros(5, backbone.hidden_size), {})
    library.add_entry(entry("t"), torch.zeros(3, backbone.hidden_size), {})
    with pytest.raises(MtptError, match="overwrite"):
        library.add_entry(entry("t"), torch.zeros(3, backbone.hidden_size), {})
    with pytest.raises(MtptError, match="folder"):
        library_format.entry_folder("../escape", 0)


def test_processes_adding_entries_side_by_side_keep_each_others_rows(tmp_path, backbone):
    """Two workers open the library, each trains a different source, each adds its entry: the second write merges
    into the manifest on disk instead of replacing it with the copy it opened (which lacks the first's row)."""
    blank_library(tmp_path, backbone)
    first, second = SourceLibrary.open(tmp_path / "lib"), SourceLibrary.open(tmp_path / "lib")
    first.add_entry(entry("a"), torch.zeros(3, backbone.hidden_size), {})
    second.add_entry(entry("b"), torch.ones(3, backbone.hidden_size), {})
    assert SourceLibrary.open(tmp_path / "lib").tasks == ["a", "b"] and second.tasks == ["a", "b"]


# --- config and CLI ---------------------------------------------------------------------------------------------
def test_shipped_source_config_parses_with_overrides():
    config = parse_source_config([str(REPO / "configs/library/english-sources.yaml"), "--train.steps", "70",
                                  "--seeds", "[1, 2]"])
    assert config.sources[0] == "glue-mnli" and config.mixture is True
    assert config.train.steps == 70 and config.seeds == [1, 2]
    assert config.eval.final_splits == ["validation"]
    with pytest.raises(MtptError, match="Invalid source-stage"):
        parse_source_config(["--prompt_length", "many"])


def test_cli_train_source_and_library_listing(tmp_path, capsys):
    register_fixture_tasks()
    config = tmp_path / "sources.yaml"
    config.write_text(
        "backbone: tiny-llama\nsources: [fx-gamma]\nprompt_length: 3\nseeds: [5]\n"
        f"library: {tmp_path / 'lib'}\n"
        "data: {max_input_tokens: 32, max_eval_examples: 4}\n"
        "train: {steps: 1, batch_size: 2, eval_every: 1}\n"
    )
    assert cli_main(["train-source", str(config)]) == 0
    assert cli_main(["library", str(tmp_path / "lib")]) == 0
    out = capsys.readouterr().out
    assert "fx-gamma" in out and "seed 5" in out
    assert SourceLibrary.open(tmp_path / "lib").entry("fx-gamma").seed == 5
    assert cli_main(["train-source", "--help"]) == 0
