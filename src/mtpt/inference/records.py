"""The record of one prediction, the same from ``mtpt predict``, ``mtpt serve``, :meth:`Predictor.predict` and
``mtpt evaluate --predictions``.

A record has the ``task``; for tasks with choices (classification, multiple choice, regression on a value
grid) the predicted ``label`` (the label word without its leading space; ``null`` when a generated output
matched no choice), its ``label_index`` and ``scores``: for every choice its ``log_likelihood`` (under the run's
rank normalisation: the sum of the choice's token log-probabilities, or their mean) and its ``probability``
(the softmax of the log-likelihoods over the choices); regression adds the predicted ``value``. Generation
tasks, and every task under the ``generate`` scorer, carry the ``generated`` text. ``mtpt evaluate`` adds
``split``, ``index`` (the example's position in the split) and ``gold``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from mtpt.tasks import Example, Task


def prediction_record(task: Task, example: Example, value: Any, scores: Sequence[float] | None,
                      text: str | None) -> dict[str, Any]:
    """The record of one example's prediction (``value``: a choice index, or the generated text)."""
    record: dict[str, Any] = {"task": task.name}
    if example.choices:
        index = value if isinstance(value, int) and value >= 0 else None
        record["label"] = example.choices[index].strip() if index is not None else None
        record["label_index"] = index
        if task.kind == "regression" and index is not None:
            record["value"] = float(example.choices[index])
        if scores is not None:
            record["scores"] = [{"label": choice.strip(), "log_likelihood": score, "probability": p}
                                for choice, score, p in zip(example.choices, scores, softmax(scores))]
    if text is not None:
        record["generated"] = text
    return record


def gold_fields(task: Task, example: Example) -> dict[str, Any]:
    """The reference answer of a labelled example, for prediction files."""
    if task.kind == "regression":
        return {"gold": float(example.gold)}
    if example.choices:
        return {"gold": example.choices[example.label].strip(), "gold_index": example.label}
    gold = example.gold if example.gold is not None else (example.target.strip(),)
    return {"gold": list(gold)}


def softmax(scores: Sequence[float]) -> list[float]:
    """Probabilities over the choices from their log-likelihoods (numerically stable)."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    return [w / total for w in weights]
