"""Templates with ``{field}`` tags and the conversion of records into :class:`Example`.

A template is plain text with ``{name}`` tags (``{{`` / ``}}`` for literal braces). Values are
inserted verbatim (``None`` -> empty string); format specs and conversions are not allowed.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Example, TaskDataError


def template_fields(template: str) -> list[str]:
    """Names of the ``{field}`` tags of ``template`` (raises ``ValueError`` on a bad template)."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"bad template {template!r}: {e} (use {{{{ and }}}} for literal braces)")
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.strip():
            raise ValueError(f"empty field tag {{}} in {template!r}: use {{column_name}}")
        if spec or conv:
            raise ValueError(f"template field {{{name}}} in {template!r}: format specs and "
                             f"conversions are not supported")
        names.append(name)
    return names


def render(template: str, fields: Mapping[str, Any] | Any, where: str) -> str:
    """Fill ``template`` from ``fields`` (a mapping or a :class:`~mtpt.tasks.readers.Row`)."""
    return render_inputs(template, fields, where)[0]


def render_inputs(template: str, fields: Mapping[str, Any] | Any,
                  where: str) -> tuple[str, tuple[str, ...]]:
    """The rendered text and the inserted field values in template order (``Example.inputs``)."""
    out, values = [], []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        try:
            value = fields[name]
        except KeyError:
            raise TaskDataError(f"{where}: the template needs field {name!r}, which this record "
                                f"does not have; fix the template or the data") from None
        values.append("" if value is None else str(value))
        out.append(values[-1])
    return "".join(out), tuple(values)


def label_key(value: Any) -> str:
    """Canonical string form of a raw label (JSON ``true`` -> ``"True"``, ``1`` -> ``"1"``)."""
    return str(value).strip()


def lookup(mapping: Mapping[str, int], value: Any, where: str, field: str = "label") -> int:
    """Class index of a raw label; a value outside the label set raises :class:`TaskDataError`."""
    try:
        return mapping[label_key(value)]
    except KeyError:
        raise TaskDataError(f"{where}: {field} {value!r} is not in the label set "
                            f"{sorted(mapping)}; fix the row or extend the label mapping") from None


def index_map(*labels: Sequence[str] | str) -> dict[str, int]:
    """``index_map(["neg", "0"], ["pos", "1"])`` -> ``{"neg": 0, "0": 0, "pos": 1, "1": 1}``."""
    out: dict[str, int] = {}
    for i, names in enumerate(labels):
        for name in ([names] if isinstance(names, str) else names):
            out[label_key(name)] = i
    return out


@dataclass(frozen=True)
class Prompt:
    """A template plus (for classification) its label words, index-aligned with class ids."""

    template: str
    label_words: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        template_fields(self.template)
        if self.label_words is not None and len(set(self.label_words)) != len(self.label_words):
            raise ValueError(f"label words must be distinct: {self.label_words}")

    def classify(self, task: str, fields: Any, label: int, where: str) -> Example:
        words = self.label_words
        text, inputs = render_inputs(self.template, fields, where)
        return Example(text, words[label], words, label, gold=label, task=task, inputs=inputs)

    def choose(self, task: str, fields: Any, choices: Sequence[str], label: int,
               where: str, group: str | None = None) -> Example:
        """Multiple choice: per-example candidate continuations."""
        choices = tuple(choices)
        if len(set(choices)) != len(choices):
            raise TaskDataError(f"{where}: duplicate answer options {choices}")
        if not 0 <= label < len(choices):
            raise TaskDataError(f"{where}: answer index {label} outside the {len(choices)} options")
        text, inputs = render_inputs(self.template, fields, where)
        return Example(text, choices[label], choices, label, gold=label, task=task, group=group,
                       inputs=inputs)

    def regress(self, task: str, fields: Any, score: float, grid: tuple[float, ...],
                words: tuple[str, ...], where: str) -> Example:
        """Regression: target = the grid value nearest to ``score``; gold = the raw score."""
        if not grid[0] - 1e-9 <= score <= grid[-1] + 1e-9:
            raise TaskDataError(f"{where}: score {score} outside [{grid[0]}, {grid[-1]}]")
        idx = min(range(len(grid)), key=lambda i: (abs(grid[i] - score), i))
        text, inputs = render_inputs(self.template, fields, where)
        return Example(text, words[idx], words, idx, gold=float(score), task=task, inputs=inputs)

    def generate(self, task: str, fields: Any, answers: Sequence[str], where: str,
                 prefix: str = "") -> Example:
        """Free-text generation: target = ``prefix`` + first answer; gold = all answers."""
        answers = tuple(a for a in answers if a is not None and str(a).strip())
        if not answers:
            raise TaskDataError(f"{where}: no reference answer; fix or remove the row")
        text, inputs = render_inputs(self.template, fields, where)
        return Example(text, prefix + str(answers[0]), (), -1,
                       gold=tuple(str(a) for a in answers), task=task, inputs=inputs)


def float_grid(lo: float, hi: float, step: float) -> tuple[float, ...]:
    """``lo, lo+step, ..., hi`` rounded to 6 decimals (avoids float drift in labels)."""
    n = int(round((hi - lo) / step))
    if n < 1 or abs(lo + n * step - hi) > 1e-6:
        raise ValueError(f"value grid [{lo}, {hi}] is not a whole number of steps of {step}")
    return tuple(round(lo + i * step, 6) for i in range(n + 1))


def grid_words(grid: Sequence[float], prefix: str = " ") -> tuple[str, ...]:
    """Target strings of a value grid, with as many decimals as the step needs."""
    decimals = max((len(f"{v:.6f}".rstrip("0").split(".")[1]) for v in grid), default=0)
    decimals = max(decimals, 1)
    return tuple(f"{prefix}{v:.{decimals}f}" for v in grid)
