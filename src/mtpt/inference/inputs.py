"""Input rows for prediction: reading CSV / TSV / JSONL files and turning rows into examples of a run's tasks.

A row is a mapping of field values. Its task is its ``task`` field, else the default task (``--task``), else
the run's only task; the task's template names the fields the row must have (other fields, such as a label
column, are ignored). Multiple-choice tasks also take ``choices``: a list of the candidate answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtpt.errors import MtptError
from mtpt.tasks import Example, Task
from mtpt.tasks.readers import read_csv, read_json, read_jsonl
from mtpt.tasks.templates import render, template_fields

TASK_FIELD = "task"
"""The row field naming a row's task (reserved: a template cannot use it as an input field)."""
CHOICES_FIELD = "choices"
"""The row field holding a multiple-choice row's candidate answers."""
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}


class InputError(MtptError, ValueError):
    """A row that cannot be predicted. ``where`` names the row (``file:line`` or ``row i``), ``index`` is its
    position in the input, ``field`` the offending field (``None`` for the row as a whole)."""

    def __init__(self, where: str, index: int, field: str | None, problem: str):
        self.where, self.index, self.field, self.problem = where, index, field, problem
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class PreparedRow:
    """A row ready to score: its run-task index and its rendered example."""

    task_index: int
    example: Example


def read_rows(path: str | Path, fmt: str | None = None, columns: Sequence[str] | None = None
              ) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The rows of a CSV, TSV (with a header row, or ``columns`` naming the columns of a headerless file), JSONL
    or JSON file, and where each comes from (``file:line``)."""
    path = Path(path)
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt in ("csv", "tsv"):
        rows = read_csv(path, columns=columns, delimiter="," if fmt == "csv" else "\t")
    elif fmt in ("jsonl", "json"):
        if columns:
            raise MtptError(f"{path}: column names are for headerless CSV / TSV files, not {fmt}.")
        rows = read_jsonl(path) if fmt == "jsonl" else read_json(path)
    else:
        raise MtptError(f"Cannot tell the format of {path}: use a .csv, .tsv, .jsonl or .json file "
                        f"(or give the format: --format).")
    return [row.data for row in rows], [row.where for row in rows]


def prepare_rows(tasks: Sequence[Task], rows: Sequence[Any], task: str | None = None,
                 where: Sequence[str] | None = None) -> list[PreparedRow]:
    """Check every row and render it through its task's template; the first bad row raises :class:`InputError`."""
    names = [t.name for t in tasks]
    if task is not None and task not in names:
        raise MtptError(f"Unknown task {task!r}; this model's tasks: {', '.join(names)}.")
    prepared = []
    for index, row in enumerate(rows):
        place = where[index] if where is not None else f"row {index}"
        if not isinstance(row, Mapping):
            raise InputError(place, index, None, f"a row must be an object of field values, got "
                                                 f"{type(row).__name__}")
        task_index = _task_index(names, row, task, place, index)
        prepared.append(PreparedRow(task_index, _example(tasks[task_index], row, place, index)))
    return prepared


def _task_index(names: list[str], row: Mapping, default: str | None, place: str, index: int) -> int:
    value = row.get(TASK_FIELD)
    if value is None or value == "":
        if default is not None:
            return names.index(default)
        if len(names) == 1:
            return 0
        raise InputError(place, index, TASK_FIELD, f"field 'task' is missing: this model has several tasks "
                                                   f"({', '.join(names)}); name one per row or a default task")
    if not isinstance(value, str) or value not in names:
        raise InputError(place, index, TASK_FIELD, f"unknown task {value!r}; this model's tasks: "
                                                   f"{', '.join(names)}")
    return names.index(value)


def _example(task: Task, row: Mapping, place: str, index: int) -> Example:
    for name in template_fields(task.template):
        value = row.get(name)
        if value is None:
            raise InputError(place, index, name, f"field {name!r} is missing (task {task.name!r} needs "
                                                 f"{', '.join(input_fields(task))})")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(place, index, name, f"field {name!r} must be text or a number, got "
                                                 f"{type(value).__name__}")
    text = render(task.template, row, place)
    if task.kind == "generation":
        return Example(text, "", (), -1, task=task.name)
    choices = _choices(task, row, place, index)
    return Example(text, choices[0], choices, 0, task=task.name)


def _choices(task: Task, row: Mapping, place: str, index: int) -> tuple[str, ...]:
    if task.kind != "multiple_choice":
        if not task.label_words:
            raise InputError(place, index, None, f"task {task.name!r} has no label words to rank (a regression "
                                                 f"task needs a value grid)")
        return tuple(task.label_words)
    value = row.get(CHOICES_FIELD)
    if (not isinstance(value, list) or not value or not all(isinstance(c, str) and c.strip() for c in value)
            or len(set(value)) != len(value)):
        raise InputError(place, index, CHOICES_FIELD, f"field 'choices' must be a list of distinct non-empty "
                                                      f"answers (task {task.name!r} is multiple choice)")
    # English continuations start with a space (see mtpt.tasks.Example)
    return tuple(c if task.language != "en" or c[:1].isspace() else " " + c for c in value)


def input_fields(task: Task) -> list[str]:
    """The fields a row of ``task`` must have."""
    names = list(dict.fromkeys(template_fields(task.template)))
    return names + [CHOICES_FIELD] if task.kind == "multiple_choice" else names
