"""Building TA-LoRA for its two stages: ``source`` (multi-task training) and ``target`` (new fast weights).

The target stage reads a finished source-stage run: theta0, B and the gates come from its checkpoint (frozen by
default), the new fast weights from its factors (``target_init``). Structural options (injection, layers, gate,
rank, scale) must equal the source run's, because theta0, B and the gates only mean something with them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtpt.errors import MtptError
from mtpt.contract import BuildContext, CheckpointContents
from mtpt.run_folder import RunCheckpoint, read_run_checkpoint
from mtpt.methods.ta_lora.config import GateShape, Injection, Stage, TaLoraConfig, TargetInit
from mtpt.methods.ta_lora.factors import balanced_std, random_factors, target_factors
from mtpt.methods.ta_lora.module import TaLora, TaLoraOptions
from mtpt.methods.ta_lora.orthogonality import ORTHOGONALITY_MODES

DEFAULT_PROMPT_LENGTH = 20

__all__ = ["build", "load_source_run", "restore", "source_record"]


def build(config: TaLoraConfig, ctx: BuildContext) -> TaLora:
    _check(config)
    if Stage(config.stage) is Stage.TARGET:
        return _build_target(config, ctx)
    return _build_source(config, ctx)


def restore(config: TaLoraConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> TaLora:
    """The trained module of either stage from its checkpoint, without theta0's source, the library or the source
    run (``MethodSpec.restore``): theta0, B, the fast weights and the gates are saved with it. The source factors
    the orthogonality penalty compares against are left out: they only shape training."""
    _check(config)
    tensors, source_stage = checkpoint.tensors, Stage(config.stage) is Stage.SOURCE
    return TaLora(tensors["theta0"], tensors["slow_b"], tensors["fast_u"], tensors["fast_v"],
                  _options(config, source_stage, _layers_value(config.layers)), gates=tensors["gates"],
                  record=checkpoint.extra_state.get("ta_lora"))


def _check(config: TaLoraConfig) -> None:
    if config.rank < 1:
        raise MtptError(f"method.rank must be at least 1, got {config.rank}.")
    scale = _scale(config)
    if scale == 0 or not math.isfinite(scale):
        raise MtptError(f"The TA-LoRA scale s must be finite and non-zero, got {scale}.")
    if config.orthogonality not in ORTHOGONALITY_MODES:
        raise MtptError(f"method.orthogonality must be one of {ORTHOGONALITY_MODES}, got {config.orthogonality!r}.")
    if config.orthogonality_weight < 0:
        raise MtptError(f"method.orthogonality_weight must be >= 0, got {config.orthogonality_weight}.")
    if config.init_delta_rms is not None and not config.init_delta_rms > 0:
        raise MtptError(f"method.init_delta_rms must be positive, got {config.init_delta_rms}.")
    if config.prompt_length is not None and config.prompt_length < 1:
        raise MtptError(f"method.prompt_length must be at least 1, got {config.prompt_length}.")
    if config.gate_log_every < 0:
        raise MtptError(f"method.gate_log_every must be >= 0, got {config.gate_log_every}.")
    for name in ("lr_slow", "lr_fast", "lr_gate"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise MtptError(f"method.{name} must be positive (or null), got {value}.")


def _scale(config: TaLoraConfig) -> float:
    return float(config.alpha / config.rank if config.scale is None else config.scale)


def _options(config: TaLoraConfig, source_stage: bool, layers: Any) -> TaLoraOptions:
    return TaLoraOptions(
        scale=_scale(config), injection=Injection(config.injection), layers=layers,
        gate_shape=GateShape(config.gate), train_theta0=config.train_theta0,
        train_slow=source_stage if config.train_slow is None else config.train_slow,
        train_gates=source_stage if config.train_gates is None else config.train_gates,
        lr_slow=config.lr_slow, lr_fast=config.lr_fast, lr_gate=config.lr_gate,
        orthogonality=config.orthogonality, orthogonality_weight=config.orthogonality_weight,
        gate_log_every=config.gate_log_every,
    )


def _layers_value(layers: Any) -> Any:
    """The layers option in a JSON-able, comparable form."""
    return layers if isinstance(layers, str) else [int(i) for i in layers]


# --- source stage -----------------------------------------------------------------------------------------------
def _build_source(config: TaLoraConfig, ctx: BuildContext) -> TaLora:
    generator = torch.Generator().manual_seed(ctx.seed)
    theta0 = _theta0(config, ctx, generator)
    injection = Injection(config.injection)
    scale = _scale(config)
    # Default: the block starts at the prompt's own scale (on SmolLM2 the embedding RMS, 0.12, lies inside the
    # 0.05-0.37 RMS range of what the k/v projections see; see docs/methods/ta_lora.md).
    rms = float(theta0.pow(2).mean().sqrt()) if config.init_delta_rms is None else config.init_delta_rms
    if not rms > 0:
        raise MtptError("theta0 is all zeros, so its RMS cannot set the task block's scale: set method.init_delta_rms.")
    std = balanced_std(rms, scale, config.rank)
    b, u, v = random_factors(theta0.shape[0], config.rank, len(ctx.task_names), ctx.hidden_size, std, generator)
    layers = _layers_value(config.layers)
    record = {"stage": "source", "tasks": list(ctx.task_names), "injection": injection.value, "layers": layers,
              "gate": config.gate, "rank": config.rank, "scale": scale, "init_std": std, "init_delta_rms": rms,
              "theta0_init": config.theta0_init, "theta0_path": config.theta0_path}
    return TaLora(theta0, b, u, v, _options(config, True, layers), record=record)


def _theta0(config: TaLoraConfig, ctx: BuildContext, generator: torch.Generator) -> Tensor:
    kind, path, length = config.theta0_init, config.theta0_path, config.prompt_length
    if kind in ("sample_vocab", "uniform"):
        if path:
            raise MtptError(f"method.theta0_path is set but theta0_init is {kind!r}: use theta0_init: from_file "
                            "(a prompt or PT run) or library_mixture (a library folder).")
        from mtpt.prompt_init import initial_prompt

        return initial_prompt(kind, length or DEFAULT_PROMPT_LENGTH, ctx, generator=generator)
    if not path:
        raise MtptError(f"theta0_init {kind!r} needs method.theta0_path.")
    if kind == "library_mixture":
        from mtpt.library.access import open_for_run

        prompt = open_for_run(path, ctx, length).mixture_prompt()
    else:
        from mtpt.library.access import read_prompt

        # A non-PT checkpoint is rebuilt to ask for its prompt: reuse this run's backbone rather than load another.
        prompt = read_prompt(path, ctx.backbone)
    prompt = prompt.detach().float()
    if prompt.dim() != 2 or prompt.shape[1] != ctx.hidden_size:
        raise MtptError(f"theta0 from {path} has shape {tuple(prompt.shape)}; this backbone needs "
                        f"[L, {ctx.hidden_size}].")
    if length is not None and prompt.shape[0] != length:
        raise MtptError(f"theta0 from {path} has {prompt.shape[0]} tokens but method.prompt_length is {length}: "
                        "set prompt_length to null (or to match).")
    return prompt.clone()


# --- target stage -----------------------------------------------------------------------------------------------
def load_source_run(path: str, ctx: BuildContext) -> RunCheckpoint:
    """Read a TA-LoRA source-stage run folder (the checkpoint it stands for: best, or last without validation) or
    one of its checkpoint folders; its record is :func:`source_record`."""
    if not path:
        raise MtptError("The TA-LoRA target stage needs method.source_run: the folder of a finished source-stage run.")
    run = read_run_checkpoint(path, "ta_lora", weights_hash=ctx.weights_hash)
    if source_record(run).get("stage") != "source":
        raise MtptError(f"{path} is a TA-LoRA {source_record(run).get('stage')!r}-stage run; source_run must be a "
                        "source-stage run.")
    if run.tensors["theta0"].shape[1] != ctx.hidden_size:
        raise MtptError(f"{path} has hidden size {run.tensors['theta0'].shape[1]}, this backbone {ctx.hidden_size}.")
    return run


def source_record(run: RunCheckpoint) -> dict[str, Any]:
    """The TA-LoRA record a run saved with its checkpoint (stage, structure options, init scale)."""
    return run.method_state.get("ta_lora", {})


def _check_matches_source(config: TaLoraConfig, source: RunCheckpoint) -> None:
    rec = source_record(source)
    mine = {"injection": config.injection, "layers": _layers_value(config.layers), "gate": config.gate,
            "rank": config.rank, "scale": _scale(config)}
    differ = [f"{k}: {mine[k]!r} here, {rec.get(k)!r} in the source run" for k in mine if mine[k] != rec.get(k)]
    if config.prompt_length is not None and config.prompt_length != source.tensors["theta0"].shape[0]:
        length = source.tensors["theta0"].shape[0]
        differ.append(f"prompt_length: {config.prompt_length} here, {length} in the source run")
    if differ:
        raise MtptError("The TA-LoRA target stage must use the source run's structure; set the same options "
                        "(simplest: the source stage's config with --method.stage target): " + "; ".join(differ) + ".")


def _build_target(config: TaLoraConfig, ctx: BuildContext) -> TaLora:
    source = load_source_run(config.source_run, ctx)
    _check_matches_source(config, source)
    src_u, src_v = source.tensors["fast_u"], source.tensors["fast_v"]
    if len(source.tasks) != len(src_u):
        raise MtptError(f"{config.source_run}: {len(source.tasks)} task names for {len(src_u)} fast weights.")
    u, v = _target_fast_weights(config, ctx, source)
    # Sources compared against by the penalty: the frozen ones that are not being re-trained here.
    others = [i for i, name in enumerate(source.tasks) if name not in ctx.task_names]
    compare = config.orthogonality_with_sources and others
    record = {**source_record(source), "stage": "target", "tasks": list(ctx.task_names), "source_run": config.source_run,
              "source_tasks": source.tasks, "target_init": config.target_init, "init_source": config.init_source}
    return TaLora(source.tensors["theta0"], source.tensors["slow_b"], u, v,
                  _options(config, False, _layers_value(config.layers)), gates=source.tensors["gates"],
                  source_u=src_u[others] if compare else None, source_v=src_v[others] if compare else None,
                  record=record)


def _target_fast_weights(config: TaLoraConfig, ctx: BuildContext, source: RunCheckpoint) -> tuple[Tensor, Tensor]:
    src_u, src_v = source.tensors["fast_u"], source.tensors["fast_v"]
    mode = TargetInit(config.target_init)
    if mode is TargetInit.REUSE:
        missing = [t for t in ctx.task_names if t not in source.tasks]
        if missing:
            raise MtptError(f"target_init 'reuse' continues each run task from its own source factors, but "
                            f"{', '.join(missing)} is not a source task of {config.source_run} "
                            f"({', '.join(source.tasks)}). Use target_init principal/mean/random/source for new tasks.")
        rows = [source.tasks.index(t) for t in ctx.task_names]
        return src_u[rows].clone(), src_v[rows].clone()
    index = None
    if mode is TargetInit.SOURCE:
        if config.init_source not in source.tasks:
            raise MtptError(f"target_init 'source' needs init_source, one of the source run's tasks: "
                            f"{', '.join(source.tasks)}.")
        index = source.tasks.index(config.init_source)
    generator = torch.Generator().manual_seed(ctx.seed)
    std = float(source_record(source).get("init_std", 1.0))
    return target_factors(src_u, src_v, mode.value, len(ctx.task_names), index=index, std=std, generator=generator,
                          slow_b=source.tensors["slow_b"])
