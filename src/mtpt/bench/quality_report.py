"""The outputs of ``mtpt bench quality``: the results table (markdown, csv, json) and its plot (the ``--status`` grid
is :mod:`mtpt.bench.quality_status`). Everything here reads finished run folders only: no backbone, no data beyond
the majority-class reference."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Collection

from mtpt.atomic import atomic_write_bytes, atomic_write_text
from mtpt.bench.quality_config import (QualityConfig, cell_dir, library_path, section_seeds, section_source_stage,
                                       section_targets)
from mtpt.bench.quality_compare import compare_rows, comparison_lines, comparison_plan
from mtpt.bench.quality_gates import gate_lines
from mtpt.bench.quality_grid import grid_lines
from mtpt.bench.reference import majority_scores


def collect(config: QualityConfig, methods=None, targets=None, seeds=None) -> list[dict[str, Any]]:
    """One row per (method, target) with finished cells: per-seed scores, mean ± std, trainable parameters."""
    from mtpt.tasks.kshot import seed_spread

    rows = []
    for label in methods or list(config.methods):
        # a section's own targets are all reported; the selection only widens the config's list
        own = config.methods[label].get("targets") is not None
        for target in section_targets(config, label) if own else list(targets or config.targets):
            scores, last, starts, scales, params = {}, {}, {}, {}, None
            for seed in section_seeds(config, label, seeds):
                folder = cell_dir(config, label, target, seed)
                score = _cell_score(folder, config.report_split, target)
                if score is not None:
                    scores[seed] = score
                    last_score = _cell_score(folder, config.report_split, target, "final_last")
                    if last_score is not None:
                        last[seed] = last_score
                    start = step0_record(folder)
                    if start is not None and start.get("score") is not None:
                        starts[seed] = float(start["score"])
                        rms = start.get("prompt_scale", {}).get("prompt", {}).get(target, {}).get("rms")
                        if rms is not None:
                            scales[seed] = float(rms)
                if params is None and (folder / "params.json").exists():
                    params = json.loads((folder / "params.json").read_text())
            if not scores:
                continue
            mean, std = seed_spread(scores.values())
            rows.append({"method": label, "name": config.methods[label]["name"], "task": target, "mean": mean,
                         "std": std, "seeds": len(scores), "scores": scores, **({"last": last} if last else {}),
                         **({"step0": starts} if starts else {}), **({"step0_rms": scales} if scales else {}),
                         "trainable": params and params["trainable"], "per_task": params and params["per_task"],
                         "shared": params and params["shared"]})
    return rows


def _cell_score(folder: Path, split: str, task: str, key: str = "final") -> float | None:
    results = folder / "results.json"
    if not results.exists():
        return None
    metrics = (json.loads(results.read_text()).get(key) or {}).get(split, {}).get(task)
    return None if not metrics else float(metrics["score"])


def step0_record(folder: Path) -> dict[str, Any] | None:
    """The validation line a run logged at step 0 (its initial prompt: score, prompt_scale), when it logged one."""
    log = folder / "metrics.jsonl"
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("step") == 0 and record.get("split") == "validation":
            return record
    return None


def step0_score(folder: Path) -> float | None:
    """The validation score a run logged at step 0 (its initial prompt), when it logged one."""
    record = step0_record(folder)
    return None if record is None or record.get("score") is None else float(record["score"])


def write_results(config: QualityConfig, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """results.csv, results.json, results.md and results.png in the output folder."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"results.{ext}" for ext in ("csv", "json", "md", "png")}
    columns = ["method", "name", "task", "mean", "std", "seeds", "trainable", "per_task", "shared"]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    # atomic writes: two workers that finish together each rewrite the table; neither may leave half a file
    atomic_write_text(paths["csv"], table.getvalue())
    majority = majority_scores(config, rows)
    comparisons = [c for which in ("best", "last") for c in compare_rows(config, rows, which)]
    atomic_write_text(paths["json"], json.dumps({"split": config.report_split, "backbone": config.backbone,
                                                 "kshot": config.kshot, "steps": config.steps, "rows": rows,
                                                 "majority": majority,
                                                 **({"comparisons": comparisons} if comparison_plan(config) else {})},
                                                indent=1))
    atomic_write_text(paths["md"], render(config, rows, majority))
    title = f"{config.backbone}, {config.kshot}-shot, {config.report_split}"
    plot(rows, paths["png"], title, own_target_sections(config))
    return paths


def own_target_sections(config: QualityConfig) -> set[str]:
    """Labels of the sections with their own ``targets`` (TA-LoRA's unseen-data protocol and its baseline)."""
    return {label for label, options in config.methods.items() if options.get("targets") is not None}


def render(config: QualityConfig, rows: list[dict[str, Any]], majority: dict[str, float] | None = None) -> str:
    """Markdown: one row per method, one column per task (mean ± std over seeds), trainable parameters per task.
    Sections with their own targets (TA-LoRA's unseen-data protocol) get a table of their own. ``majority``: the
    majority-class score per task (:mod:`mtpt.bench.reference`), listed under the tables."""
    own = own_target_sections(config)
    lines = [f"# mtpt bench quality — {config.backbone}, {config.kshot}-shot, {config.steps} steps, "
             f"split {config.report_split}", ""]
    starts = _step0_lines([r for r in rows if r["method"] not in own and r.get("step0")])
    if config.gates:  # what could transfer, before the tables that say whether it did
        lines += gate_lines(config)[1:] + starts + grid_lines(config) + ["", "## Tables", ""]
    main = [r for r in rows if r["method"] not in own]
    lines += _table(main, config.baseline) if main or not config.gates else ["pending: no cell has finished yet."]
    if not config.gates:
        lines += starts
    extra = [r for r in rows if r["method"] in own]
    if extra:
        lines += ["", "Rows with their own targets (TA-LoRA unseen data: k-shot data of the source tasks):", ""]
        lines += _table(extra, config.own_targets_baseline)
    lines += _last_step_lines(config, rows, own)
    lines += comparison_lines(config, compare_rows(config, rows))
    lines += ["", "Scores: the task's metrics ×100 averaged (`score`), mean ± population std over seeds (none for a "
              "single seed); mean: the average of the row's task means, shown once the row has every task; "
              "trainable: parameters trained in the target run (mtpt.params)."]
    for baseline in (config.baseline, config.own_targets_baseline):
        if baseline and any(r["method"] == baseline for r in rows):
            lines.append(f"vs {baseline}: the row's score minus {baseline}'s, averaged over the (task, seed) cells "
                         f"both rows have, and in how many of those cells the row scores higher: a paired "
                         f"comparison, which the per-task means of rows with different cells are not. p: two-sided "
                         f"sign test of the wins against the losses (tied cells left out), the chance of a split at "
                         f"least this uneven if the row were no better or worse than {baseline}.")
    if majority:
        lines.append("majority class (every example answered with the split's most frequent label, no model): "
                     + ", ".join(f"{task} {score:.1f}" for task, score in majority.items()) + ".")
    for target, overrides in config.target_data.items():
        lines.append(f"{target}: data overrides {', '.join(f'{k}={v}' for k, v in overrides.items())}.")
    lines += source_stage_lines(config)
    return "\n".join(lines) + "\n"


def _step0_lines(starts: list[dict[str, Any]]) -> list[str]:
    if not starts:  # recorded before runs logged step 0: no table
        return []
    scaled = any(r.get("step0_rms") for r in starts)
    return ["", "Step 0: the validation score of each row's initial prompt, before its first step (a transfer "
            "that collapses at initialisation shows here)"
            + ("; in brackets the prompt's RMS in units of the backbone's embedding RMS (1 = a token embedding's "
               "scale), mean over seeds" if scaled else "") + ":", "", *_step0_table(starts)]


def _last_step_lines(config: QualityConfig, rows: list[dict[str, Any]], own: set[str]) -> list[str]:
    """The tables again with the last step's test scores (cells run with ``eval.score_last``)."""
    from mtpt.tasks.kshot import seed_spread

    last = []
    for r in rows:
        if r.get("last"):
            mean, std = seed_spread(r["last"].values())
            last.append({**r, "scores": r["last"], "mean": mean, "std": std, "seeds": len(r["last"])})
    if not last:
        return []
    lines = ["", "The same cells, test score of the model after the last step (instead of the best checkpoint on "
             "validation):", ""]
    lines += _table([r for r in last if r["method"] not in own], config.baseline)
    extra = [r for r in last if r["method"] in own]
    if extra:
        lines += [""] + _table(extra, config.own_targets_baseline)
    return lines


def source_stage_lines(config: QualityConfig) -> list[str]:
    """What the transfer started from: the validation score (best checkpoint) of each library prompt and of each
    multi-task source stage trained so far, read from their run folders (the library's table only without gates,
    whose source table replaces it)."""
    from mtpt.library.format import SourceLibrary

    lines = []
    library = library_path(config)
    if (library / "manifest.json").exists() and not config.gates:
        lines += ["", "Source library (validation score of each prompt's best checkpoint):", "",
                  "| source prompt | validation score | best step / steps |", "|---|---|---|"]
        for entry in SourceLibrary.open(library).entries:
            name = f"mixture of {', '.join(entry.sources)}" if entry.is_mixture else entry.task
            score = "-" if entry.best_metric is None else f"{entry.best_metric:.1f}"
            lines.append(f"| {name} (seed {entry.seed}) | {score} | {entry.best_step} / {entry.steps} |")
    stages: dict[Path, list[str]] = {}
    for label, options in config.methods.items():
        if "source_stage" in options:
            stages.setdefault(section_source_stage(config, options, str(library))[1], []).append(label)
    done = [(folder, labels) for folder, labels in stages.items() if (folder / "results.json").exists()]
    if done:
        lines += ["", "Multi-task source stages (validation score of the best checkpoint, per source):", "",
                  "| source stage | used by | " + " | ".join(config.library.sources) + " | mean | best step |",
                  "|---" * (len(config.library.sources) + 4) + "|"]
        for folder, labels in done:
            result = json.loads((folder / "results.json").read_text())
            per_task = result.get("final", {}).get("validation", {})
            scores = [f"{per_task[t]['score']:.1f}" if t in per_task else "-" for t in config.library.sources]
            lines.append(f"| {folder.name} | {', '.join(labels)} | " + " | ".join(scores)
                         + f" | {result['best_metric']:.1f} | {result['best_step']} |")
    return lines


def paired_difference(rows: list[dict[str, Any]], label: str, baseline: str
                      ) -> tuple[float, int, int, float] | None:
    """(mean of ``label``'s score minus ``baseline``'s, cells where ``label`` is higher, cells compared, sign-test
    p) over the (task, seed) cells both rows have; None when they share none. The p-value is scipy's two-sided
    exact binomial test of the wins against the losses (tied cells left out; 1.0 when every cell ties): how
    often a split at least this uneven comes from a row that is no better or worse than the baseline."""
    from scipy.stats import binomtest

    cells: dict[str, dict[tuple[str, Any], float]] = {label: {}, baseline: {}}
    for r in rows:
        if r["method"] in cells:
            cells[r["method"]].update({(r["task"], seed): score for seed, score in r["scores"].items()})
    shared = cells[label].keys() & cells[baseline].keys()
    if not shared:
        return None
    differences = [cells[label][key] - cells[baseline][key] for key in shared]
    wins, losses = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return sum(differences) / len(differences), wins, len(differences), float(p)


def _paired_cell(rows: list[dict[str, Any]], label: str, baseline: str) -> str:
    paired = None if label == baseline else paired_difference(rows, label, baseline)
    return "-" if paired is None else f"{paired[0]:+.1f} ({paired[1]}/{paired[2]}, p={paired[3]:.2f})"


def _table(rows: list[dict[str, Any]], baseline: str) -> list[str]:
    from mtpt.tasks.kshot import format_mean_std

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    labels = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["method"], r["task"]): r for r in rows}
    paired = baseline in labels
    lines = ["| method | " + " | ".join(tasks) + " | mean | "
             + (f"vs {baseline}: Δ (wins/cells, sign-test p) | " if paired else "") + "trainable / task |",
             "|---" * (len(tasks) + 3 + paired) + "|"]
    for label in labels:
        cells, means = [], []
        for task in tasks:
            r = by_key.get((label, task))
            cells.append("-" if r is None else f"{format_mean_std(r['scores'].values())} (n={r['seeds']})")
            if r is not None:
                means.append(r["mean"])
        params = next((by_key[(label, t)]["trainable"] for t in tasks if (label, t) in by_key), None)
        average = f"{sum(means) / len(means):.1f}" if len(means) == len(tasks) else "-"
        versus = f"{_paired_cell(rows, label, baseline)} | " if paired else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {average} | {versus}"
                     f"{'-' if params is None else f'{params:,}'} |")
    return lines


def _step0_table(rows: list[dict[str, Any]]) -> list[str]:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by_key = {(r["method"], r["task"]): r for r in rows}
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for label in dict.fromkeys(r["method"] for r in rows):
        cells = [_step0_cell(by_key[(label, t)]) if (label, t) in by_key else "-" for t in tasks]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _step0_cell(row: dict[str, Any]) -> str:
    from mtpt.tasks.kshot import format_mean_std

    text = format_mean_std(row["step0"].values())
    scales = row.get("step0_rms")
    return text if not scales else f"{text} [rms {sum(scales.values()) / len(scales):.2f}]"


def plot(rows: list[dict[str, Any]], path: Path, title: str, own: Collection[str] = ()) -> None:
    """Grouped bars, one panel per table: tasks on the x axis, one bar per method that has the task, error bars =
    std over seeds. Rows of ``own`` (sections with their own targets) get a panel of their own, so their tasks do
    not widen the main panel with empty groups; a method keeps its colour across panels."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    panels = [p for p in ([r for r in rows if r["method"] not in own], [r for r in rows if r["method"] in own]) if p]
    labels = list(dict.fromkeys(r["method"] for r in rows))
    palette = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    colours = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    widths = [len({r["task"] for r in p}) * max(1.2, 0.25 * len({r["method"] for r in p})) for p in panels] or [6]
    fig, axes = plt.subplots(1, len(widths), figsize=(max(6.0, sum(widths) + 1), 4.5), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, panel in zip(axes[0], panels):
        _bars(ax, panel, colours)
    if not panels:
        axes[0][0].set_xticks([0], ["(no finished cells)"])
    axes[0][0].set_ylabel("score")
    fig.suptitle(title)
    if labels:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[label]) for label in labels]
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // 6), 1, 1))
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())


def _bars(ax, rows: list[dict[str, Any]], colours: dict[str, Any]) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    labels = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["method"], r["task"]): r for r in rows}
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        # cells not run yet get no bar (a zero-height bar would read as a score of 0), a single seed no error bar
        found = [(t, by_key[(label, task)]) for t, task in enumerate(tasks) if (label, task) in by_key]
        xs = [t + (i - (len(labels) - 1) / 2) * width for t, _ in found]
        ax.bar(xs, [r["mean"] for _, r in found], width, color=colours[label], capsize=2,
               yerr=[float("nan") if r["std"] is None else r["std"] for _, r in found])
    ax.set_xticks(range(len(tasks)), tasks)
