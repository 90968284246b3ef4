"""Evaluation protocols over a suite of tasks: "unseen data" vs "unseen task" (TA-LoRA / DTVG).

* ``unseen_data``: train on the source tasks' train splits, evaluate on the same tasks'
  held-out test splits (source-only tasks such as ReCoRD are trained on but not evaluated).
* ``unseen_task``: train on the sources, then adapt to and evaluate on new target tasks, which
  must be disjoint from the sources.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .base import Task
from .registry import get_task

PROTOCOLS = ("unseen_data", "unseen_task")
Pair = tuple[str, str]  # (task name, split)


@dataclass(frozen=True)
class SuiteSplit:
    """Which (task, split) pairs train the shared/source stage, adapt to targets, select models
    and are reported."""

    protocol: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    source_train: tuple[Pair, ...]
    target_train: tuple[Pair, ...]
    validation: tuple[Pair, ...]
    evaluation: tuple[Pair, ...]


def _names(tasks: Iterable[str | Task]) -> tuple[Task, ...]:
    out = tuple(get_task(t) for t in tasks)
    names = [t.name for t in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"task listed twice: {sorted(dup)}")
    return out


def split_suite(sources: Iterable[str | Task], targets: Iterable[str | Task] = (),
                protocol: str = "unseen_task") -> SuiteSplit:
    """Describe the train / validation / evaluation pairs of ``protocol`` for the given tasks."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    src, tgt = _names(sources), _names(targets)
    if not src:
        raise ValueError("at least one source task is needed")
    src_train = tuple((t.name, "train") for t in src)
    if protocol == "unseen_data":
        if tgt:
            raise ValueError("the unseen_data protocol evaluates the sources' held-out data; "
                             "pass no targets (or use protocol='unseen_task')")
        evaluated = [t for t in src if not t.source_only]
        if not evaluated:
            raise ValueError("every source is source-only: nothing to evaluate")
        return SuiteSplit(protocol, tuple(t.name for t in src), (), src_train, (),
                          tuple((t.name, "validation") for t in evaluated),
                          tuple((t.name, "test") for t in evaluated))
    if not tgt:
        raise ValueError("the unseen_task protocol needs at least one target task")
    overlap = {t.name for t in src} & {t.name for t in tgt}
    if overlap:
        raise ValueError(f"targets must be unseen: {sorted(overlap)} also listed as sources")
    bad = [t.name for t in tgt if t.source_only]
    if bad:
        raise ValueError(f"source-only tasks cannot be targets (no evaluation data): {bad}")
    return SuiteSplit(protocol, tuple(t.name for t in src), tuple(t.name for t in tgt), src_train,
                      tuple((t.name, "train") for t in tgt),
                      tuple((t.name, "validation") for t in tgt),
                      tuple((t.name, "test") for t in tgt))
