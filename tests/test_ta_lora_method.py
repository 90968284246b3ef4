"""TA-LoRA (METHODS.md §7) on tiny models: zero-gate equivalence, gated attention against a hand computation,
gradients per stage, learning-rate groups, the regulariser in the logs, stages, checkpoints, detach, errors and
``mtpt params``."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import encode, toy_task
from mtpt.backbones import Backbone
from mtpt.batching import Tokenizer
from mtpt.cli import main as cli_main
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig, method_config
from mtpt.errors import MtptError
from mtpt.methods.pt.module import PromptTuning
from mtpt.methods.ta_lora.config import TaLoraConfig
from mtpt.methods.ta_lora.factors import balanced_std
from mtpt.methods.ta_lora.injection import select_layers
from mtpt.methods.ta_lora.module import TaLora
from mtpt.methods.ta_lora.stages import build
from mtpt.model import SoftPromptModel
from mtpt.runs import load_run
from mtpt.runtime import build_context
from mtpt.testing import tiny_backbone
from mtpt.training.checkpoint import load_method_state, save_checkpoint
from mtpt.runner import train

GATED_ARCHS = ["llama", "qwen2", "gemma3"]
ALL_ARCHS = GATED_ARCHS + ["gpt2", "t5"]


def make(arch="llama", tasks=("a", "b"), seed=0, backbone: Backbone | None = None, **options):
    """A TA-LoRA source-stage module attached to a tiny backbone, plus a tokenizer and the backbone."""
    backbone = backbone or tiny_backbone(arch)
    config = TaLoraConfig(**{"prompt_length": 4, "rank": 2, **options})
    method = build(config, build_context(backbone, list(tasks), seed))
    model = SoftPromptModel(backbone, method)
    return model, Tokenizer(backbone.tokenizer, max_input_tokens=128), backbone


def plain_pt_logits(backbone: Backbone, theta0: torch.Tensor, batch) -> torch.Tensor:
    return SoftPromptModel(backbone, PromptTuning(theta0.detach().clone()))(batch).logits


def open_gates(method: TaLora, value: float = 0.7) -> None:
    with torch.no_grad():
        method.gates.copy_(torch.linspace(-value, value, method.gates.numel()).view_as(method.gates))


# --- zero-initialised gates ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, injection", [(a, "gated_attention") for a in GATED_ARCHS]
                         + [(a, "additive") for a in ALL_ARCHS])
def test_zero_gates_give_exactly_plain_prompt_tuning_with_theta0(arch, injection):
    model, tok, backbone = make(arch, injection=injection)
    batch = encode(tok, task_ids=[0, 1, 0])
    with torch.no_grad():
        ours = model(batch).logits
        model.detach_method()  # the reference runs on the same backbone, without the hook
        reference = plain_pt_logits(backbone, model.method.theta0, batch)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("arch, injection", [("llama", "gated_attention"), ("gemma3", "gated_attention"),
                                             ("t5", "additive")])
def test_gates_get_gradient_at_init_and_opening_them_changes_the_logits(arch, injection):
    model, tok, backbone = make(arch, injection=injection)
    method = model.method
    batch = encode(tok, task_ids=[0, 1, 1])
    model(batch).logits.square().mean().backward()
    # At g = 0 the block is multiplied by tanh(0) = 0: only the gates learn, with a gradient proportional to it.
    assert method.gates.grad is not None and method.gates.grad.abs().min() > 0
    for factor in (method.slow_b, method.fast_u, method.fast_v):
        assert torch.count_nonzero(factor.grad) == 0
    open_gates(method)
    with torch.no_grad():
        changed = model(batch).logits
        model.detach_method()
        reference = plain_pt_logits(backbone, method.theta0, batch)
    assert (changed - reference).abs().max() > 1e-3


def test_per_head_gates_have_one_value_per_head_and_layer():
    model, tok, _ = make("llama", gate="head", layers="top:1")
    method = model.method
    assert tuple(method.gates.shape) == (1, 4) and method.layer_indices == [1]
    batch = encode(tok)
    model(batch).logits.sum().backward()
    assert torch.count_nonzero(method.gates.grad) == 4
    model.detach_method()


# --- the gated attention against a hand computation ----------------------------------------------------------------
def _capture_first_attention(model):
    attn = model.backbone.model.layers[0].self_attn
    seen = {}

    def before(module, args, kwargs):
        seen["hidden"] = kwargs.get("hidden_states", args[0] if args else None)
        seen["position_embeddings"] = kwargs["position_embeddings"]

    def after(module, args, kwargs, output):
        seen.setdefault("outputs", []).append(output[0].detach())

    handles = [attn.register_forward_pre_hook(before, with_kwargs=True),
               attn.register_forward_hook(after, with_kwargs=True)]
    return attn, seen, handles


@pytest.mark.parametrize("arch", GATED_ARCHS)
def test_gated_block_matches_a_per_head_hand_computation(arch):
    # Layer 0 only, one gate per head: the first layer's inputs do not depend on the gate, so the change in its
    # attention output must be o_proj applied to tanh(g_h) * softmax(q_h K_h^T * scaling) V_h, head by head.
    model, tok, _ = make(arch, layers=[0], gate="head")
    method = model.method
    open_gates(method, 0.9)
    attn, seen, handles = _capture_first_attention(model)
    batch = encode(tok, task_ids=[1, 0, 1])
    with torch.no_grad():
        model(batch)
        gates = method.gates.detach().clone()
        method.gates.zero_()
        model(batch)
        method.gates.copy_(gates)
        expected = _hand_block(attn, seen, method.task_delta(batch.task_ids), torch.tanh(gates[0]))
    for handle in handles:
        handle.remove()
    gated, plain = seen["outputs"]
    torch.testing.assert_close(gated - plain, expected, atol=1e-5, rtol=1e-4)
    model.detach_method()


def _hand_block(attn, seen, delta, gate):
    modeling = sys.modules[type(attn).__module__]
    hidden = seen["hidden"]
    b, t, _ = hidden.shape
    heads, dim = attn.config.num_attention_heads, attn.head_dim
    query = attn.q_proj(hidden).view(b, t, heads, dim).transpose(1, 2)
    if hasattr(attn, "q_norm"):
        query = attn.q_norm(query)
    cos, sin = seen["position_embeddings"]
    query, _ = modeling.apply_rotary_pos_emb(query, query, cos, sin)
    keys = attn.k_proj(delta).view(b, delta.shape[1], -1, dim)
    values = attn.v_proj(delta).view(b, delta.shape[1], -1, dim)
    if hasattr(attn, "k_norm"):
        keys = attn.k_norm(keys)
    group = heads // keys.shape[2]
    per_head = []
    for h in range(heads):
        k, v = keys[:, :, h // group], values[:, :, h // group]  # [B, L, D]: the kv head this query head shares
        probs = torch.softmax(query[:, h] @ k.transpose(1, 2) * attn.scaling, dim=-1)
        per_head.append(gate[h] * (probs @ v))
    return F.linear(torch.cat(per_head, dim=-1), attn.o_proj.weight)


def test_the_explicit_block_attention_equals_the_fused_kernel(monkeypatch):
    """On the CPU in bf16 the block attention takes the explicit form (the fused backward is slow there): both
    forms give the same output and gradients."""
    from mtpt.methods.ta_lora import injection

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.k_proj, module.v_proj, module.head_dim = torch.nn.Linear(16, 8), torch.nn.Linear(16, 8), 4
    query, delta = torch.randn(2, 4, 7, 4), torch.randn(2, 3, 16)
    gate = torch.tensor([0.3])

    def run(explicit: bool):
        monkeypatch.setattr(injection, "_slow_fused_backward", lambda q: explicit)
        q, d = query.clone().requires_grad_(), delta.clone().requires_grad_()
        out = injection.delta_attention(module, q, d, 0.5, gate)
        out.square().sum().backward()
        return out.detach(), q.grad, d.grad

    for fused, explicit in zip(run(False), run(True)):
        torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-4)
    monkeypatch.undo()
    assert injection._slow_fused_backward(query.bfloat16()) and not injection._slow_fused_backward(query)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert injection._slow_fused_backward(query)


def test_eager_base_implementation_is_wrapped_and_restored():
    backbone = tiny_backbone("llama")
    backbone.model.set_attn_implementation("eager")
    model, tok, _ = make(backbone=backbone)
    assert backbone.model.config._attn_implementation == "mtpt_ta_lora_eager"
    batch = encode(tok)
    with torch.no_grad():
        ours = model(batch).logits
        model.detach_method()
        assert torch.equal(ours, plain_pt_logits(backbone, model.method.theta0, batch))
    assert backbone.model.config._attn_implementation == "eager"


# --- mixed batches, detach, generation ---------------------------------------------------------------------------
@pytest.mark.parametrize("injection", ["gated_attention", "additive"])
def test_a_mixed_task_batch_equals_per_task_batches(injection):
    model, tok, _ = make("qwen2", tasks=("a", "b", "c"), injection=injection)
    open_gates(model.method)
    task_ids = [2, 0, 2]
    with torch.no_grad():
        mixed = model(encode(tok, task_ids=task_ids)).logits
        for task in set(task_ids):
            single = model(encode(tok, task_ids=[task] * 3)).logits
            rows = [i for i, t in enumerate(task_ids) if t == task]
            torch.testing.assert_close(mixed[rows], single[rows], atol=1e-6, rtol=1e-5)
        assert not torch.allclose(model(encode(tok, task_ids=[0] * 3)).logits[0], mixed[0])
    model.detach_method()


@pytest.mark.parametrize("arch", GATED_ARCHS)
def test_detach_restores_the_original_attention(arch):
    backbone = tiny_backbone(arch)
    tok = Tokenizer(backbone.tokenizer, max_input_tokens=128)
    batch = encode(tok)
    theta0 = torch.randn(4, backbone.hidden_size) * 0.1
    with torch.no_grad():
        before = plain_pt_logits(backbone, theta0, batch)
    model, _, _ = make(backbone=backbone)
    open_gates(model.method)
    with torch.no_grad():
        model.method.theta0.copy_(theta0)
        assert not torch.equal(model(batch).logits, before)  # the hook is live while attached
    model.detach_method()
    assert backbone.model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.equal(plain_pt_logits(backbone, theta0, batch), before)
    model.method.attach(backbone.model)  # attaching again works and keeps the trained gates
    assert model.method.gates.abs().sum() > 0
    model.detach_method()


def test_generation_runs_through_the_gated_attention():
    model, tok, backbone = make("llama")
    batch = encode(tok)
    ours = model.generate(batch, max_new_tokens=3)
    model.detach_method()
    plain = SoftPromptModel(backbone, PromptTuning(model.method.theta0.detach().clone()))
    assert ours == plain.generate(batch, max_new_tokens=3)
    model.method.attach(backbone.model)
    open_gates(model.method, 3.0)
    assert len(model.generate(batch, max_new_tokens=3)) == 3
    model.detach_method()


# --- errors and options --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, name", [("gpt2", "GPT2LMHeadModel"), ("t5", "T5ForConditionalGeneration")])
def test_unsupported_architectures_get_a_clear_error(arch, name):
    with pytest.raises(MtptError, match=f"{name}.*injection: additive"):
        make(arch)


def test_running_the_backbone_without_the_method_forward_is_an_error():
    model, tok, backbone = make("llama")
    with pytest.raises(MtptError, match="before the method"):
        backbone.model(input_ids=encode(tok).input_ids)
    model.detach_method()


def test_a_second_attach_on_the_same_backbone_is_refused():
    model, _, backbone = make("llama")
    with pytest.raises(MtptError, match="already"):
        make(backbone=backbone)
    model.detach_method()


def test_layer_selection():
    assert select_layers("all", 3) == [0, 1, 2]
    assert select_layers("top:2", 3) == [1, 2]
    assert select_layers([2, 0], 3) == [0, 2]
    for bad in ("top:0", "top:4", "bottom:1", [3], [0, 0], []):
        with pytest.raises(MtptError, match="layers"):
            select_layers(bad, 3)


def test_config_parses_layers_as_text_or_list():
    assert method_config({"name": "ta_lora", "layers": "top:1"})[1].layers == "top:1"
    assert method_config({"name": "ta_lora", "layers": [0, 1]})[1].layers == [0, 1]
    with pytest.raises(MtptError, match="injection"):
        method_config({"name": "ta_lora", "injection": "prefix"})


@pytest.mark.parametrize("options, message", [
    ({"rank": 0}, "rank"), ({"orthogonality_weight": -1.0}, "orthogonality_weight"), ({"lr_fast": 0.0}, "lr_fast"),
    ({"theta0_init": "from_file"}, "theta0_path"), ({"theta0_path": "x.safetensors"}, "theta0_init"),
    ({"scale": 0.0}, "scale"),
])
def test_bad_options_are_reported(options, message):
    with pytest.raises(MtptError, match=message):
        make("llama", **options)


def test_balanced_init_reaches_the_requested_rms():
    sigma = balanced_std(0.5, scale=2.0, rank=4)
    gen = torch.Generator().manual_seed(0)
    b, u, v = (torch.randn(shape, generator=gen) * sigma for shape in ((400, 4), (400, 4), (400, 300)))
    delta = 2.0 * (u @ b.T).unsqueeze(-1) * v.unsqueeze(1)  # [T, L, d]
    assert abs(float(delta.pow(2).mean().sqrt()) - 0.5) < 0.05


def test_theta0_from_a_prompt_file(tmp_path):
    from mtpt.prompt_io import save_prompt

    prompt = torch.randn(5, 32)
    save_prompt(prompt, tmp_path / "theta0.safetensors")
    path = str(tmp_path / "theta0.safetensors")
    model, _, _ = make("llama", prompt_length=None, theta0_init="from_file", theta0_path=path)
    assert torch.equal(model.method.theta0.detach(), prompt) and model.method.slow_b.shape == (5, 2)
    model.detach_method()
    with pytest.raises(MtptError, match="prompt_length"):
        make("llama", prompt_length=4, theta0_init="from_file", theta0_path=str(tmp_path / "theta0.safetensors"))


def test_task_prompt_export_only_for_additive():
    model, _, _ = make("llama", injection="additive")
    open_gates(model.method)
    m = model.method
    expected = m.theta0 + torch.tanh(m.gates[0]) * m.task_delta(torch.tensor([1]))[0]
    torch.testing.assert_close(m.task_prompt(1), expected.detach())
    gated, _, _ = make("llama")
    with pytest.raises(MtptError, match="no single prompt"):
        gated.method.task_prompt(0)
    gated.detach_method()


def test_orthogonality_term_is_lambda_times_the_penalty():
    from mtpt.methods.ta_lora.orthogonality import orthogonality_penalty

    model, _, _ = make("llama", tasks=("a", "b", "c"), orthogonality_weight=0.5, orthogonality="paper")
    m = model.method
    terms = m.extra_losses(None)
    torch.testing.assert_close(terms["orthogonality"], 0.5 * orthogonality_penalty(m.fast_u, m.fast_v, "paper"))
    none, _, _ = make("llama", orthogonality="none")
    assert none.method.extra_losses(None) == {}
    model.detach_method(), none.detach_method()


# --- checkpoints ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("injection", ["gated_attention", "additive"])
def test_checkpoint_round_trip(tmp_path, injection):
    model, tok, backbone = make("gemma3", injection=injection, gate="head")
    open_gates(model.method)
    batch = encode(tok, task_ids=[0, 1, 1])
    with torch.no_grad():
        expected = model(batch).logits
    save_checkpoint(tmp_path / "ckpt", model.method, {"method": "ta_lora"})
    model.detach_method()
    fresh, _, _ = make(backbone=backbone, seed=5, injection=injection, gate="head")
    load_method_state(tmp_path / "ckpt", fresh.method)
    assert fresh.method.record["stage"] == "source"
    with torch.no_grad():
        assert torch.equal(fresh(batch).logits, expected)
    fresh.detach_method()


# --- training runs and stages --------------------------------------------------------------------------------------
def run_config(tmp_path, name, tasks, steps=4, **method):
    for task in ("toy-a", "toy-b", "toy-c"):
        toy_task(task, n_train=16, n_eval=4)
    return RunConfig(
        backbone="tiny-llama", tasks=list(tasks),
        method={"name": "ta_lora", "prompt_length": 4, "rank": 2, "gate_log_every": 2, **method},
        data=DataConfig(),
        train=TrainConfig(steps=steps, batch_size=4, lr=0.01, eval_every=steps, log_every=1),
        eval=EvalConfig(batch_size=8, final_splits=["validation"]), output_dir=str(tmp_path / name),
    )


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ta_lora")
    train(run_config(folder, "source", ["toy-a", "toy-b"], lr_gate=0.05, orthogonality_weight=0.1))
    return folder / "source"


def test_source_run_logs_groups_regulariser_and_gates(source_run):
    groups = {g["name"]: g for g in json.loads((source_run / "param_groups.json").read_text())}
    assert set(groups) == {"slow", "fast", "gate"}
    assert groups["slow"]["lr"] == 0.01 and groups["fast"]["lr"] == pytest.approx(0.1) and groups["gate"]["lr"] == 0.05
    assert groups["slow"]["parameters"] == 4 * 2  # B only: theta0 is frozen
    assert groups["fast"]["parameters"] == 2 * (2 + 32) and groups["gate"]["parameters"] == 2
    steps = [r for r in read_jsonl(source_run / "metrics.jsonl") if "loss" in r]
    assert all("loss/task" in r and "loss/orthogonality" in r for r in steps)
    assert steps[0]["loss/orthogonality"] > 0
    gate_log = read_jsonl(source_run / "method_log.jsonl")
    assert [r["step"] for r in gate_log] == [2, 4] and set(gate_log[-1]["gate_tanh"]) == {"0", "1"}
    assert any(v != 0 for v in gate_log[-1]["gate_tanh"].values())


def test_a_finished_source_run_reloads_with_its_trained_gates(source_run):
    parts = load_run(source_run, "last")  # rebuilds the method (gates sized on attach), then loads the checkpoint
    try:
        meta = load_method_state(source_run / "checkpoints" / "last", parts.model.method)
        assert meta["method"] == "ta_lora" and meta["tasks"] == ["toy-a", "toy-b"]
        assert parts.model.method.gates.abs().sum() > 0
    finally:
        parts.model.detach_method()


def _grads(method):
    return {n: (p.grad is not None and bool(torch.count_nonzero(p.grad))) for n, p in method.named_parameters()}


def _backward_once(parts):
    tok = parts.tokenizer
    batch = encode(tok, task_ids=[0] * 3)
    open_gates(parts.model.method) if parts.model.method.gates.requires_grad else None
    parts.model(batch).logits.square().mean().backward()
    return _grads(parts.model.method)


def test_gradients_reach_only_the_intended_groups(tmp_path, source_run):
    from mtpt.runtime import build_run

    source = build_run(run_config(tmp_path, "s", ["toy-a", "toy-b"]))
    assert _backward_once(source) == {"theta0": False, "slow_b": True, "fast_u": True, "fast_v": True, "gates": True}
    assert not source.model.method.theta0.requires_grad
    source.model.detach_method()
    target = build_run(run_config(tmp_path, "t", ["toy-c"], stage="target", source_run=str(source_run)))
    flags = {n: p.requires_grad for n, p in target.model.method.named_parameters()}
    assert flags == {"theta0": False, "slow_b": False, "fast_u": True, "fast_v": True, "gates": False}
    assert _backward_once(target) == {"theta0": False, "slow_b": False, "fast_u": True, "fast_v": True, "gates": False}
    target.model.detach_method()
    both = build_run(run_config(tmp_path, "t2", ["toy-c"], stage="target", source_run=str(source_run),
                                train_slow=True, train_theta0=True))
    grads = _backward_once(both)
    assert grads["slow_b"] and grads["theta0"] and not grads["gates"]
    groups = {g["name"]: g for g in both.model.method.param_groups(0.01)}
    assert {id(p) for p in groups["slow"]["params"]} == {id(both.model.method.slow_b), id(both.model.method.theta0)}
    both.model.detach_method()


def test_target_stage_trains_only_its_fast_weights(tmp_path, source_run):
    train(run_config(tmp_path, "target", ["toy-c"], stage="target", source_run=str(source_run)))
    groups = json.loads((tmp_path / "target" / "param_groups.json").read_text())
    assert [g["name"] for g in groups] == ["fast"] and groups[0]["parameters"] == 2 + 32
    from safetensors.torch import load_file

    source = load_file(str(source_run / "checkpoints" / "best" / "method.safetensors"))
    target = load_file(str(tmp_path / "target" / "checkpoints" / "last" / "method.safetensors"))
    for frozen in ("theta0", "slow_b", "gates"):
        assert torch.equal(source[frozen], target[frozen])
    assert target["fast_u"].shape == (1, 2)


@pytest.mark.parametrize("mode", ["mean", "source", "random", "reuse"])
def test_target_init_modes(tmp_path, source_run, mode):
    from mtpt.runtime import build_run
    from safetensors.torch import load_file

    src = load_file(str(source_run / "checkpoints" / "best" / "method.safetensors"))
    tasks = ["toy-b", "toy-a"] if mode == "reuse" else ["toy-c"]
    parts = build_run(run_config(tmp_path, mode, tasks, stage="target", source_run=str(source_run),
                                 target_init=mode, init_source="toy-b"))
    u = parts.model.method.fast_u.detach()
    expected = {"mean": src["fast_u"].mean(0, keepdim=True), "source": src["fast_u"][1:2],
                "reuse": src["fast_u"][[1, 0]]}.get(mode)
    if expected is None:
        assert u.shape == (1, 2) and not torch.allclose(u, src["fast_u"].mean(0, keepdim=True))
    else:
        torch.testing.assert_close(u, expected)
    parts.model.detach_method()


def test_reuse_reproduces_the_source_run_on_its_own_tasks(tmp_path, source_run):
    # Unseen-data protocol: a target run on source tasks that reuses their fast weights starts exactly where the
    # source run ended, so `--train.steps 0` evaluates the source model on held-out data.
    from mtpt.runtime import build_run

    src = load_run(source_run, "best")
    tok = src.tokenizer
    batch = encode(tok, task_ids=[1, 1, 1])
    with torch.no_grad():
        expected = src.model(batch).logits
    src.model.detach_method()
    parts = build_run(run_config(tmp_path, "reuse", ["toy-b"], stage="target", source_run=str(source_run),
                                 target_init="reuse"), backbone=src.backbone)
    with torch.no_grad():
        assert torch.equal(parts.model(encode(tok, task_ids=[0, 0, 0])).logits, expected)
    parts.model.detach_method()


def test_target_stage_errors(tmp_path, source_run):
    from mtpt.runtime import build_run

    cases = [
        ({"target_init": "reuse"}, ["toy-c"], "not a source task"),
        ({"target_init": "source", "init_source": "toy-z"}, ["toy-c"], "init_source"),
        ({"rank": 3}, ["toy-c"], "rank: 3 here, 2 in the source run"),
        ({"gate": "head"}, ["toy-c"], "gate"),
        ({"source_run": str(tmp_path)}, ["toy-c"], "neither"),
    ]
    for options, tasks, message in cases:
        config = run_config(tmp_path, "bad", tasks, stage="target", **{"source_run": str(source_run), **options})
        with pytest.raises(MtptError, match=message):
            build_run(config)


def test_orthogonality_with_sources_counts_only_pairs_with_the_new_task(tmp_path, source_run):
    from mtpt.methods.ta_lora.orthogonality import orthogonality_penalty
    from mtpt.runtime import build_run

    parts = build_run(run_config(tmp_path, "o", ["toy-c"], stage="target", source_run=str(source_run),
                                 orthogonality_with_sources=True, target_init="random"))
    m = parts.model.method
    assert m.source_u.shape == (2, 2)
    full = orthogonality_penalty(torch.cat([m.source_u, m.fast_u]), torch.cat([m.source_v, m.fast_v]))
    torch.testing.assert_close(m.orthogonality(), full - orthogonality_penalty(m.source_u, m.source_v))
    parts.model.detach_method()


# --- mtpt params ---------------------------------------------------------------------------------------------------
def test_params_command_for_ta_lora_and_a_method_without_a_split(tmp_path, capsys):
    for task in ("toy-a", "toy-b", "toy-c"):
        toy_task(task)
    config = tmp_path / "ta.yaml"
    config.write_text("backbone: tiny-llama\ntasks: [toy-a, toy-b, toy-c]\n"
                      "method: {name: ta_lora, prompt_length: 4, rank: 2, gate: head}\n")
    assert cli_main(["params", str(config)]) == 0
    out = capsys.readouterr().out
    # shared = B (4 x 2) + gates (2 layers x 4 heads); per task = r + d = 2 + 32.
    assert "trainable parameters: 118" in out and "shared by all tasks: 16" in out
    assert "per task:            34  (x 3 = 102)" in out
    assert "frozen method tensors: 128" in out  # theta0
    assert cli_main(["params", str(config), "--method", "{name: pt, prompt_length: 5}"]) == 0
    out = capsys.readouterr().out
    assert "shared by all tasks: 160" in out and "per task:            0" in out
