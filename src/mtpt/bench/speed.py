"""``mtpt bench speed``: training-step time and autograd memory of each method against the bare frozen backbone
(the physical limit of a prompt method) and against PEFT, plus DTVG's grouping cost and mixed-task inference.

Method, bare and PEFT steps are interleaved in one process (method, bare, PEFT, then bare, PEFT, method, ...) so
that a shared, noisy machine slows them alike; medians are reported. What is measured for each method, and what
it is compared with, is its registry entry's ``speed`` variants (:class:`mtpt.registry.SpeedVariant`): a new
method is benchmarked by declaring them, with no edit here. Methods that read a source library get a synthetic one
(:mod:`mtpt.bench.synthetic`) through their normal builders. A method's step is the trainer's own
(:class:`mtpt.training.step.TrainingStep`). A variant with a teacher pass (MPT's distillation stage: a no-grad
forward with the frozen teacher prompts) has that pass timed separately, left out of its step time and reported
next to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtpt.bench.arms import Arm, BareArm, MethodArm, PeftArm, memory_bytes, timed
from mtpt.bench.synthetic import TARGET_FILE, synthetic_library, token_batch
from mtpt.contract import HookedLayers, SkippableTaskBlock
from mtpt.precision import resolve_precision
from mtpt.registry import MethodSpec, SpeedVariant, list_methods

PEFT_TARGET = 1.0
MIXED_TARGET = 0.95


def speed_variants() -> dict[str, tuple[MethodSpec, SpeedVariant]]:
    """Every registered method's speed variants by label (registry order)."""
    found: dict[str, tuple[MethodSpec, SpeedVariant]] = {}
    for spec in list_methods():
        for variant in spec.speed:
            if variant.label in found:
                raise ValueError(f"two methods declare the speed variant {variant.label!r}")
            found[variant.label] = (spec, variant)
    return found


@dataclass
class SpeedSettings:
    backbone: str = "smollm2-135m"
    batch: int = 8
    text_tokens: int = 64
    prompt_length: int = 20
    repeats: int = 5
    methods: list[str] = field(default_factory=lambda: list(speed_variants()))
    tasks: int = 4
    precision: str = "no"
    threads: int | None = None
    out: str = "runs/bench/speed"


@dataclass(frozen=True)
class Synthetic:
    """The synthetic artefacts a variant's options may name."""

    library: str
    teachers: str
    target_prompt: str


def fill(value: Any, mapping: dict[str, Any]) -> Any:
    """``value`` with the placeholders of ``mapping`` filled in its strings (nested lists and dicts too); a string
    that is exactly one placeholder takes the value itself, so ``"{prompt_length}"`` becomes an int."""
    if isinstance(value, str):
        if value in mapping:
            return mapping[value]
        for placeholder, replacement in mapping.items():
            value = value.replace(placeholder, str(replacement))
        return value
    if isinstance(value, list):
        return [fill(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, mapping) for k, v in value.items()}
    return value


def variant_options(spec: MethodSpec, variant: SpeedVariant, synthetic: Synthetic, length: int) -> dict[str, Any]:
    """The method section the benchmark builds ``variant`` from."""
    mapping = {"{library}": synthetic.library, "{teachers}": synthetic.teachers,
               "{target_prompt}": synthetic.target_prompt, "{prompt_length}": length}
    return {"name": spec.name, **fill(variant.options, mapping)}


def build_model(label: str, backbone, settings: SpeedSettings, synthetic: Synthetic):
    """The :class:`SoftPromptModel` of variant ``label`` and the token batch it is measured on."""
    from mtpt.config import method_config
    from mtpt.errors import MtptError
    from mtpt.model import SoftPromptModel
    from mtpt.runtime import build_context

    spec, variant = speed_variants()[label]
    tasks = settings.tasks if variant.multi_task else 1
    _, options = method_config(variant_options(spec, variant, synthetic, settings.prompt_length))
    if spec.prerequisites is not None:
        from mtpt.config import RunConfig

        # any registered task will do: only whether the variant declares a run matters here
        if spec.prerequisite_runs(options, RunConfig(backbone=backbone.name, tasks=["demo-sst2"])):
            raise MtptError(f"speed variant {label!r} needs a prerequisite run: give its options the finished run "
                            "or prompt file instead (see mtpt.registry.SpeedVariant).")
    ctx = build_context(backbone, task_names(tasks), 0)
    torch.manual_seed(0)
    model = SoftPromptModel(backbone, spec.build(options, ctx))
    return model, token_batch(backbone, settings.batch, settings.text_tokens, tasks)


def build_method_arm(label: str, backbone, settings: SpeedSettings, synthetic: Synthetic, accelerator, *,
                     skip_task_block: bool = False) -> MethodArm:
    model, batch = build_model(label, backbone, settings, synthetic)
    name = label + (" (block skipped)" if skip_task_block else "")
    return MethodArm(name, model, batch, accelerator, skip_task_block=skip_task_block)


def task_names(count: int) -> list[str]:
    return [f"bench-task-{i}" for i in range(count)]


def interleave(arms: list[Arm], repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per arm, ``repeats`` step times in ms, measured round-robin after one untimed warm-up step each, and the
    part of each step the arm asks to leave out (already subtracted from the step times).

    Each round starts at the next arm (method, bare, PEFT; then bare, PEFT, method; ...), so no arm always runs
    right after the same other arm or first in its round: a fixed order would bias the ratios by position."""
    times: dict[str, list[float]] = {arm.name: [] for arm in arms}
    excluded: dict[str, list[float]] = {arm.name: [] for arm in arms}
    for round_index in range(repeats + 1):
        start = round_index % len(arms)
        for arm in arms[start:] + arms[:start]:
            arm.enter()
            try:
                ms = timed(arm.step)
            finally:
                arm.exit()
            if round_index:  # round 0 warms caches and allocators
                times[arm.name].append(ms - arm.excluded_ms())
                excluded[arm.name].append(arm.excluded_ms())
    return times, excluded


def measure_method(label: str, backbone, settings: SpeedSettings, synthetic: Synthetic, accelerator,
                   peft_arms: dict[str, PeftArm]) -> dict[str, Any]:
    """One variant's row: interleaved medians and ratios, memory, and mixed-task inference where it applies."""
    _, variant = speed_variants()[label]
    arm = build_method_arm(label, backbone, settings, synthetic, accelerator)
    bare = BareArm(backbone, arm.batch, settings.precision, arm_prompt_length(arm))
    peft = _peft_arm(variant, backbone, arm, settings, peft_arms)
    # A block inside the backbone (TA-LoRA's gated attention): the same step with the block skipped, to measure
    # what the block itself costs inside a step
    skipped = (build_method_arm(label, backbone, settings, synthetic, accelerator, skip_task_block=True)
               if hooked_layers(arm) and isinstance(arm.method, SkippableTaskBlock) else None)
    arms = [a for a in (arm, bare, peft, skipped) if a is not None]
    times, excluded = interleave(arms, settings.repeats)
    row: dict[str, Any] = {"method": label, "prompt_length": arm_prompt_length(arm),
                           "tasks": int(arm.batch.task_ids.max()) + 1}
    for a in (arm, bare, peft):
        if a is None:
            continue
        role = "method" if a is arm else ("bare" if a is bare else "peft")
        row[f"{role}_ms"] = statistics.median(times[a.name])
        row[f"{role}_times_ms"] = times[a.name]
        row[f"{role}_memory"] = memory_bytes(a, backbone)
    if any(excluded[arm.name]):  # MPT's teacher pass: a no-grad forward, reported apart (the protocol)
        row["excluded_ms"] = statistics.median(excluded[arm.name])
        with_teacher = [t + e for t, e in zip(times[arm.name], excluded[arm.name])]
        row["with_excluded_vs_bare"] = paired_ratio(with_teacher, times[bare.name])[0]
    # Ratios are medians of per-round ratios: the arms of one round run back to back, so a round's ratio is
    # free of the slow drifts of a shared machine; the interquartile range of those ratios is the noise.
    row["vs_bare"], row["vs_bare_iqr"] = paired_ratio(times[arm.name], times[bare.name])
    row["bare_target"] = variant.bare_target
    row["peft"] = peft.name if peft is not None else None
    row["vs_peft"], row["vs_peft_iqr"] = paired_ratio(times[arm.name], times[peft.name]) if peft else (None, None)
    if skipped is not None:
        row["block_skipped"] = block_skipped_row(times, arm, skipped, bare, peft)
    if variant.times_mixed_inference:
        row["inference"] = mixed_inference(arm, settings.repeats)
    return row


def hooked_layers(arm: MethodArm) -> list[int]:
    """The layers the arm's method hooks (none for methods without the capability)."""
    return arm.method.hooked_layers() if isinstance(arm.method, HookedLayers) else []


def block_skipped_row(times: dict[str, list[float]], arm: MethodArm, skipped: Arm, bare: Arm,
                      peft: Arm | None) -> dict[str, Any]:
    """The gated step against the same step with its task block skipped (the block's own cost inside a step), and
    the skipped step against bare and PEFT (what the rest of the method costs): the two factors of the miss."""
    skipped_times = times[skipped.name]
    row: dict[str, Any] = {"ms": statistics.median(skipped_times), "times_ms": skipped_times,
                           "layers": len(hooked_layers(arm))}
    row["block_factor"], row["block_factor_iqr"] = paired_ratio(times[arm.name], skipped_times)
    row["vs_bare"], row["vs_bare_iqr"] = paired_ratio(skipped_times, times[bare.name])
    row["vs_peft"], row["vs_peft_iqr"] = paired_ratio(skipped_times, times[peft.name]) if peft else (None, None)
    return row


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, list[float]]:
    """Median and interquartile range of the per-round ratios ``numerator[i] / denominator[i]``."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    if len(ratios) < 2:
        return ratios[0], [ratios[0], ratios[0]]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return median, [q1, q3]


def arm_prompt_length(arm: MethodArm) -> int:
    """The prompt length the method really produces (library methods take the library's)."""
    from mtpt.contract import PromptBatch

    with torch.no_grad():
        text = arm.model.embed(arm.batch.input_ids[:1])
        return int(arm.method(PromptBatch(text, arm.batch.input_mask[:1], arm.batch.task_ids[:1])).shape[1])


def _peft_arm(variant: SpeedVariant, backbone, arm: MethodArm, settings: SpeedSettings,
              cache: dict[str, PeftArm]) -> PeftArm | None:
    if variant.peft is None:
        return None
    tasks = int(arm.batch.task_ids.max()) + 1
    key = f"{variant.peft}-{tasks}-{arm_prompt_length(arm)}"
    if key not in cache:  # one PEFT model per shape, reused by every method it is compared with
        cache[key] = PeftArm(variant.peft, backbone, arm.batch, settings.precision, arm_prompt_length(arm), tasks)
    return cache[key]


def mixed_inference(arm: MethodArm, repeats: int) -> dict[str, Any]:
    """Rows per second of one evaluation forward with every row on task 0 vs rows cycling over the tasks."""
    single = torch.zeros_like(arm.batch.task_ids)
    mixed = arm.batch.task_ids
    times: dict[str, list[float]] = {"single": [], "mixed": []}
    arm.enter()
    try:
        for round_index in range(repeats + 1):
            pair = (("single", single), ("mixed", mixed))
            for label, ids in pair if round_index % 2 else pair[::-1]:  # alternate which batch goes first
                ms = timed(lambda ids=ids: arm.infer(ids))
                if round_index:
                    times[label].append(ms)
    finally:
        arm.exit()
    rows = len(arm.batch)
    single_rps = rows / (statistics.median(times["single"]) / 1e3)
    mixed_rps = rows / (statistics.median(times["mixed"]) / 1e3)
    ratio, iqr = paired_ratio(times["single"], times["mixed"])  # throughput ratio = inverse time ratio
    return {"single_rows_per_s": single_rps, "mixed_rows_per_s": mixed_rps, "ratio": ratio, "ratio_iqr": iqr,
            "target": MIXED_TARGET, "times_ms": times}


def run_speed(settings: SpeedSettings, backbone=None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON report and writes ``speed.json`` + ``speed.md`` into ``out``."""
    from mtpt.backbones import load_backbone
    from mtpt.precision import make_accelerator

    if settings.threads:
        torch.set_num_threads(settings.threads)
    backbone = backbone or load_backbone(settings.backbone)
    accelerator = make_accelerator(settings.precision)  # method arms step as the trainer does, through it
    rows = []
    peft_arms: dict[str, PeftArm] = {}
    with tempfile.TemporaryDirectory(prefix="mtpt-bench-") as tmp:
        library = synthetic_library(Path(tmp) / "library", backbone, settings.prompt_length)
        # a teacher prompt for each benchmark task (MPT's distillation stage)
        teachers = synthetic_library(Path(tmp) / "teachers", backbone, settings.prompt_length,
                                     names=task_names(settings.tasks))
        synthetic = Synthetic(str(library.root), str(teachers.root), str(library.root / TARGET_FILE))
        for label in settings.methods:
            rows.append(measure_method(label, backbone, settings, synthetic, accelerator, peft_arms))
    variants = speed_variants()
    extras = {row["method"]: variants[row["method"]][1].extra(settings.prompt_length, backbone.hidden_size,
                                                               settings.repeats, row["method_ms"])
              for row in rows if variants[row["method"]][1].extra is not None}
    report = {
        "settings": vars(settings) | {"backbone": backbone.name, "threads": torch.get_num_threads()},
        "machine": machine_info(),
        "methods": rows,
        "extras": extras,
    }
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(report, indent=1))
    (out / "speed.md").write_text(render(report))
    return report


def machine_info() -> dict[str, Any]:
    import os
    import platform

    import transformers

    from mtpt.training.checkpoint import cpu_model

    return {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(),
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def _iqr(iqr: list[float]) -> str:
    return f"{iqr[0]:.3f}–{iqr[1]:.3f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _check(value: float | None, target: float, at_most: bool = True, iqr: list[float] | None = None) -> str:
    """``0.982× [0.95–1.01] (≤ 1.05: ok)``; a miss whose interquartile range reaches the target is marked
    "within noise" (the rounds disagree on which side of the target the method is)."""
    if value is None:
        return "-"
    ok = value <= target if at_most else value >= target
    verdict = "ok" if ok else "MISSED"
    if not ok and iqr is not None and (iqr[0] <= target if at_most else iqr[1] >= target):
        verdict = "MISSED, within noise"
    spread = f" [{iqr[0]:.3f}–{iqr[1]:.3f}]" if iqr is not None else ""
    return f"{value:.3f}×{spread} ({'≤' if at_most else '≥'} {target:g}: {verdict})"


def render(report: dict[str, Any]) -> str:
    """The Markdown report: step times and ratios, memory, the methods' own measurements, mixed-task inference."""
    s = report["settings"]
    lines = [
        f"# mtpt bench speed — {s['backbone']}, batch {s['batch']}, {s['text_tokens']} text tokens, "
        f"precision {s['precision']}, {s['repeats']} interleaved repeats, {s['threads']} threads",
        "",
        "| method | L | method ms | bare ms | PEFT ms | × bare (target) | × PEFT (target) | "
        "memory MiB method / bare / PEFT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["methods"]:
        peft_ms = f"{r['peft_ms']:.1f} ({r['peft']})" if r.get("peft") else "n/a"
        memory = " / ".join(_mib(r.get(f"{k}_memory", {}).get("total")) for k in ("method", "bare", "peft"))
        lines.append(f"| {r['method']} | {r['prompt_length']} | {r['method_ms']:.1f} | {r['bare_ms']:.1f} | {peft_ms} | "
                     f"{_check(r['vs_bare'], r['bare_target'], iqr=r.get('vs_bare_iqr'))} | "
                     f"{_check(r['vs_peft'], PEFT_TARGET, iqr=r.get('vs_peft_iqr'))} | {memory} |")
    lines += ["", "Ratios: median of the per-round ratios (each round runs method, bare and PEFT back to back, "
              "starting at the next arm each round), [interquartile range] of those ratios.", "", "Memory: tensors saved for backward (frozen weights excluded) + gradients and AdamW state of what "
              "each arm trains, for one step (see mtpt.bench.arms).", ""]
    for r in report["methods"]:
        if "excluded_ms" in r:  # MPT's distillation stage: the teacher pass is reported apart
            lines += [f"{r['method']}: method ms leave out the teacher pass (a no-grad forward with the frozen "
                      f"teacher prompts, median {r['excluded_ms']:.1f} ms); with it the step is "
                      f"{r['with_excluded_vs_bare']:.3f}× bare (median of the per-round ratios).", ""]
        if "block_skipped" in r:  # TA-LoRA's gated attention: the block PT and PEFT do not have, measured in the step
            b = r["block_skipped"]
            peft = f", {b['vs_peft']:.3f}× PEFT [{_iqr(b['vs_peft_iqr'])}]" if b.get("vs_peft") else ""
            lines += [f"{r['method']}: the same step with the task block skipped in its {b['layers']} layers (the "
                      f"gated attention still attached, theta0 trained so that the backward still runs through "
                      f"every layer) takes {b['ms']:.1f} ms, {b['vs_bare']:.3f}× bare [{_iqr(b['vs_bare_iqr'])}]"
                      f"{peft}; the block makes the step {b['block_factor']:.3f}× "
                      f"[{_iqr(b['block_factor_iqr'])}] of that.", ""]
    for extra in report.get("extras", {}).values():  # a method's own measurement (DTVG's grouping)
        lines += [f"## {extra['title']}", "", "| " + " | ".join(extra["columns"]) + " |",
                  "|" + "---|" * len(extra["columns"])]
        lines += ["| " + " | ".join(row) + " |" for row in extra["rows"]]
    mixed = [r for r in report["methods"] if "inference" in r]
    if mixed:
        lines += ["", "## Mixed-task inference", "", "| method | tasks | single-task rows/s | mixed rows/s | "
                  "mixed / single (target) |", "|---|---|---|---|---|"]
        for r in mixed:
            i = r["inference"]
            lines.append(f"| {r['method']} | {r['tasks']} | {i['single_rows_per_s']:.1f} | {i['mixed_rows_per_s']:.1f} | "
                         f"{_check(i['ratio'], MIXED_TARGET, at_most=False, iqr=i.get('ratio_iqr'))} |")
    return "\n".join(lines) + "\n"


def speed_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpt bench speed", description=__doc__.split("\n\n")[0])
    d = SpeedSettings()
    parser.add_argument("--backbone", default=d.backbone, help="Backbone alias/path (tiny-llama for a smoke run).")
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--text-tokens", type=int, default=d.text_tokens, help="Input tokens per row (no padding).")
    parser.add_argument("--prompt-length", type=int, default=d.prompt_length)
    parser.add_argument("--repeats", type=int, default=d.repeats, help="Timed steps per arm (after one warm-up).")
    labels = list(speed_variants())
    parser.add_argument("--methods", nargs="+", default=labels, choices=labels,
                        help="Speed variants to measure (declared by each method's registry entry).")
    parser.add_argument("--tasks", type=int, default=d.tasks, help="Tasks of the multi-task methods (MPT, TA-LoRA).")
    parser.add_argument("--precision", choices=["auto", "no", "bf16"], default=d.precision,
                        help="Autocast for every arm; auto = bf16 where the hardware has it natively, else fp32.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--out", default=d.out, help="Folder for speed.json and speed.md.")
    return parser


def cmd_speed(argv: list[str]) -> int:
    args = speed_parser().parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.text_tokens < 1 or args.prompt_length < 1:
        raise SystemExit("batch, text-tokens, prompt-length and repeats must be at least 1")
    settings = SpeedSettings(**{k.replace("-", "_"): v for k, v in vars(args).items()})
    settings.precision = resolve_precision(settings.precision)  # the report names what actually ran
    report = run_speed(settings)
    print(render(report))
    print(f"written: {Path(settings.out) / 'speed.json'}, {Path(settings.out) / 'speed.md'}")
    return 0
