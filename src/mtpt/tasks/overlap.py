"""Cross-task leakage: which evaluation inputs of one task occur in another task's training data.

A benchmark that trains on SST-2 and tests on MR measures memory when MR's test sentences are
SST-2 training sentences (about a quarter of them are). This module finds such inputs; it reads
tasks through :meth:`Task.examples` and does nothing else (no warnings, no files): the evaluation
code removes what it finds from a run's test split (``mtpt.training.evaluate``) and ``mtpt tasks
--overlap`` prints :func:`render_overlap_matrix`.

**What is compared.** An example's input is its raw field values (:attr:`Example.inputs`: the
review, the premise and hypothesis, ...), not the rendered text, because two tasks render the
same sentence through different templates; an example without ``inputs`` falls back to its
``text``. Two inputs match when they have the same number of fields and every field has the same
*key* after normalisation.

**Normalisation** (:func:`words`, :func:`input_key`), exactly:

1. Unicode NFKC (full-width forms, ligatures and compatibility characters become their plain
   forms; accents are kept);
2. ``str.casefold`` (case);
3. every run of characters that are not letters or digits (punctuation, symbols, whitespace,
   control characters, ``_``; Python's ``[\\W_]``) becomes one space;
4. the *words* are the remaining space-separated runs, except that every CJK ideograph, kana
   or hangul syllable is a word of its own (Chinese has no spaces);
5. a field's key is its words concatenated *without* spaces, so tokenisation differences do not
   matter (``"wo n't"`` and ``"won't"`` both give ``wont``; ``"it 's"`` and ``"it's"``
   give ``its``).

Inputs with fewer than :data:`MIN_WORDS` (4) words over all fields are ignored: short inputs
("great movie !") recur across unrelated datasets and are not evidence of shared data.

**Training data** of a source task (:func:`training_keys`): every example any protocol of the
task trains on, that is its full-data train split (a superset of every sampled k-shot train set)
and its published k-shot train sets of all seeds. Validation sets, held out for model selection,
are not training data.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .base import Example, Task, resolve_data_root

#: Inputs with fewer words than this (over all fields) are never counted as overlapping.
MIN_WORDS = 4
#: The splits whose inputs are checked (the matrix's rows); ``test`` is the one a run cleans.
EVAL_SPLITS = ("validation", "test")

_NON_WORD = re.compile(r"[\W_]+")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_FIELD_SEP = "\x1f"  # never inside a key: normalisation turns control characters into spaces


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (steps 1-4 of the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WORD.findall(_NON_WORD.sub(" ", text))


def normalize(text: str) -> str:
    """``text`` normalised, words joined by single spaces (for display; keys drop the spaces)."""
    return " ".join(words(text))


def input_key(example: Example) -> str | None:
    """The key an input is matched by: the field keys joined by a separator; ``None`` when the
    input has fewer than :data:`MIN_WORDS` words (it is then never counted)."""
    fields = [words(value) for value in (example.inputs or (example.text,))]
    if sum(len(w) for w in fields) < MIN_WORDS:
        return None
    return _FIELD_SEP.join("".join(w) for w in fields)


def keys_of(examples: Iterable[Example]) -> frozenset[str]:
    """The keys of the inputs of ``examples`` (short inputs left out)."""
    return frozenset(k for k in map(input_key, examples) if k is not None)


def training_examples(task: Task, data_root: str | os.PathLike | None = None) -> list[Example]:
    """Every example a protocol of ``task`` trains on: the full-data train split and the
    published k-shot train sets of all seeds."""
    examples = list(task.examples("train", data_root))
    if task.kshot is not None and task.published is not None:
        for seed in task.kshot.seeds:
            examples += task.examples("train", data_root, kshot=task.kshot.k, seed=seed)
    return examples


def training_keys(task: Task, data_root: str | os.PathLike | None = None) -> frozenset[str]:
    """The keys of :func:`training_examples`; cached per (task, data root)."""
    return _training_keys(task, resolve_data_root(data_root))


@lru_cache(maxsize=32)
def _training_keys(task: Task, root: Path | None) -> frozenset[str]:
    return keys_of(training_examples(task, root))


def find_leaked(examples: Sequence[Example], sources: Mapping[str, frozenset[str]]) -> dict[str, list[int]]:
    """For each source (name -> training keys), the indices of ``examples`` whose input key is
    among that source's keys. Every source is in the result (an empty list when none is)."""
    keys = [input_key(e) for e in examples]
    return {name: [i for i, k in enumerate(keys) if k is not None and k in found]
            for name, found in sources.items()}


@dataclass(frozen=True)
class Leakage:
    """What :func:`remove_leaked` did to one target split: ``examined`` examples, ``by_source``
    (source name -> how many occur in its training data; one example can count for several
    sources), ``found`` (examples occurring in any source, each counted once), ``removed``
    (``found``, or 0 where only counted) and ``kept``."""

    target: str
    split: str
    examined: int
    by_source: dict[str, int]
    found: int
    removed: int

    @property
    def kept(self) -> int:
        return self.examined - self.removed

    def to_json(self) -> dict:
        return {"examined": self.examined, "found": self.found, "removed": self.removed, "kept": self.kept,
                "by_source": dict(self.by_source)}


def source_keys(target: Task, sources: Iterable[Task],
                data_root: str | os.PathLike | None = None) -> dict[str, frozenset[str]]:
    """Training keys per source, leaving ``target`` itself out (a task's own splits are already
    kept apart by exact-text decontamination when it is built)."""
    return {s.name: training_keys(s, data_root) for s in sources if s.name != target.name}


def remove_leaked(target: Task, split: str, examples: Sequence[Example], sources: Iterable[Task],
                  data_root: str | os.PathLike | None = None, *,
                  remove: bool = True) -> tuple[list[Example], Leakage]:
    """``examples`` (of ``target``'s ``split``) without those whose input occurs in the training
    data of any of ``sources``, and the counts. With ``remove=False`` the examples are returned
    unchanged and only counted (published validation sets stay as published)."""
    leaked = find_leaked(examples, source_keys(target, sources, data_root))
    found = set().union(*leaked.values())
    drop = found if remove else set()
    report = Leakage(target.name, split, len(examples), {s: len(ix) for s, ix in leaked.items()},
                     len(found), len(drop))
    return [e for i, e in enumerate(examples) if i not in drop], report


@dataclass(frozen=True)
class MatrixRow:
    """One row of the overlap matrix: ``task``'s ``split`` (``n`` examples) and, per other
    task, how many of its inputs occur in that task's training data."""

    task: str
    split: str
    n: int
    found: dict[str, int]


def overlap_matrix(tasks: Sequence[Task], data_root: str | os.PathLike | None = None) -> list[MatrixRow]:
    """Rows: the evaluation splits (validation, test) of each task that has them; columns: the
    training data of every other task of ``tasks``."""
    root = resolve_data_root(data_root)
    rows = []
    for task in tasks:
        sizes = task.sizes(root)
        for split in EVAL_SPLITS:
            if not sizes.get(split):
                continue
            examples = task.examples(split, root)
            leaked = find_leaked(examples, source_keys(task, tasks, root))
            rows.append(MatrixRow(task.name, split, len(examples), {s: len(ix) for s, ix in leaked.items()}))
    return rows


def render_overlap_matrix(tasks: Sequence[Task], data_root: str | os.PathLike | None = None) -> str:
    """The ``mtpt tasks --overlap`` table: one row per evaluation split, one column per task's
    training data; a cell is ``count (percent of the row's examples)``, ``0``, or ``-`` on the
    diagonal (a task's own splits are decontaminated when it is built)."""
    rows = overlap_matrix(tasks, data_root)
    names = [t.name for t in tasks]
    header = ["evaluation split", "n", *names]
    table = [header, ["", "", *["(train)"] * len(names)]]
    for row in rows:
        cells = []
        for name in names:
            if name == row.task:
                cells.append("-")
            else:
                count = row.found[name]
                cells.append(f"{count} ({100 * count / row.n:.1f}%)" if count else "0")
        table.append([f"{row.task} {row.split}", str(row.n), *cells])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in table]
    lines.insert(2, "  ".join("-" * w for w in widths))
    lines += ["",
              ("cell: inputs of the row's split that occur in the column task's training data (its "
               "full-data train split and published k-shot train sets), % of n"),
              (f"compared: raw input fields, NFKC + casefold, letters and digits only; inputs under "
               f"{MIN_WORDS} words ignored (mtpt.tasks.overlap)"),
              ("a run with sources evaluates on its test split without these inputs; validation "
               "overlaps are only reported")]
    if not rows:
        lines.append("(none of these tasks has an evaluation split)")
    return "\n".join(lines)
