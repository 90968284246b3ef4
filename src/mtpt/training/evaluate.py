"""Evaluating a soft-prompt model on task splits, sharded across processes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from accelerate import Accelerator
from accelerate.utils import gather_object

from mtpt.errors import MtptError
from mtpt.evaluation import (Predictions, RankNormalization, generate_answers, metric_inputs, prediction_shares,
                             rank_choices)
from mtpt.metrics import compute_metrics
from mtpt.model import SoftPromptModel
from mtpt.runtime import RunParts
from mtpt.tasks import DecontaminationWarning, Example, Task, get_task
from mtpt.tasks.kshot import cap_examples
from mtpt.tasks.overlap import EVAL_SPLITS, MIN_WORDS, Leakage, remove_leaked
from mtpt.tasks.types import CAP_SEED


@dataclass
class EvalSet:
    task: Task
    task_index: int
    split: str
    examples: list[Example]


def load_eval_sets(parts: RunParts, split: str) -> list[EvalSet]:
    """One evaluation set per task that has data for ``split`` (source-only tasks are skipped).

    When the run has sources (:func:`leakage_sources`), the test inputs that occur (normalised) in the sources'
    training data are removed (:mod:`mtpt.tasks.overlap`: a score on them measures memory, not transfer) before
    ``data.max_eval_examples`` caps the split; validation overlaps are counted but the published sets stay as they
    are. A :class:`~mtpt.tasks.DecontaminationWarning` gives the counts; :func:`leakage_report` returns them."""
    sets = []
    for index, task in enumerate(parts.tasks):
        examples, leakage = eval_examples(parts, task, split)
        if leakage is not None:
            _warn_leakage(leakage, len(examples))
        if examples:
            sets.append(EvalSet(task, index, split, examples))
    return sets


def eval_examples(parts: RunParts, task: Task, split: str) -> tuple[list[Example], Leakage | None]:
    """The examples the run evaluates ``task`` on for ``split``, and their leakage counts (``None`` when the run
    has no sources, :func:`leakage_sources`).

    Test inputs found in the sources' training data are removed from the whole split, which is capped after (by
    ``data.max_eval_examples``, with the same seeded sample as :func:`split_examples`): a capped test set keeps its
    size, and where nothing leaked it is exactly the set of a run without sources. The test counts are therefore
    those of the whole split. Validation overlaps are counted on the set as evaluated (nothing is removed)."""
    if not leakage_sources(parts):
        return split_examples(parts.config, task, split), None
    if split != "test":
        examples = split_examples(parts.config, task, split)
        return _without_leaked(parts, task, split, examples) if examples else ([], None)
    examples = split_examples(parts.config, task, split, capped=False)
    if not examples:
        return [], None
    kept, leakage = _without_leaked(parts, task, split, examples)
    cap = parts.config.data.max_eval_examples
    return (kept if cap is None else cap_examples(kept, cap, CAP_SEED)), leakage


def split_examples(config, task: Task, split: str, *, capped: bool = True) -> list[Example]:
    """The examples a run (a :class:`~mtpt.config.RunConfig`) evaluates ``task`` on for ``split``, before any
    leakage removal: validation follows the k-shot protocol when training does, test is the full split, capped
    by ``data.max_eval_examples`` unless ``capped`` is false."""
    data, root = config.data, config.data_root()
    if task.source_only or not task.sizes(root).get(split):
        return []  # no data for this split (e.g. a user task without a test file)
    # Validation follows the k-shot protocol when training does; test sets are always full (or capped).
    kshot = data.kshot if split == "validation" and data.kshot_validation == "kshot" else None
    return task.examples(split, root, kshot=kshot, seed=data.kshot_seed,
                         max_examples=data.max_eval_examples if capped else None)


def leakage_sources(parts: RunParts) -> list[str]:
    """The tasks whose training data counts as the run's sources for leakage: the method's
    (``parts.source_tasks``) and ``data.exclude_overlap_with``."""
    if parts.source_tasks is None:
        raise MtptError(
            f"{parts.config.output_dir}: this run was rebuilt from its checkpoint alone (what its method options name "
            "is gone) and its checkpoint does not record its sources' tasks, so the evaluation inputs found in their "
            "training data cannot be left out. Restore what its config.yaml names (`mtpt predict` needs none of it).")
    return list(dict.fromkeys([*parts.source_tasks, *parts.config.data.exclude_overlap_with]))


def _without_leaked(parts: RunParts, task: Task, split: str, examples: list[Example]) -> tuple[list[Example], Leakage]:
    names = leakage_sources(parts)
    sources = [_source_task(name) for name in names]
    kept, leakage = remove_leaked(task, split, examples, sources, parts.config.data_root(), remove=split == "test")
    if not kept:
        raise MtptError(f"Every {split} input of task {task.name!r} occurs in the training data of its sources "
                        f"({', '.join(names)}): nothing is left to measure transfer on; choose other "
                        f"sources (`mtpt tasks --overlap {task.name} {' '.join(names)}` shows the overlap).")
    return kept, leakage


def _source_task(name: str) -> Task:
    """A source task by registered name or spec path."""
    path = Path(name)
    try:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            return _spec_task(str(path.resolve()), path.stat().st_mtime_ns)
        return get_task(name)
    except KeyError as err:
        raise MtptError(f"Source task {name!r} of this run: {err.args[0]}") from None


@lru_cache(maxsize=16)
def _spec_task(path: str, _mtime: int) -> Task:
    # loading a spec makes a new task, whose data (and overlap keys, cached per task) would be read again
    return get_task(path)


def _warn_leakage(leakage: Leakage, evaluated: int) -> None:
    found = {source: n for source, n in leakage.by_source.items() if n}
    if not found:
        return
    pairs = ", ".join(f"{n} in {source}" for source, n in found.items())
    done = (f"removed {leakage.removed}, {leakage.kept} left" if leakage.split == "test"
            else "kept (published validation sets stay as published)")
    if evaluated < leakage.kept:
        done += f", of which the data.max_eval_examples cap evaluates {evaluated}"
    warnings.warn(f"task {leakage.target!r}: {leakage.found} of {leakage.examined} {leakage.split} inputs occur "
                  f"in the training data of the run's sources ({pairs}); {done}", DecontaminationWarning)


def leakage_report(parts: RunParts) -> dict[str, Any] | None:
    """The run's cross-task leakage, JSON-able, for ``results.json`` and the log; ``None`` without sources
    (:func:`leakage_sources`).

    ``{"sources": [...], "min_words": 4, "validation": {task: counts}, "test": {task: counts}}``, where counts are
    :meth:`mtpt.tasks.overlap.Leakage.to_json` (``examined``, ``found``, ``removed``, ``kept``, ``by_source``:
    source -> inputs found in its training data); only the test split has inputs removed, and its counts are
    those of the whole split, before ``data.max_eval_examples`` caps it."""
    if not leakage_sources(parts):
        return None
    report: dict[str, Any] = {"sources": leakage_sources(parts), "min_words": MIN_WORDS}
    for split in EVAL_SPLITS:
        per_task = {}
        for task in parts.tasks:
            leakage = eval_examples(parts, task, split)[1]
            if leakage is not None:
                per_task[task.name] = leakage.to_json()
        report[split] = per_task
    return report


def predict(model: SoftPromptModel, parts: RunParts, examples: Sequence[Example], task_index: int | Sequence[int],
            device, *, with_scores: bool = False, progress: Callable[[int], object] | None = None) -> Predictions:
    """The scorer's predictions, in the order of ``examples``.

    ``task_index`` is the run-task index of every example, or one index per example: rows of several tasks then
    share batches (the model takes a task id per row). The run's scorer decides ``values``: ``rank`` picks the most
    likely choice (``scores`` holds every choice's log-likelihood), ``generate`` decodes greedily (``texts``) and
    matches the output against the choices. Examples without choices (free-text generation) are always decoded.
    ``with_scores`` also ranks the choices under the ``generate`` scorer, so that every example with choices gets
    its ``scores``. ``progress`` is called with the number of examples done after each batch.

    Examples are scored in order of input length, so that each batch pads to about its own length instead of to
    the longest of a random draw (1.5-2x faster on GLUE-style sets); an example's scores do not depend on its
    batch's padding (see :mod:`mtpt.model`), so only the speed changes."""
    cfg = parts.config.eval
    ids = [task_index] * len(examples) if isinstance(task_index, int) else list(task_index)
    order = sorted(range(len(examples)), key=lambda i: len(parts.tokenizer.input_ids(examples[i].text)))
    out = Predictions([None] * len(examples), 0, [None] * len(examples), [None] * len(examples))
    for start in range(0, len(order), cfg.batch_size):
        part = order[start:start + cfg.batch_size]
        ranked = [i for i in part if examples[i].choices and (cfg.scorer == "rank" or with_scores)]
        decoded = [i for i in part if not examples[i].choices or cfg.scorer == "generate"]
        if ranked:
            preds = rank_choices(model, parts.tokenizer, [examples[i] for i in ranked], [ids[i] for i in ranked],
                                 batch_size=cfg.batch_size, device=device,
                                 normalization=RankNormalization(cfg.rank_normalization))
            for i, value, scores in zip(ranked, preds.values, preds.scores):
                out.values[i], out.scores[i] = value, scores
        if decoded:
            preds = generate_answers(model, parts.tokenizer, [examples[i] for i in decoded],
                                     [ids[i] for i in decoded], batch_size=cfg.batch_size,
                                     max_new_tokens=cfg.max_new_tokens, device=device)
            out.invalid += preds.invalid
            for i, value, text in zip(decoded, preds.values, preds.texts):
                out.values[i], out.texts[i] = value, text
        if progress is not None:
            progress(len(part))
    return out


def evaluate_sets(model: SoftPromptModel, parts: RunParts, sets: list[EvalSet], acc: Accelerator,
                  on_predictions: Callable[[EvalSet, Predictions], object] | None = None
                  ) -> dict[str, dict[str, float]]:
    """Metrics per task; each process scores every ``num_processes``-th example and the results are gathered.
    ``on_predictions`` receives each set's predictions in example order, with every choice's scores (for
    per-example prediction files)."""
    was_training = model.training
    model.eval()
    results = {}
    for eval_set in sets:
        mine = list(range(acc.process_index, len(eval_set.examples), acc.num_processes))
        with acc.autocast():
            preds = predict(model, parts, [eval_set.examples[i] for i in mine], eval_set.task_index, acc.device,
                            with_scores=on_predictions is not None)
        local = list(zip(mine, preds.values, preds.scores, preds.texts))
        gathered = gather_object(local) if acc.num_processes > 1 else local
        invalid = sum(gather_object([preds.invalid])) if acc.num_processes > 1 else preds.invalid
        _, values, scores, texts = zip(*sorted(gathered, key=lambda row: row[0])) if gathered else ((),) * 4
        ordered = Predictions(list(values), invalid, list(scores), list(texts))
        if on_predictions is not None:
            on_predictions(eval_set, ordered)
        predictions, references = metric_inputs(eval_set.task.kind, eval_set.examples, ordered)
        groups = [ex.group for ex in eval_set.examples] if any(ex.group for ex in eval_set.examples) else None
        metrics = compute_metrics(eval_set.task.metrics, predictions, references, groups=groups)
        if parts.config.eval.scorer == "generate":
            metrics["invalid_rate"] = 100.0 * invalid / max(1, len(eval_set.examples))
        if eval_set.task.kind == "classification":
            metrics.update(prediction_shares(eval_set.examples, ordered))
        results[eval_set.task.name] = metrics
    model.train(was_training)
    return results


def mean_metric(metrics: dict[str, dict[str, float]], name: str) -> float:
    """The mean of one metric over the tasks that report it."""
    values = [m[name] for m in metrics.values() if name in m]
    return sum(values) / len(values) if values else float("nan")
