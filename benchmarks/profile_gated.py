"""Per-operator profile of TA-LoRA's gated step against the same step with its task block skipped.

``mtpt bench speed`` measures the gated step against the same step with the block skipped in every layer
(:class:`mtpt.bench.arms.BlockSkippedArm`) and reports the factor; this script says which operators make it up.
It runs both arms of the speed benchmark's TA-LoRA source stage under ``torch.profiler`` and lists, per operator,
the self CPU milliseconds per step of each and their difference, largest first. The profiler adds cost to every
operator and reports one thread's self time, so the speed benchmark's paired wall-clock ratio is the measurement;
this table only says where the time goes.

Run (on a quiet machine): ``PYTHONPATH=src python -m benchmarks.profile_gated [--steps 7] [--precision no]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mtpt.bench.arms import Arm, BlockSkippedArm
from mtpt.bench.speed import SpeedSettings, build_method_arm
from mtpt.bench.synthetic import synthetic_library


def self_cpu_ms(arm: Arm, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per step, per operator name, over ``steps`` profiled steps of ``arm``."""
    arm.enter()
    try:
        arm.step()  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                arm.step()
    finally:
        arm.exit()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e3 / steps
    return totals


def table(gated: dict[str, float], skipped: dict[str, float], top: int) -> list[str]:
    lines = [f"profiled self CPU ms per step: gated {sum(gated.values()):.1f}, block skipped "
             f"{sum(skipped.values()):.1f}", "", "| operator | gated ms | block skipped ms | difference ms |",
             "|---|---|---|---|"]
    names = sorted(set(gated) | set(skipped), key=lambda k: -abs(gated.get(k, 0.0) - skipped.get(k, 0.0)))
    for name in names[:top]:
        a, b = gated.get(name, 0.0), skipped.get(name, 0.0)
        lines.append(f"| {name} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=7, help="profiled steps per arm (after one warm-up)")
    parser.add_argument("--precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="operators to list")
    args = parser.parse_args(argv)

    from mtpt.backbones import load_backbone

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone)
    settings = SpeedSettings(backbone=args.backbone, precision=args.precision)
    with tempfile.TemporaryDirectory(prefix="mtpt-profile-") as tmp:
        library = str(synthetic_library(Path(tmp) / "library", backbone, settings.prompt_length).root)
        gated = build_method_arm("ta_lora", backbone, settings, library, Path(tmp))
        skipped = BlockSkippedArm(build_method_arm("ta_lora", backbone, settings, library, Path(tmp)))
        profiles = self_cpu_ms(gated, args.steps), self_cpu_ms(skipped, args.steps)
    print(f"{backbone.name}, batch {settings.batch}, {settings.text_tokens} text tokens, prompt "
          f"{settings.prompt_length}, precision {args.precision}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps per arm\n")
    print("\n".join(table(*profiles, args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
