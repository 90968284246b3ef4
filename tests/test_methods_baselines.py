"""The transfer baselines SPoT, TPV, ATTEMPT and MPT: method contract, their specific behaviour, configs, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fixtures.library.tiny_tasks import (
    SOURCES, TARGET, quick_data, quick_eval, quick_train, register_fixture_tasks,
)
from helpers import encode, folder_held_by_another_process
from mtpt.batching import pad_batch
from mtpt.cli import main as cli_main
from mtpt.config import RunConfig, method_config, parse_run_config
from mtpt.errors import MtptError
from mtpt.library import LibraryEntry, SourceLibrary
from mtpt.contract import ExtraLosses, ExtraState, LossContext, PromptBatch
from mtpt.registry import get_method
from mtpt.model import SoftPromptModel, task_loss
from mtpt.prompt_io import save_prompt
from mtpt.runtime import build_context
from mtpt.testing import tiny_backbone
from mtpt.training.checkpoint import load_method_state, save_checkpoint
from mtpt.runner import train

REPO = Path(__file__).resolve().parents[1]


def build(backbone, method: dict, tasks: list[str], seed: int = 0):
    spec, options = method_config(method)
    return spec.build(options, build_context(backbone, tasks, seed))


def run_config(method: dict, tasks: list[str], out: Path, steps: int = 2, final=()) -> RunConfig:
    register_fixture_tasks()
    return RunConfig(backbone="tiny-llama", tasks=tasks, method=method, data=quick_data(), train=quick_train(steps),
                     eval=quick_eval(final), output_dir=str(out))


def log_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fake_mpt_source_run(backbone, lib: str, folder: Path) -> Path:
    """An MPT source-stage checkpoint (with perturbed factors) as a finished run would leave it."""
    method = build(backbone, {"name": "mpt", "source_library": lib}, list(SOURCES))
    with torch.no_grad():
        method.prefix_task_cols.add_(torch.randn_like(method.prefix_task_cols))
    meta = {"method": "mpt", "weights_hash": backbone.weights_hash, "backbone": backbone.name, "tasks": list(SOURCES)}
    save_checkpoint(folder / "checkpoints" / "best", method, meta)
    return folder


# --- the contract, for every registered configuration -------------------------------------------------------------
CASES = {
    "spot-fixed": ({"name": "spot", "mode": "fixed", "source": "fx-alpha"}, [TARGET]),
    "spot-generic": ({"name": "spot", "mode": "generic"}, [TARGET]),
    "spot-retrieve": ({"name": "spot", "mode": "retrieve", "target_prompt": "<target-run>"}, [TARGET]),
    "tpv-init": ({"name": "tpv", "mode": "init", "sources": ["fx-alpha", "fx-beta"], "target_prompt": "<target-run>"},
                 [TARGET]),
    "tpv-init-all": ({"name": "tpv", "mode": "init", "init_selection": "all", "sources": ["fx-alpha", "fx-beta"]},
                     [TARGET]),
    "tpv-combine": ({"name": "tpv", "mode": "combine", "lambdas": [0.5, 0.25, 1.0]}, [TARGET]),
    "attempt": ({"name": "attempt", "bottleneck": 8}, [TARGET]),
    "attempt-multitask": ({"name": "attempt", "bottleneck": 8, "target_init": "mean_sources"}, [TARGET, "fx-gamma"]),
    "mpt-source": ({"name": "mpt", "stage": "source"}, list(SOURCES)),
    "mpt-target": ({"name": "mpt", "stage": "target", "source_run": "<mpt-run>"}, [TARGET, "fx-gamma"]),
}


def case_method(case: str, lib: str, tmp_path: Path, backbone) -> dict:
    method = {**CASES[case][0], "source_library": lib}
    if method.get("target_prompt") == "<target-run>":
        method["target_prompt"] = str(Path(lib) / "_runs" / TARGET / "seed-42")  # a finished PT run folder
    if method.get("source_run") == "<mpt-run>":
        method["source_run"] = str(fake_mpt_source_run(backbone, lib, tmp_path / "mpt-source"))
    return method


def loss_with_extras(model: SoftPromptModel, batch) -> torch.Tensor:
    method = model.method
    out = model(batch, want_hidden=bool(getattr(method, "wants_hidden_states", False)))
    loss = task_loss(out)
    if isinstance(method, ExtraLosses):
        def run_with_prompts(prompts):
            other = model(batch, want_hidden=out.hidden is not None, prompts=prompts)
            return other.logits, other.hidden

        ctx = LossContext(PromptBatch(model.embed(batch.input_ids), batch.input_mask, batch.task_ids), out.prompts,
                          out.logits, out.hidden, out.target_mask, run_with_prompts)
        loss = loss + sum(method.extra_losses(ctx).values())
    return loss


@pytest.mark.parametrize("case", list(CASES))
def test_method_contract(case, lib, backbone, tok, tmp_path):
    method_dict, tasks = case_method(case, lib, tmp_path, backbone), CASES[case][1]
    method = build(backbone, method_dict, tasks)
    model = SoftPromptModel(backbone, method)
    task_ids = [i % len(tasks) for i in range(3)]
    batch = encode(tok, task_ids=task_ids)

    # forward/backward reaches the method's trainable parameters and nothing of the backbone
    model.train()
    prompts = method(PromptBatch(model.embed(batch.input_ids), batch.input_mask, batch.task_ids))
    assert prompts.shape[0] == 3 and prompts.shape[2] == backbone.hidden_size
    loss_with_extras(model, batch).backward()
    assert all(p.grad is None for p in backbone.model.parameters())
    trainable = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in trainable:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name

    # save -> load gives an identical method (after "training" moved the parameters)
    with torch.no_grad():
        for _, param in trainable:
            param.add_(torch.randn_like(param) * 0.1)
    save_checkpoint(tmp_path / "ck", method, {"method": method_dict["name"]})
    fresh = build(backbone, method_dict, tasks, seed=1)
    load_method_state(tmp_path / "ck", fresh)
    for (name, a), (_, b) in zip(method.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    if isinstance(method, ExtraState):
        assert fresh.extra_state() == method.extra_state()
    model.eval()
    fresh_model = SoftPromptModel(backbone, fresh).eval()
    with torch.no_grad():
        assert torch.equal(model(batch).logits, fresh_model(batch).logits)

    # generation works behind the method's prompts
    inputs = pad_batch([tok.input_ids(t) for t in ("good", "a longer input")], [[], []], task_ids[:2], tok.pad_id)
    rows = model.generate(inputs, max_new_tokens=2)
    assert len(rows) == 2 and all(len(r) <= 2 for r in rows)


def test_methods_are_registered_with_documented_configs():
    for name in ("spot", "tpv", "attempt", "mpt"):
        spec = get_method(name)
        assert spec.summary and spec.config_cls.__doc__


@pytest.mark.parametrize("name", ["spot", "tpv", "attempt", "mpt"])
def test_shipped_method_configs_load(name):
    config = parse_run_config([str(REPO / "configs" / "methods" / f"{name}.yaml")])
    spec, options = method_config(config.method)
    assert spec.name == name and isinstance(options, spec.config_cls)
    assert options.source_library


def test_cli_lists_the_new_commands(capsys):
    assert cli_main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train-source", "library", "similarity", "tpv-grid", "export-mpt"):
        assert command in out


# --- SPoT ---------------------------------------------------------------------------------------------------------
def crafted_library(tmp_path, backbone) -> SourceLibrary:
    """Sources along orthogonal axes; s0 is long, so cosine and dot similarity disagree on the best source."""
    d = backbone.hidden_size
    library = SourceLibrary.create(tmp_path / "crafted", backbone=backbone.name, weights_hash=backbone.weights_hash,
                                   init_prompt=torch.zeros(2, d))
    axes = torch.eye(d)
    for name, vector in (("s0", 10 * axes[0]), ("s1", axes[1]), ("s2", axes[2])):
        library.add_entry(LibraryEntry(task=name, seed=0, path=f"{name}/seed-0"), vector.expand(2, d).clone(), {})
    return library


def test_spot_picks_the_most_similar_source(tmp_path, backbone):
    library = crafted_library(tmp_path, backbone)
    d = backbone.hidden_size
    target = (0.2 * torch.eye(d)[0] + torch.eye(d)[1]).expand(2, d).clone()
    save_prompt(target, tmp_path / "target.safetensors")
    options = {"name": "spot", "source_library": str(library.root),
               "target_prompt": str(tmp_path / "target.safetensors")}
    method = build(backbone, options, [TARGET])
    sims = method.record["similarities"]
    assert method.record["source"] == "s1" == max(sims, key=sims.get)
    assert sims["s1"] == pytest.approx(1 / (1 + 0.04) ** 0.5, rel=1e-5)
    assert torch.equal(method.prompt.detach(), library.prompt("s1"))
    by_dot = build(backbone, {**options, "similarity": "dot"}, [TARGET])
    assert by_dot.record["source"] == "s0"


def test_spot_retrieval_run_inside_training(tmp_path, lib, backbone):
    method = {"name": "spot", "source_library": lib, "sources": list(SOURCES), "retrieval_steps": 2}
    result = train(run_config(method, [TARGET], tmp_path / "run"), backbone=backbone)
    retrieval = result.run_dir / "retrieval"
    assert (retrieval / "results.json").exists() and (retrieval / "checkpoints").is_dir()
    record = log_lines(result.run_dir / "method_log.jsonl")[0]["transfer"]
    assert record["mode"] == "retrieve" and record["target_prompt"] == str(retrieval)
    sims = record["similarities"]
    assert set(sims) == set(SOURCES) and record["source"] == max(sims, key=sims.get)
    state = json.loads((result.run_dir / "checkpoints" / "best" / "method_state.json").read_text())
    assert state["transfer"]["source"] == record["source"]


def test_a_transfer_run_copied_without_its_library_evaluates_as_trained(tmp_path, lib, backbone):
    """A run folder moved to a machine without its library (and without its retrieval run) is rebuilt from its
    checkpoint: the same test scores, the same inputs left out as leaked (its source tasks are in the checkpoint)."""
    import shutil

    from mtpt.runs import RestoredFromCheckpointWarning, evaluate_run, load_run

    library = shutil.copytree(lib, tmp_path / "library")
    method = {"name": "spot", "source_library": str(library), "sources": list(SOURCES), "retrieval_steps": 2}
    run = train(run_config(method, [TARGET], tmp_path / "run", final=["test"]), backbone=backbone).run_dir
    before = evaluate_run(run, splits=("test",), backbone=backbone)
    shutil.rmtree(run / "retrieval")
    with pytest.warns(RestoredFromCheckpointWarning, match=f"its prerequisite run {run / 'retrieval'} is missing"):
        assert evaluate_run(run, splits=("test",), backbone=backbone) == before
    assert not (run / "retrieval").exists()  # rebuilding a trained run never trains its prerequisites
    shutil.rmtree(library)
    with pytest.warns(RestoredFromCheckpointWarning, match=f"{run}: rebuilt from its checkpoint .* alone, as rebuilding "
                                                           f"it as it was trained failed: {library} is not a "
                                                           f"source-prompt library"):
        assert evaluate_run(run, splits=("test",), backbone=backbone) == before
    with pytest.warns(RestoredFromCheckpointWarning):
        assert set(SOURCES) <= set(load_run(run, backbone=backbone).source_tasks)

    meta = run / "checkpoints" / "best" / "meta.json"  # a checkpoint written before source tasks were recorded
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "source_tasks"}))
    with pytest.warns(RestoredFromCheckpointWarning), \
            pytest.raises(MtptError, match="does not record its sources' tasks.*`mtpt predict` needs none"):
        evaluate_run(run, splits=("test",), backbone=backbone)
    with pytest.warns(RestoredFromCheckpointWarning):
        assert load_run(run, backbone=backbone).source_tasks is None  # predicting needs no leakage check

    other = Path(lib) / "_runs" / TARGET / "seed-42" / "checkpoints" / "best"  # a pt checkpoint of the same shape
    with pytest.raises(MtptError, match="rebuilding the trained run .* failed too: the checkpoint was saved by "
                                        "method 'pt', not 'spot'"):
        load_run(run, str(other), backbone=backbone)


def test_spot_without_a_library_says_how_to_make_one(backbone):
    with pytest.raises(MtptError, match="train-source"):
        build(backbone, {"name": "spot"}, [TARGET])


# --- TPV ----------------------------------------------------------------------------------------------------------
def test_tpv_initialisation_is_init_plus_the_task_vectors(lib, backbone):
    library = SourceLibrary.open(lib)
    every = {"name": "tpv", "source_library": lib, "sources": ["fx-alpha", "fx-beta"], "init_selection": "all"}
    method = build(backbone, every, [TARGET])
    expected = library.init_prompt() + library.task_vector("fx-alpha") + library.task_vector("fx-beta")
    assert torch.allclose(method.prompt.detach(), expected, atol=1e-6)
    with pytest.raises(MtptError, match="lambdas has 3 values for 2 sources"):
        build(backbone, {**every, "lambdas": [1, 2, 3]}, [TARGET])


def test_tpv_top_k_initialisation_is_init_plus_the_mean_of_the_most_similar_vectors(lib, backbone):
    from mtpt.library.access import read_prompt
    from mtpt.methods.tpv.arithmetic import most_similar

    library = SourceLibrary.open(lib)
    target_run = str(Path(lib) / "_runs" / TARGET / "seed-42")  # a finished PT run on the target from P_init
    options = {"name": "tpv", "source_library": lib, "sources": ["fx-alpha", "fx-beta", "fx-gamma"], "top_k": 2,
               "target_prompt": target_run}
    method = build(backbone, options, [TARGET])
    vectors = library.task_vectors(["fx-alpha", "fx-beta", "fx-gamma"])
    chosen = most_similar(read_prompt(target_run) - library.init_prompt(), vectors, 2)
    assert torch.allclose(method.prompt.detach(), library.init_prompt() + vectors[chosen].mean(dim=0), atol=1e-6)
    assert sorted(method.record["lambdas"]) == sorted(["fx-alpha", "fx-beta", "fx-gamma"][i] for i in chosen)
    with pytest.raises(MtptError, match="top_k takes one lambda"):
        build(backbone, {**options, "lambdas": [1, 2, 3]}, [TARGET])


def test_tpv_select_best_takes_the_first_maximum_and_skips_nan():
    from mtpt.methods.tpv.grid import select_best

    scores = {(0.0,): 1.0, (0.5,): 3.0, (1.0,): 3.0, (2.0,): float("nan")}
    best, value, table = select_best(list(scores), scores.get)
    assert best == (0.5,) and value == 3.0 and len(table) == 4
    with pytest.raises(MtptError, match="NaN"):
        select_best([(0.0,)], lambda c: float("nan"))


def test_tpv_grid_keeps_the_best_validation_lambda(tmp_path, lib, backbone, monkeypatch):
    import mtpt.training.evaluate as evaluate
    from mtpt.methods.tpv.grid import run_grid

    real = evaluate.evaluate_sets

    def peaked(model, parts, sets, acc):  # validation score peaks at lambda = 0.5
        lam = float(model.method.lambdas[0].detach())
        metrics = real(model, parts, sets, acc)
        return {task: {**m, "score": 100 - 100 * (lam - 0.5) ** 2} for task, m in metrics.items()}

    monkeypatch.setattr(evaluate, "evaluate_sets", peaked)
    method = {"name": "tpv", "source_library": lib, "mode": "combine", "sources": ["fx-alpha"],
              "grid": [0.0, 0.25, 0.5, 0.75, 1.0]}
    result = run_grid(run_config(method, [TARGET], tmp_path / "grid"), backbone=backbone)
    assert result.best_lambdas == {"fx-alpha": 0.5} and result.best_metric == 100
    rows = log_lines(tmp_path / "grid" / "grid.jsonl")
    assert [r["lambdas"]["fx-alpha"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert json.loads((tmp_path / "grid" / "results.json").read_text())["best_lambdas"] == {"fx-alpha": 0.5}


def test_tpv_grid_run_folder_is_a_normal_run(tmp_path, lib, backbone):
    from mtpt.methods.tpv.grid import run_grid
    from mtpt.runs import evaluate_run, load_run

    method = {"name": "tpv", "source_library": lib, "mode": "combine", "sources": ["fx-alpha", "fx-beta"],
              "grid": [0.0, 1.0], "grid_mode": "per_task"}
    result = run_grid(run_config(method, [TARGET], tmp_path / "grid"), backbone=backbone)
    rows = log_lines(tmp_path / "grid" / "grid.jsonl")
    assert len(rows) == 4
    scores = [r["score"] for r in rows]
    assert list(rows[scores.index(max(scores))]["lambdas"].values()) == list(result.best_lambdas.values())
    parts = load_run(tmp_path / "grid", backbone=backbone)
    assert parts.model.method.lambda_record() == result.best_lambdas
    assert "test" in evaluate_run(tmp_path / "grid", backbone=backbone)


# --- ATTEMPT ------------------------------------------------------------------------------------------------------
def test_attempt_logs_mean_attention_per_source(tmp_path, lib, backbone):
    method = {"name": "attempt", "source_library": lib, "bottleneck": 8}
    result = train(run_config(method, [TARGET], tmp_path / "run"), backbone=backbone)
    lines = log_lines(result.run_dir / "method_log.jsonl")
    assert [line["step"] for line in lines] == [1, 2]
    weights = lines[0]["attention"]
    assert list(weights) == [*SOURCES, "target"]
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)


def test_attempt_multitask_uses_each_examples_own_target_prompt(lib, backbone, tok):
    method = build(backbone, {"name": "attempt", "source_library": lib, "bottleneck": 8}, [TARGET, "fx-gamma"])
    assert method.targets.shape[0] == 2 and method.source_names == ["fx-alpha", "fx-beta"]
    with torch.no_grad():
        method.targets[1].add_(1.0)
    batch = encode(tok, task_ids=[0, 1, 0])
    embeds = backbone.model.get_input_embeddings()(batch.input_ids)
    prompts = method(PromptBatch(embeds, batch.input_mask, batch.task_ids))
    for row, slot in enumerate([0, 1, 0]):
        candidates = torch.cat([method.sources, method.targets[slot].unsqueeze(0)])
        _, mixed = method.attention(embeds[row:row + 1], batch.input_mask[row:row + 1], candidates)
        assert torch.allclose(prompts[row], mixed[0] + method.targets[slot], atol=1e-6)


# --- MPT ----------------------------------------------------------------------------------------------------------
def test_mpt_source_stage_logs_the_distillation_terms(tmp_path, lib, backbone):
    method = {"name": "mpt", "source_library": lib, "distill_weight": 0.5}
    result = train(run_config(method, list(SOURCES), tmp_path / "source"), backbone=backbone)
    steps = [line for line in log_lines(result.run_dir / "metrics.jsonl") if "loss" in line]
    assert len(steps) == 2
    for line in steps:
        assert line["loss/distill_kl"] >= 0 and line["loss/distill_mse"] > 0
        parts = line["loss/task"] + line["loss/distill_kl"] + line["loss/distill_mse"]
        assert line["loss"] == pytest.approx(parts, rel=1e-5)


def test_mpt_distillation_is_scaled_by_lambda(lib, backbone, tok):
    batch = encode(tok, task_ids=[0, 1, 2])
    terms = []
    for weight in (1.0, 0.25):
        method = build(backbone, {"name": "mpt", "source_library": lib, "distill_weight": weight}, list(SOURCES))
        model = SoftPromptModel(backbone, method).train()
        out = model(batch, want_hidden=True)

        def run_with_prompts(prompts, model=model):
            other = model(batch, want_hidden=True, prompts=prompts)
            return other.logits, other.hidden

        ctx = LossContext(PromptBatch(model.embed(batch.input_ids), batch.input_mask, batch.task_ids), out.prompts,
                          out.logits, out.hidden, out.target_mask, run_with_prompts)
        terms.append(method.extra_losses(ctx))
    for name in ("distill_kl", "distill_mse"):
        assert float(terms[1][name].detach()) == pytest.approx(0.25 * float(terms[0][name].detach()), rel=1e-5)


def test_mpt_hidden_distance_option_reaches_the_loss(lib, backbone, tok):
    from mtpt.methods.mpt.distillation import distillation_loss

    batch = encode(tok, task_ids=[0, 1, 2])
    method = build(backbone, {"name": "mpt", "source_library": lib, "hidden_distance": "normalized_mse"},
                   list(SOURCES))
    model = SoftPromptModel(backbone, method).train()
    out = model(batch, want_hidden=True)
    teacher = model(batch, want_hidden=True, prompts=method.teachers.index_select(0, batch.task_ids))
    ctx = LossContext(PromptBatch(model.embed(batch.input_ids), batch.input_mask, batch.task_ids), out.prompts,
                      out.logits, out.hidden, out.target_mask, lambda prompts: (teacher.logits, teacher.hidden))
    got = float(method.extra_losses(ctx)["distill_mse"].detach())
    expected = {distance: float(distillation_loss(out.logits, teacher.logits, out.hidden, teacher.hidden,
                                                  out.target_mask, hidden_distance=distance)["mse"].detach())
                for distance in ("mse", "normalized_mse")}
    assert got == pytest.approx(expected["normalized_mse"], rel=1e-5)
    assert got != pytest.approx(expected["mse"], rel=1e-3)
    with pytest.raises(MtptError, match="hidden_distance"):
        build(backbone, {"name": "mpt", "source_library": lib, "hidden_distance": "cosine"}, list(SOURCES))


def test_mpt_target_stage_starts_from_the_source_run(tmp_path, lib, backbone):
    source = fake_mpt_source_run(backbone, lib, tmp_path / "source")
    saved = json.loads((source / "checkpoints" / "best" / "meta.json").read_text())
    assert saved["tasks"] == list(SOURCES)
    from safetensors.torch import load_file

    tensors = load_file(str(source / "checkpoints" / "best" / "method.safetensors"))
    shared = build(backbone, {"name": "mpt", "stage": "target", "source_run": str(source)}, [TARGET])
    assert torch.equal(shared.prompt_embeddings.detach(), tensors["prompt_embeddings"])
    # the default: u v = 1, so the target's prompt starts at P* itself
    torch.testing.assert_close(shared.task_prompt(0), tensors["prompt_embeddings"])
    mean = build(backbone, {"name": "mpt", "stage": "target", "source_run": str(source), "target_init": "mean"},
                 [TARGET])
    assert torch.allclose(mean.prefix_task_cols[0], tensors["prefix_task_cols"].mean(0))
    one = build(backbone, {"name": "mpt", "stage": "target", "source_run": str(source), "target_init": "source",
                           "init_source": "fx-beta", "train_shared": False}, [TARGET])
    assert torch.equal(one.prefix_task_rows[0], tensors["prefix_task_rows"][1])
    assert not one.prompt_embeddings.requires_grad
    with pytest.raises(MtptError, match="init_source"):
        build(backbone, {"name": "mpt", "stage": "target", "source_run": str(source), "target_init": "source"},
              [TARGET])
    with pytest.raises(MtptError, match="source_run"):
        build(backbone, {"name": "mpt", "stage": "target"}, [TARGET])


def test_mpt_exports_to_peft_multitask_and_prompt_tuning(tmp_path, lib, backbone):
    from peft import PeftModel

    from mtpt.peft_io import import_peft_prompt
    from mtpt.runs import export_run

    method = {"name": "mpt", "stage": "target", "source_run": str(fake_mpt_source_run(backbone, lib, tmp_path / "s"))}
    result = train(run_config(method, [TARGET, "fx-gamma"], tmp_path / "target", steps=1), backbone=backbone)
    assert cli_main(["export-mpt", str(result.run_dir), "--out", str(tmp_path / "peft-mpt")]) == 0
    from mtpt.runs import load_run

    trained = load_run(result.run_dir, backbone=backbone).model.method
    peft_model = PeftModel.from_pretrained(tiny_backbone("llama").model, str(tmp_path / "peft-mpt"))
    prompts = peft_model.get_prompt(batch_size=2, task_ids=torch.tensor([0, 1]))
    for index in (0, 1):
        assert torch.allclose(prompts[index], trained.task_prompt(index), atol=1e-6)
    export_run(result.run_dir, tmp_path / "peft-pt", task="fx-gamma", backbone=backbone)
    assert torch.allclose(import_peft_prompt(tmp_path / "peft-pt"), trained.task_prompt(1))


def test_tpv_grid_refuses_a_run_folder_another_process_holds(tmp_path, lib, backbone):
    from mtpt.methods.tpv.grid import run_grid

    folder = tmp_path / "grid"
    with folder_held_by_another_process(folder) as pid:
        method = {"name": "tpv", "source_library": lib, "mode": "combine", "sources": ["fx-alpha"], "grid": [0.0]}
        with pytest.raises(MtptError, match=f"in use by pid {pid}"):
            run_grid(run_config(method, [TARGET], folder), backbone=backbone)
        assert not (folder / "results.json").exists()
