"""Opening a run folder for training: one launch at a time, resumed only under the config it was trained with,
repaired after a kill, and with logs that never repeat a step.

:func:`claim` takes the folder's lock (the main process of a launch takes it for all of its processes, and every
process learns whether it got it); :func:`open_for_training` then decides, before anything is written, whether
the run resumes (a complete ``checkpoints/last`` and ``train.resume``) or starts anew, and refuses a resume whose
config differs from the folder's own in anything that changes what is trained.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mtpt import faults
from mtpt.atomic import atomic_write_text
from mtpt.errors import MtptError
from mtpt.locking import run_folder_lock

LOGS = ("metrics.jsonl", "method_log.jsonl")
"""Per-step logs: cut back to the resumed step, so that a resumed run logs each step once."""


def shared(state, fn: Callable[[], Any]) -> Any:
    """``fn()`` on the main process only; its result, or its :class:`MtptError`, reaches every process (a check that
    failed on one process must stop all of them, not leave the others waiting in a collective)."""
    outcome: list[Any] = [None, None]
    if state.is_main_process:
        try:
            outcome[0] = fn()
        except MtptError as err:
            outcome[1] = str(err)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome)
    if outcome[1] is not None:
        raise MtptError(outcome[1])
    return outcome[0]


@contextlib.contextmanager
def claim(run_dir: str | Path, state=None) -> Iterator[None]:
    """Hold ``run_dir`` for this launch during the block; a folder another launch holds fails at once, naming it.
    ``state`` is Accelerate's process state (default: this process's)."""
    if state is None:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
    with contextlib.ExitStack() as stack:
        shared(state, lambda: stack.enter_context(run_folder_lock(run_dir)))
        faults.point("run.locked")
        yield


@dataclass
class Opening:
    """What :func:`open_for_training` found."""

    resume: bool
    """Whether ``checkpoints/last`` is to be resumed from."""
    config_changes: list[str] = field(default_factory=list)
    """Fields changed on purpose (``train.allow_config_change``), for the log."""
    repaired: list[str] = field(default_factory=list)
    """Interrupted checkpoint writes that were repaired."""


def open_for_training(config) -> Opening:
    """Main process, with the folder claimed, before anything is written: repair interrupted checkpoint writes,
    then decide between resuming and a fresh start (which removes the previous attempt's checkpoints and results,
    so that nothing of it can pass for this run's)."""
    from mtpt.run_folder import recorded_changes
    from mtpt.training.checkpoint import recover_checkpoints

    run_dir = Path(config.output_dir)
    checkpoints = run_dir / "checkpoints"
    repaired = recover_checkpoints(checkpoints)
    last = checkpoints / "last"
    if config.train.resume and last.exists():
        changes = recorded_changes(config) if (run_dir / "config.yaml").exists() else []
        if changes and not config.train.allow_config_change:
            raise MtptError(
                f"{run_dir} was trained with another configuration than the one given now: {'; '.join(changes)}. "
                "Resuming would continue its state under the new settings, and its config.yaml would no longer say "
                f"what was trained. Start a new run in another output_dir (or delete {run_dir}), restore the "
                "config, or pass --train.allow_config_change true to resume anyway (the change is logged).")
        return Opening(True, changes, repaired)
    if config.train.resume and (run_dir / "results.json").exists():
        raise MtptError(
            f"{run_dir} holds a finished run (results.json) but no checkpoints/last to resume from: training again "
            "would silently replace it. Delete the folder (or pass --train.resume false) to train it anew.")
    if checkpoints.exists():
        shutil.rmtree(checkpoints)
    for name in ("results.json", *LOGS):
        (run_dir / name).unlink(missing_ok=True)
    return Opening(False, [], repaired)


def cut_logs(run_dir: str | Path, step: int) -> None:
    """Drop the log lines of steps after ``step`` (written before a kill, after the checkpoint being resumed) and a
    last line cut off half-way, so the resumed run writes each step once."""
    for name in LOGS:
        path = Path(run_dir) / name
        if not path.exists():
            continue
        kept = [line for line in path.read_text(encoding="utf-8", errors="replace").split("\n")
                if line.strip() and _step_of(line) is not None and _step_of(line) <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _step_of(line: str) -> int | None:
    """The step a log line belongs to, None for a damaged line (cut off by a kill)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    return int(step) if isinstance(step, (int, float)) else 0
