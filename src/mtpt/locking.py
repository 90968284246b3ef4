"""Cross-process locks on lock files, for work that several processes may start at once: converting a backbone,
training a benchmark's shared stages, claiming a benchmark cell.

``flock`` locks belong to an open file and end with the process, so a crashed holder never leaves a stale lock.
Where the OS has no ``flock`` (Windows) nothing is serialised and every claim succeeds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

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
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def held_elsewhere(lock_path: str | Path) -> bool:
    """Whether another process holds ``lock_path`` now (a snapshot, for status displays; never for claiming)."""
    if not Path(lock_path).exists():
        return False
    with exclusive(lock_path, wait=False) as mine:
        return not mine
