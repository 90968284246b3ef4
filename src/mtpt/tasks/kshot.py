"""Seeded split derivations, k-shot sampling, decontamination and the mean ± std helper.

Split rules (ATTEMPT / DTVG convention, METHODS.md "Evaluation protocol"):

* :func:`attempt_permutation` is ATTEMPT's shuffle: ``torch.randperm(n)`` drawn from a CPU
  ``torch.Generator`` seeded with 42. On a file in the official order this reproduces ATTEMPT's
  validation/test halves exactly.
* :func:`halve` (small datasets): the first ``n // 2`` permuted items become validation, the
  rest test.
* :func:`holdout` (large datasets): the first ``n_val`` permuted items become validation, the
  rest train. :func:`holdout_size` gives ``n_val``: 1,000 as in ATTEMPT when the pool has at
  least 5,000 examples, else 20 % of it (our rule for the small pools available here).
* :func:`carve` (sets with no official split at all): test, then validation, then train.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from .types import Example, Splits, TaskDataError

T = TypeVar("T")
SPLIT_SEED = 42


def attempt_permutation(n: int, seed: int = SPLIT_SEED) -> list[int]:
    """ATTEMPT's permutation of ``range(n)``: ``torch.randperm`` drawn from a generator seeded
    with ``seed``."""
    import torch  # local: only split derivation needs it

    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.randperm(n, generator=gen).tolist()


def halve(items: Sequence[T], seed: int = SPLIT_SEED) -> tuple[list[T], list[T]]:
    """Small-dataset rule: shuffle (ATTEMPT permutation) and split into (validation, test)."""
    perm = attempt_permutation(len(items), seed)
    half = len(items) // 2
    return [items[i] for i in perm[:half]], [items[i] for i in perm[half:]]


def holdout_size(n: int) -> int:
    """Validation size held out of a train pool of ``n`` examples (1,000, or 20 % below 5,000)."""
    return 1000 if n >= 5000 else max(1, round(0.2 * n))


def holdout(items: Sequence[T], n_val: int | None = None,
            seed: int = SPLIT_SEED) -> tuple[list[T], list[T]]:
    """Large-dataset rule: hold ``n_val`` permuted items out as validation; returns (train, val)."""
    n_val = holdout_size(len(items)) if n_val is None else n_val
    perm = attempt_permutation(len(items), seed)
    return [items[i] for i in sorted(perm[n_val:])], [items[i] for i in perm[:n_val]]


def carve(items: Sequence[T], n_test: int, n_val: int,
          seed: int = SPLIT_SEED) -> tuple[list[T], list[T], list[T]]:
    """No official split: first ``n_test`` permuted items -> test, next ``n_val`` -> validation,
    rest -> train (kept in file order). Returns (train, validation, test)."""
    perm = attempt_permutation(len(items), seed)
    test = [items[i] for i in perm[:n_test]]
    val = [items[i] for i in perm[n_test:n_test + n_val]]
    train = [items[i] for i in sorted(perm[n_test + n_val:])]
    return train, val, test


def stratified_kshot(examples: Sequence[Example], k: int, seed: int, *,
                     key: Callable[[Example], Hashable] | None = None,
                     classes: Iterable[Hashable] | None = None,
                     what: str = "pool") -> list[Example]:
    """Exactly ``k`` examples of every class, drawn with ``random.Random(seed)``.

    Classes are ``key(example)`` (default: ``example.label``); with ``classes`` given, each of
    them must be present. Classes are visited in sorted order and the result keeps the pool's
    order, so the output is a deterministic function of (pool, k, seed). Raises
    :class:`TaskDataError` naming the class when fewer than ``k`` examples are available.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    key = key or (lambda e: e.label)
    by_class: dict[Hashable, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_class[key(ex)].append(i)
    wanted = sorted(by_class, key=repr) if classes is None else list(classes)
    rng = random.Random(seed)
    chosen: list[int] = []
    for cls in wanted:
        idx = by_class.get(cls, [])
        if len(idx) < k:
            name = _class_name(examples, idx, cls)
            raise TaskDataError(f"{what}: class {name} has only {len(idx)} examples, fewer than "
                                f"k={k}; choose a smaller k")
        chosen.extend(rng.sample(idx, k))
    return [examples[i] for i in sorted(chosen)]


def _class_name(examples: Sequence[Example], idx: list[int], cls: Hashable) -> str:
    if idx and examples[idx[0]].choices:
        return f"{cls!r} ({examples[idx[0]].target.strip()!r})"
    return repr(cls)


def cap_examples(examples: Sequence[Example], max_examples: int, seed: int) -> list[Example]:
    """A seeded subsample of at most ``max_examples`` (original order kept). Examples with a
    ``group`` (MultiRC questions) are kept or dropped whole."""
    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1, got {max_examples}")
    if len(examples) <= max_examples:
        return list(examples)
    rng = random.Random(seed)
    if any(e.group is not None for e in examples):
        groups = list(dict.fromkeys(e.group for e in examples))
        rng.shuffle(groups)
        sizes = defaultdict(int)
        for e in examples:
            sizes[e.group] += 1
        keep, total = set(), 0
        for g in groups:
            if total + sizes[g] <= max_examples:
                keep.add(g)
                total += sizes[g]
        return [e for e in examples if e.group in keep]
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), max_examples))]


#: What :func:`decontaminate` dropped: split -> {why -> count}; ``why`` is ``"test"``,
#: ``"validation"`` (duplicates of that split's inputs) or ``"published k-shot"``.
Dropped = dict[str, dict[str, int]]


def decontaminate(splits: Splits, protected_texts: set[str], task: str) -> tuple[Splits, Dropped]:
    """Remove exact-text duplicates across splits; returns the splits and what was dropped.

    Test examples duplicating ``protected_texts`` (published k-shot sets, kept intact) are
    dropped from test; train and validation examples duplicating a test input are dropped;
    train examples duplicating a validation input are dropped. Inputs are compared by their
    rendered ``text``. The second value counts the drops per split and reason (only non-zero
    counts; ``{}`` when nothing was dropped): see :func:`describe_dropped`.
    """
    out, dropped = dict(splits), {}

    def drop(split: str, texts: set[str], why: str) -> None:
        if split in out and texts:
            kept = [e for e in out[split] if e.text not in texts]
            if len(kept) < len(out[split]):
                dropped.setdefault(split, {})[why] = len(out[split]) - len(kept)
            out[split] = kept

    drop("test", protected_texts, "published k-shot")
    test_texts = {e.text for e in out.get("test", ())}
    drop("validation", test_texts, "test")
    drop("train", test_texts, "test")
    drop("train", {e.text for e in out.get("validation", ())}, "validation")
    for split, exs in out.items():
        if not exs:
            raise TaskDataError(f"task {task!r}: the {split} split is empty after loading")
    return out, dropped


def describe_dropped(dropped: Dropped, sizes: dict[str, int] | None = None) -> str:
    """``"train -4 of 32 (duplicates of test inputs: 3, of validation inputs: 1)"``, one clause
    per split; ``sizes`` (counts before dropping) adds the "of N"."""
    parts = []
    for split in ("train", "validation", "test"):
        if split not in dropped:
            continue
        n = sum(dropped[split].values())
        of = f" of {sizes[split]}" if sizes and split in sizes else ""
        why = ", ".join(f"{'published k-shot examples' if w == 'published k-shot' else w + ' inputs'}: {c}"
                        for w, c in dropped[split].items())
        parts.append(f"{split} -{n}{of} (duplicates of {why})")
    return "; ".join(parts)


def mean_std(values: Iterable[float], ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of per-seed results (population std, ``ddof=0``, by default;
    a single value has std 0). Raises ``ValueError`` on an empty input."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_std() of an empty sequence")
    mean = math.fsum(vals) / len(vals)
    if len(vals) - ddof <= 0:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - ddof)
    return mean, math.sqrt(var)


def seed_spread(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean and population std of per-seed scores for reporting: a single seed's std is unknown (None), not 0."""
    vals = list(values)
    mean, std = mean_std(vals)
    return mean, (std if len(vals) > 1 else None)


def format_mean_std(values: Iterable[float], digits: int = 1) -> str:
    """``"85.3 ± 1.2"`` for a list of per-seed scores; a single score is printed alone (it has no spread)."""
    m, s = seed_spread(values)
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"
