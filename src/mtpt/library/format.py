"""The source-prompt library: the one on-disk format every transfer method reads.

A library is a folder of prompts tuned on single tasks, all started from **one** stored initial prompt
``P_init`` so that their task vectors ``tau_k = P*_k - P_init`` are comparable (TPV, DTVG, METHODS.md §5)::

    LIBRARY/
      manifest.json              format, backbone + weights hash, L, d, one entry per (task, seed)
      init.safetensors           P_init  [L, d]   (key "prompt")
      <task>/seed-<n>/prompt.safetensors          the tuned prompt [L, d] (key "prompt")
      <task>/seed-<n>/meta.json                   task, seed, metrics, steps, training run (paths relative to it)
      _mixture/seed-<n>/...                       the prompt tuned on the mixture of sources (generic SPoT)

Entries are written under a temporary name and renamed into place, and the manifest is replaced atomically
after the entry exists, so a crash leaves either the old library or the new one, never a half-written entry
listed in the manifest. Processes adding entries to one library side by side (different tasks or seeds) merge
their rows into the manifest on disk under a lock file beside it. A library is bound to one backbone (name and weights hash) and one prompt shape:
:meth:`SourceLibrary.check_compatible` refuses any other.

Reading API (what methods and DTVG use): :meth:`SourceLibrary.open`, :attr:`SourceLibrary.entries`,
:attr:`SourceLibrary.tasks`, :meth:`SourceLibrary.init_prompt`, :meth:`SourceLibrary.prompt`,
:meth:`SourceLibrary.prompts`, :meth:`SourceLibrary.task_vector`, :meth:`SourceLibrary.task_vectors`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from mtpt.atomic import atomic_write_text, fsync_folder, write_synced
from mtpt.errors import MtptError
from mtpt.loading import read_json
from mtpt.locking import exclusive
from mtpt.prompt_io import load_prompt_tensor, save_prompt

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INIT_FILE = "init.safetensors"
PROMPT_FILE = "prompt.safetensors"
ENTRY_META = "meta.json"
MIXTURE = "_mixture"
"""Task name of the entry tuned on the mixture of all sources (stored under ``_mixture/``)."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

__all__ = [
    "FORMAT_VERSION", "INIT_FILE", "MANIFEST", "MIXTURE", "PROMPT_FILE", "LibraryEntry", "SourceLibrary",
    "located_meta", "portable_meta",
]


@dataclass(frozen=True)
class LibraryEntry:
    """One tuned prompt of the library (a manifest row)."""

    task: str
    """Task name (``_mixture`` for the prompt tuned on the mixture of ``sources``)."""
    seed: int
    """Training seed (sampling order; the initial prompt is the library's, whatever the seed)."""
    path: str
    """Folder of the entry, relative to the library root (``<task>/seed-<n>``)."""
    best_metric: float | None = None
    """Best validation metric of the run (None for tasks without validation data)."""
    metric_for_best: str = "score"
    steps: int = 0
    """Optimizer steps trained."""
    best_step: int = 0
    """Step of the kept checkpoint."""
    sources: tuple[str, ...] = ()
    """For the mixture entry: the tasks it was tuned on."""
    constant_score: float | None = None
    """The best validation score a constant answer gets on the same split (the bar for ``learned``); None when
    unknown (no validation data, a generation or regression task, an entry recorded before this was measured)."""
    learned: bool | None = None
    """Whether ``best_metric`` cleared ``constant_score`` by the source stage's ``learned_margin``; None when
    unknown."""

    @property
    def is_mixture(self) -> bool:
        return self.task == MIXTURE

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LibraryEntry":
        """An entry from its manifest row; a row of the wrong shape or types raises ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry must be a JSON object, got {data!r}")
        for key, kind in (("task", str), ("seed", int), ("path", str)):
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise ValueError(f"entry {data.get('task')!r}: {key!r} must be a {kind.__name__}, "
                                 f"got {data.get(key)!r}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["sources"] = tuple(known.get("sources", ()))
        return cls(**known)


@dataclass
class _Manifest:
    backbone: str
    weights_hash: str
    prompt_length: int
    hidden_size: int
    init: dict[str, Any] = field(default_factory=dict)
    """How P_init was made (kind, seed, ...), for the record."""
    entries: list[LibraryEntry] = field(default_factory=list)
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "backbone": self.backbone, "weights_hash": self.weights_hash,
            "prompt_length": self.prompt_length, "hidden_size": self.hidden_size, "init": self.init,
            "init_path": INIT_FILE, "entries": [e.to_json() for e in self.entries],
        }


def entry_folder(task: str, seed: int) -> str:
    """Relative folder of an entry; refuses task names that are not plain folder names."""
    if not _SAFE_NAME.match(task) and task != MIXTURE:
        raise MtptError(
            f"Task name {task!r} cannot name a library folder: use letters, digits, '.', '_', '+' or '-' "
            "(give user task specs a plain 'name')."
        )
    return f"{task}/seed-{int(seed)}"


class SourceLibrary:
    """A source-prompt library folder (see the module docstring). Open with :meth:`open`, make with :meth:`create`."""

    def __init__(self, root: Path, manifest: _Manifest):
        self.root = root
        self._manifest = manifest

    # --- opening and creating ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "SourceLibrary":
        """Open an existing library; the message of a missing or foreign folder says how to make one."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.exists():
            raise MtptError(
                f"{root} is not a source-prompt library (no {MANIFEST}). Build one with "
                "`mtpt train-source CONFIG` (see configs/library/english-sources.yaml)."
            )
        data = read_json(manifest_path, what="Library manifest")
        if data.get("format") != FORMAT_VERSION:
            raise MtptError(
                f"{root} has library format {data.get('format')!r}; this mtpt reads format {FORMAT_VERSION}."
            )
        try:
            manifest = _Manifest(
                backbone=str(data["backbone"]), weights_hash=str(data["weights_hash"]),
                prompt_length=int(data["prompt_length"]), hidden_size=int(data["hidden_size"]),
                init=dict(data.get("init", {})), entries=[LibraryEntry.from_json(e) for e in data.get("entries", [])],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MtptError(f"{manifest_path} is damaged ({type(err).__name__}: {err}); restore it or rebuild the "
                            "library.") from None
        library = cls(root, manifest)
        for entry in manifest.entries:
            library.entry_dir(entry)  # every entry inside the library, checked before anything is read
        return library

    @classmethod
    def create(
        cls, path: str | Path, *, backbone: str, weights_hash: str, init_prompt: Tensor, init_info: dict | None = None
    ) -> "SourceLibrary":
        """Make a new, empty library around ``init_prompt`` (``[L, d]``); refuses an existing library."""
        root = Path(path)
        if (root / MANIFEST).exists():
            raise MtptError(f"{root} already holds a library: open it with SourceLibrary.open to extend it.")
        if init_prompt.dim() != 2:
            raise MtptError(f"The initial prompt must be [L, d], got shape {tuple(init_prompt.shape)}.")
        root.mkdir(parents=True, exist_ok=True)
        save_prompt(init_prompt, root / INIT_FILE)  # atomic: a reader never sees half a file
        length, dim = (int(n) for n in init_prompt.shape)
        library = cls(root, _Manifest(backbone, weights_hash, length, dim, dict(init_info or {})))
        library._write_manifest()
        return library

    # --- compatibility -----------------------------------------------------------------------------------------
    @property
    def backbone(self) -> str:
        return self._manifest.backbone

    @property
    def weights_hash(self) -> str:
        return self._manifest.weights_hash

    @property
    def prompt_length(self) -> int:
        return self._manifest.prompt_length

    @property
    def hidden_size(self) -> int:
        return self._manifest.hidden_size

    @property
    def init_info(self) -> dict[str, Any]:
        return dict(self._manifest.init)

    def check_compatible(
        self, backbone_name: str, weights_hash: str, prompt_length: int | None = None, hidden_size: int | None = None
    ) -> None:
        """Refuse a backbone with other weights, or another prompt shape (None skips that check).

        The weights hash decides (a renamed copy of the same weights is accepted); the name is only reported.
        """
        if weights_hash and self.weights_hash and weights_hash != self.weights_hash:
            raise MtptError(
                f"Library {self.root} was built on backbone {self.backbone!r} (weights {self.weights_hash}), "
                f"but this run uses {backbone_name!r} (weights {weights_hash}). Prompts do not transfer across "
                "backbones: build a library for this backbone with `mtpt train-source`."
            )
        if hidden_size is not None and hidden_size != self.hidden_size:
            raise MtptError(
                f"Library {self.root} holds prompts of hidden size {self.hidden_size}, but the backbone has "
                f"{hidden_size}: build a library for this backbone."
            )
        if prompt_length is not None and prompt_length != self.prompt_length:
            raise MtptError(
                f"Library {self.root} holds prompts of length {self.prompt_length}, but {prompt_length} was asked "
                f"for: set prompt_length: {self.prompt_length}, or build another library."
            )

    # --- reading -----------------------------------------------------------------------------------------------
    @property
    def entries(self) -> list[LibraryEntry]:
        """Every entry, in the order they were added."""
        return list(self._manifest.entries)

    @property
    def tasks(self) -> list[str]:
        """Task names with at least one entry, in first-added order (the mixture excluded)."""
        return list(dict.fromkeys(e.task for e in self._manifest.entries if not e.is_mixture))

    def has(self, task: str, seed: int) -> bool:
        return any(e.task == task and e.seed == seed for e in self._manifest.entries)

    def entry(self, task: str, seed: int | None = None) -> LibraryEntry:
        """The entry of ``task`` for ``seed``; with ``seed=None`` the seed with the best validation metric
        (ties and missing metrics: the lowest seed)."""
        found = [e for e in self._manifest.entries if e.task == task]
        if not found:
            what = f"no prompt for {task!r}"
            if task == MIXTURE:
                what = "no mixture prompt (train-source with mixture: true)"
            raise MtptError(
                f"Library {self.root} has {what}. It holds: {', '.join(self.tasks) or 'nothing yet'}. "
                "Add it with `mtpt train-source`."
            )
        if seed is not None:
            for e in found:
                if e.seed == seed:
                    return e
            raise MtptError(
                f"Library {self.root} has {task!r} for seeds {sorted(e.seed for e in found)}, not seed {seed}."
            )
        return min(found, key=lambda e: (-_metric_key(e.best_metric), e.seed))

    def entry_dir(self, entry: LibraryEntry) -> Path:
        """The folder of ``entry``, resolved; a manifest path that leads outside the library (``..``, an absolute
        path, a link pointing out) is refused: a library reads only its own folder."""
        root = self.root.resolve()
        relative = Path(entry.path)
        folder = (root / relative).resolve()
        if relative.is_absolute() or not folder.is_relative_to(root) or folder == root:
            raise MtptError(
                f"{self.root / MANIFEST}: entry {entry.task!r} seed {entry.seed} has path {entry.path!r}, which "
                f"leads outside the library (to {folder}). Entry paths are relative folders inside the library "
                f"({entry_folder(entry.task, entry.seed)!r}): fix or rebuild the manifest.")
        return folder

    def init_prompt(self) -> Tensor:
        """``P_init`` ``[L, d]`` (fp32), the start of every entry."""
        return self._load(self.root / INIT_FILE)

    def prompt(self, task: str, seed: int | None = None) -> Tensor:
        """The tuned prompt ``P*`` of ``task`` ``[L, d]`` (seed as in :meth:`entry`)."""
        return self._load(self.entry_dir(self.entry(task, seed)) / PROMPT_FILE)

    def mixture_prompt(self, seed: int | None = None) -> Tensor:
        """The prompt tuned on the mixture of sources (generic SPoT)."""
        return self.prompt(MIXTURE, seed)

    def prompts(self, tasks: Sequence[str], seed: int | None = None) -> Tensor:
        """Tuned prompts of ``tasks`` stacked as ``[S, L, d]`` (``S = 0`` gives an empty tensor)."""
        if not tasks:
            return torch.zeros(0, self.prompt_length, self.hidden_size)
        return torch.stack([self.prompt(task, seed) for task in tasks])

    def task_vector(self, task: str, seed: int | None = None) -> Tensor:
        """``tau = P*_task - P_init`` ``[L, d]``."""
        return self.prompt(task, seed) - self.init_prompt()

    def task_vectors(self, tasks: Sequence[str] | None = None, seed: int | None = None) -> Tensor:
        """Task vectors of ``tasks`` (default: every task, mixture excluded) as ``[S, L, d]``."""
        tasks = self.tasks if tasks is None else list(tasks)
        return self.prompts(tasks, seed) - self.init_prompt().unsqueeze(0)

    def entry_meta(self, task: str, seed: int | None = None) -> dict[str, Any]:
        """The ``meta.json`` of an entry (training run, final metrics, ...) as written: its paths may be relative to
        the entry's folder (:meth:`entry_run_dir` and :meth:`entry_run_config` locate them)."""
        return read_json(self.entry_dir(self.entry(task, seed)) / ENTRY_META, what="Library entry file")

    def entry_run_dir(self, task: str, seed: int | None = None) -> Path | None:
        """The folder of the run that trained the entry (None when its ``meta.json`` names none)."""
        run_dir = self._located_meta(task, seed).get("run_dir")
        return Path(run_dir) if run_dir else None

    def entry_run_config(self, task: str, seed: int | None = None) -> dict[str, Any] | None:
        """The run config (plain form, paths absolute) that trained the entry, or None when it records none."""
        return self._located_meta(task, seed).get("run_config") or None

    def _located_meta(self, task: str, seed: int | None) -> dict[str, Any]:
        return located_meta(self.entry_meta(task, seed), self.entry_dir(self.entry(task, seed)))

    def _load(self, path: Path) -> Tensor:
        prompt = load_prompt_tensor(path).float()
        if tuple(prompt.shape) != (self.prompt_length, self.hidden_size):
            raise MtptError(
                f"{path} has shape {tuple(prompt.shape)}, but library {self.root} declares "
                f"({self.prompt_length}, {self.hidden_size}); the library is damaged: rebuild that entry."
            )
        return prompt

    # --- writing -----------------------------------------------------------------------------------------------
    def add_entry(self, entry: LibraryEntry, prompt: Tensor, meta: dict[str, Any], *, overwrite: bool = False) -> None:
        """Store a tuned prompt as a new entry (atomically); an existing (task, seed) needs ``overwrite``."""
        if tuple(prompt.shape) != (self.prompt_length, self.hidden_size):
            raise MtptError(
                f"Prompt for {entry.task!r} has shape {tuple(prompt.shape)}; library {self.root} holds "
                f"({self.prompt_length}, {self.hidden_size})."
            )
        if self.has(entry.task, entry.seed) and not overwrite:
            raise MtptError(f"Library {self.root} already has {entry.task!r} seed {entry.seed}: pass overwrite.")
        if entry.path != entry_folder(entry.task, entry.seed):
            raise MtptError(f"Entry path {entry.path!r} must be {entry_folder(entry.task, entry.seed)!r}.")
        target = self.root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            save_prompt(prompt, staging / PROMPT_FILE)
            recorded = {**portable_meta(meta, target, self.root), "entry": entry.to_json()}
            write_synced(staging / ENTRY_META, json.dumps(recorded, indent=1, default=str).encode())
            fsync_folder(staging)
            _replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # the lock file is a sibling of the library folder (the folder holds exactly the library)
        with exclusive(self.root.parent / f".{self.root.name}.manifest.lock"):
            # another process may have added entries since this one opened the library (workers training sources
            # side by side): merge into the manifest on disk, not into this process's copy of it
            self._manifest.entries = SourceLibrary.open(self.root).entries
            # An overwritten entry keeps its place, so task order (and source indices derived from it) is stable.
            before = list(self._manifest.entries)
            same = [i for i, e in enumerate(before) if e.task == entry.task and e.seed == entry.seed]
            after = list(before)
            if same:
                after[same[0]] = entry
            else:
                after.append(entry)
            self._manifest.entries = after
            try:
                self._write_manifest()
            except BaseException:
                self._manifest.entries = before  # memory stays what is on disk
                raise

    def _write_manifest(self) -> None:
        atomic_write_text(self.root / MANIFEST, json.dumps(self._manifest.to_json(), indent=1))

    def __repr__(self) -> str:
        return (f"SourceLibrary({str(self.root)!r}, backbone={self.backbone!r}, L={self.prompt_length}, "
                f"tasks={self.tasks})")


def portable_meta(meta: dict[str, Any], entry_dir: Path, root: Path) -> dict[str, Any]:
    """An entry's ``meta.json`` as written: its training run's folder (``run_dir``) and config (``run_config``, plain
    form) name what lies in the library ``root`` or in the working folder relative to the entry folder, as a run
    folder records its config (:func:`mtpt.run_folder.portable_paths`), so that a library moved or cloned whole
    still names its own runs and ``P_init``; other paths stay absolute."""
    from mtpt.config import resolve_path, resolved_paths
    from mtpt.run_folder import portable_path, portable_paths

    roots = (Path(root), Path.cwd())
    out = dict(meta)
    if isinstance(out.get("run_dir"), str):
        out["run_dir"] = portable_path(resolve_path(out["run_dir"]), entry_dir, roots)
    if isinstance(out.get("run_config"), dict):
        plain = portable_paths(resolved_paths(out["run_config"]), entry_dir, roots)
        if isinstance(plain.get("output_dir"), str):
            plain["output_dir"] = portable_path(resolve_path(plain["output_dir"]), entry_dir, roots)
        out["run_config"] = plain
    return out


def located_meta(meta: dict[str, Any], entry_dir: Path) -> dict[str, Any]:
    """The inverse of :func:`portable_meta` for the ``meta.json`` of the entry in ``entry_dir``: the paths of its
    training run's folder and config that are relative to the entry (``./``, ``../``) made absolute; other values
    (older entries' paths relative to the working folder) unchanged."""
    from mtpt.run_folder import located_path, located_paths

    out = dict(meta)
    if isinstance(out.get("run_dir"), str):
        out["run_dir"] = located_path(out["run_dir"], entry_dir)
    if isinstance(out.get("run_config"), dict):
        plain = located_paths(out["run_config"], entry_dir)
        if isinstance(plain.get("output_dir"), str):
            plain["output_dir"] = located_path(plain["output_dir"], entry_dir)
        out["run_config"] = plain
    return out


def _metric_key(value: float | None) -> float:
    return -math.inf if value is None or not math.isfinite(value) else float(value)


def _replace_dir(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, moving an older ``target`` aside first (rename is atomic, replace is not)."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
