"""The task layer's :class:`Task`: a registered task and how its splits (full, k-shot, capped) are drawn.

The plain data types (:class:`Example`, :class:`KShotInfo`, :class:`TaskDataError`) are in :mod:`.types`.

Over-long inputs: examples are never dropped or shortened here. The trainer truncates the
*input* (``Example.text``) at tokenization time, on the token level, and never the target, so
the label word always survives truncation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .kshot import Dropped, cap_examples, decontaminate, describe_dropped, stratified_kshot
from .types import (CAP_SEED, ENV_VAR, KINDS, SPLITS, Builder, DecontaminationWarning, Example,  # noqa: F401
                    KShotInfo, Published, Splits, TaskDataError, resolve_data_root)

@dataclass(frozen=True, eq=False)
class Task:
    """A registered task. Split derivations are described in ``notes`` (``mtpt tasks --verbose``).

    ``build(root)`` returns the full-data splits; ``published(root, seed, split)`` returns a
    published k-shot split (``split`` is ``"train"`` or ``"validation"``) for a resolved seed.
    Tasks compare by identity, which lets the split cache key on them.
    """

    name: str
    family: str
    language: str
    kind: str
    metrics: tuple[str, ...]
    label_words: tuple[str, ...] | None
    size_class: str
    template: str
    notes: str
    build: Builder = field(repr=False)
    kshot: KShotInfo | None = None
    published: Published | None = field(default=None, repr=False)
    source_only: bool = False
    needs_data_root: bool = True
    #: stratum used by k-shot sampling; defaults to the class index (``Example.label``)
    kshot_key: Callable[[Example], Hashable] | None = field(default=None, repr=False)

    # -- public API -------------------------------------------------------------------------
    def examples(self, split: str, data_root: str | os.PathLike | None = None, *,
                 kshot: int | None = None, seed: int = 0, max_examples: int | None = None,
                 published: bool = True) -> list[Example]:
        """Examples of ``split`` (``"train"``, ``"validation"`` or ``"test"``).

        ``kshot=None``: the full-data protocol. ``kshot=k``: the published split for ``seed`` when
        the task has one with this k (and ``published`` is true), else ``k`` examples per class
        sampled with ``seed`` from the full-data train (or validation) split. Published seeds are
        given by value (LM-BFF 13/21/42/87/100, FewCLUE 0-4, FewGLUE 0) or by index 0..n-1
        (LM-BFF: 0 -> 13, 1 -> 21, ...); other seeds raise unless ``published=False``. The test
        split is never k-shot: ``kshot`` and ``seed`` are ignored for it. ``max_examples`` caps
        the split with a sample drawn with the fixed seed :data:`CAP_SEED` (original order kept).
        Sampling needs ``k`` examples of every class in the pool, else :class:`TaskDataError`
        names the class (e.g. CB's validation half has only 3 'neutral' examples).
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        root = self._root(data_root)
        if kshot is None or split == "test":
            exs = self._full(root, split)
        elif published and self._uses_published(kshot):
            exs = _published_split(self, root, self._published_seed(seed), split)
        else:
            classes = range(len(self.label_words)) if self.kind == "classification" else None
            exs = stratified_kshot(self._full(root, split), kshot, seed, key=self.kshot_key,
                                   classes=classes, what=f"{self.name} {split}")
        if max_examples is not None:
            exs = cap_examples(exs, max_examples, CAP_SEED)
        return list(exs)

    def sizes(self, data_root: str | os.PathLike | None = None) -> dict[str, int]:
        """Number of full-data examples per split (0 for the eval splits of source-only tasks)."""
        splits = _built_splits(self, self._root(data_root))
        return {s: len(splits.get(s, ())) for s in SPLITS}

    def data_root(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """The data folder this task reads; raises :class:`TaskDataError` when it needs one that is missing."""
        return self._root(data_root)

    def kshot_seeds(self, k: int) -> tuple[int, ...]:
        """Seeds to run for a k-shot experiment: the published seeds when the published split
        applies, else LM-BFF's five seeds."""
        if self._uses_published(k):
            return self.kshot.seeds
        return (13, 21, 42, 87, 100)

    # -- internals --------------------------------------------------------------------------
    def _uses_published(self, k: int) -> bool:
        return self.kshot is not None and self.published is not None and k == self.kshot.k

    def _published_seed(self, seed: int) -> int:
        value = self.kshot.resolve_seed(seed)
        if value is None:
            raise ValueError(
                f"{self.name}: the published {self.kshot.source} {self.kshot.k}-shot split has "
                f"seeds {self.kshot.seeds} (or indices 0..{len(self.kshot.seeds) - 1}); got "
                f"seed={seed}. Pass published=False to sample a split with this seed instead.")
        return value

    def _root(self, data_root: str | os.PathLike | None) -> Path | None:
        root = resolve_data_root(data_root)
        if self.needs_data_root:
            if root is None:
                raise TaskDataError(
                    f"task {self.name!r} needs the benchmark data: set the {ENV_VAR} environment "
                    f"variable or pass data_root= (only the bundled 'demo-sst2' works without it)")
            if not root.is_dir():
                raise TaskDataError(f"data root {root} is not a directory; set {ENV_VAR} or "
                                    f"data_root= to the folder holding the benchmark data")
        return root

    def _full(self, root: Path | None, split: str) -> list[Example]:
        splits = _built_splits(self, root)
        if split not in splits:
            why = ("it is a source-only task (no evaluation data available)" if self.source_only
                   else "no file was given for it")
            raise TaskDataError(f"task {self.name!r} has no {split} split: {why}")
        return splits[split]


def _built_splits(task: Task, root: Path | None) -> Splits:
    """Full-data splits, decontaminated (see :func:`_built`)."""
    return _built(task, root)[0]


def decontamination_report(task: Task, data_root: str | os.PathLike | None = None) -> Dropped:
    """What building ``task``'s full-data splits dropped as duplicates of another split's inputs:
    split -> {reason -> count} (``{}`` when nothing was dropped; see :func:`.kshot.decontaminate`)."""
    return _built(task, task._root(data_root))[1]


@lru_cache(maxsize=12)
def _built(task: Task, root: Path | None) -> tuple[Splits, Dropped]:
    """Full-data splits, decontaminated, and what was dropped. Cached per (task, root): building
    renders every example. A :class:`DecontaminationWarning` gives the counts when anything was
    dropped (once per task and root, since the result is cached)."""
    splits = task.build(root)
    protected: set[str] = set()
    if task.kshot is not None and task.published is not None:
        # Published k-shot sets stay exactly as published: a test example that duplicates one
        # of them is removed from the test split instead.
        for s in task.kshot.seeds:
            for sp in ("train", "validation"):
                protected.update(e.text for e in task.published(root, s, sp))
    clean, dropped = decontaminate(splits, protected, task.name)
    if dropped:
        sizes = {split: len(exs) for split, exs in splits.items()}
        warnings.warn(f"task {task.name!r}: removed examples whose input duplicates another "
                      f"split's: {describe_dropped(dropped, sizes)}", DecontaminationWarning)
    if task.kind == "classification":
        check_classes(clean, task.name)
    return clean, dropped


def check_classes(splits: Splits, task: str) -> None:
    """Every split of a classification task holds at least two classes: with one, training learns a constant
    answer and evaluation reports it as perfect."""
    for split, examples in splits.items():
        classes = {ex.label for ex in examples}
        if len(classes) < 2:
            only = examples[0].target.strip() if examples else "none"
            raise TaskDataError(f"task {task!r}: every example of the {split} split has the same class ({only!r}); "
                                f"a classification split needs at least two classes: fix the data")


@lru_cache(maxsize=64)
def _published_split(task: Task, root: Path | None, seed: int, split: str) -> tuple[Example, ...]:
    return tuple(task.published(root, seed, split))


def check_examples(exs: Sequence[Example], where: str) -> None:
    """Raise :class:`TaskDataError` if a built split is empty."""
    if not exs:
        raise TaskDataError(f"{where}: no examples; the file is empty or every row was filtered")
