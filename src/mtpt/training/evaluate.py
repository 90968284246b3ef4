"""Evaluating a soft-prompt model on task splits, sharded across processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from accelerate import Accelerator
from accelerate.utils import gather_object

from mtpt.evaluation import (Predictions, RankNormalization, generate_answers, metric_inputs, prediction_shares,
                             rank_choices)
from mtpt.metrics import compute_metrics
from mtpt.model import SoftPromptModel
from mtpt.runtime import RunParts
from mtpt.tasks import Example, Task


@dataclass
class EvalSet:
    task: Task
    task_index: int
    split: str
    examples: list[Example]


def load_eval_sets(parts: RunParts, split: str) -> list[EvalSet]:
    """One evaluation set per task that has data for ``split`` (source-only tasks are skipped)."""
    data, root = parts.config.data, parts.config.data_root()
    sets = []
    for index, task in enumerate(parts.tasks):
        if task.source_only or not task.sizes(root).get(split):
            continue  # no data for this split (e.g. a user task without a test file)
        # Validation follows the k-shot protocol when training does; test sets are always full (or capped).
        kshot = data.kshot if split == "validation" and data.kshot_validation == "kshot" else None
        examples = task.examples(split, root, kshot=kshot, seed=data.kshot_seed, max_examples=data.max_eval_examples)
        if examples:
            sets.append(EvalSet(task, index, split, examples))
    return sets


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
