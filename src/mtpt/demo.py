"""``mtpt demo``: prompt-tune the bundled SmolLM2-135M on the bundled SST-2 subset (256 training sentences).

Prints test accuracy of the bare backbone, of the untrained prompt and of the trained prompt, so a new user sees
the whole loop (load → evaluate → train → evaluate) work on real data in a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtpt.backbones import load_backbone
from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
from mtpt.precision import make_accelerator
from mtpt.runtime import build_run
from mtpt.training.evaluate import evaluate_sets, load_eval_sets
from mtpt.training.loop import Trainer


def demo_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        backbone=args.backbone,
        tasks=["demo-sst2"],
        method={"name": "pt", "prompt_length": args.prompt_length, "init": "sample_vocab"},
        # Rank scoring never looks past the label word, so EOS is left out of the targets: it would dominate the
        # early loss of a 32-example run without helping the scorer.
        data=DataConfig(max_input_tokens=128, target_eos=False),
        train=TrainConfig(steps=args.steps, batch_size=8, lr=args.lr, warmup_steps=5, eval_every=args.eval_every,
                          log_every=5, precision=args.precision, seed=args.seed, resume=False),
        eval=EvalConfig(batch_size=16, final_splits=["test"]),
        output_dir=args.output_dir,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mtpt demo", description=__doc__)
    parser.add_argument("--backbone", default="smollm2-135m", help="Backbone alias or folder.")
    parser.add_argument("--steps", type=int, default=60, help="Training steps (batch 8).")
    parser.add_argument("--lr", type=float, default=0.03, help="AdamW learning rate of the prompt.")
    parser.add_argument("--prompt-length", type=int, default=20, help="Virtual tokens.")
    parser.add_argument("--eval-every", type=int, default=20, help="Validation (100 sentences) every N steps.")
    parser.add_argument("--precision", choices=["auto", "no", "bf16"], default="auto",
                        help="auto: bf16 autocast where the CPU/GPU has native bf16 (it halves step time there), else fp32.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", default="runs/demo", help="Run folder.")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    print(f"Loading {args.backbone} (the first load converts the packaged GGUF weights, about 30 s) ...", flush=True)
    backbone = load_backbone(args.backbone)
    config = demo_config(args)

    bare = build_run(RunConfig(**{**config.__dict__, "method": {"name": "zero_shot"}}), backbone)
    parts = build_run(config, backbone)
    acc = make_accelerator(args.precision)
    print(f"Precision: {'bf16 autocast' if acc.mixed_precision == 'bf16' else 'fp32'} ({args.precision}).", flush=True)
    test_sets = load_eval_sets(parts, "test")
    print(f"Evaluating on {len(test_sets[0].examples)} held-out SST-2 examples ...", flush=True)
    before_bare = evaluate_sets(bare.model, bare, test_sets, acc)["demo-sst2"]["accuracy"]
    before_prompt = evaluate_sets(parts.model, parts, test_sets, acc)["demo-sst2"]["accuracy"]
    print(f"  backbone alone:   {before_bare:.1f}% accuracy")
    print(f"  untrained prompt: {before_prompt:.1f}% accuracy")

    print(f"Prompt tuning 20 virtual tokens for {args.steps} steps (batch 8) on 256 real SST-2 training sentences ...",
          flush=True)
    result = Trainer(parts, acc).fit()
    after = result.final["test"]["demo-sst2"]["accuracy"]
    print(f"  trained prompt:   {after:.1f}% accuracy (best validation step {result.best_step})")
    print(f"\nSST-2 test accuracy: {before_prompt:.1f}% before training -> {after:.1f}% after "
          f"({after - before_prompt:+.1f} points); backbone alone {before_bare:.1f}%.")
    print(f"Run folder: {result.run_dir}   total time {time.perf_counter() - started:.0f} s")
    return 0
