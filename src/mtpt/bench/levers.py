"""``mtpt bench levers``: each speed lever measured with and without it, in the same run, on a real task's data.

A lever is measured on the unit it acts on, with its two arms interleaved round by round (the arm that starts
changes every round, as in ``mtpt bench speed``), and reported as the median of the per-round ratios with / without
and their interquartile range:

- training unit: ``--window`` optimizer steps of prompt tuning (the trainer's own :class:`TrainingStep`) over the
  task's first training batches in the sampler's order:
  ``target-only logits`` (``logits_to_keep`` on, as mtpt trains; off: the LM head on every position),
  ``length grouping`` (``data.length_grouping``, opt-in: the same examples regrouped by length; off: the
  sampler's batches), ``torch.compile`` (``train.compile``, opt-in; the compilation happens in the untimed
  warm-up round), ``bf16`` (autocast where the hardware has it natively; measured only there), ``threads
  (training)`` (torch's threads against one);
- evaluation unit: rank scoring of ``--eval-examples`` test examples as a run's evaluation does it:
  ``prefix sharing`` (one forward per input shared by the label words; off: one forward per label word),
  ``length-sorted evaluation`` (examples scored in order of length; off: file order), ``evaluation batch N``
  (batch N against the default 16), ``threads (evaluation)``.

A lever "helps" when the whole interquartile range of its ratio lies below 1, "hurts" when it lies above, and is
"within noise" otherwise. What the report calls the default is what mtpt does without any option.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

TRAINING_LEVERS = ("target-only logits", "length grouping", "torch.compile", "bf16", "threads (training)")
EVALUATION_LEVERS = ("prefix sharing", "length-sorted evaluation", "evaluation batch", "threads (evaluation)")
LEVERS = TRAINING_LEVERS + EVALUATION_LEVERS
DEFAULTS = {
    "target-only logits": "on",
    "length grouping": "off (opt-in: data.length_grouping)",
    "torch.compile": "off (opt-in: train.compile)",
    "bf16": "on where native (train.precision auto)",
    "threads (training)": "torch's threads",
    "threads (evaluation)": "torch's threads",
    "prefix sharing": "on",
    "length-sorted evaluation": "on",
    "evaluation batch": "eval.batch_size 16",
}
"""What mtpt does with each lever when no option is given."""


@dataclass
class LeverSettings:
    backbone: str = "smollm2-135m"
    task: str = "glue-sst2"
    kshot: int = 16
    seed: int = 13
    batch_size: int = 8
    prompt_length: int = 20
    precision: str = "no"
    window: int = 4
    """Optimizer steps per training unit (also the length-grouping window)."""
    eval_examples: int = 256
    """Test examples per evaluation unit."""
    eval_batch_size: int = 16
    eval_batch_sizes: list[int] = field(default_factory=lambda: [64])
    """Evaluation batch sizes measured against ``eval_batch_size``."""
    rounds: int = 5
    levers: list[str] = field(default_factory=lambda: list(LEVERS))
    out: str = "runs/bench/levers"


class UnitArm:
    """One arm of a lever: ``run()`` does a unit of work; ``setup``/``teardown`` switch the lever (untimed)."""

    def __init__(self, name: str, run: Callable[[], None], setup: Callable[[], Any] | None = None):
        self.name = name
        self._run = run
        self._setup = setup
        self._context: contextlib.ExitStack | None = None

    def enter(self) -> None:
        self._context = contextlib.ExitStack()
        if self._setup is not None:
            result = self._setup()
            if isinstance(result, contextlib.AbstractContextManager):
                self._context.enter_context(result)

    def exit(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = None

    def step(self) -> None:
        self._run()

    def excluded_ms(self) -> float:
        return 0.0


class Bench:
    """The task's data, the prompt-tuning model(s) and the units the levers act on."""

    def __init__(self, settings: LeverSettings):
        from mtpt.backbones import load_backbone
        from mtpt.precision import make_accelerator, resolve_precision

        self.settings = settings
        self.precision = resolve_precision(settings.precision)
        self.backbone = load_backbone(settings.backbone)
        self.accelerator = make_accelerator(self.precision)
        self.parts = self._build()
        self.model = self.parts.model
        self.task = self.parts.tasks[0]
        train = self.task.examples("train", kshot=settings.kshot, seed=settings.seed)
        self.train_rows = [(self.parts.tokenizer.input_ids(ex.text), self.parts.tokenizer.target_ids(ex.target))
                           for ex in train]
        self.test = self.task.examples("test", max_examples=settings.eval_examples)
        self.steppers: dict[int, Any] = {}

    def _build(self):
        from mtpt.config import DataConfig, RunConfig, TrainConfig
        from mtpt.runtime import build_run

        s = self.settings
        config = RunConfig(backbone=s.backbone, tasks=[s.task],
                           method={"name": "pt", "prompt_length": s.prompt_length, "init": "sample_vocab"},
                           data=DataConfig(kshot=s.kshot, kshot_seed=s.seed),
                           train=TrainConfig(batch_size=s.batch_size, seed=s.seed, precision=self.precision))
        return build_run(config, self.backbone)

    # --- training unit -------------------------------------------------------------------------------------------
    def batches(self, grouped: bool) -> list:
        """The window's batches as the trainer draws them (regrouped by length when ``grouped``)."""
        from mtpt.batching import pad_batch
        from mtpt.training.sampling import LengthGroupedSampler, MixtureSampler

        s = self.settings
        sampler: Any = MixtureSampler([len(self.train_rows)], torch.ones(1), s.seed)
        if grouped:
            sampler = LengthGroupedSampler(sampler, lambda _task, i: sum(map(len, self.train_rows[i])), s.window)
        out = []
        for step in range(s.window):
            rows = [self.train_rows[i] for _, i in sampler.draw(step, s.batch_size)]
            out.append(pad_batch([a for a, _ in rows], [b for _, b in rows], [0] * len(rows),
                                 self.parts.tokenizer.pad_id))
        return out

    def stepper(self, model):
        """The trainer's step for ``model`` (one per model, kept across rounds)."""
        from mtpt.training.loop import optimizer_groups
        from mtpt.training.step import TrainingStep

        if id(model) not in self.steppers:
            optimizer = torch.optim.AdamW(optimizer_groups(model.method, 0.03, 0.0))
            prepared, optimizer = self.accelerator.prepare(model, optimizer)
            self.steppers[id(model)] = TrainingStep(prepared, optimizer, self.accelerator, max_grad_norm=1.0)
        return self.steppers[id(model)]

    def training_unit(self, batches: list, model=None) -> Callable[[], None]:
        from mtpt.training.step import MicroBatch

        stepper = self.stepper(model or self.model)

        def run() -> None:
            for index, batch in enumerate(batches):
                stepper.run([MicroBatch(batch, float(batch.target_mask.sum()))], index)

        return run

    def twin(self):
        """A second prompt-tuning model on the same backbone (for a lever that changes the model itself)."""
        return self._build().model

    # --- evaluation unit -----------------------------------------------------------------------------------------
    def evaluation_unit(self, *, batch_size: int | None = None, share_prefix: bool = True,
                        sort: bool = True) -> Callable[[], None]:
        from mtpt.evaluation import rank_choices

        tok = self.parts.tokenizer
        examples = (sorted(self.test, key=lambda ex: len(tok.input_ids(ex.text))) if sort else list(self.test))

        def run() -> None:
            self.model.eval()
            with self.accelerator.autocast():
                rank_choices(self.model, tok, examples, [0] * len(examples),
                             batch_size=batch_size or self.settings.eval_batch_size, share_prefix=share_prefix,
                             device=self.accelerator.device)

        return run


def lever_arms(name: str, bench: Bench) -> tuple[UnitArm, UnitArm] | str:
    """The (with, without) arms of lever ``name``, or why it is not measured here."""
    from mtpt.precision import native_bf16

    plain = bench.batches(grouped=False)
    threads = torch.get_num_threads()
    if name == "target-only logits":
        def full_logits():
            bench.model.target_only_logits = False
            return _restore(lambda: setattr(bench.model, "target_only_logits", True))
        return UnitArm("on", bench.training_unit(plain)), UnitArm("off", bench.training_unit(plain), full_logits)
    if name == "length grouping":
        return (UnitArm("on", bench.training_unit(bench.batches(grouped=True))),
                UnitArm("off", bench.training_unit(plain)))
    if name == "torch.compile":
        compiled = bench.twin()
        compiled.compile_backbone()
        return UnitArm("on", bench.training_unit(plain, compiled)), UnitArm("off", bench.training_unit(plain))
    if name == "bf16":
        if not native_bf16():
            return "not measured: no native bf16 here (emulated bf16 is many times slower; precision auto keeps fp32)"
        if bench.precision == "bf16":
            return "not measured: the run's precision is already bf16"
        return (UnitArm("on", bench.training_unit(plain), lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
                UnitArm("off", bench.training_unit(plain)))
    if name.startswith("threads"):
        if threads < 2:
            return "not measured: torch has one thread here"
        unit = bench.training_unit(plain) if name == "threads (training)" else bench.evaluation_unit()
        return UnitArm(f"{threads} threads", unit), UnitArm("1 thread", unit, lambda: _threads(1))
    if name == "prefix sharing":
        return UnitArm("on", bench.evaluation_unit()), UnitArm("off", bench.evaluation_unit(share_prefix=False))
    if name == "length-sorted evaluation":
        return UnitArm("on", bench.evaluation_unit()), UnitArm("off", bench.evaluation_unit(sort=False))
    raise ValueError(f"unknown lever {name!r}; choose from {LEVERS}")


@contextlib.contextmanager
def _restore(undo: Callable[[], None]):
    try:
        yield
    finally:
        undo()


@contextlib.contextmanager
def _threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(name: str, arms: tuple[UnitArm, UnitArm], rounds: int, unit: str) -> dict[str, Any]:
    """One lever's row: the arms interleaved over ``rounds`` timed rounds after a warm-up round."""
    from mtpt.bench.speed import interleave, paired_ratio

    with_arm, without_arm = arms
    times, _ = interleave([with_arm, without_arm], rounds)
    ratio, iqr = paired_ratio(times[with_arm.name], times[without_arm.name])
    return {"lever": name, "unit": unit, "with": with_arm.name, "without": without_arm.name,
            "with_ms": statistics.median(times[with_arm.name]), "without_ms": statistics.median(times[without_arm.name]),
            "times_ms": times, "ratio": ratio, "iqr": iqr, "verdict": verdict(iqr),
            "default": DEFAULTS["evaluation batch" if name.startswith("evaluation batch") else name]}


def verdict(iqr: list[float]) -> str:
    if iqr[1] < 1.0:
        return "helps"
    if iqr[0] > 1.0:
        return "hurts"
    return "within noise"


def run_levers(settings: LeverSettings) -> dict[str, Any]:
    """Every selected lever; writes ``levers.json`` and ``levers.md`` into ``settings.out``."""
    from mtpt.bench.speed import machine_info

    bench = Bench(settings)
    rows = []
    for name in settings.levers:
        units = ([(f"evaluation batch {n}", n) for n in settings.eval_batch_sizes]
                 if name == "evaluation batch" else [(name, None)])
        for label, size in units:
            unit = (f"{settings.window} training steps" if name in TRAINING_LEVERS
                    else f"rank scoring of {len(bench.test)} test examples")
            print(f"lever: {label} ...", flush=True)
            try:
                arms = (lever_arms(name, bench) if size is None else
                        (UnitArm(f"batch {size}", bench.evaluation_unit(batch_size=size)),
                         UnitArm(f"batch {settings.eval_batch_size}", bench.evaluation_unit())))
                row = (measure(label, arms, settings.rounds, unit) if not isinstance(arms, str)
                       else {"lever": label, "unit": unit, "status": arms})
            except Exception as err:  # a lever that cannot run here (torch.compile without a compiler) is recorded
                row = {"lever": label, "unit": unit, "status": f"failed: {type(err).__name__}: {err}"[:500]}
            rows.append(row)
    report = {"settings": asdict(settings) | {"backbone": bench.backbone.name, "precision": bench.precision,
                                              "threads": torch.get_num_threads(),
                                              "train_examples": len(bench.train_rows)},
              "machine": machine_info(), "levers": rows}
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "levers.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "levers.md").write_text(render(report), encoding="utf-8")
    return report


def render(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"# mtpt bench levers — {s['backbone']}, {s['task']} {s['kshot']}-shot (seed {s['seed']}), batch "
             f"{s['batch_size']}, precision {s['precision']}, {s['threads']} threads, {s['rounds']} rounds", "",
             "| lever | unit | with | without | with ms | without ms | with / without | verdict | mtpt default |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["levers"]:
        if "status" in r:
            lines.append(f"| {r['lever']} | {r['unit']} | - | - | - | - | - | {r['status']} | - |")
            continue
        lines.append(f"| {r['lever']} | {r['unit']} | {r['with']} | {r['without']} | {r['with_ms']:.1f} | "
                     f"{r['without_ms']:.1f} | {r['ratio']:.3f}× [{r['iqr'][0]:.3f}–{r['iqr'][1]:.3f}] | "
                     f"{r['verdict']} | {r['default']} |")
    lines += ["", "with / without: median of the per-round ratios, [interquartile range]; helps: the whole range "
              "below 1; hurts: above 1. Each round runs both arms back to back, the first alternating."]
    return "\n".join(lines) + "\n"


def levers_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpt bench levers", description=__doc__.split("\n\n")[0])
    d = LeverSettings()
    parser.add_argument("--backbone", default=d.backbone, help="Backbone alias/path (tiny-llama for a smoke run).")
    parser.add_argument("--task", default=d.task, help="Registered task or task spec path (real data).")
    parser.add_argument("--kshot", type=int, default=d.kshot)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--prompt-length", type=int, default=d.prompt_length)
    parser.add_argument("--precision", default=d.precision, choices=["auto", "no", "bf16"])
    parser.add_argument("--window", type=int, default=d.window, help="Optimizer steps per training unit.")
    parser.add_argument("--eval-examples", type=int, default=d.eval_examples, help="Test examples per evaluation unit.")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    parser.add_argument("--eval-batch-sizes", type=int, nargs="+", default=d.eval_batch_sizes,
                        help="Evaluation batch sizes measured against --eval-batch-size.")
    parser.add_argument("--rounds", type=int, default=d.rounds, help="Timed rounds per lever (after a warm-up).")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS), metavar="LEVER",
                        help=f"Levers to measure (default: all): {', '.join(LEVERS)}.")
    parser.add_argument("--skip", nargs="+", default=[], choices=list(LEVERS), metavar="LEVER",
                        help="Levers to leave out (e.g. 'torch.compile' in a smoke run: compiling takes minutes).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--out", default=d.out, help="Folder for levers.json and levers.md.")
    return parser


def cmd_levers(argv: list[str]) -> int:
    args = levers_parser().parse_args(argv)
    if min(args.window, args.eval_examples, args.rounds, args.batch_size, args.eval_batch_size) < 1:
        raise SystemExit("window, eval-examples, rounds, batch-size and eval-batch-size must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    levers = [lever for lever in args.levers if lever not in args.skip]
    settings = LeverSettings(args.backbone, args.task, args.kshot, args.seed, args.batch_size, args.prompt_length,
                             args.precision, args.window, args.eval_examples, args.eval_batch_size,
                             args.eval_batch_sizes, args.rounds, levers, args.out)
    report = run_levers(settings)
    print(render(report))
    print(f"written: {Path(args.out) / 'levers.json'}, {Path(args.out) / 'levers.md'}")
    return 0
