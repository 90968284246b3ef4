"""Cross-process locks on lock files, for work that several processes may start at once: converting a backbone,
training a benchmark's shared stages, claiming a benchmark cell, training into a run folder.

``flock`` locks belong to an open file and end with the process, so a crashed holder never leaves a stale lock.
The holder writes who it is (pid, host, start time) into the lock file, so a refused claim can name it.
Where the OS has no ``flock`` (Windows) nothing is serialised and every claim succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from mtpt.errors import MtptError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def lock_path_for(folder: str | Path) -> Path:
    """The lock file that guards ``folder``: a hidden sibling (``.<name>.lock``), so the folder's own contents stay
    exactly what the run wrote."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def exclusive(lock_path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``lock_path`` for the ``with`` block; yields whether it was acquired.

    ``wait=True`` blocks until the holder releases it (always yields True); ``wait=False`` yields False at once when
    another process holds it, so the caller can move on to other work."""
    if fcntl is None:
        yield True
        return
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    key = str(Path(lock_path).resolve())
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        _HELD[key] = _HELD.get(key, 0) + 1
        _record_holder(handle)
        try:
            yield True
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


_HELD: dict[str, int] = {}
"""Lock files this process holds now (resolved path -> depth): a run folder claimed by a benchmark worker's cell
lock is the same claim as the trainer's, so :func:`run_folder_lock` passes through it."""


def _record_holder(handle) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n")
    handle.flush()


def holder(lock_path: str | Path) -> str:
    """Who holds (or last held) ``lock_path``: ``pid N on host H since T``, from what the holder wrote."""
    try:
        data = json.loads(Path(lock_path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or "pid" not in data:
        return "another process (it has not recorded its pid yet)"
    return f"pid {data['pid']} on host {data.get('host', '?')} since {data.get('started', '?')}"


@contextlib.contextmanager
def run_folder_lock(folder: str | Path) -> Iterator[None]:
    """Claim run folder ``folder`` for this process for the ``with`` block, or fail at once naming the holder.

    Claims nest: a process that holds the folder's lock already (a benchmark worker's cell claim, an outer
    ``train()``) passes through. The lock file is the folder's hidden sibling (:func:`lock_path_for`)."""
    lock = lock_path_for(folder)
    if str(lock.resolve()) in _HELD:
        yield
        return
    with exclusive(lock, wait=False) as mine:
        if not mine:
            raise MtptError(
                f"Run folder {folder} is in use by {holder(lock)} (lock file {lock}). Two runs writing one folder "
                "would mix their checkpoints: wait for that run to finish, stop it, or choose another output_dir."
            )
        yield


def held_elsewhere(lock_path: str | Path) -> bool:
    """Whether another process holds ``lock_path`` now (a snapshot, for status displays; never for claiming)."""
    if not Path(lock_path).exists():
        return False
    with exclusive(lock_path, wait=False) as mine:
        return not mine
