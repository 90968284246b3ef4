"""The method contract from the outside: building never trains, and a method defined only here (its module, config
and registry entry, as a new method's folder would hold them) runs through ``mtpt train``, ``mtpt bench speed``
and ``mtpt bench quality`` with no edit anywhere else."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest
import torch
import yaml
from helpers import toy_task
from torch import Tensor, nn

from mtpt import registry
from mtpt.config import RunConfig, method_config
from mtpt.contract import BuildContext, FinishedRun, Prerequisite, PromptBatch
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, get_method, list_methods
from mtpt.testing import tiny_backbone


# --- the example method: what a new method's folder would hold ----------------------------------------------------
@dataclass
class WarmStartConfig:
    """Prompt tuning with a learned gain, started from a short prompt-tuning run on the run's own tasks."""

    prompt_length: int = 4
    """L."""
    warm_steps: int = 1
    """Steps of the warm-up run (a prerequisite run)."""
    start_from: str = ""
    """A prompt file to start from instead of the warm-up run."""


class WarmStartPrompt(nn.Module):
    """``gain * P``: one prompt and one scalar gain, both trained."""

    def __init__(self, prompt: Tensor):
        super().__init__()
        self.prompt = nn.Parameter(prompt.detach().float().clone())
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, batch: PromptBatch) -> Tensor:
        return (self.gain * self.prompt).unsqueeze(0).expand(batch.input_embeds.shape[0], -1, -1)


def warm_start_prerequisites(config: WarmStartConfig, run: RunConfig) -> list[Prerequisite]:
    if config.start_from:
        return []
    warmup = RunConfig(backbone=run.backbone, tasks=list(run.tasks),
                       method={"name": "pt", "prompt_length": config.prompt_length}, data=replace(run.data),
                       train=replace(run.train, steps=config.warm_steps, eval_every=config.warm_steps),
                       eval=replace(run.eval, final_splits=[]))
    return [Prerequisite("warmup", warmup)]


def build_warm_start(config: WarmStartConfig, ctx: BuildContext) -> WarmStartPrompt:
    from mtpt.library.access import read_prompt

    path = config.start_from or ctx.prerequisite("warmup").checkpoint
    return WarmStartPrompt(read_prompt(path))


WARM_START = MethodSpec(
    name="warm_start", config_cls=WarmStartConfig, build=build_warm_start,
    summary="test-only: prompt tuning with a gain, from a warm-up run", prerequisites=warm_start_prerequisites,
    roles=OptionRoles(prompt_length="prompt_length"),
    speed=(SpeedVariant("warm_start", {"start_from": "{target_prompt}", "prompt_length": "{prompt_length}"},
                        peft="pt"),),
)


@pytest.fixture
def warm_start():
    registry.register_method(WARM_START)
    yield WARM_START
    registry._REGISTRY.pop(WARM_START.name)


# --- building never trains --------------------------------------------------------------------------------------
@pytest.fixture
def no_training(monkeypatch):
    """Every way to start a training run raises."""
    import mtpt.runner
    from mtpt.training.loop import Trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a builder started a training run")

    monkeypatch.setattr(Trainer, "fit", refuse)
    monkeypatch.setattr(Trainer, "__init__", refuse)
    monkeypatch.setattr(mtpt.runner, "train", refuse)
    monkeypatch.setattr(mtpt.runner, "ensure_run", refuse)


def fake_finished_run(folder: Path, method: str, module: nn.Module, tasks: list[str], backbone) -> Path:
    """A run folder as a finished run leaves it (results + best checkpoint), written without training."""
    from mtpt.training.checkpoint import save_checkpoint

    meta = {"method": method, "tasks": tasks, "backbone": backbone.name, "weights_hash": backbone.weights_hash}
    save_checkpoint(folder / "checkpoints" / "best", module, meta)
    (folder / "results.json").write_text(json.dumps({"best_step": 1, "best_metric": 50.0, "final": {}}))
    return folder


# options beyond each method's defaults and speed variants whose modules differ (restore must rebuild each), with the
# run's tasks when not the single target
TWO_TASKS = ["bench-task-0", "bench-task-1"]
MORE_VARIANTS = {
    "dtvg": [({"ablation": "fixed_group"}, None), ({"ablation": "spot"}, None), ({"eval_group": "last_forward"}, None)],
    "tpv": [({"mode": "combine"}, None), ({"init_selection": "all"}, None)],
    "spot": [({"mode": "generic"}, None), ({"mode": "fixed", "source": "src-1"}, None)],
    "attempt": [({"temperature": 3.0}, TWO_TASKS), ({"per_task_target": False}, TWO_TASKS)],
    "ta_lora": [({"injection": "additive"}, None), ({"gate": "head"}, TWO_TASKS)],
}


def every_method_built(tmp_path: Path, backbone) -> list[tuple[MethodSpec, dict, object, BuildContext, nn.Module]]:
    """Every registered method, in every variant, built on a synthetic library with its declared prerequisite runs
    supplied as finished folders (``(spec, method options, config, context, module)``)."""
    from mtpt.bench.synthetic import TARGET_FILE, synthetic_library
    from mtpt.methods.pt.module import PromptTuning
    from mtpt.runtime import build_context

    names = ["src-0", "src-1", *TWO_TASKS]
    for task in TWO_TASKS:
        toy_task(task)  # the run's tasks must be registered (their config is checked)
    library = synthetic_library(tmp_path / "library", backbone, 4, names=names).root
    prompt = torch.randn(4, backbone.hidden_size)
    pt_run = FinishedRun(tmp_path / "pt-run", fake_finished_run(tmp_path / "pt-run", "pt", PromptTuning(prompt),
                                                                 TWO_TASKS[:1], backbone) / "checkpoints" / "best")
    built = []
    for spec in list_methods():
        variants = [({"name": spec.name}, None)] + [({"name": spec.name, **v.options}, None) for v in spec.speed]
        variants += [({"name": spec.name, **more}, tasks) for more, tasks in MORE_VARIANTS.get(spec.name, [])]
        for options, tasks in variants:
            target = tasks or TWO_TASKS[:1]
            ctx = build_context(backbone, target, 0, run_dir=tmp_path / "run")
            options = fill_roles(options, spec, library, tmp_path / "library" / TARGET_FILE)
            configs = [options]
            if spec.roles.source_run and "stage" in {f.name for f in fields(spec.config_cls)}:
                # the target stage reads a finished source stage of the same method: built here, not trained
                _, source_config = method_config({**options, "stage": "source"})
                source_ctx = build_context(backbone, names, 0)
                source = fake_finished_run(tmp_path / f"{spec.name}-source-{len(built)}", spec.name,
                                           spec.build(source_config, source_ctx), names, backbone)
                configs.append({**options, "stage": "target", spec.roles.source_run: str(source)})
            for method in configs:
                _, config = method_config(method)
                run = RunConfig(backbone=backbone.name, tasks=target, method=method, output_dir=str(tmp_path / "run"))
                supplied = {p.key: pt_run for p in spec.prerequisite_runs(config, run)}
                method_ctx = replace(ctx, prerequisites=supplied)
                built.append((spec, method, config, method_ctx, spec.build(config, method_ctx)))
    return built


def test_every_registered_method_builds_with_its_prerequisites_supplied_and_never_trains(tmp_path, no_training):
    built = every_method_built(tmp_path, tiny_backbone("llama"))
    assert all(isinstance(module, nn.Module) for *_, module in built)
    assert {spec.name for spec, *_ in built} == {spec.name for spec in list_methods()}
    # the methods that need a run first declared it, and were built from the supplied one
    supplied = {(spec.name, tuple(sorted(ctx.prerequisites))) for spec, _, _, ctx, _ in built}
    assert ("spot", ("retrieval",)) in supplied and ("dtvg", ("stage1",)) in supplied


def test_a_method_with_restore_is_rebuilt_from_its_checkpoint_alone(tmp_path, no_training):
    """``MethodSpec.restore`` rebuilds the trained module, equal in every tensor, extra state and output (on a batch
    mixing the run's tasks), with the library, the init prompts and the prerequisite runs its options name gone."""
    import shutil

    from mtpt.training.checkpoint import load_method_state, read_checkpoint_contents, save_checkpoint

    backbone = tiny_backbone("llama")
    built = [case for case in every_method_built(tmp_path, backbone) if case[0].restore is not None]
    hidden = backbone.hidden_size

    def batch(ctx: BuildContext) -> PromptBatch:
        task_ids = torch.arange(3) % len(ctx.task_names)
        return PromptBatch(torch.randn(3, 5, hidden, generator=torch.Generator().manual_seed(0)), torch.ones(3, 5),
                           task_ids)

    saved = []
    for index, (spec, method, config, ctx, module) in enumerate(built):
        with torch.no_grad():  # as if trained: every tensor away from what the builder made
            for param in module.parameters():
                param.add_(torch.randn_like(param) * 0.1)
        if hasattr(module, "after_step"):
            module.train()
            module(batch(ctx))
            module.after_step(1)  # a method's evaluation state follows its parameters after a step (DTVG)
        folder = tmp_path / "checkpoints" / str(index)
        save_checkpoint(folder, module, {"method": spec.name})
        saved.append(folder)
    for gone in ("library", "pt-run", *(f.name for f in tmp_path.glob("*-source-*"))):
        shutil.rmtree(tmp_path / gone)
    for (spec, method, config, ctx, module), folder in zip(built, saved):
        restored = spec.restore(config, replace(ctx, prerequisites={}), read_checkpoint_contents(folder))
        load_method_state(folder, restored)
        assert restored.state_dict().keys() == module.state_dict().keys(), method
        for name, tensor in module.state_dict().items():
            assert torch.equal(restored.state_dict()[name], tensor), (method, name)
        if hasattr(module, "extra_state"):
            assert restored.extra_state() == module.extra_state(), method
        assert [p.requires_grad for p in restored.parameters()] == [p.requires_grad for p in module.parameters()]
        module.eval(), restored.eval()
        with torch.no_grad():
            assert torch.equal(module(batch(ctx)), restored(batch(ctx))), method
            if getattr(module, "current_delta", None) is not None:  # TA-LoRA's gated block, read by its hooks
                assert torch.equal(module.current_delta, restored.current_delta), method
    assert {spec.name for spec, *_ in built} == {spec.name for spec in list_methods() if spec.trains}
    assert sum(len(ctx.task_names) > 1 for *_, ctx, _ in built) >= 4


def fill_roles(options: dict, spec: MethodSpec, library: Path, target_prompt: Path) -> dict:
    mapping = {"{library}": str(library), "{teachers}": str(library), "{target_prompt}": str(target_prompt),
               "{prompt_length}": 4}
    filled = {k: mapping.get(v, v) if isinstance(v, str) else v for k, v in options.items()}
    if spec.roles.library and not filled.get(spec.roles.library):
        filled[spec.roles.library] = str(library)
    if spec.roles.prompt_length and spec.roles.prompt_length not in filled:
        filled[spec.roles.prompt_length] = 4
    return filled


def test_a_method_built_without_its_declared_prerequisite_says_which():
    from mtpt.errors import MtptError

    ctx = BuildContext(hidden_size=4, vocab_size=8, task_names=["t"], embed_tokens=lambda ids: ids,
                       tokenize=lambda text: [])
    with pytest.raises(MtptError, match="prerequisite run 'warmup'"):
        build_warm_start(WarmStartConfig(), ctx)


# --- a new method through every entry point ---------------------------------------------------------------------
def test_a_new_method_trains_with_its_prerequisite_run(warm_start, tmp_path):
    from mtpt.cli import main

    toy_task("contract-toy", n_train=8, n_eval=4)
    out = tmp_path / "run"
    assert main(["train", "--backbone", "tiny-llama", "--tasks", "[contract-toy]", "--method", "{name: warm_start}",
                 "--train.steps", "2", "--train.batch_size", "2", "--train.eval_every", "2",
                 "--eval.final_splits", "[test]", "--output_dir", str(out)]) == 0
    assert (out / "warmup" / "results.json").exists() and (out / "results.json").exists()
    assert json.loads((out / "warmup" / "checkpoints" / "best" / "meta.json").read_text())["method"] == "pt"
    assert get_method("warm_start") is warm_start


def test_a_trained_run_that_cannot_be_restored_names_what_is_missing_and_trains_nothing(warm_start, tmp_path):
    """A method without ``restore`` (this one) needs what its config names to rebuild a trained run: a missing
    prerequisite run is named, not retrained."""
    import shutil

    from mtpt.cli import main
    from mtpt.errors import MtptError
    from mtpt.runs import load_run

    toy_task("contract-toy", n_train=8, n_eval=4)
    out = tmp_path / "run"
    assert main(["train", "--backbone", "tiny-llama", "--tasks", "[contract-toy]", "--method", "{name: warm_start}",
                 "--train.steps", "1", "--train.batch_size", "2", "--train.eval_every", "1",
                 "--output_dir", str(out)]) == 0
    load_run(out)
    shutil.rmtree(out / "warmup")
    with pytest.raises(MtptError, match=f"{out}: rebuilding the trained run from its config.yaml failed: its "
                                        f"prerequisite run {out / 'warmup'} is missing or unfinished.*restore what"):
        load_run(out)
    assert not (out / "warmup").exists()


def test_a_new_method_runs_through_bench_speed(warm_start, tmp_path):
    from mtpt.bench.commands import COMMANDS

    out = tmp_path / "speed"
    assert COMMANDS["bench"][1](["speed", "--backbone", "tiny-llama", "--methods", "warm_start", "--repeats", "2",
                                 "--batch", "2", "--text-tokens", "8", "--prompt-length", "4", "--out", str(out)]) == 0
    row = json.loads((out / "speed.json").read_text())["methods"][0]
    assert row["method"] == "warm_start" and row["peft"] == "peft-pt" and row["vs_bare"] > 0


def test_a_new_method_runs_through_bench_quality(warm_start, tmp_path, capsys):
    from mtpt.bench.commands import COMMANDS

    toy_task("contract-toy", n_train=8, n_eval=4)
    config = {"backbone": "tiny-llama", "out": str(tmp_path / "quality"), "targets": ["contract-toy"], "kshot": 2,
              "seeds": [1], "steps": 1, "prompt_length": 4,
              "methods": {"pt": {"name": "pt"}, "warm_start": {"name": "warm_start"}},
              "data": {"max_eval_examples": 4}, "train": {"batch_size": 2, "eval_every": 1},
              "eval": {"batch_size": 4, "final_splits": ["test"]}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    assert COMMANDS["bench"][1](["quality", str(path)]) == 0
    cell = tmp_path / "quality" / "cells" / "warm_start" / "contract-toy" / "seed-1"
    assert (cell / "results.json").exists() and (cell / "warmup" / "results.json").exists()
    assert yaml.safe_load((cell / "config.yaml").read_text())["method"]["prompt_length"] == 4  # its role was filled
    assert "| warm_start |" in (tmp_path / "quality" / "results.md").read_text()
    capsys.readouterr()
    assert COMMANDS["bench"][1](["quality", str(path), "--status"]) == 0
    status = capsys.readouterr().out
    assert "| warm_start | 1/0/0 |" in status and "2 done, 0 partial, 0 to do" in status


def test_every_learning_rate_option_is_declared_in_the_registry():
    """A benchmark's learning-rate grid scales a method's rates through ``OptionRoles.learning_rates`` (it names no
    method's options itself), so an undeclared rate option would silently stay unscaled: every option whose name
    says it is a learning rate is declared, and every declared one exists and is a float-or-null option."""
    import re
    import typing
    from dataclasses import fields

    from mtpt.registry import list_methods

    for spec in list_methods():
        options = {f.name: f for f in fields(spec.config_cls)}
        named = {name for name in options if re.search(r"(^|_)lr($|_)", name)}
        assert named <= set(spec.roles.learning_rates), (spec.name, named - set(spec.roles.learning_rates))
        for name in spec.roles.learning_rates:
            assert name in options, (spec.name, name)
            assert set(typing.get_args(typing.get_type_hints(spec.config_cls)[name])) == {float, type(None)}
        if not spec.trains:
            assert not spec.roles.learning_rates, spec.name
