"""Cached file readers that remember where every record came from.

Every reader returns a tuple of :class:`Row` (the record plus ``file:line`` or ``file (item i)``)
so that errors can point at the offending line. Parsed files are cached with
``functools.lru_cache`` keyed on (path, mtime, size): the integration test and ``mtpt tasks``
touch the same files many times.

Reading gotchas handled here (PROVENANCE.md): files are split on ``"\\n"`` only, never with
``str.splitlines()`` (FewCLUE iflytek has U+2028/U+2029 inside strings); a UTF-8 BOM at the start
of a file is dropped (MRPC headers); TSVs are split on tabs without quote processing, as GLUE's
loaders do (quotes inside GLUE sentences are literal).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .base import TaskDataError


@dataclass(frozen=True)
class Row:
    """One record of a data file: ``data`` (field -> value) and its location."""

    data: Mapping[str, Any]
    file: str
    line: int | None = None
    item: int | None = None

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        return f"{self.file} (item {self.item})"

    def __getitem__(self, field: str) -> Any:
        try:
            return self.data[field]
        except KeyError:
            raise TaskDataError(
                f"{self.where}: field {field!r} is missing (present: {sorted(self.data)}); "
                f"fix the row or the column name") from None

    def get(self, field: str, default: Any = None) -> Any:
        return self.data.get(field, default)

    def text(self, field: str) -> str:
        """A field as a string (``None`` -> ``""``)."""
        value = self[field]
        return "" if value is None else str(value)


def _stat_key(path: str | Path) -> tuple[str, int, int]:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise TaskDataError(f"data file not found: {p}. Check data_root / MTPT_DATA_ROOT "
                            f"(or the paths in your task spec)") from None
    if not p.is_file():
        raise TaskDataError(f"{p} is not a file")
    return str(p), st.st_mtime_ns, st.st_size


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise TaskDataError(f"{path}: not valid UTF-8 ({e}); re-save the file as UTF-8") from None
    except OSError as e:
        raise TaskDataError(f"{path}: cannot be read ({e})") from None
    if "\x00" in text:  # text data never holds NUL: this is binary data or a damaged file
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TaskDataError(f"{path}:{line}: NUL byte in a text file (binary data, or a damaged file); "
                            f"remove it or re-export the file")
    return text[1:] if text.startswith("\ufeff") else text


def _header(path: str, columns: Sequence[str]) -> tuple[str, ...]:
    """A header row, refused when a column name repeats (the later column would silently win)."""
    seen = [c for i, c in enumerate(columns) if c in columns[:i]]
    if seen:
        raise TaskDataError(f"{path}:1: the header names column(s) {sorted(set(seen))} twice; rename one of "
                            f"each pair")
    return tuple(columns)


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _frozen(rows: list[Row]) -> tuple[Row, ...]:
    return tuple(Row(MappingProxyType(dict(r.data)), r.file, r.line, r.item) for r in rows)


# -- JSON ----------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> tuple[Row, ...]:
    """JSON Lines: one object per line; blank lines are skipped."""
    return _jsonl(*_stat_key(path))


@lru_cache(maxsize=256)
def _jsonl(path: str, _mtime: int, _size: int) -> tuple[Row, ...]:
    rows = []
    for no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskDataError(f"{path}:{no}: malformed JSON ({e.msg} at column {e.colno}); "
                                f"fix or remove this line") from None
        if not isinstance(obj, dict):
            raise TaskDataError(f"{path}:{no}: expected a JSON object, got {type(obj).__name__}")
        rows.append(Row(MappingProxyType(obj), path, line=no))
    return tuple(rows)


def read_json(path: str | Path) -> tuple[Row, ...]:
    """A JSON document holding a list of objects, or an object keyed by string index
    (``{"0": {...}, "1": {...}}``, the PowerfulPromptFT / USB layout)."""
    return _json(*_stat_key(path))


@lru_cache(maxsize=256)
def _json(path: str, _mtime: int, _size: int) -> tuple[Row, ...]:
    try:
        doc = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}); fix the file") from None
    if isinstance(doc, dict):
        items = list(doc.values())
    elif isinstance(doc, list):
        items = doc
    else:
        raise TaskDataError(f"{path}: expected a JSON list or object, got {type(doc).__name__}")
    rows = []
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            raise TaskDataError(f"{path} (item {i}): expected a JSON object, "
                                f"got {type(obj).__name__}")
        rows.append(Row(MappingProxyType(obj), path, item=i))
    return tuple(rows)


# -- delimited text ----------------------------------------------------------------------------
def read_tsv(path: str | Path, columns: Sequence[str] | None = None,
             last_field: str | None = None) -> tuple[Row, ...]:
    """Tab-separated file without quote processing. With ``columns`` the file has no header;
    otherwise the first line is the header. Every row must have as many fields as the header,
    except that with ``last_field`` a row may have more: that column then takes the row's last
    field (GLUE's SNLI/MNLI files append annotator labels, the gold label stays last)."""
    return _tsv(*_stat_key(path), tuple(columns) if columns else None, last_field)


@lru_cache(maxsize=256)
def _tsv(path: str, _mtime: int, _size: int, columns: tuple[str, ...] | None,
         last_field: str | None) -> tuple[Row, ...]:
    lines = _lines(_read_text(path))
    start = 1
    if columns is None:
        if not lines:
            raise TaskDataError(f"{path}: empty file (no header line)")
        columns, lines, start = _header(path, lines[0].split("\t")), lines[1:], 2
    rows = []
    for no, line in enumerate(lines, start=start):
        if not line.strip():
            continue
        fields = line.split("\t")
        if last_field is not None and len(fields) > len(columns):
            fields = fields[:len(columns)]
            fields[columns.index(last_field)] = line.rsplit("\t", 1)[1]
        if len(fields) != len(columns):
            raise TaskDataError(f"{path}:{no}: expected {len(columns)} tab-separated fields "
                                f"({', '.join(columns)}), found {len(fields)}; fix this line")
        rows.append(Row(dict(zip(columns, fields)), path, line=no))
    return _frozen(rows)


def read_csv(path: str | Path, columns: Sequence[str] | None = None,
             delimiter: str = ",") -> tuple[Row, ...]:
    """CSV with standard quoting (``csv`` module). With ``columns`` the file has no header."""
    return _csv(*_stat_key(path), tuple(columns) if columns else None, delimiter)


@lru_cache(maxsize=256)
def _csv(path: str, _mtime: int, _size: int, columns: tuple[str, ...] | None,
         delimiter: str) -> tuple[Row, ...]:
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    rows = []
    prev_end = 0
    try:
        for fields in reader:
            no, prev_end = prev_end + 1, reader.line_num
            if columns is None:
                columns = _header(path, [f.strip() for f in fields])
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != len(columns):
                raise TaskDataError(f"{path}:{no}: expected {len(columns)} fields "
                                    f"({', '.join(columns)}), found {len(fields)}; "
                                    f"fix the quoting or the number of columns on this line")
            rows.append(Row(dict(zip(columns, fields)), path, line=no))
    except csv.Error as e:
        raise TaskDataError(f"{path}:{reader.line_num}: malformed CSV ({e}); "
                            f"fix this line") from None
    if columns is None:
        raise TaskDataError(f"{path}: empty file (no header line)")
    return _frozen(rows)


def read_label_lines(path: str | Path, sep: str = " ") -> tuple[Row, ...]:
    """``label<sep>text`` per line (stsa.binary, TextFooler, TREC, THUCNews). Fields: ``label``,
    ``text``. With ``sep="\\t"`` and more tabs, ``text`` keeps the rest of the line."""
    return _label_lines(*_stat_key(path), sep)


@lru_cache(maxsize=256)
def _label_lines(path: str, _mtime: int, _size: int, sep: str) -> tuple[Row, ...]:
    rows = []
    for no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        label, found, text = line.partition(sep)
        if not found:
            raise TaskDataError(f"{path}:{no}: expected <label>{sep}<text> (separator {sep!r} "
                                f"not found); fix this line")
        rows.append(Row({"label": label, "text": text}, path, line=no))
    return _frozen(rows)


def read_lines(path: str | Path) -> tuple[str, ...]:
    """Non-empty stripped lines of a small metadata file (class lists)."""
    return tuple(ln.strip() for ln in _lines(_read_text(_stat_key(path)[0])) if ln.strip())
