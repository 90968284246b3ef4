"""Helpers shared by the built-in suites: record converters and published k-shot loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .base import Example, KShotInfo, Published, Task
from .readers import Row
from .registry import register
from .templates import Prompt, lookup

Conv = Callable[[Row], Example]

LMBFF_SEEDS = (13, 21, 42, 87, 100)
#: LM-BFF (Gao et al. 2021) 16-shot splits: k per class, train and dev both drawn from train.
LMBFF16 = KShotInfo("per_class", 16, LMBFF_SEEDS, "LM-BFF")
FEWCLUE_SEEDS = (0, 1, 2, 3, 4)


def classify(task: str, prompt: Prompt, fieldmap: Mapping[str, str], label_field: str,
             labels: Mapping[str, int], clean: Callable[[str], str] | None = None) -> Conv:
    """Converter for classification records: template field -> record field, raw label -> index."""

    def conv(row: Row) -> Example:
        fields = {k: row.text(v) for k, v in fieldmap.items()}
        if clean is not None:
            fields = {k: clean(v) for k, v in fields.items()}
        label = lookup(labels, row[label_field], row.where, label_field)
        return prompt.classify(task, fields, label, row.where)

    return conv


def load(rows: Iterable[Row], conv: Conv) -> list[Example]:
    return [conv(r) for r in rows]


def lmbff_published(root_rel: str, ext: str, reader: Callable[[Path], Iterable[Row]], conv: Conv,
                    dev_name: str = "dev") -> Published:
    """Loader of LM-BFF's ``<dir>/16-<seed>/{train,dev}.<ext>``."""

    def published(root: Path | None, seed: int, split: str) -> list[Example]:
        name = "train" if split == "train" else dev_name
        return load(reader(root / root_rel / f"16-{seed}" / f"{name}{ext}"), conv)

    return published


def task(name: str, family: str, language: str, kind: str, metrics: tuple[str, ...],
         prompt: Prompt, size_class: str, notes: str, build, **kw) -> Task:
    """Create and register a built-in task."""
    return register(Task(name=name, family=family, language=language, kind=kind,
                         metrics=metrics, label_words=prompt.label_words, size_class=size_class,
                         template=prompt.template, notes=notes, build=build, **kw))
