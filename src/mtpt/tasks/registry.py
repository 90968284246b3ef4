"""The task registry: registration, lookup by name or YAML spec path, the ``mtpt tasks`` table."""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from .base import (ENV_VAR, SPLITS, DecontaminationWarning, Task, TaskDataError,
                   decontamination_report, resolve_data_root)
from .kshot import describe_dropped

_REGISTRY: dict[str, Task] = {}
_BUILTIN_MODULES = ("demo", "english", "superglue", "chinese", "fewclue")
_loaded = False


def register(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to the registry (``replace=True`` to overwrite a name)."""
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(f"{__package__}.{mod}")


def _looks_like_spec(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name or "/" in name


def get_task(name_or_spec: str | os.PathLike | Task) -> Task:
    """A registered task by name, or a user task from the path of a YAML spec."""
    if isinstance(name_or_spec, Task):
        return name_or_spec
    _load_builtin()
    name = str(name_or_spec)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name_or_spec, os.PathLike) or _looks_like_spec(name) or Path(name).is_file():
        from .user_spec import load_spec

        return load_spec(name)
    close = sorted(n for n in _REGISTRY if name.lower() in n or n in name.lower())
    hint = f" Did you mean {', '.join(close[:5])}?" if close else ""
    raise KeyError(f"unknown task {name!r}.{hint} `mtpt tasks` lists the registered tasks; "
                   f"a path to a YAML task spec also works.")


def list_tasks(language: str | None = None) -> list[Task]:
    """Registered tasks (optionally of one language), in registration order."""
    _load_builtin()
    return [t for t in _REGISTRY.values() if language is None or t.language == language]


def _size_cells(task: Task, root: Path | None) -> list[str]:
    try:
        with warnings.catch_warnings():
            # the table lists every task: what decontamination dropped is shown by --verbose
            warnings.simplefilter("ignore", DecontaminationWarning)
            sizes = task.sizes(root)
    except TaskDataError:
        return ["?"] * len(SPLITS)
    return [str(sizes[s]) if sizes[s] else "-" for s in SPLITS]


def _dropped_line(task: Task, root: Path | None) -> str:
    try:
        dropped = decontamination_report(task, root)
    except TaskDataError:
        return "  removed duplicates: ? (needs the data)"
    return "  removed duplicates: " + (describe_dropped(dropped) or "none")


def render_task_table(tasks: Iterable[Task], data_root: str | os.PathLike | None = None,
                      verbose: bool = False) -> str:
    """The ``mtpt tasks`` table: name, language, family, kind, size class, full-data split sizes
    and the published k-shot split ("16 per class, 5 seeds (LM-BFF)", "32 total, 5 seeds
    (FewCLUE)", or "sampled" when only seeded k-per-class sampling is available). ``?`` marks
    sizes that need the data folder. ``verbose`` adds template, label words, notes and what
    decontamination removed from each split (:func:`~mtpt.tasks.base.decontamination_report`)."""
    root = resolve_data_root(data_root)
    header = ["task", "lang", "family", "kind", "size", "train", "validation", "test", "k-shot"]
    rows, details = [], []
    for t in tasks:
        kshot = t.kshot.describe() if t.kshot else "sampled"
        rows.append([t.name, t.language, t.family, t.kind, t.size_class,
                     *_size_cells(t, root), kshot])
        if verbose:
            details.append((t, kshot))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    numeric = {5, 6, 7}

    def fmt(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i in numeric else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows),
             ("sizes: full-data splits after removing exact duplicates of test inputs from "
              "train/validation (--verbose: how many); k-shot: the published split, else seeded "
              "k-per-class sampling")]
    if any(r[5] == "?" for r in rows):
        lines.append(f"? = needs the benchmark data: set {ENV_VAR} or pass --data-root")
    for t, kshot in details:
        lines += ["", f"{t.name}  [{', '.join(t.metrics)}]",
                  "  template: " + t.template.replace("\n", "\\n")]
        if t.label_words:
            words = ", ".join(repr(w) for w in t.label_words[:20])
            more = f", ... ({len(t.label_words)} in all)" if len(t.label_words) > 20 else ""
            lines.append(f"  label words: {words}{more}")
        lines += ["  " + ln for ln in t.notes.strip().splitlines()]
        lines.append(_dropped_line(t, root))
    return "\n".join(lines)
