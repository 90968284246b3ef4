"""Similarity report of a library: source x source (and target x source) matrices as CSV and heatmap PNG.

Two similarities, both from :func:`mtpt.similarity.similarity_matrix` on token-averaged vectors:
``cosine`` (SPoT) and ``dot`` (DTVG's ``(1/d) <mean(X), mean(Y)>``). By default they compare task vectors
(prompt minus the library's ``P_init``), as DTVG does; ``of="prompts"`` compares the tuned prompts, as SPoT does.
A target prompt is assumed to have been tuned from the same ``P_init`` (e.g. SPoT's retrieval run).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from mtpt.errors import MtptError
from mtpt.library.format import SourceLibrary
from mtpt.similarity import similarity_matrix

KINDS = ("cosine", "dot")
COMPARED = ("task_vectors", "prompts")

__all__ = ["similarity_report", "write_heatmap", "write_matrix_csv"]


def similarity_report(
    library: SourceLibrary,
    out_dir: str | Path,
    *,
    target: Tensor | None = None,
    target_name: str = "target",
    tasks: Sequence[str] | None = None,
    seed: int | None = None,
    of: str = "task_vectors",
) -> dict[str, Path]:
    """Write ``sources_<kind>.csv``, ``target_<kind>.csv`` (with a target) and ``heatmap_<kind>.png`` for each
    kind; returns the written files by name."""
    if of not in COMPARED:
        raise MtptError(f"--of must be one of {', '.join(COMPARED)}, got {of!r}.")
    names = list(tasks) if tasks else library.tasks
    if not names:
        raise MtptError(f"Library {library.root} has no task prompts yet: run `mtpt train-source` first.")
    init = library.init_prompt()
    sources = library.prompts(names, seed) - (init if of == "task_vectors" else 0)
    if target is not None:
        if tuple(target.shape) != tuple(init.shape):
            raise MtptError(f"The target prompt has shape {tuple(target.shape)}, the library's {tuple(init.shape)}.")
        target = target.float() - (init if of == "task_vectors" else 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for kind in KINDS:
        matrix = similarity_matrix(sources, sources, kind)
        written[f"sources_{kind}.csv"] = write_matrix_csv(out / f"sources_{kind}.csv", names, names, matrix)
        rows, shown = names, matrix
        if target is not None:
            against = similarity_matrix(target.unsqueeze(0), sources, kind)
            written[f"target_{kind}.csv"] = write_matrix_csv(out / f"target_{kind}.csv", [target_name], names, against)
            rows, shown = [target_name, *names], torch.cat([against, matrix])
        title = f"{kind} similarity of {of.replace('_', ' ')} ({library.backbone}, L={library.prompt_length})"
        written[f"heatmap_{kind}.png"] = write_heatmap(out / f"heatmap_{kind}.png", rows, names, shown, title)
    return written


def write_matrix_csv(path: Path, rows: Sequence[str], cols: Sequence[str], matrix: Tensor) -> Path:
    """A labelled matrix: header row of column names, then one row per row name."""
    if tuple(matrix.shape) != (len(rows), len(cols)):
        raise ValueError(f"matrix {tuple(matrix.shape)} does not match {len(rows)} rows x {len(cols)} columns")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", *cols])
        for name, values in zip(rows, matrix.tolist()):
            writer.writerow([name, *(f"{v:.6g}" for v in values)])
    return path


def write_heatmap(path: Path, rows: Sequence[str], cols: Sequence[str], matrix: Tensor, title: str) -> Path:
    """A heatmap PNG, drawn on an Agg canvas (no display and no global pyplot state needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = matrix.detach().float().cpu().numpy()
    size = (max(4.0, 1.0 + 0.6 * len(cols)), max(3.0, 1.0 + 0.5 * len(rows)))
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(values, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(cols)), labels=list(cols), rotation=45, ha="right")
    axes.set_yticks(range(len(rows)), labels=list(rows))
    if values.size <= 400:  # numbers stay legible only on small matrices
        low, high = float(values.min()), float(values.max())
        for (i, j), value in _cells(values):
            bright = high > low and (value - low) / (high - low) > 0.6  # viridis is light at the top
            axes.text(j, i, f"{value:.2g}", ha="center", va="center", color="k" if bright else "w", fontsize=7)
    axes.set_title(title, fontsize=9)
    figure.savefig(path, format="png", dpi=120)
    return path


def _cells(values):
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            yield (i, j), float(values[i, j])
