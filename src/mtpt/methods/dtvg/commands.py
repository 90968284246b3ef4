"""DTVG's ``mtpt`` subcommands: ``plot-groups`` (here) and ``recommend`` (:mod:`mtpt.methods.dtvg.recommend`)."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from mtpt.methods.dtvg.recommend import cmd_recommend

__all__ = ["COMMANDS", "cmd_plot_groups", "cmd_recommend"]


def cmd_plot_groups(argv: list[str]) -> int:
    """Draw which sources DTVG merged at each training step of a run (sources x steps heatmap + TS per source)."""
    from mtpt.methods.dtvg.plots import draw_groups, group_records, run_sources, run_state

    parser = argparse.ArgumentParser(prog="mtpt plot-groups", description=cmd_plot_groups.__doc__)
    parser.add_argument("run_dir", help="A DTVG run folder written by `mtpt train`.")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/groups.png).")
    args = parser.parse_args(argv)
    records = group_records(args.run_dir)
    state = run_state(args.run_dir)
    sources = run_sources(state, records)
    threshold = float(state.get("rule", {}).get("threshold", 0.0))
    title = f"DTVG groups of {Path(args.run_dir).name} ({state.get('ablation', 'full')}; dark = merged)"
    out = draw_groups(args.out or Path(args.run_dir) / "groups.png", records, sources, title, threshold)
    changes = sum(1 for a, b in itertools.pairwise(records) if a["group"] != b["group"])
    print(f"{len(records)} steps, {len(sources)} sources, the group changed {changes} times; "
          f"last group: {', '.join(records[-1]['group']) or 'none'}")
    print(f"wrote {out}")
    return 0


COMMANDS = {
    "plot-groups": ("Plot DTVG group membership over the training steps of a run (PNG).", cmd_plot_groups),
    "recommend": ("Which library sources DTVG would group for a target task, and why (TS, KC, k*).", cmd_recommend),
}
