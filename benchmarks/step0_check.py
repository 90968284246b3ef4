"""Does each transfer method start its target above the untrained prompt? Per-seed step-0 scores of a quality
benchmark's cells, against a baseline row's (issue 29's check on configs/bench/transfer-check.yaml).

    python benchmarks/step0_check.py configs/bench/transfer-check.yaml [--baseline p_init] [--at-least 2]
                                     [--methods spot tpv ...] [--out FOLDER]

Every cell logs its initial prompt's validation score as step 0 in ``metrics.jsonl`` (before any update). For each
(method, target) this prints the step-0 score per seed, the baseline's on the same seed, on how many seeds the method
is strictly above it, and the prompt's RMS at step 0 in units of the backbone's embedding RMS (mean over the run's
tasks and seeds). The check passes when every checked method is above the baseline on at least ``--at-least`` of the
seeds both have; the exit status is 1 when one is not, or when a cell has no step-0 line. Methods checked by default:
every section of the config whose method is not ``pt`` or ``zero_shot`` (those have no sources to transfer).
Reads the config (YAML) and the cell folders only; needs no model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

NOT_TRANSFER = ("pt", "zero_shot")


def step0_line(metrics: Path) -> dict | None:
    """The validation line a run logged at step 0, when it logged one."""
    if not metrics.exists():
        return None
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if record.get("step") == 0 and record.get("split") == "validation":
            return record
    return None


def prompt_rms(record: dict) -> float | None:
    """Mean RMS of the run's per-task prompts at step 0, in embedding-RMS units."""
    prompts = (record.get("prompt_scale") or {}).get("prompt") or {}
    values = [p["rms"] for p in prompts.values() if p.get("rms") is not None]
    return sum(values) / len(values) if values else None


def section_list(config: dict, label: str, key: str) -> list:
    return list(config["methods"][label].get(key) or config[key])


def starts(config: dict, out: Path, label: str) -> dict[tuple[str, int], dict | None]:
    """(target, seed) -> the cell's step-0 line (None when the cell logged none)."""
    return {(target, seed): step0_line(out / "cells" / label / target / f"seed-{seed}" / "metrics.jsonl")
            for target in section_list(config, label, "targets") for seed in section_list(config, label, "seeds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, help="results folder (default: the config's out)")
    parser.add_argument("--baseline", default="p_init", help="the row whose step-0 scores are the bar")
    parser.add_argument("--at-least", type=int, default=2, help="seeds a method must be above the baseline on")
    parser.add_argument("--methods", nargs="+", help="rows to check (default: every transfer method's row)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    out = args.out or Path(config["out"])
    if args.baseline not in config["methods"]:
        parser.error(f"--baseline {args.baseline!r} is not a section of {args.config}")
    labels = args.methods or [label for label, options in config["methods"].items()
                              if label != args.baseline and options["name"] not in NOT_TRANSFER]
    bar = starts(config, out, args.baseline)
    missing = [f"{args.baseline} {t} seed {s}" for (t, s), record in bar.items() if record is None]
    lines = ["| method | target | step 0 per seed (baseline) | above on | prompt RMS |", "|---|---|---|---|---|"]
    failed = []
    for label in labels:
        records = starts(config, out, label)
        missing += [f"{label} {t} seed {s}" for (t, s), record in records.items() if record is None]
        for target in section_list(config, label, "targets"):
            both = [(seed, records[(target, seed)], bar.get((target, seed))) for seed in
                    section_list(config, label, "seeds")]
            both = [(seed, own, base) for seed, own, base in both if own is not None and base is not None]
            if not both:
                continue
            above = sum(own["score"] > base["score"] for _, own, base in both)
            scales = [r for r in (prompt_rms(own) for _, own, _ in both) if r is not None]
            per_seed = ", ".join(f"{seed}: {own['score']:.1f} ({base['score']:.1f})" for seed, own, base in both)
            rms = f"{sum(scales) / len(scales):.3g}" if scales else "-"
            lines.append(f"| {label} | {target} | {per_seed} | {above}/{len(both)} | {rms} |")
            if above < min(args.at_least, len(both)):
                failed.append(f"{label} on {target} ({above} of {len(both)} seeds)")
    base_rms = [r for r in (prompt_rms(rec) for rec in bar.values() if rec is not None) if r is not None]
    print("\n".join(lines))
    print(f"\nbaseline {args.baseline}: prompt RMS at step 0 "
          f"{sum(base_rms) / len(base_rms):.3g}" if base_rms else f"\nbaseline {args.baseline}")
    if missing:
        print(f"no step-0 line (cell missing or unfinished): {', '.join(missing)}", file=sys.stderr)
    if failed:
        print(f"not above {args.baseline} at step 0 on {args.at_least} seeds: {'; '.join(failed)}", file=sys.stderr)
    if not missing and not failed:
        print(f"every checked method starts above {args.baseline} on at least {args.at_least} seeds")
    return 1 if missing or failed else 0


if __name__ == "__main__":
    sys.exit(main())
