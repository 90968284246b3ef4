"""Group membership over training (``mtpt plot-groups``): read a run's ``method_log.jsonl``, draw a PNG.

Each DTVG step record holds the merged ``group`` and the target similarity ``ts`` of every source (see
:meth:`mtpt.methods.dtvg.module.DynamicGrouping.after_step`). The figure has two panels sharing the step
axis: a sources x steps heatmap (dark = merged at that step) and TS per source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtpt.errors import MtptError

METHOD_LOG = "method_log.jsonl"

__all__ = ["draw_groups", "group_records", "membership", "run_sources", "run_state"]


def group_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The DTVG step records of a run (lines with a ``group``), in step order; the last record of a step wins
    (a resumed run may repeat steps)."""
    path = Path(run_dir) / METHOD_LOG
    if not path.exists():
        raise MtptError(f"{path} does not exist: is {run_dir} a DTVG run folder that has trained at least one step?")
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MtptError(f"{path} line {number} is not JSON ({err}).") from None
        if "group" in record and "step" in record:
            by_step[int(record["step"])] = record
    if not by_step:
        raise MtptError(f"{path} has no DTVG group records (ablation 'spot' does not group).")
    return [by_step[step] for step in sorted(by_step)]


def run_state(run_dir: str | Path) -> dict[str, Any]:
    """The DTVG extra state of the run's last (else best) checkpoint; ``{}`` when there is none yet."""
    for which in ("last", "best"):
        state = Path(run_dir) / "checkpoints" / which / "method_state.json"
        if state.exists():
            return json.loads(state.read_text())
    return {}


def run_sources(state: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    """Source names in source-index order: from the checkpoint state, else from the records."""
    if state.get("sources"):
        return list(state["sources"])
    names = list(records[0].get("ts", {}))
    for record in records:  # TS is absent only for ablations that log no grouping: fall back to group members
        names += [n for n in record["group"] if n not in names]
    return names


def membership(records: Sequence[dict[str, Any]], sources: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """``(steps, member)`` with ``member[s, t] = 1`` when source ``s`` was merged at ``steps[t]``."""
    steps = [int(r["step"]) for r in records]
    member = np.zeros((len(sources), len(records)), dtype=np.float32)
    index = {name: i for i, name in enumerate(sources)}
    for t, record in enumerate(records):
        for name in record["group"]:
            if name not in index:
                raise MtptError(f"Step {record['step']} groups {name!r}, which is not a source of the run {list(sources)}.")
            member[index[name], t] = 1.0
    return steps, member


def _ts_matrix(records: Sequence[dict[str, Any]], sources: Sequence[str]) -> np.ndarray | None:
    if not all("ts" in r for r in records):
        return None
    return np.array([[r["ts"].get(name, np.nan) for r in records] for name in sources], dtype=np.float64)


def draw_groups(
    path: str | Path, records: Sequence[dict[str, Any]], sources: Sequence[str], title: str = "", threshold: float = 0.0
) -> Path:
    """Write the membership heatmap (+ TS per source when logged) as a PNG on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps, member = membership(records, sources)
    ts = _ts_matrix(records, sources)
    rows = 2 if ts is not None else 1
    height = max(2.5, 0.35 * len(sources) + 1.5)
    figure = Figure(figsize=(9, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    extent = (steps[0] - 0.5, steps[-1] + 0.5, len(sources) - 0.5, -0.5)
    axes[0].imshow(member, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest", extent=extent)
    axes[0].set_yticks(range(len(sources)), labels=list(sources))
    axes[0].set_title(title or "DTVG group membership (dark = merged)", fontsize=9)
    if ts is not None:
        for name, values in zip(sources, ts):
            axes[1].plot(steps, values, label=name, linewidth=1)
        axes[1].axhline(threshold, color="k", linewidth=0.5, linestyle="--")
        axes[1].set_ylabel("TS (target similarity)")
        axes[1].legend(fontsize=7, ncols=max(1, len(sources) // 8), loc="best")
    axes[-1].set_xlabel("training step")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=110)
    return out
