"""mtpt's side of ``mtpt bench e2e``: the protocol as a normal mtpt run, timed by phase.

``python -m mtpt.bench.e2e_mtpt [protocol flags] --out DIR`` loads the backbone and the task's splits, trains a
prompt-tuning run through :func:`mtpt.runner.train` (validation every ``eval_every`` steps, the best checkpoint
scored on the test split), and writes ``DIR/timings.json`` (see :mod:`mtpt.bench.e2e`) next to the run folder
``DIR/run``. The evaluation passes are timed by wrapping the trainer's ``evaluate_sets`` in this process only;
nothing else of the run is changed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

STARTED = time.perf_counter()


@contextlib.contextmanager
def timed_evaluations(record: list[tuple[str, float, float]]):
    """Record ``(split, start, seconds)`` of every evaluation pass the trainer runs while active."""
    import mtpt.training.loop as loop

    original = loop.evaluate_sets

    def timed(model, parts, sets, acc):
        start = time.perf_counter()
        try:
            return original(model, parts, sets, acc)
        finally:
            record.append((sets[0].split if sets else "none", start, time.perf_counter() - start))

    loop.evaluate_sets = timed
    try:
        yield record
    finally:
        loop.evaluate_sets = original


def run(args: argparse.Namespace) -> dict:
    import torch

    from mtpt import runner
    from mtpt.backbones import load_backbone
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from mtpt.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    backbone = load_backbone(args.backbone)
    task = get_task(args.task)
    # load the splits now (cached by the task layer): data loading is setup on both sides, not training
    train = task.examples("train", kshot=args.kshot, seed=args.seed)
    validation = task.examples("validation", kshot=args.kshot, seed=args.seed, max_examples=args.max_eval_examples)
    test = task.examples("test", max_examples=args.max_eval_examples)
    config = RunConfig(
        backbone=args.backbone, tasks=[args.task],
        method={"name": "pt", "prompt_length": args.prompt_length, "init": "sample_vocab"},
        data=DataConfig(kshot=args.kshot, kshot_seed=args.seed, max_eval_examples=args.max_eval_examples,
                        max_input_tokens=args.max_input_tokens, length_grouping=args.length_grouping),
        train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                          eval_every=args.eval_every, precision=args.precision, seed=args.seed, resume=False,
                          compile=args.compile, log_every=1),  # every step's loss, to compare with the reference
        eval=EvalConfig(scorer="rank", batch_size=args.eval_batch_size, final_splits=["test"]),
        output_dir=str(out / "run"),
    )
    built: list[float] = []
    passes: list[tuple[str, float, float]] = []
    with timed_evaluations(passes):
        result = runner.train(config, backbone, on_built=lambda parts: built.append(time.perf_counter()))
    finished = time.perf_counter()
    validation_s = sum(s for split, _, s in passes if split == "validation")
    test_s = sum(s for split, _, s in passes if split == "test")
    test_start = min((start for split, start, _ in passes if split == "test"), default=finished)
    metrics = result.final["test"][task.name]
    log = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    losses = [record["loss"] for record in log if "loss" in record and "split" not in record]
    return {
        "side": "mtpt",
        "steps": test_start - built[0] - validation_s,
        "validation": validation_s,
        "test": test_s,
        "inner_setup": built[0] - STARTED,
        "inner_total": finished - STARTED,
        "validation_passes": sum(1 for split, _, _ in passes if split == "validation"),
        "best_step": result.best_step,
        "best_validation": result.best_metric,
        "test_accuracy": metrics["accuracy"],
        "train_examples": len(train),
        "validation_examples": len(validation),
        "test_examples": len(test),
        "threads": torch.get_num_threads(),
        "losses": losses,
    }


def main(argv: list[str] | None = None) -> int:
    from mtpt.bench.e2e import add_protocol_arguments

    parser = argparse.ArgumentParser(prog="python -m mtpt.bench.e2e_mtpt", description=__doc__.split("\n\n")[0])
    add_protocol_arguments(parser)
    parser.add_argument("--length-grouping", type=int, default=0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    timings = run(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
