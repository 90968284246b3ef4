"""Reading the files mtpt writes (checkpoints, prompts, libraries, run records) with errors that name the file.

A truncated, corrupted or hand-edited file must never surface as a raw ``SafetensorError: header too small``,
``UnicodeDecodeError`` or ``KeyError`` deep inside training, nor be used silently: every tensor read here is also
checked to be finite (a NaN prompt scores like a bad prompt, so it would otherwise pass as a result).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtpt.errors import MtptError

__all__ = ["check_finite", "read_json", "read_tensors", "read_torch_state"]


def read_tensors(path: str | Path, what: str = "safetensors file") -> dict[str, Tensor]:
    """Every tensor of a safetensors file, each checked to be finite."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MtptError(f"{what} {path} is missing.")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # SafetensorError (header too small, bad header), OSError, ...: all mean "damaged"
        raise MtptError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err}): it is truncated "
                        f"or corrupted; restore it, or retrain what wrote it.") from None
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict[str, Any], path: str | Path) -> None:
    """Raise naming ``path`` and the tensor when a floating-point tensor (nested in dicts/lists too) holds NaN or
    infinity. Plain numbers are not tensors and not checked (a run without validation data records a NaN metric)."""
    for key, value in _floating(tensors, ""):
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise MtptError(f"{path}: tensor {key!r} holds {bad} non-finite value(s) (NaN or infinity) of "
                            f"{value.numel()}; the file is damaged or was saved from a diverged run: do not use it.")


def _floating(value: Any, key: str):
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex():
            yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _floating(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _floating(item, f"{key}[{index}]")


def read_json(path: str | Path, expect: type = dict, what: str = "file") -> Any:
    """A JSON document of type ``expect``; a missing, non-UTF-8, malformed or mistyped file names itself."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MtptError(f"{what} {path} is missing.") from None
    except UnicodeDecodeError as err:
        raise MtptError(f"{path} is not UTF-8 text ({err}): the file is corrupted; restore it.") from None
    except OSError as err:
        raise MtptError(f"{path} cannot be read ({err}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise MtptError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): the file "
                        f"is truncated or corrupted; restore it.") from None
    if not isinstance(data, expect):
        raise MtptError(f"{path} holds a JSON {type(data).__name__}, expected a JSON "
                        f"{'object' if expect is dict else expect.__name__}: the file is damaged.")
    return data


def read_torch_state(path: str | Path) -> dict[str, Any]:
    """A ``trainer.pt``-style state (plain tensors and numbers, never pickled objects), checked to be finite where
    it holds floating-point tensors."""
    path = Path(path)
    if not path.is_file():
        raise MtptError(f"{path} is missing: the checkpoint is incomplete and cannot be resumed from. Delete the run "
                        f"folder's checkpoints (or pass --train.resume false) to start over.")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # truncated zip, unpickling refused, ...: the message must name the file
        raise MtptError(f"{path} is not a readable trainer state ({type(err).__name__}: {str(err)[:200]}): it is "
                        f"truncated or corrupted.") from None
    if not isinstance(state, dict):
        raise MtptError(f"{path} holds a {type(state).__name__}, not a trainer state: the file is damaged.")
    check_finite({k: v for k, v in state.items() if k != "rng"}, path)
    return state
