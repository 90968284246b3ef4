"""Checkpoints: method tensors as safetensors, everything else as JSON, complete or absent.

A checkpoint folder holds ``method.safetensors`` (the method's ``state_dict``), ``method_state.json`` (its
JSON extra state), ``meta.json`` (method, backbone, tasks, seed, versions, git SHA, step, metrics) and, for the
``last`` checkpoint, ``trainer.pt`` (optimizer, scheduler, RNG and sampler state: plain tensors and numbers,
read back with ``torch.load(weights_only=True)``, so no pickle is ever executed).

A checkpoint is written into a new hidden version folder beside it, every file synced, and published in one
atomic step (:func:`mtpt.atomic.publish_folder`: ``checkpoints/last`` becomes a link to the new version), so a
stop at any instant leaves the previous complete checkpoint or the new one, never none and never a mix.
:func:`recover_checkpoints` removes what a killed write left behind. Folders of the earlier layout (plain
``checkpoints/best`` and ``checkpoints/last``) are read the same way and replaced by the first new save.

Reading checks every file: a missing, truncated or non-finite file is an error naming it, never a silent fresh
start.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from mtpt import faults
from mtpt.atomic import new_version_folder, publish_folder, recover_folder, write_synced
from mtpt.errors import MtptError
from mtpt.contract import CheckpointContents, ExtraState
from mtpt.loading import check_finite, read_json, read_tensors, read_torch_state

METHOD_WEIGHTS = "method.safetensors"
METHOD_STATE = "method_state.json"
META = "meta.json"
TRAINER_STATE = "trainer.pt"
CHECKPOINT_NAMES = ("best", "last")


def save_checkpoint(folder: str | Path, method: nn.Module, meta: dict[str, Any], trainer_state: dict | None = None) -> None:
    """Write a checkpoint folder in one atomic step (replacing an older one). Non-finite tensors are refused:
    nothing is saved and the error says which tensor."""
    folder = Path(folder)
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in method.state_dict().items()}
    try:
        check_finite(tensors, f"the {folder.name} checkpoint being saved")
    except MtptError as err:
        raise MtptError(f"{err} Nothing was saved to {folder}.") from None
    files = {METHOD_WEIGHTS: safetensors_bytes(tensors)}
    extra = method.extra_state() if isinstance(method, ExtraState) else {}
    files[METHOD_STATE] = json.dumps(extra, indent=1).encode()
    files[META] = json.dumps(meta, indent=1, default=str).encode()
    if trainer_state is not None:
        buffer = io.BytesIO()
        torch.save(trainer_state, buffer)
        # Refuse state that could only be read back by unpickling arbitrary objects.
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
        files[TRAINER_STATE] = buffer.getvalue()
    version = new_version_folder(folder)
    try:
        for name, data in files.items():
            write_synced(version / name, data)
            faults.point("checkpoint.file")
        faults.point("checkpoint.files_written")
        publish_folder(version, folder)
    except BaseException:
        shutil.rmtree(version, ignore_errors=True)
        raise


def is_complete(folder: Path) -> bool:
    """Whether a checkpoint folder has its three always-present files."""
    return all((folder / name).is_file() for name in (METHOD_WEIGHTS, METHOD_STATE, META))


def recover_checkpoints(checkpoints: str | Path) -> list[str]:
    """Repair ``best`` and ``last`` after a stop during a write and remove the leftovers (versions nothing points
    at, temporary folders, the earlier layout's ``.last-old``); returns what was repaired."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return []
    repaired = [recover_folder(checkpoints / name, is_complete) for name in CHECKPOINT_NAMES]
    return [line for line in repaired if line]


def load_method_state(folder: str | Path, method: nn.Module) -> dict[str, Any]:
    """Load a checkpoint's tensors and extra state into ``method``; returns its meta."""
    return apply_checkpoint_contents(read_checkpoint_contents(folder), method, folder)


def apply_checkpoint_contents(contents: CheckpointContents, method: nn.Module, folder: str | Path) -> dict[str, Any]:
    """Load what :func:`read_checkpoint_contents` read from ``folder`` into ``method``; returns its meta."""
    folder = Path(folder)
    missing, unexpected = method.load_state_dict(contents.tensors, strict=False)
    if missing or unexpected:
        raise MtptError(
            f"Checkpoint {folder} does not fit this method: missing {sorted(missing)}, unexpected {sorted(unexpected)}. "
            "Was it trained with another method, prompt length or task list?"
        )
    if isinstance(method, ExtraState):
        try:
            method.load_extra_state(contents.extra_state)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise MtptError(f"{folder / METHOD_STATE} does not hold this method's state "
                            f"({type(err).__name__}: {err}): the file is damaged.") from None
    return contents.meta


def read_checkpoint_contents(folder: str | Path) -> CheckpointContents:
    """Everything a checkpoint holds about its method: tensors, JSON extra state and meta (a method's ``restore``
    rebuilds the module from it)."""
    folder = Path(folder)
    tensors = _read_weights(folder)
    extra = read_json(folder / METHOD_STATE, what="checkpoint file")
    return CheckpointContents(tensors, extra, read_meta(folder))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if not (folder / METHOD_WEIGHTS).exists():
        raise MtptError(f"{folder} is not an mtpt checkpoint (no {METHOD_WEIGHTS}).")
    return read_tensors(folder / METHOD_WEIGHTS, "checkpoint file")


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.exists():
        raise MtptError(f"{folder} is not an mtpt checkpoint (no {META}).")
    return read_json(path, what="checkpoint file")


def load_trainer_state(folder: str | Path) -> dict:
    """The optimizer/scheduler/RNG/sampler state of a ``last`` checkpoint; a missing or damaged ``trainer.pt`` is
    an error naming it (resuming without it would restart from step 0 on top of the trained prompt)."""
    return read_torch_state(Path(folder) / TRAINER_STATE)


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
