"""``mtpt bench e2e``: time to a result, as users see it: one k-shot task trained with validation and scored on its
test set, by mtpt and by the way a PEFT user would do it (``benchmarks/peft_reference.py``).

Both sides run the same protocol (default: SST-2 16-shot, LM-BFF split seed 13, prompt tuning with 20 virtual
tokens started from the same 20 sampled vocabulary rows, 100 steps of batch 8 in the same example order, AdamW at
lr 0.03 with the same warm-up and linear decay, gradient clipping at 1.0, validation every 20 steps on the
32-example k-shot validation set keeping the best prompt, then rank scoring of the whole test split, 872
examples). mtpt runs it as a normal run (:func:`mtpt.runner.train`, then its ``results.json``); the reference
with PEFT's ``PromptTuningConfig``, a plain PyTorch loop with ``labels=`` and rank scoring with one forward per
label word. Each run is a fresh process (interpreter start, imports, backbone and data loading included, as a
user's command would); the two alternate for ``--rounds`` rounds, the side that starts changing every round.

Each side reports its phases from inside (``timings.json``): ``setup`` (imports, backbone, data), ``steps`` (the
optimizer steps, checkpoints and logs: training without its validation passes), ``validation`` (every
validation pass), ``test`` (scoring the test set); the harness measures ``total``, launch to exit. The report
(``e2e.json``, ``e2e.md``) gives each side's medians, the medians of the per-round ratios mtpt / reference with
their interquartile range, and both test accuracies, which must agree within :data:`ACCURACY_TOLERANCE` points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TOTAL_TARGET = 0.6
"""mtpt's total time against the reference's (issue 33)."""
ACCURACY_TOLERANCE = 2.0
"""Test accuracies of the two sides must agree within this many points: the same learning problem."""
PHASES = ("setup", "steps", "validation", "test")


@dataclass
class Protocol:
    """The task and training protocol both sides run (their command-line flags have the same names)."""

    backbone: str = "smollm2-135m"
    task: str = "glue-sst2"
    kshot: int = 16
    seed: int = 13
    """k-shot split seed and training seed (initial prompt, example order)."""
    steps: int = 100
    batch_size: int = 8
    lr: float = 0.03
    warmup_steps: int = 10
    eval_every: int = 20
    eval_batch_size: int = 16
    prompt_length: int = 20
    precision: str = "no"
    max_input_tokens: int = 256
    max_eval_examples: int | None = None
    """Cap of the validation and test sets (smoke runs); None = the whole sets."""
    threads: int | None = None


@dataclass
class MtptLevers:
    """Opt-in levers of mtpt's side (``mtpt bench levers`` measures them; a recorded run names the ones it used)."""

    length_grouping: int = 0
    compile: bool = False


@dataclass
class E2ESettings:
    protocol: Protocol = field(default_factory=Protocol)
    levers: MtptLevers = field(default_factory=MtptLevers)
    rounds: int = 3
    out: str = "runs/bench/e2e"
    reference: str = ""
    """The reference script; empty = ``benchmarks/peft_reference.py`` of the source tree mtpt runs from."""


def protocol_argv(protocol: Protocol) -> list[str]:
    """``protocol`` as the command-line flags both sides parse."""
    argv: list[str] = []
    for key, value in asdict(protocol).items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol's flags (the reference script declares the same ones)."""
    d = Protocol()
    parser.add_argument("--backbone", default=d.backbone, help="Backbone alias/path (tiny-llama for a smoke run).")
    parser.add_argument("--task", default=d.task, help="Registered task name or task spec path.")
    parser.add_argument("--kshot", type=int, default=d.kshot)
    parser.add_argument("--seed", type=int, default=d.seed, help="k-shot split seed and training seed.")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    parser.add_argument("--prompt-length", type=int, default=d.prompt_length)
    parser.add_argument("--precision", default=d.precision, choices=["auto", "no", "bf16"],
                        help="Autocast of both sides; auto = bf16 where the hardware has it natively, else fp32.")
    parser.add_argument("--max-input-tokens", type=int, default=d.max_input_tokens)
    parser.add_argument("--max-eval-examples", type=int, default=None,
                        help="Cap the validation and test sets (smoke runs); default: the whole sets.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both sides (default: torch's).")


def protocol_from(args: argparse.Namespace) -> Protocol:
    return Protocol(**{k: getattr(args, k) for k in asdict(Protocol())})


def default_reference() -> Path:
    import mtpt

    return Path(mtpt.__file__).resolve().parents[2] / "benchmarks" / "peft_reference.py"


# --- the harness --------------------------------------------------------------------------------------------------
def run_side(side: str, settings: E2ESettings, folder: Path) -> dict[str, Any]:
    """One run of ``side`` ("mtpt" or "reference") in a fresh process; its timings with the measured total."""
    import mtpt

    folder.mkdir(parents=True, exist_ok=True)
    if side == "mtpt":
        command = [sys.executable, "-m", "mtpt.bench.e2e_mtpt", *protocol_argv(settings.protocol),
                   "--length-grouping", str(settings.levers.length_grouping), "--out", str(folder)]
        command += ["--compile"] if settings.levers.compile else []
    else:
        command = [sys.executable, str(settings.reference or default_reference()),
                   *protocol_argv(settings.protocol), "--out", str(folder)]
    env = dict(os.environ)
    # the child imports the same mtpt as this process (the source tree first, not another installed copy)
    source = str(Path(mtpt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([source] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    start = time.perf_counter()
    with open(folder / "log.txt", "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    total = time.perf_counter() - start
    if done.returncode != 0:
        tail = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"the {side} run failed (exit {done.returncode}); its log {folder / 'log.txt'} ends:\n{tail}")
    timings = json.loads((folder / "timings.json").read_text(encoding="utf-8"))
    # setup: everything outside the timed phases (interpreter start, imports, backbone and data, writing results)
    setup = total - sum(timings[phase] for phase in PHASES if phase != "setup")
    return timings | {"total": total, "setup": setup}


def run_e2e(settings: E2ESettings) -> dict[str, Any]:
    """The alternating rounds; writes ``e2e.json`` and ``e2e.md`` into ``settings.out`` and returns the report."""
    from mtpt.bench.speed import machine_info
    from mtpt.precision import resolve_precision

    settings.protocol.precision = resolve_precision(settings.protocol.precision)  # both sides get what ran
    reference = Path(settings.reference or default_reference())
    if not reference.is_file():
        raise SystemExit(f"the reference script {reference} does not exist: run from a source checkout of mtpt or "
                         "pass --reference benchmarks/peft_reference.py")
    out = Path(settings.out)
    runs: dict[str, list[dict[str, Any]]] = {"mtpt": [], "reference": []}
    for index in range(settings.rounds):
        order = ("mtpt", "reference") if index % 2 == 0 else ("reference", "mtpt")
        for side in order:
            print(f"round {index + 1}/{settings.rounds}: {side} ...", flush=True)
            runs[side].append(run_side(side, settings, out / "rounds" / f"{index + 1}-{side}") | {"first": side == order[0]})
    report = {"settings": {"protocol": asdict(settings.protocol), "levers": asdict(settings.levers),
                           "rounds": settings.rounds, "reference": str(reference)},
              "machine": machine_info(), "runs": runs, "summary": summarise(runs)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "e2e.md").write_text(render(report), encoding="utf-8")
    return report


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per side and phase, medians and IQR of the per-round ratios, accuracies and their agreement."""
    from mtpt.bench.speed import paired_ratio

    def values(side: str, phase: str) -> list[float]:
        if phase == "training":
            return [r["steps"] + r["validation"] for r in runs[side]]
        return [r[phase] for r in runs[side]]

    summary: dict[str, Any] = {"medians": {}, "ratios": {}}
    for phase in ("training", *PHASES, "total"):
        mine, theirs = values("mtpt", phase), values("reference", phase)
        summary["medians"][phase] = {"mtpt": statistics.median(mine), "reference": statistics.median(theirs)}
        ratio, iqr = paired_ratio(mine, theirs) if min(theirs) > 0 else (None, None)
        summary["ratios"][phase] = {"ratio": ratio, "iqr": iqr}
    accuracy = {side: statistics.median(r["test_accuracy"] for r in runs[side]) for side in runs}
    summary["accuracy"] = accuracy
    summary["accuracy_difference"] = accuracy["mtpt"] - accuracy["reference"]
    summary["accuracy_agrees"] = abs(summary["accuracy_difference"]) <= ACCURACY_TOLERANCE
    summary["total_target"] = TOTAL_TARGET
    summary["total_met"] = summary["ratios"]["total"]["ratio"] <= TOTAL_TARGET
    return summary


def render(report: dict[str, Any]) -> str:
    """e2e.md: the medians, the ratios with their verdicts, both accuracies, and every round."""
    from mtpt.bench.speed import _check

    p, s = report["settings"]["protocol"], report["summary"]
    levers = report["settings"]["levers"]
    chosen = [f"length_grouping {levers['length_grouping']}"] if levers["length_grouping"] > 1 else []
    chosen += ["compile"] if levers["compile"] else []
    eval_sets = "whole sets" if p["max_eval_examples"] is None else f"capped at {p['max_eval_examples']} examples"
    first = report["runs"]["mtpt"][0]
    lines = [
        f"# mtpt bench e2e — {p['backbone']}, {p['task']} {p['kshot']}-shot (seed {p['seed']}), {p['steps']} steps "
        f"× batch {p['batch_size']}, validation every {p['eval_every']} ({first['validation_examples']} examples), "
        f"test {first['test_examples']} examples, precision {p['precision']}, {report['settings']['rounds']} rounds",
        "",
        f"mtpt levers: {', '.join(chosen) if chosen else 'defaults'}; evaluation batch {p['eval_batch_size']}, "
        f"{eval_sets}; {first['threads']} threads.",
        "",
        "| | training s (steps + validation) | of which validation s | test s | setup s | total s | test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    m = s["medians"]
    for side, label in (("mtpt", "mtpt"), ("reference", "PEFT reference")):
        lines.append(f"| {label} | {m['training'][side]:.1f} | {m['validation'][side]:.1f} | {m['test'][side]:.1f} | "
                     f"{m['setup'][side]:.1f} | {m['total'][side]:.1f} | {s['accuracy'][side]:.2f} |")
    r = s["ratios"]

    def ratio(phase: str) -> str:
        value = r[phase]
        return "-" if value["ratio"] is None else f"{value['ratio']:.3f}× [{value['iqr'][0]:.3f}–{value['iqr'][1]:.3f}]"

    agree = "ok" if s["accuracy_agrees"] else "MISSED"
    lines.append(f"| mtpt / reference | {ratio('training')} | {ratio('validation')} | {ratio('test')} | "
                 f"{ratio('setup')} | {_check(r['total']['ratio'], TOTAL_TARGET, iqr=r['total']['iqr'])} | "
                 f"{s['accuracy_difference']:+.2f} points (within {ACCURACY_TOLERANCE:g}: {agree}) |")
    passes = {side: report["runs"][side][0]["validation_passes"] for side in ("mtpt", "reference")}
    lines += ["", "Medians over the rounds; ratios: median of the per-round ratios mtpt / reference, [interquartile "
              "range]. total: launch to exit of each run's process (interpreter start, imports, backbone and data "
              "loading, training, validation, test); setup: total minus the three timed phases. Validation passes "
              f"per run: mtpt {passes['mtpt']}, reference {passes['reference']} (mtpt also scores the initial prompt, "
              "train.eval_at_start, as every mtpt run does by default).", "",
              "| round | side | first | steps s | validation s | test s | total s | best step | test accuracy |",
              "|---|---|---|---|---|---|---|---|---|"]
    for side in ("mtpt", "reference"):
        for index, run in enumerate(report["runs"][side]):
            lines.append(f"| {index + 1} | {side} | {'yes' if run['first'] else 'no'} | {run['steps']:.1f} | "
                         f"{run['validation']:.1f} | {run['test']:.1f} | {run['total']:.1f} | {run['best_step']} | "
                         f"{run['test_accuracy']:.2f} |")
    if not s["accuracy_agrees"]:
        lines += ["", f"**MISSED: the test accuracies differ by {s['accuracy_difference']:+.2f} points (more than "
                  f"{ACCURACY_TOLERANCE:g}): the two sides did not solve the same learning problem.**"]
    return "\n".join(lines) + "\n"


def e2e_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpt bench e2e", description=__doc__.split("\n\n")[0])
    add_protocol_arguments(parser)
    d = E2ESettings()
    parser.add_argument("--rounds", type=int, default=d.rounds, help="Runs of each side (alternating).")
    parser.add_argument("--length-grouping", type=int, default=0,
                        help="mtpt side: data.length_grouping (opt-in lever; changes the example order).")
    parser.add_argument("--compile", action="store_true", help="mtpt side: train.compile (opt-in lever).")
    parser.add_argument("--reference", default="", help="The reference script (default: benchmarks/peft_reference.py).")
    parser.add_argument("--out", default=d.out, help="Folder for e2e.json, e2e.md and the rounds' run folders.")
    return parser


def cmd_e2e(argv: list[str]) -> int:
    args = e2e_parser().parse_args(argv)
    if min(args.rounds, args.steps, args.batch_size, args.eval_every, args.eval_batch_size) < 1:
        raise SystemExit("rounds, steps, batch-size, eval-every and eval-batch-size must be at least 1")
    from mtpt.tasks import get_task

    if get_task(args.task).kind != "classification":
        raise SystemExit(f"mtpt bench e2e compares rank-scored classification: task {args.task!r} is "
                         f"{get_task(args.task).kind}; choose a classification task (e.g. glue-sst2).")
    settings = E2ESettings(protocol_from(args), MtptLevers(args.length_grouping, args.compile), args.rounds,
                           args.out, args.reference)
    report = run_e2e(settings)
    print(render(report))
    print(f"written: {Path(args.out) / 'e2e.json'}, {Path(args.out) / 'e2e.md'}")
    return 0
