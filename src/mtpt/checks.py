"""Checks of single config values, for the config dataclasses' ``__post_init__``: each error names the field, the
value and what is allowed (with close matches for a misspelt name), before a run creates anything."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from mtpt.errors import MtptError

__all__ = ["LR_LIMIT", "check_choice", "check_lr", "check_range", "check_sequence", "suggest"]

LR_LIMIT = 1e30
"""Learning rates at or above this overflow float32 inside AdamW (its first steps scale lr by up to 10)."""


def check_range(field: str, value: Any, *, at_least: float | None = None, above: float | None = None,
                below: float | None = None, optional: bool = False) -> None:
    """``value`` is a finite number with ``value >= at_least``, ``value > above`` and ``value < below`` (each
    bound only when given); ``optional`` also accepts None (the field's "off" or "default" value)."""
    if value is None and optional:
        return
    bounds = [f">= {at_least:g}" if at_least is not None else "", f"> {above:g}" if above is not None else "",
              f"< {below:g}" if below is not None else ""]
    wanted = " and ".join(b for b in bounds if b) or "a finite number"
    if optional:
        wanted += " (or null)"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (not number or not math.isfinite(value) or (at_least is not None and value < at_least)
            or (above is not None and value <= above) or (below is not None and value >= below)):
        raise MtptError(f"{field} must be {wanted}, got {value!r}.")


def check_lr(field: str, value: Any, optional: bool = False) -> None:
    """A learning rate: positive, and small enough for AdamW's float32 arithmetic (:data:`LR_LIMIT`)."""
    check_range(field, value, above=0, below=LR_LIMIT, optional=optional)


def suggest(value: str, known: Iterable[str]) -> str:
    """`` Did you mean X?`` for the closest names of ``known`` (empty when none is close)."""
    close = difflib.get_close_matches(str(value), list(known), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_choice(field: str, value: Any, allowed: Iterable[str]) -> None:
    """``value`` is one of ``allowed``; the error lists them and the closest ones."""
    allowed = list(allowed)
    if value not in allowed:
        raise MtptError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}."
                        f"{suggest(str(value), allowed)}")


def check_sequence(field: str, values: Any, *, allowed: Iterable[str] | None = None, non_empty: bool = True,
                   distinct: bool = True) -> None:
    """A list field: non-empty, without repeats, and (with ``allowed``) of allowed values only."""
    if not isinstance(values, (list, tuple)):
        raise MtptError(f"{field} must be a list, got {values!r}.")
    if non_empty and not values:
        raise MtptError(f"{field} must not be empty.")
    if distinct and len(set(map(str, values))) != len(values):
        raise MtptError(f"{field} lists a value twice: {list(values)}.")
    if allowed is not None:
        for value in values:
            check_choice(field, value, allowed)
