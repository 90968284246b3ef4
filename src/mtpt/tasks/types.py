"""The plain data types of the task layer (:class:`Example`, :class:`KShotInfo`, the split aliases, the error) and
where the benchmark data lives. Every other task module builds on these; this one imports none of them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtpt.errors import MtptError, MtptWarning

SPLITS = ("train", "validation", "test")
KINDS = ("classification", "multiple_choice", "regression", "generation")
ENV_VAR = "MTPT_DATA_ROOT"
#: Seed of the sample drawn when ``max_examples`` caps a split (fixed, so every run and every
#: method is evaluated on the same subset).
CAP_SEED = 42


class TaskDataError(MtptError, ValueError):
    """Bad or missing task data. The message names the file (and line / item / field) and a fix."""


class DecontaminationWarning(MtptWarning):
    """Examples were removed because their input duplicates another split's input (inside a
    task) or a source task's training input (cross-task leakage). The message gives the counts."""


@dataclass(frozen=True)
class Example:
    """One text-to-text example.

    ``text`` is the rendered model input (template applied). ``target`` and every entry of
    ``choices`` are exactly the strings that follow ``text``: English targets carry their
    leading space (``" True"``) so that ``text + target`` is natural text, Chinese targets have
    none (``"是"``). The trainer concatenates them as they are.

    ``choices`` holds the rank-scoring candidates (label words, per-example options for COPA /
    WinoGrande / ChID, the value grid for STS-B); it is ``()`` for free-text generation, where
    ``label`` is -1. ``gold`` is what :func:`mtpt.metrics.compute_metrics` compares against: the
    class index, the float score (regression) or a tuple of reference strings (QA). ``group``
    is the MultiRC question id (needed by the MultiRC metrics), else ``None``.

    ``inputs`` holds the raw values of the template's fields, in template order (the review, the
    premise and hypothesis, ...): what cross-task overlap compares (:mod:`mtpt.tasks.overlap`),
    since two tasks render the same sentence through different templates. ``()`` when the
    example was built without a template; overlap then falls back to ``text``.
    """

    text: str
    target: str
    choices: tuple[str, ...]
    label: int
    gold: Any = None
    task: str = ""
    group: str | None = None
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.choices:
            if not 0 <= self.label < len(self.choices) or self.choices[self.label] != self.target:
                raise ValueError(f"Example target {self.target!r} is not choices[{self.label}] "
                                 f"of {self.choices!r}")
        elif self.label != -1:
            raise ValueError("an Example without choices must have label -1")


@dataclass(frozen=True)
class KShotInfo:
    """A published few-shot split: ``kind`` is ``"per_class"`` (LM-BFF: k examples of every
    class) or ``"total"`` (FewGLUE / FewCLUE: k examples in all)."""

    kind: str
    k: int
    seeds: tuple[int, ...]
    source: str

    def resolve_seed(self, seed: int) -> int | None:
        """Map ``seed`` to a published seed: a published seed value is used as is, otherwise
        0..n-1 is read as an index into ``seeds`` (LM-BFF: 0 -> 13, 1 -> 21, ...).
        Returns ``None`` when neither applies."""
        if seed in self.seeds:
            return seed
        if 0 <= seed < len(self.seeds):
            return self.seeds[seed]
        return None

    def describe(self) -> str:
        """``"16 per class, 5 seeds (LM-BFF)"`` / ``"32 total, 1 seed (FewGLUE)"``."""
        unit = "per class" if self.kind == "per_class" else "total"
        n = len(self.seeds)
        return f"{self.k} {unit}, {n} seed{'s' if n > 1 else ''} ({self.source})"


Splits = dict[str, list[Example]]
Builder = Callable[[Path | None], Splits]
Published = Callable[[Path | None, int, str], list[Example]]


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path | None:
    """The data folder: the ``data_root`` argument, else ``$MTPT_DATA_ROOT``, else ``None``."""
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else None
