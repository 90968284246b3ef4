"""The DTVG method (METHODS.md §6) on tiny models: stage I, regrouping, ablations, fixed evaluation prompt,
checkpoints, PEFT export, the plot-groups and recommend commands, shipped configs and the microbenchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fixtures.library.tiny_tasks import (
    SOURCES, TARGET, quick_data, quick_eval, quick_train, register_fixture_tasks,
)
from helpers import encode
from mtpt.batching import pad_batch
from mtpt.cli import main as cli_main
from mtpt.config import RunConfig, method_config, parse_run_config
from mtpt.errors import MtptError
from mtpt.library import LibraryEntry, SourceLibrary
from mtpt.contract import PromptBatch
from mtpt.methods.dtvg.module import DynamicGrouping
from mtpt.model import SoftPromptModel, task_loss
from mtpt.peft_io import import_peft_prompt
from mtpt.prompt_io import save_prompt
from mtpt.runtime import build_context
from mtpt.training.checkpoint import load_method_state, save_checkpoint
from mtpt.runner import train

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def build(backbone, method: dict, tasks=(TARGET,), seed: int = 0) -> DynamicGrouping:
    spec, options = method_config({"name": "dtvg", **method})
    return spec.build(options, build_context(backbone, list(tasks), seed))


def prompts_of(method: DynamicGrouping, batch_size: int = 2) -> torch.Tensor:
    """The method's prompt for a dummy batch (the prompt does not depend on the input)."""
    d = method.p_init.shape[1]
    batch = PromptBatch(torch.zeros(batch_size, 3, d), torch.ones(batch_size, 3, dtype=torch.long),
                        torch.zeros(batch_size, dtype=torch.long))
    out = method(batch)
    assert out.shape == (batch_size, *method.p_init.shape)
    return out[0]


# --- a crafted library: sources along orthogonal axes ------------------------------------------------------------
def axes(d: int) -> torch.Tensor:
    return torch.eye(d)


def crafted(tmp_path: Path, backbone, vectors: dict[str, torch.Tensor], target_vector: torch.Tensor,
            length: int = 2) -> tuple[str, str, torch.Tensor]:
    """A library whose task vectors are ``vectors`` (each a [d] row repeated over L tokens) around a random P_init,
    and a target prompt file P_init + target_vector. Returns (library, target prompt path, P_init)."""
    d = backbone.hidden_size
    init = torch.randn(length, d, generator=torch.Generator().manual_seed(3))
    root = tmp_path / "crafted"
    library = SourceLibrary.create(root, backbone=backbone.name, weights_hash=backbone.weights_hash, init_prompt=init)
    for name, vector in vectors.items():
        library.add_entry(LibraryEntry(task=name, seed=0, path=f"{name}/seed-0"), init + vector.expand(length, d), {})
    target = tmp_path / "target.safetensors"
    save_prompt(init + target_vector.expand(length, d), target)
    return str(root), str(target), init


@pytest.fixture
def three_axes(tmp_path, backbone):
    """s0 = +e0, s1 = +e1, s2 = -e0; target vector +e0: TS = [1/d, 0, -1/d] -> R = [s0, s1], KC(2) = 0 -> {s0}."""
    e = axes(backbone.hidden_size)
    return crafted(tmp_path, backbone, {"s0": e[0], "s1": e[1], "s2": -e[0]}, e[0])


def set_target_vector(method: DynamicGrouping, vector: torch.Tensor) -> None:
    with torch.no_grad():
        method.target_prompt.copy_(method.p_init + vector.expand_as(method.p_init))


# --- the method contract ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ablation", ["full", "all_sources", "spot"])
def test_contract_gradients_checkpoint_generation(ablation, lib, backbone, tok, tmp_path):
    options = {"source_library": lib, "ablation": ablation,
               "target_prompt": str(Path(lib) / TARGET / "seed-42" / "prompt.safetensors")}
    method = build(backbone, options)
    assert method.source_names == list(SOURCES)
    model = SoftPromptModel(backbone, method).train()
    batch = encode(tok)
    task_loss(model(batch)).backward()
    assert all(p.grad is None for p in backbone.model.parameters())
    trainable = {n: p for n, p in method.named_parameters() if p.requires_grad}
    expected = {"spot": {"target_prompt"}}.get(ablation, {"target_prompt", "target_scale", "source_scales"})
    assert set(trainable) == expected
    for name, param in trainable.items():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    if ablation == "all_sources":
        assert (method.source_scales.grad != 0).any(dim=1).all()  # every source is merged, so every a_s learns

    with torch.no_grad():
        for param in trainable.values():
            param.add_(torch.randn_like(param) * 0.1)
    method.after_step(1)
    save_checkpoint(tmp_path / "ck", method, {"method": "dtvg"})
    fresh = build(backbone, options, seed=1)
    load_method_state(tmp_path / "ck", fresh)
    for (name, a), (_, b) in zip(method.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    assert fresh.extra_state() == method.extra_state()
    model.eval()
    fresh_model = SoftPromptModel(backbone, fresh).eval()
    with torch.no_grad():
        assert torch.equal(model(batch).logits, fresh_model(batch).logits)
    inputs = pad_batch([tok.input_ids(t) for t in ("good", "a longer input")], [[], []], [0, 0], tok.pad_id)
    rows = model.generate(inputs, max_new_tokens=2)
    assert len(rows) == 2 and all(len(r) <= 2 for r in rows)


# --- grouping inside the module -----------------------------------------------------------------------------------
def test_full_regroups_on_every_training_forward(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target}).train()
    e = axes(backbone.hidden_size)
    sources = SourceLibrary.open(library).task_vectors(["s0", "s1", "s2"])
    torch.testing.assert_close(prompts_of(method), method.target_prompt + sources[0])
    first = method.after_step(1)
    assert first["group"] == ["s0"] and first["ranked"] == ["s0", "s1"] and first["k_star"] == 1
    d = backbone.hidden_size
    assert first["ts"] == pytest.approx({"s0": 1 / d, "s1": 0.0, "s2": -1 / d}, abs=1e-6)
    assert first["kc"] == pytest.approx([0.0, 0.0], abs=1e-7)

    set_target_vector(method, -e[0] + 0.5 * e[1])  # now s2 leads, s1 follows, s0 is negative
    torch.testing.assert_close(prompts_of(method), method.target_prompt + sources[2])
    second = method.after_step(2)
    assert second["ranked"] == ["s2", "s1"] and second["group"] == ["s2"]
    # Scales take part in grouping (detached): shrinking s2's scales to 0 makes s1 the only positive source.
    with torch.no_grad():
        method.source_scales[2].zero_()
    prompts_of(method)
    assert method.after_step(3)["group"] == ["s1"]
    assert method.extra_state()["group_history"] == [[1, ["s0"]], [2, ["s2"]], [3, ["s1"]]]


def test_merge_gradients_reach_the_group_scales_only(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target}).train()
    prompts_of(method).pow(2).sum().backward()
    assert method.target_prompt.grad is not None and method.target_scale.grad is not None
    grad = method.source_scales.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


def test_grouping_is_computed_in_fp32_under_autocast(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target})
    with torch.no_grad():
        method.source_scales.mul_(1.0 + 1e-4 * torch.arange(3.0)[:, None])
    plain = method.decide()[1].ts
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = method.decide()[1].ts
    assert under_autocast.dtype == torch.float32 and torch.equal(plain, under_autocast)


# --- ablations ----------------------------------------------------------------------------------------------------
def test_target_only_is_the_scaled_target_vector(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target, "ablation": "target_only"}).train()
    with torch.no_grad():
        method.target_scale.copy_(torch.tensor([0.5, 2.0]))
    expected = method.p_init + method.target_scale[:, None] * (method.target_prompt - method.p_init)
    torch.testing.assert_close(prompts_of(method), expected)
    assert not method.source_scales.requires_grad  # never merged: no optimizer group for a_s
    assert method.after_step(1)["group"] == []


def test_all_sources_merges_every_source(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target, "ablation": "all_sources"}).train()
    with torch.no_grad():
        method.source_scales.copy_(torch.tensor([[1.0, 0.5], [2.0, 1.0], [0.0, 3.0]]))
    expected = method.p_init + (method.target_prompt - method.p_init)
    expected = expected + (method.source_scales[:, :, None] * method.source_vectors).sum(dim=0)
    torch.testing.assert_close(prompts_of(method), expected)
    assert method.after_step(1)["group"] == ["s0", "s1", "s2"]


def test_only_positive_merges_the_whole_ranked_list(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target, "ablation": "only_positive"})
    prompts_of(method.train())
    record = method.after_step(1)
    assert record["group"] == record["ranked"] == ["s0", "s1"] and record["k_star"] == 1


def test_fixed_group_is_kept_whatever_the_vectors(three_axes, backbone, tmp_path):
    library, target, _ = three_axes
    options = {"source_library": library, "target_prompt": target, "ablation": "fixed_group"}
    method = build(backbone, options).train()
    assert method.fixed_group == [0]
    set_target_vector(method, -axes(backbone.hidden_size)[0])  # "full" would now pick s2
    torch.testing.assert_close(prompts_of(method), method.target_prompt + method.source_vectors[0])
    record = method.after_step(1)
    assert record["group"] == ["s0"] and record["ranked"] == ["s2", "s1"]  # TS still logged
    assert method.extra_state()["fixed_group"] == ["s0"]
    save_checkpoint(tmp_path / "ck", method, {})
    fresh = build(backbone, options)
    fresh.fixed_group = [2]  # the checkpoint's stored group must win over anything recomputed
    load_method_state(tmp_path / "ck", fresh)
    assert fresh.fixed_group == [0]


def test_spot_starts_from_the_most_cosine_similar_source_prompt(tmp_path, backbone):
    e = axes(backbone.hidden_size)
    library, target, _ = crafted(tmp_path, backbone, {"near": e[0], "far": -e[0]}, e[0])
    method = build(backbone, {"source_library": library, "target_prompt": target, "ablation": "spot"}).train()
    spot = method.record["spot"]
    sims = spot["similarities"]
    assert spot["source"] == max(sims, key=sims.get) and spot["compare"] == "prompts"
    assert torch.equal(method.target_prompt.detach(), SourceLibrary.open(library).prompt(spot["source"]))
    assert torch.equal(prompts_of(method), method.target_prompt)  # plain prompt tuning: no merge, no scales
    assert method.after_step(1) == {"spot": spot}
    assert method.after_step(2) is None  # logged once


def test_param_groups_have_their_own_learning_rates(three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target, "lr_target_prompt": 0.3,
                              "lr_source_scales": 0.01})
    groups = {g["name"]: g for g in method.param_groups(0.001)}
    assert list(groups) == ["target_prompt", "target_scale", "source_scales"]
    assert [groups[n]["lr"] for n in groups] == [0.3, 0.001, 0.01]
    assert groups["source_scales"]["params"][0] is method.source_scales


# --- the fixed evaluation prompt ----------------------------------------------------------------------------------
def test_evaluation_uses_the_fixed_prompt_and_never_regroups(three_axes, backbone, monkeypatch):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target}).train()
    prompts_of(method)
    method.after_step(1)
    fixed = method.eval_prompt.clone()
    torch.testing.assert_close(fixed, method.merged([0]).detach())
    method.eval()
    monkeypatch.setattr(DynamicGrouping, "decide", lambda self: pytest.fail("regrouped in eval mode"))
    first = prompts_of(method)
    set_target_vector(method, -axes(backbone.hidden_size)[0])  # parameters move; the eval prompt does not
    assert torch.equal(prompts_of(method), first) and torch.equal(first, fixed)
    assert torch.equal(method.task_prompt(0), fixed)


@pytest.mark.parametrize("mode,expected", [("after_step", ["s2"]), ("last_forward", ["s0"])])
def test_eval_group_modes(mode, expected, three_axes, backbone):
    library, target, _ = three_axes
    method = build(backbone, {"source_library": library, "target_prompt": target, "eval_group": mode}).train()
    prompts_of(method)  # this step's forward groups {s0}
    set_target_vector(method, -axes(backbone.hidden_size)[0])  # as if the optimizer step moved P_t
    record = method.after_step(1)
    assert record["group"] == ["s0"] and record["eval_group"] == expected
    torch.testing.assert_close(method.eval_prompt, method.merged(method._indices(expected)).detach())


# --- a whole run: stage I, training, logs, checkpoints, rebuild, export, plot ------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, lib, backbone) -> Path:
    register_fixture_tasks()
    out = tmp_path_factory.mktemp("dtvg") / "run"
    method = {"name": "dtvg", "source_library": lib, "stage1_steps": 2, "lr_target_prompt": 0.05,
              "lr_target_scale": 0.02, "lr_source_scales": 0.01}
    config = RunConfig(backbone="tiny-llama", tasks=[TARGET], method=method, data=quick_data(), train=quick_train(3),
                       eval=quick_eval(["test"]), output_dir=str(out))
    train(config, backbone=backbone)
    return out


def test_run_trains_with_stage1_logs_and_param_groups(trained_run):
    stage1 = trained_run / "stage1"
    assert (stage1 / "results.json").exists() and (stage1 / "checkpoints" / "best").is_dir()
    lines = [json.loads(line) for line in (trained_run / "method_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    for line in lines:
        assert set(line["ts"]) == set(SOURCES) and len(line["kc"]) == len(line["ranked"])
        assert line["group"] == line["ranked"][:line["k_star"]]
    groups = json.loads((trained_run / "param_groups.json").read_text())
    assert [(g["name"], g["lr"]) for g in groups] == [("target_prompt", 0.05), ("target_scale", 0.02),
                                                      ("source_scales", 0.01)]
    results = json.loads((trained_run / "results.json").read_text())
    assert "test" in results["final"]


def test_checkpoint_holds_the_fixed_prompt_and_rebuilds_without_stage1(trained_run, backbone):
    from mtpt.library.access import finished_run_prompt
    from mtpt.runs import load_run

    stage1_results = trained_run / "stage1" / "results.json"
    stamp = stage1_results.stat().st_mtime_ns
    parts = load_run(trained_run, "best", backbone)
    method = parts.model.method
    assert stage1_results.stat().st_mtime_ns == stamp  # the finished stage-I run was reused, not retrained
    state = json.loads((trained_run / "checkpoints" / "best" / "method_state.json").read_text())
    assert state["sources"] == list(SOURCES) and state["group_history"] and state["record"]["stage1"].endswith("stage1")
    torch.testing.assert_close(method.eval_prompt, method.merged(method.eval_group).detach())
    assert not torch.equal(method.target_prompt.detach(), finished_run_prompt(trained_run / "stage1"))  # P_t trained


def test_a_finished_stage1_is_reused_without_a_backbone_and_refused_after_a_change(trained_run):
    from dataclasses import replace

    from mtpt.config import load_yaml, run_config_from_dict
    from mtpt.runner import ensure_run

    def ensure_target_run(config, backbone):
        return ensure_run(config, backbone).folder

    recorded = run_config_from_dict(load_yaml(trained_run / "stage1" / "config.yaml"))

    def no_backbone():
        raise AssertionError("a finished stage-I run must not load a backbone")

    assert ensure_target_run(recorded, no_backbone) == trained_run / "stage1"
    changed = replace(recorded, train=replace(recorded.train, lr=recorded.train.lr * 2))
    with pytest.raises(MtptError, match=r"another configuration .*train\.lr"):
        ensure_target_run(changed, no_backbone)
    resumable = replace(recorded, train=replace(recorded.train, resume=not recorded.train.resume))
    assert ensure_target_run(resumable, no_backbone) == trained_run / "stage1"  # bookkeeping fields are not compared


def test_a_resumed_run_continues_the_group_history(lib, backbone, tmp_path):
    register_fixture_tasks()
    method = {"name": "dtvg", "source_library": lib, "stage1_steps": 1, "ablation": "fixed_group"}
    config = RunConfig(backbone="tiny-llama", tasks=[TARGET], method=method, data=quick_data(), train=quick_train(2),
                       eval=quick_eval(), output_dir=str(tmp_path / "run"))
    train(config, backbone=backbone)
    stamp = (tmp_path / "run" / "stage1" / "results.json").stat().st_mtime_ns
    first = json.loads((tmp_path / "run" / "checkpoints" / "last" / "method_state.json").read_text())
    config.train.steps = 4
    config.train.allow_config_change = True  # extending a finished run on purpose
    train(config, backbone=backbone)
    assert (tmp_path / "run" / "stage1" / "results.json").stat().st_mtime_ns == stamp
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "method_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "method_state.json").read_text())
    assert state["fixed_group"] == first["fixed_group"]
    assert state["group_history"] == [[1, first["fixed_group"]]]  # one group, kept across the resume


def test_export_writes_the_fixed_merged_prompt(trained_run, backbone, tmp_path):
    from mtpt.runs import export_run, load_run

    out = export_run(trained_run, tmp_path / "peft", "peft", backbone=backbone)
    exported = import_peft_prompt(out)
    parts = load_run(trained_run, "best", backbone)
    assert torch.equal(exported, parts.model.method.eval_prompt)


def test_plot_groups_writes_a_png(trained_run, tmp_path, capsys):
    out = tmp_path / "groups.png"
    assert cli_main(["plot-groups", str(trained_run), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000
    assert "3 steps, 3 sources" in capsys.readouterr().out


def test_plot_groups_without_a_log_says_so(tmp_path, capsys):
    assert cli_main(["plot-groups", str(tmp_path)]) == 1
    assert "method_log.jsonl" in capsys.readouterr().err


# --- recommend ----------------------------------------------------------------------------------------------------
def test_recommend_explains_the_group(three_axes, capsys):
    register_fixture_tasks()
    library, target, _ = three_axes
    assert cli_main(["recommend", TARGET, "--library", library, "--target-prompt", target]) == 0
    out = capsys.readouterr().out
    assert "group: s0" in out and "k* = 1" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.strip().startswith(("1 ", "2 ", "- "))}
    assert "in the group" in rows["s0"] and "after k* = 1" in rows["s1"] and "dropped" in rows["s2"]


def test_recommend_runs_a_short_target_run(lib, tmp_path, capsys):
    register_fixture_tasks()
    out_dir = tmp_path / "short"
    argv = ["recommend", TARGET, "--library", lib, "--steps", "2", "--out", str(out_dir), "--batch-size", "4"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert (out_dir / "results.json").exists() and "group:" in out
    assert all(source in out for source in SOURCES)


# --- configuration ------------------------------------------------------------------------------------------------
def test_a_run_with_two_tasks_is_refused(three_axes, backbone):
    library, target, _ = three_axes
    with pytest.raises(MtptError, match="one target task"):
        build(backbone, {"source_library": library, "target_prompt": target}, tasks=[TARGET, "fx-alpha"])


@pytest.mark.parametrize("option,match", [({"threshold": float("nan")}, "threshold"),
                                          ({"lr_source_scales": -1.0}, "lr_source_scales"),
                                          ({"stage1_steps": 0}, "stage1_steps")])
def test_bad_options_are_refused(option, match, three_axes, backbone):
    library, target, _ = three_axes
    with pytest.raises(MtptError, match=match):
        build(backbone, {"source_library": library, "target_prompt": target, **option})


@pytest.mark.parametrize("name", ["dtvg.yaml", "dtvg-smoke.yaml"])
def test_shipped_configs_load(name):
    config = parse_run_config([str(REPO / "configs" / "methods" / name)])
    spec, options = method_config(config.method)
    assert spec.name == "dtvg" and options.source_library and len(config.tasks) == 1


# --- microbenchmark -----------------------------------------------------------------------------------------------
def test_microbenchmark_compares_grouping_with_a_step():
    path = REPO / "benchmarks" / "grouping_microbench.py"
    spec = importlib.util.spec_from_file_location("grouping_microbench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.run(sources=(2, 5), L=4, d=8, repeats=3)
    overhead = bench.method_overhead(sources=(2, 5), L=4, d=8, repeats=3)
    table = bench.compare_to_step(report, overhead, step_ms=1000.0, step_label="supplied")
    assert "supplied" in table and "% of step" in table
    assert set(overhead["results"]) == {2, 5} and all(v["median_ms"] > 0 for v in overhead["results"].values())
