"""Evaluation metrics, all reported x100, plus ``score`` = the mean of the requested metrics
(the per-task number of METHODS.md).

Inputs: for classification metrics, predictions and references are class ids (or any hashable
labels; an invalid generated output can be passed as e.g. ``-1`` and simply counts as wrong).
``pearson`` / ``spearman`` take numbers; a prediction that is not a finite number (``None``,
unparseable text) is scored as -1.0, outside the 0-5 STS-B range, so it counts as an error
(T5's convention). ``em`` / ``f1_qa`` take strings; a reference may be a string or a sequence
of acceptable strings (the maximum over them is used). ``multirc_f1a`` / ``multirc_em`` take
0/1 answer-option labels and ``groups`` = the question id of every option.

Degenerate inputs never raise: a correlation with a constant (or single-element) prediction or
reference vector is 0.0, Matthews with a single class is 0.0, F1 with no positive prediction
and no positive reference is 0.0.
"""

from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# scipy and scikit-learn are imported where a metric needs them: importing mtpt (e.g. to train or benchmark on a
# machine that carries only the few wheels it needs, scripts/gpu-check.sh) must not need either.

INVALID_FLOAT = -1.0


def _accuracy(p, r, g) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_hashable(r), _hashable(p)))


def _f1(p, r, g) -> float:
    """Binary F1 of the positive class 1; any other prediction (incl. invalid) is "not 1"."""
    from sklearn.metrics import f1_score

    return float(f1_score(_hashable(r), _hashable(p), labels=[1], average="macro",
                          zero_division=0.0))


def _macro_f1(p, r, g) -> float:
    """Unweighted mean F1 over the classes present in the references."""
    from sklearn.metrics import f1_score

    refs = _hashable(r)
    labels = sorted(set(refs), key=repr)
    return float(f1_score(refs, _hashable(p), labels=labels, average="macro", zero_division=0.0))


def _matthews(p, r, g) -> float:
    from sklearn.metrics import matthews_corrcoef

    refs, preds = _hashable(r), _hashable(p)
    if len(set(refs) | set(preds)) < 2:
        return 0.0  # a single label overall: the coefficient is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about degenerate confusion matrices
        value = matthews_corrcoef(refs, preds)
    return 0.0 if math.isnan(value) else float(value)


def _floats(values: Sequence[Any]) -> np.ndarray:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = INVALID_FLOAT
        out.append(f if math.isfinite(f) else INVALID_FLOAT)
    return np.asarray(out, dtype=float)


def _correlation(name: str) -> Callable:
    """The metric of scipy.stats' correlation ``name`` (pearsonr, spearmanr)."""

    def metric(p, r, g) -> float:
        import scipy.stats

        x, y = _floats(p), _floats(r)
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return 0.0  # undefined correlation: reported as 0, not NaN
        value = getattr(scipy.stats, name)(x, y)[0]
        return 0.0 if math.isnan(value) else float(value)

    return metric


# -- SQuAD-style answer normalisation --------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PUNCT = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】…—")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    norm = normalize_answer(text)
    # Chinese has no spaces: compare characters, as CMRC's evaluation does.
    return [c for c in norm if not c.isspace()] if _CJK.search(norm) else norm.split()


def _refs(ref: Any) -> list[str]:
    return [ref] if isinstance(ref, str) else [str(x) for x in ref]


def exact_match(prediction: str, reference: Any) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(r)) for r in _refs(reference))


def token_f1(prediction: str, reference: Any) -> float:
    """SQuAD token F1, maximised over the references."""
    best = 0.0
    pred = _tokens(prediction)
    for r in _refs(reference):
        gold = _tokens(r)
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            prec, rec = common / len(pred), common / len(gold)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def _em(p, r, g) -> float:
    return float(np.mean([exact_match(str(a), b) for a, b in zip(p, r)]))


def _f1_qa(p, r, g) -> float:
    return float(np.mean([token_f1(str(a), b) for a, b in zip(p, r)]))


def _multirc_f1a(p, r, g) -> float:
    return _f1(p, r, g)


def _multirc_em(p, r, g) -> float:
    if g is None:
        raise ValueError("multirc_em needs groups= (the question id of every answer option)")
    correct: dict[Any, bool] = defaultdict(lambda: True)
    for pred, ref, group in zip(_hashable(p), _hashable(r), g):
        correct[group] &= pred == ref
    return float(np.mean(list(correct.values())))


def _hashable(values: Sequence[Any]) -> list[Any]:
    """numpy scalars / bools -> Python ints so that 1, 1.0, True and np.int64(1) agree."""
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            v = int(v)
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(v)
    return out


METRICS: dict[str, Callable] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "macro_f1": _macro_f1,
    "matthews": _matthews,
    "pearson": _correlation("pearsonr"),
    "spearman": _correlation("spearmanr"),
    "em": _em,
    "f1_qa": _f1_qa,
    "multirc_f1a": _multirc_f1a,
    "multirc_em": _multirc_em,
}


def best_constant_score(names: Sequence[str], labels: Sequence[int], num_choices: int,
                        groups: Sequence[Any] | None = None) -> float:
    """The best ``score`` any constant answer gets: the maximum over answers ``c`` of always predicting ``c``.

    The bar a classifier must clear to have learned anything. For accuracy it is the majority class's share; for
    F1-type metrics it can be another class's (macro F1 rewards a minority class's recall)."""
    if num_choices < 1:
        raise ValueError(f"num_choices must be at least 1, got {num_choices}")
    return max(compute_metrics(names, [c] * len(labels), labels, groups)["score"] for c in range(num_choices))


def compute_metrics(names: Sequence[str], predictions: Sequence[Any], references: Sequence[Any],
                    groups: Sequence[Any] | None = None) -> dict[str, float]:
    """Compute the named metrics (x100) and ``score``, their mean.

    >>> compute_metrics(["accuracy"], [1, 0, 1], [1, 1, 1])["accuracy"]  # doctest: +ELLIPSIS
    66.66...
    """
    names = list(names)
    if not names:
        raise ValueError("no metric names given")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not references:
        raise ValueError("no examples to score")
    if groups is not None and len(groups) != len(references):
        raise ValueError(f"{len(groups)} groups but {len(references)} references")
    out = {n: 100.0 * METRICS[n](predictions, references, groups) for n in names}
    out["score"] = float(np.mean([out[n] for n in names]))
    return out
