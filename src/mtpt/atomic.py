"""Whole-or-nothing file and folder writes: readers (another worker, a crashed run's resume) never see half a file
or half a folder, and two writers of the same file leave one whole version, not a mix.

Files go through a temporary file in the same folder, ``fsync`` and an atomic rename (then the folder itself is
synced, so the rename survives a power cut). Folders (checkpoints) are written under a versioned hidden name
(``.<name>-v<random>``) and published by atomically replacing a relative symbolic link ``<name>`` with one that
points at the new version: at every instant ``<name>`` is either the old complete folder or the new complete one.
Readers open ``<name>/file`` as before. Versions no link points at (a write killed half-way, the previous version)
are removed by the next publish or by :func:`recover_folder`.

A plain folder ``<name>`` (written before links were used, or on a system that cannot make links, e.g. Windows
without developer mode) is first renamed aside to ``.<name>-old``; the one stop point that leaves no ``<name>``,
right after that rename, is repaired by :func:`recover_folder` from the complete ``.<name>-old``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mtpt import faults

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_folder", "new_version_folder", "publish_folder",
           "recover_folder", "versions_of"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file through a temporary file in the same folder, ``fsync`` and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_synced(path: Path, data: bytes) -> None:
    """Write a new file inside a folder that is not published yet (no rename needed), and ``fsync`` it."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Make the entries of ``folder`` (new names, renames) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- versioned folders behind a link ----------------------------------------------------------------------------
def _prefix(name: str) -> str:
    return f".{name}-"


def new_version_folder(target: str | Path) -> Path:
    """An empty hidden folder beside ``target`` to write the next version of it into."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{_prefix(target.name)}v", dir=target.parent))


def versions_of(target: str | Path) -> list[Path]:
    """Hidden siblings that belong to ``target`` (versions, temporary folders, an older swap's leftovers)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(_prefix(target.name)))


def publish_folder(version: Path, target: str | Path) -> None:
    """Make the complete folder ``version`` (from :func:`new_version_folder`) the one ``target`` names, in one
    atomic step, then remove the versions nothing points at any more."""
    target = Path(target)
    for child in version.iterdir():  # the files' data first, then the names
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_folder(version)
    faults.point("publish.before_link")
    if target.exists() and not target.is_symlink():
        # A plain folder (the earlier layout, or a system without links) cannot be replaced by a rename: it is
        # renamed aside first. A stop right after leaves no target but a complete .<name>-old, which
        # recover_folder puts back.
        old = target.with_name(f"{_prefix(target.name)}old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        fsync_folder(target.parent)
        faults.point("publish.between_renames")
    if not _link(version, target):
        os.replace(version, target)  # no links on this system: the version becomes the folder itself
    fsync_folder(target.parent)
    faults.point("publish.after_link")
    _remove_unused(target)


def _link(version: Path, target: Path) -> bool:
    """Point ``target`` at ``version`` by replacing it with a new relative link; False where links are refused."""
    tmp = target.with_name(f"{_prefix(target.name)}link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(version.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        return False
    faults.point("publish.link_made")
    os.replace(tmp, target)  # atomic: target is the old link (or absent), then the new one
    return True


def _current(target: Path) -> Path | None:
    """The version folder ``target`` points at (the folder itself for a plain folder), None when absent."""
    if target.is_symlink():
        return target.parent / os.readlink(target) if target.exists() else None
    return target if target.exists() else None


def _remove_unused(target: Path) -> None:
    current = _current(target)
    for path in versions_of(target):
        if current is not None and path.resolve() == current.resolve():
            continue
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def recover_folder(target: str | Path, complete) -> str | None:
    """Repair ``target`` after a stop at any point of a publish, and remove the leftovers (half-written versions,
    temporary links, an older swap's ``.<name>-old``). ``complete(folder)`` says whether a folder holds a whole
    version. Returns a line saying what was repaired, or None when nothing was.

    ``target`` missing (or a dangling link) while a complete ``.<name>-old`` exists means a stop right after a
    plain folder was renamed aside: it is put back. Otherwise the target stays as it is (a link always names a
    complete version: a version is linked only once it is written and synced)."""
    target = Path(target)
    repaired = None
    if _current(target) is None:
        old = target.with_name(f"{_prefix(target.name)}old")
        if old.is_dir() and complete(old):
            if target.is_symlink():
                target.unlink()
            os.replace(old, target)
            fsync_folder(target.parent)
            repaired = f"restored {target} from {old.name} (a swap was interrupted between its two renames)"
    _remove_unused(target)
    return repaired
