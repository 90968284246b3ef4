"""Checkpoints: method tensors as safetensors, everything else as JSON, written atomically.

A checkpoint folder holds ``method.safetensors`` (the method's ``state_dict``), ``method_state.json`` (its
JSON extra state), ``meta.json`` (method, backbone, tasks, seed, versions, git SHA, step, metrics) and, for the
``last`` checkpoint, ``trainer.pt`` (optimizer, scheduler, RNG and sampler state: plain tensors and numbers,
read back with ``torch.load(weights_only=True)``, so no pickle is ever executed). Folders are written under a
temporary name and renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mtpt.errors import MtptError
from mtpt.contract import ExtraState

METHOD_WEIGHTS = "method.safetensors"
METHOD_STATE = "method_state.json"
META = "meta.json"
TRAINER_STATE = "trainer.pt"


def save_checkpoint(folder: str | Path, method: nn.Module, meta: dict[str, Any], trainer_state: dict | None = None) -> None:
    """Write a checkpoint folder atomically (replacing an older one)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in method.state_dict().items()}
        save_file(tensors, str(staging / METHOD_WEIGHTS))
        extra = method.extra_state() if isinstance(method, ExtraState) else {}
        (staging / METHOD_STATE).write_text(json.dumps(extra, indent=1))
        (staging / META).write_text(json.dumps(meta, indent=1, default=str))
        if trainer_state is not None:
            torch.save(trainer_state, staging / TRAINER_STATE)
            # Refuse state that could only be read back by unpickling arbitrary objects.
            torch.load(staging / TRAINER_STATE, weights_only=True)
        _swap_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, folder: Path) -> None:
    if folder.exists():
        old = folder.with_name(f".{folder.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, folder)


def load_method_state(folder: str | Path, method: nn.Module) -> dict[str, Any]:
    """Load a checkpoint's tensors and extra state into ``method``; returns its meta."""
    folder = Path(folder)
    if not (folder / METHOD_WEIGHTS).exists():
        raise MtptError(f"{folder} is not an mtpt checkpoint (no {METHOD_WEIGHTS}).")
    state = load_file(str(folder / METHOD_WEIGHTS))
    missing, unexpected = method.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MtptError(
            f"Checkpoint {folder} does not fit this method: missing {sorted(missing)}, unexpected {sorted(unexpected)}. "
            "Was it trained with another method, prompt length or task list?"
        )
    if isinstance(method, ExtraState):
        method.load_extra_state(json.loads((folder / METHOD_STATE).read_text()))
    return read_meta(folder)


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.exists():
        raise MtptError(f"{folder} is not an mtpt checkpoint (no {META}).")
    return json.loads(path.read_text())


def load_trainer_state(folder: str | Path) -> dict | None:
    path = Path(folder) / TRAINER_STATE
    return torch.load(path, weights_only=True) if path.exists() else None


def environment_versions() -> dict[str, str]:
    """Versions of the packages that determine a run's numbers, and the source's git SHA when known."""
    versions = {}
    for name in ("mtpt", "torch", "transformers", "accelerate", "peft"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    versions["git_sha"] = _git_sha()
    return versions


def run_environment(processes: int = 1, precision: str | None = None) -> dict[str, Any]:
    """What a run's numbers depend on beyond its config, for its results.json: package versions, code commit,
    torch's CPU thread count (fp32 sums are reduced in another order with another count, so last digits can
    differ), the number of processes, the autocast precision ``auto`` resolved to, and the CPU with the kernel
    set torch uses on it (AVX2 and AVX-512 kernels round differently: a run regenerated on another CPU follows
    another trajectory)."""
    return {**environment_versions(), "torch_threads": torch.get_num_threads(), "processes": processes,
            "precision": precision, "cpu": cpu_model(), "cpu_kernels": torch.backends.cpu.get_cpu_capability()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is often empty)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
