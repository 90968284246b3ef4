"""The majority-class reference of a quality table: the score of answering every example of the report split with
that split's most frequent label (LM-BFF's "majority" row). It needs no model, only the data, and tells which
scores a prompt could reach by answering one class for everything."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

from mtpt.errors import MtptError
from mtpt.metrics import compute_metrics
from mtpt.tasks import get_task


def majority_scores(config: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    """``{task: score}`` for each classification task of ``rows``, averaged over the seeds its cells ran (a k-shot
    report split such as FewCLUE's ``dev_<seed>`` differs per seed; a capped test split does not). Tasks whose
    data cannot be read are left out, with a warning that names them and the first reason, so a table rewritten
    without the benchmark files says why its majority line is gone."""
    from mtpt.bench.quality_config import target_data  # the same data section the cells evaluated with

    out, unreadable = {}, {}
    for task_name in dict.fromkeys(r["task"] for r in rows):
        seeds = sorted({seed for r in rows if r["task"] == task_name for seed in r["scores"]})
        try:
            task = get_task(task_name)
            if task.kind != "classification":
                continue
            scores = [_majority_score(task, target_data(config, task_name, int(seed)), config.report_split)
                      for seed in seeds]
        except (MtptError, OSError, KeyError, ValueError) as err:
            unreadable[task_name] = err  # no data or task here (e.g. a machine without the benchmark files)
            continue
        out[task_name] = sum(scores) / len(scores)
    if unreadable:
        first = next(iter(unreadable.values()))
        warnings.warn(f"majority-class reference left out for {', '.join(unreadable)}: their data could not be read "
                      f"here, so the table has no majority line for them. First reason: {first}", stacklevel=2)
    return out


def _majority_score(task, data, split: str) -> float:
    examples = task.examples(split, data.data_root, seed=data.kshot_seed, max_examples=data.max_eval_examples)
    labels = [ex.label for ex in examples]
    majority = Counter(labels).most_common(1)[0][0]
    return compute_metrics(task.metrics, [majority] * len(labels), labels)["score"]
