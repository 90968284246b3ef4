"""User tasks from a YAML spec (read with ``yaml.safe_load``).

Example spec (paths are relative to the spec file)::

    name: my-reviews
    language: en                  # en | zh
    kind: classification          # classification | regression | generation
    template: "Review: {text}\\nSentiment:"
    label_column: label
    label_words: {0: negative, 1: positive}   # raw label value -> word; order = class index
    metrics: [accuracy, macro_f1]
    files:
      train: data/train.csv       # .csv / .tsv (header row) / .jsonl / .json (list of objects)
      validation: data/dev.csv    # optional: else carved from train (see below)
      test: data/test.jsonl       # optional: then the task has no test split

Instead of ``files`` a Hugging Face dataset can be the source: ``source: hf:glue/rte`` (or
``hf_dataset: glue/rte``; forms: ``ID``, ``ID:CONFIG``, ``NAME/CONFIG``, ``OWNER/NAME/CONFIG``;
or ``hf_dataset: {path: nyu-mll/glue, name: rte}``), with optional ``hf_splits: {test:
validation}`` to map our split names to the dataset's. It is loaded with
``datasets.load_dataset``; ``datasets`` >= 4 never runs dataset scripts (no remote code).

Data rules (each an error naming the file and line): a row whose template fields are all empty, a control
character (other than tab and newline) in a template field, a header naming a column twice, a NUL byte; a
classification task needs at least two label words, and every split at least two classes.

Rules: for English tasks a label word / target without leading whitespace gets one space
prepended (targets are exactly what follows the input, see :class:`~mtpt.tasks.Example`);
Chinese words are used as written. A missing validation file is carved from train: a
``validation_fraction`` (default 0.1, at least one example) of it is held out with ATTEMPT's
seed-42 permutation. Regression: ``value_grid: [lo, hi, step]`` gives the rank-scoring grid and
rounds targets to it; without a grid the target is the raw value. Generation: the label column
holds the answer string or a list of answers (first = target, all = references).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import KINDS, Example, Task, TaskDataError
from .kshot import holdout
from .readers import Row, read_csv, read_json, read_jsonl
from .templates import (Prompt, float_grid, grid_words, label_key, lookup, render_inputs,
                        template_fields)

ALLOWED_KEYS = {"name", "language", "kind", "template", "label_column", "label_words", "metrics",
                "files", "format", "delimiter", "validation_fraction", "value_grid", "family",
                "size_class", "notes", "source", "hf_dataset", "hf_config", "hf_splits", "columns", "header"}
DEFAULT_METRICS = {"classification": ("accuracy",), "regression": ("pearson", "spearman"),
                   "generation": ("em", "f1_qa")}
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json"}


def _fail(spec: Path, msg: str) -> TaskDataError:
    return TaskDataError(f"{spec}: {msg}")


def _read_spec(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise TaskDataError(f"task spec not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise _fail(path, f"invalid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise _fail(path, f"not UTF-8 text ({e}); is it a task spec?") from None
    except OSError as e:
        raise _fail(path, f"cannot be read ({e})") from None
    if not isinstance(doc, dict):
        raise _fail(path, "a task spec must be a YAML mapping (key: value lines)")
    unknown = sorted(set(doc) - ALLOWED_KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    return doc


def _req_str(spec: Path, doc: Mapping, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _fail(spec, f"'{key}' is required and must be a non-empty string")
    return value


def _label_words(spec: Path, doc: Mapping, language: str) -> tuple[dict[str, int], tuple[str, ...]]:
    raw = doc.get("label_words")
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        raw = {i: w for i, w in enumerate(raw)}  # a list: class i <- raw label value i
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(spec, "'label_words' is required for classification: a mapping from raw "
                          "label values to words, e.g. {0: negative, 1: positive}")
    keys, words = {}, []
    for i, (value, word) in enumerate(raw.items()):
        if not isinstance(word, str) or not word.strip():
            raise _fail(spec, f"label_words[{value!r}] must be a non-empty string")
        keys[label_key(value)] = i
        if isinstance(value, bool):  # YAML true/false keys also match "true"/"false" cells
            keys[label_key(value).lower()] = i
        words.append(_lead(word, language))
    if len(set(words)) != len(words):
        raise _fail(spec, f"label words must be distinct, got {words}")
    if len(words) < 2:
        raise _fail(spec, f"a classification task needs at least two classes, 'label_words' has {len(words)} "
                          f"({words}); every prediction would be right")
    return keys, tuple(words)


def _lead(word: str, language: str) -> str:
    """English targets start with one space; others are used as written."""
    return word if language != "en" or word[:1].isspace() else " " + word


def _metrics(spec: Path, doc: Mapping, kind: str) -> tuple[str, ...]:
    from ..metrics import METRICS

    value = doc.get("metrics", list(DEFAULT_METRICS[kind]))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(spec, "'metrics' must be a list of metric names")
    bad = [m for m in value if m not in METRICS]
    if bad:
        raise _fail(spec, f"unknown metric(s) {bad}; known: {sorted(METRICS)}")
    return tuple(value)


def _hf_source(spec: Path, doc: Mapping) -> tuple[str, str | None] | None:
    value = doc.get("hf_dataset", doc.get("source"))
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not isinstance(value.get("path"), str):
            raise _fail(spec, "hf_dataset mapping needs a 'path' string")
        return value["path"], value.get("name")
    if not isinstance(value, str):
        raise _fail(spec, "'source' / 'hf_dataset' must be a string like hf:glue/rte")
    ident = value.removeprefix("hf:")
    if doc.get("source") is not None and not value.startswith("hf:"):
        raise _fail(spec, f"source {value!r}: only 'hf:<dataset>' sources are supported; local "
                          f"files go under 'files:'")
    if doc.get("hf_config"):
        return ident, str(doc["hf_config"])
    if ":" in ident:
        path, _, config = ident.partition(":")
        return path, config or None
    parts = ident.split("/")
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3:
        return "/".join(parts[:2]), parts[2]
    return ident, None


def load_spec(path: str | os.PathLike) -> Task:
    """Parse and check a YAML task spec; data files are read when examples are requested."""
    spec = Path(path).expanduser().resolve()
    doc = _read_spec(spec)
    name = _req_str(spec, doc, "name")
    language = doc.get("language", "en")
    if language not in ("en", "zh"):
        raise _fail(spec, f"language must be 'en' or 'zh', got {language!r}")
    kind = doc.get("kind", "classification")
    if kind not in KINDS or kind == "multiple_choice":
        raise _fail(spec, f"kind must be classification, regression or generation; got {kind!r}")
    template = _req_str(spec, doc, "template")
    try:
        template_fields(template)
    except ValueError as e:
        raise _fail(spec, f"template: {e}") from None
    label_column = _req_str(spec, doc, "label_column")
    labels, words = _label_words(spec, doc, language) if kind == "classification" else ({}, None)
    grid = _value_grid(spec, doc) if kind == "regression" else None
    if grid:  # the value grid's words are the choices rank scoring compares
        words = grid_words(grid, " " if language == "en" else "")
    _check_columns(spec, doc, [*template_fields(template), label_column])
    size_class = str(doc.get("size_class", "small"))
    if size_class not in ("small", "large"):
        raise _fail(spec, f"size_class must be 'small' or 'large', got {size_class!r}")
    frac = doc.get("validation_fraction", 0.1)
    if not isinstance(frac, (int, float)) or not 0 < frac < 1:
        raise _fail(spec, f"validation_fraction must be in (0, 1), got {frac!r}")
    hf = _hf_source(spec, doc)
    hf_splits = doc.get("hf_splits") or {}
    if not isinstance(hf_splits, Mapping) or set(hf_splits) - {"train", "validation", "test"}:
        raise _fail(spec, "hf_splits must map train / validation / test to the dataset's split "
                          "names, e.g. {test: validation}")
    files = _files(spec, doc, hf is not None)
    conv = _converter(name, language, kind, Prompt(template, words), label_column, labels, grid)
    build = _hf_builder(spec, doc, hf, conv, frac) if hf else _file_builder(spec, doc, files, conv, frac,
                                                                               kind == "classification")
    return Task(name=name, family=str(doc.get("family", "user")), language=language, kind=kind,
                metrics=_metrics(spec, doc, kind), label_words=words, size_class=size_class,
                template=template, notes=_notes(spec, doc, hf, files, frac), build=build,
                needs_data_root=False)


def _value_grid(spec: Path, doc: Mapping) -> tuple[float, ...] | None:
    if doc.get("value_grid") is None:
        return None
    try:
        return float_grid(*[float(x) for x in doc["value_grid"]])
    except (TypeError, ValueError) as e:
        raise _fail(spec, f"value_grid must be [lo, hi, step]: {e}") from None


def _notes(spec: Path, doc: Mapping, hf, files: dict[str, Path], frac: float) -> str:
    how = (f"Hugging Face dataset {hf[0]!r}" + (f" (config {hf[1]!r})" if hf[1] else "")
           if hf else ", ".join(f"{k}: {v}" for k, v in files.items()))
    carved = "" if "validation" in files else \
        f"\nvalidation: carved from train ({frac:.0%}, ATTEMPT permutation, seed 42) if absent."
    return f"User task from {spec}\n{how}{carved}\n{doc.get('notes', '')}".rstrip()


def validate_spec(path: str | os.PathLike) -> Task:
    """Load a spec and read all of its data now; raises :class:`TaskDataError` (naming the file,
    line and field) on the first problem. Returns the task."""
    task = load_spec(path)
    task.sizes()
    return task


def _files(spec: Path, doc: Mapping, has_hf: bool) -> dict[str, Path]:
    files = doc.get("files")
    if files is None and has_hf:
        return {}
    if not isinstance(files, Mapping) or "train" not in files:
        raise _fail(spec, "'files' must map splits to data files and include 'train' "
                          "(or give a Hugging Face 'source: hf:<dataset>')")
    bad = sorted(set(files) - {"train", "validation", "test"})
    if bad:
        raise _fail(spec, f"files: unknown split(s) {bad}; use train / validation / test")
    out = {}
    for split, rel in files.items():
        p = Path(str(rel)).expanduser()
        p = p if p.is_absolute() else spec.parent / p
        if not p.is_file():
            raise _fail(spec, f"files.{split}: file not found: {p} (relative paths are resolved "
                              f"against the spec's folder)")
        out[split] = p
    return out


def _reader(spec: Path, doc: Mapping, path: Path, needed: Sequence[str] = ()):
    fmt = doc.get("format") or _FORMATS.get(path.suffix.lower())
    if fmt in ("csv", "tsv"):
        delimiter = doc.get("delimiter", "," if fmt == "csv" else "\t")
        columns, header = _columns(spec, doc)
        if columns is None:
            return _check_header(spec, path, read_csv(path, delimiter=delimiter), needed)
        return _skip_header(spec, path, read_csv(path, columns=columns, delimiter=delimiter), columns, header)
    if doc.get("columns") is not None:
        raise _fail(spec, f"'columns' names the columns of headerless CSV / TSV files; {path} is {fmt or 'not'} "
                          f"CSV / TSV")
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json(path)
    raise _fail(spec, f"cannot tell the format of {path}: use a .csv/.tsv/.jsonl/.json file or "
                      f"set 'format:'")


def _check_columns(spec: Path, doc: Mapping, needed: Sequence[str]) -> None:
    columns, _ = _columns(spec, doc)
    missing = [name for name in dict.fromkeys(needed) if columns is not None and name not in columns]
    if missing:
        raise _fail(spec, f"'columns' {list(columns)} has no {missing} (used by the template or label_column)")


def _columns(spec: Path, doc: Mapping) -> tuple[tuple[str, ...] | None, bool]:
    """The spec's column names (``None``: the file's header row names them) and whether the file has a header."""
    columns, header = doc.get("columns"), doc.get("header")
    if header is not None and not isinstance(header, bool):
        raise _fail(spec, f"'header' must be true or false, got {header!r}")
    if columns is None:
        if header is False:
            raise _fail(spec, "'header: false' needs 'columns: [...]' naming the file's columns in order")
        return None, True
    if (not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c.strip() for c in columns)
            or len(set(columns)) != len(columns)):
        raise _fail(spec, f"'columns' must be a list of distinct column names, in file order; got {columns!r}")
    return tuple(columns), bool(header)


def _check_header(spec: Path, path: Path, rows, needed: Sequence[str]):
    """A file read with its header row must name every column the spec uses."""
    present = set(rows[0].data) if rows else set()
    missing = [name for name in dict.fromkeys(needed) if name not in present]
    if rows and missing:
        raise _fail(spec, f"{path}: the header row {sorted(present)} has no column {missing} (used by the template "
                          f"or label_column). If the file has no header row, name its columns with "
                          f"'columns: [...]' (docs/tasks.md).")
    return rows


def _skip_header(spec: Path, path: Path, rows, columns: tuple[str, ...], header: bool):
    """With ``columns``: a header row (``header: true``) must list exactly those names and is skipped; without
    ``header: true`` a first row equal to the names is an error rather than an example."""
    first = [str(rows[0].data[c]).strip() for c in columns] if rows else None
    if header:
        if first != list(columns):
            raise _fail(spec, f"{path}: 'header: true' but the first row {first} is not the column names "
                              f"{list(columns)}; fix 'columns' or set 'header: false'")
        return rows[1:]
    if first == list(columns):
        raise _fail(spec, f"{path}: the first row repeats the column names {list(columns)}: it is a header row; "
                          f"set 'header: true' to skip it")
    return rows


def _converter(name, language, kind, prompt, label_column, labels, grid):
    prefix = " " if language == "en" else ""

    fields = template_fields(prompt.template)

    def conv(row: Row) -> Example:
        _check_text_fields(fields, row)
        raw = row[label_column]
        if kind == "classification":
            return prompt.classify(name, row, lookup(labels, raw, row.where, label_column),
                                   row.where)
        if kind == "regression":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise TaskDataError(f"{row.where}: {label_column} {raw!r} is not a number; fix "
                                    f"the row") from None
            if grid:
                return prompt.regress(name, row, value, grid, grid_words(grid, prefix), row.where)
            text, inputs = render_inputs(prompt.template, row, row.where)
            return Example(text, prefix + str(raw).strip(), (), -1, gold=value, task=name,
                           inputs=inputs)
        answers = raw if isinstance(raw, list) else [raw]
        return prompt.generate(name, row, [str(a) for a in answers if a is not None], row.where,
                               prefix=prefix)

    return conv


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _check_text_fields(names: list[str], row: Row) -> None:
    """The fields a row fills the template with: not all empty (the input would be the bare template) and free of
    control characters (invisible, and tokenised into noise); either is an error naming the row."""
    values = {name: row.text(name) for name in names}
    if names and not any(value.strip() for value in values.values()):
        raise TaskDataError(f"{row.where}: every field the template uses ({', '.join(names)}) is empty; fill the "
                            f"row or remove it")
    for name, value in values.items():
        found = _CONTROL.search(value)
        if found:
            raise TaskDataError(f"{row.where}: field {name!r} holds the control character {found.group()!r} at "
                                f"position {found.start()}; remove it from the data")


def _finish(splits: dict[str, list[Example]], frac: float, where: str) -> dict[str, list[Example]]:
    if "validation" not in splits:
        n_val = max(1, round(frac * len(splits["train"])))
        if n_val >= len(splits["train"]):
            raise TaskDataError(f"{where}: train has {len(splits['train'])} example(s), too few to "
                                f"carve a validation split; add a validation file")
        splits["train"], splits["validation"] = holdout(splits["train"], n_val)
    return splits


def _file_builder(spec: Path, doc: Mapping, files: dict[str, Path], conv, frac: float, classes: bool):
    needed = [*template_fields(doc["template"]), doc["label_column"]]

    def build(_root):
        splits = {}
        for split, path in files.items():
            exs = [conv(r) for r in _reader(spec, doc, path, needed)]
            if not exs:
                raise TaskDataError(f"{path}: no examples in the {split} file; add data or "
                                    f"remove files.{split} from {spec}")
            if classes and len({ex.label for ex in exs}) < 2:
                raise TaskDataError(f"{path}: every row of the {split} file has the same class "
                                    f"({exs[0].target.strip()!r}); a classification split needs at least "
                                    f"two classes")
            splits[split] = exs
        return _finish(splits, frac, str(spec))

    return build


def _hf_builder(spec: Path, doc: Mapping, hf: tuple[str, str | None], conv, frac: float):
    explicit = dict(doc.get("hf_splits") or {})
    # our split names default to the dataset's, unless that split is already mapped elsewhere
    # (hf_splits: {test: validation} means the dataset's validation split is our test split)
    split_map = {s: s for s in ("train", "validation", "test")
                 if s not in explicit and s not in explicit.values()}
    split_map.update(explicit)

    def build(_root):
        ds = _hf_load(spec, *hf)
        splits = {}
        for ours, theirs in split_map.items():
            if theirs not in ds:
                if ours == "train":
                    raise _fail(spec, f"Hugging Face dataset {hf[0]!r} has no split {theirs!r} "
                                      f"(has {sorted(ds)}); set hf_splits")
                continue
            where = f"hf:{hf[0]}" + (f":{hf[1]}" if hf[1] else "") + f"[{theirs}]"
            rows = [Row(_hf_labels(r, ds[theirs].features), where, item=i)
                    for i, r in enumerate(ds[theirs])]
            splits[ours] = [conv(r) for r in rows]
        return _finish(splits, frac, str(spec))

    return build


def _hf_labels(record: dict, features) -> dict:
    """Keep raw values, but expose ClassLabel ids as their names under '<col>_name' as well."""
    out = dict(record)
    for col, feat in features.items():
        names = getattr(feat, "names", None)
        if names and isinstance(record.get(col), int) and 0 <= record[col] < len(names):
            out[f"{col}_name"] = names[record[col]]
    return out


def _hf_load(spec: Path, path: str, name: str | None):
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise _fail(spec, f"Hugging Face sources need the 'datasets' package ({e})") from None
    try:
        return datasets.load_dataset(path, name)
    except Exception as e:  # network, auth, missing dataset: all reported the same way
        raise _fail(spec, f"could not load Hugging Face dataset {path!r}"
                          f"{f' (config {name!r})' if name else ''}: {type(e).__name__}: {e}. "
                          f"If the hub is unreachable (offline, firewall, HF_HUB_OFFLINE=1), "
                          f"download the data and list local CSV/JSONL files under 'files:'"
                    ) from None
