"""What a run folder holds, read without building anything: whether it finished, the checkpoint it stands for, the
tensors and records of that checkpoint, and whether it was recorded with the config a caller plans.

Methods read their source runs through :func:`read_run_checkpoint`; the runner (:mod:`mtpt.runner`) and the
benchmarks compare configs with :func:`refuse_changed_run`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mtpt.errors import MtptError
from mtpt.loading import read_json, read_tensors
from mtpt.training.checkpoint import METHOD_STATE, METHOD_WEIGHTS, read_meta

__all__ = ["BOOKKEEPING_FIELDS", "RunCheckpoint", "changed_fields", "is_finished", "kept_checkpoint", "located_path",
           "located_paths", "portable_path", "portable_paths", "read_recorded_method", "read_run_checkpoint",
           "read_run_config", "recorded_changes", "refuse_changed_run", "write_recorded_method", "write_run_config"]

RESULTS = "results.json"


def is_finished(run_dir: str | Path) -> bool:
    """A run has finished when its ``results.json`` exists (the trainer writes it last)."""
    return (Path(run_dir) / RESULTS).exists()


def kept_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a finished run stands for: ``best`` when the run had a validation metric, else ``last``
    (a run on source-only tasks has no validation, and its "best" would be its first evaluation)."""
    run_dir = Path(run_dir)
    results = run_dir / RESULTS
    best = run_dir / "checkpoints" / "best"
    metric = read_json(results).get("best_metric") if results.exists() else None
    if isinstance(metric, (int, float)) and math.isfinite(metric) and best.exists():
        return best
    last = run_dir / "checkpoints" / "last"
    if last.exists():
        return last
    if best.exists():
        return best
    raise MtptError(f"{run_dir} has no checkpoint: has its training run finished an evaluation?")


@dataclass
class RunCheckpoint:
    """The contents of one checkpoint of a finished run."""

    folder: Path
    """The checkpoint folder read."""
    tensors: dict[str, Tensor]
    """The method's state dict, in fp32."""
    tasks: list[str]
    """The run's tasks, in task-index order."""
    method_state: dict[str, Any]
    """The method's JSON extra state (its records)."""
    meta: dict[str, Any]


def read_run_checkpoint(path: str | Path, method: str, *, which: str = "best", weights_hash: str = "") -> RunCheckpoint:
    """Read a finished ``method`` run: its kept checkpoint (``which="best"``, see :func:`kept_checkpoint`) or its
    ``last`` one, or a checkpoint folder given directly. Refuses another method's run and, when ``weights_hash``
    is given, a run trained on other backbone weights."""
    if not str(path):
        raise MtptError(f"No run folder given: point the option at a finished {method} run.")
    folder = Path(path)
    if (folder / "checkpoints").is_dir():
        folder = kept_checkpoint(folder) if which == "best" else folder / "checkpoints" / which
    if not (folder / METHOD_WEIGHTS).exists():
        raise MtptError(f"{path} is neither a {method} run folder nor a checkpoint folder (no {folder / METHOD_WEIGHTS}).")
    meta = read_meta(folder)
    if meta.get("method") != method:
        raise MtptError(f"{path} is a {meta.get('method')!r} run; a {method} run is needed here.")
    if weights_hash and meta.get("weights_hash") not in (None, weights_hash):
        raise MtptError(f"{path} was trained on backbone {meta.get('backbone')!r} with other weights than this run's.")
    state_file = folder / METHOD_STATE
    method_state = read_json(state_file, what="checkpoint file") if state_file.exists() else {}
    tensors = {name: value.float() for name, value in read_tensors(folder / METHOD_WEIGHTS, "checkpoint file").items()}
    return RunCheckpoint(folder, tensors, list(meta.get("tasks", [])), method_state, meta)


BOOKKEEPING_FIELDS = frozenset({"output_dir", "train.resume", "train.log_every", "train.tensorboard",
                                "eval.batch_size", "train.allow_config_change", "train.divergence_factor"})
"""Fields that change where or how a run is logged, resumed or guarded, not what it trains or measures."""


def refuse_changed_run(planned) -> None:
    """Raise when ``planned.output_dir`` (a :class:`~mtpt.config.RunConfig`) holds a finished run recorded with
    another config: reusing it would silently mix protocols (e.g. after editing ``kshot`` or ``steps``). A run
    that recorded no config has nothing to compare; see :func:`recorded_changes` for what is compared. A finished
    run is judged by its config as written (the method options it states), not by defaults that changed in mtpt
    since: a default that does not apply to the run (a target initialisation, for a source stage) must not make a
    finished run unusable, and configs whose recorded cells depend on an old default pin it (the v1 benchmark
    configs do)."""
    out = Path(planned.output_dir)
    if not is_finished(out) or not (out / "config.yaml").exists():
        return
    changed = recorded_changes(planned, resolved_options=False) + written_option_changes(planned)
    if changed:
        raise MtptError(f"{out} finished with another configuration than the one it is asked to run with now "
                        f"({'; '.join(changed)}). Delete that folder to rerun it with the current config, "
                        f"or restore the config.")


def written_option_changes(planned) -> list[str]:
    """``"method.option: recorded -> planned"`` for every method option that ``planned`` writes out and that differs
    from the value the run folder's ``method_config.yaml`` recorded as resolved. A run recorded before the config
    named an option ran with its default then: naming another value now (to choose a new default, or the opposite
    of one) must not reuse it, while options left unnamed stay judged as written (:func:`refuse_changed_run`)."""
    from mtpt.config import resolved_paths

    saved_path = Path(planned.output_dir) / "method_config.yaml"
    if not isinstance(planned.method, dict) or not saved_path.exists():
        return []
    recorded = _recorded_options(saved_path)
    now = resolved_paths({"method": dict(planned.method)})["method"]
    if recorded.get("name") != now.get("name"):
        return []  # another method: config.yaml's comparison reports it
    return [f"method.{line}" for line in changed_fields(recorded, now) if not line.startswith("name:")]


def _recorded_options(path: Path) -> dict[str, Any]:
    """A run's ``method_config.yaml`` (``{method: <name>, ...every option, resolved}``) as method options with a
    ``name``, path options made absolute (the name tells which options are paths)."""
    from mtpt.config import resolved_paths

    return resolved_paths({"method": read_recorded_method(path.parent)})["method"]


def recorded_changes(planned, resolved_options: bool = True) -> list[str]:
    """``"field: recorded -> planned"`` for every field that alters what is trained or measured in which
    ``planned`` differs from the run folder's own ``config.yaml`` (and, where recorded, the method's resolved
    options in ``method_config.yaml``, unless ``resolved_options`` is false: a resume compares them, so that a run
    is never continued under a default that changed since). Paths are compared resolved on both sides (a recorded ``./`` or ``../`` path
    against the run folder, see :func:`write_run_config`), so a recorded relative path and the same file named
    absolutely agree. Not compared: ``output_dir`` (a moved folder holds the same run), the
    fields of :data:`BOOKKEEPING_FIELDS`, fields only one side has (added to mtpt later), and, for a run that
    trained nothing (no checkpoints: zero-shot), the training loop's fields except the precision its evaluation
    ran in."""
    from dataclasses import fields

    from mtpt.config import TrainConfig, method_config, resolved_paths, to_plain

    out = Path(planned.output_dir)
    ignore = BOOKKEEPING_FIELDS
    if not (out / "checkpoints").exists():
        ignore = ignore | {f"train.{f.name}" for f in fields(TrainConfig) if f.name != "precision"}
    changed = changed_fields(resolved_paths(read_run_config(out)), resolved_paths(to_plain(planned)),
                             ignore=ignore)
    if resolved_options and (out / "method_config.yaml").exists():
        spec, options = method_config(planned.method)
        recorded = _recorded_options(out / "method_config.yaml")
        now = resolved_paths({"method": {"name": spec.name, **to_plain(options)}})["method"]
        changed += [f"method.{line}" for line in changed_fields(recorded, now)
                    if not line.startswith("name:")]  # a changed name is reported by config.yaml already
    return list(dict.fromkeys(changed))


def changed_fields(recorded: Any, planned: Any, path: str = "", ignore: frozenset[str] = frozenset()) -> list[str]:
    """``"field: recorded -> planned"`` for every value that differs, except at the dotted paths in ``ignore``.
    Fields only one side has are ignored too: a field added to mtpt later (or removed) says nothing about the
    protocol the run was trained with."""
    if path in ignore:
        return []
    if isinstance(recorded, dict) and isinstance(planned, dict):
        return [line for key in recorded.keys() & planned.keys()
                for line in changed_fields(recorded[key], planned[key], f"{path}.{key}" if path else str(key),
                                           ignore)]
    return [] if recorded == planned else [f"{path}: {recorded!r} -> {planned!r}"]


# --- the config a run folder records ------------------------------------------------------------------------------
RUN_RELATIVE = ("./", "../")
"""How a recorded path relative to its run folder starts. Other relative paths in a recorded config (runs written
before mtpt recorded paths this way) are relative to the working folder, as in any config file."""


def write_run_config(run_dir: str | Path, config, method: str, options) -> None:
    """Write a run's ``config.yaml`` (the :class:`~mtpt.config.RunConfig` as planned) and ``method_config.yaml``
    (every option of ``method`` as resolved, ``options`` its config object) into ``run_dir``, paths written by
    :func:`portable_paths`."""
    from mtpt.config import dump_yaml, to_plain

    run_dir = Path(run_dir)
    dump_yaml(portable_paths(to_plain(config), run_dir), run_dir / "config.yaml")
    write_recorded_method(run_dir, {"name": method, **to_plain(options)})


def write_recorded_method(run_dir: Path, options: dict[str, Any]) -> None:
    """Write ``method_config.yaml`` (``{method: <name>, ...options}``) from method options with a ``name`` whose
    paths are absolute, writing them by :func:`portable_paths`."""
    from mtpt.config import dump_yaml

    recorded = portable_paths({"method": options}, run_dir)["method"]
    dump_yaml({"method": recorded.pop("name"), **recorded}, run_dir / "method_config.yaml")


def read_recorded_method(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's ``method_config.yaml`` as method options with a ``name`` (every option as resolved when the
    run started), its paths relative to the folder made absolute (:func:`located_paths`)."""
    from mtpt.config import load_yaml

    saved = load_yaml(Path(run_dir) / "method_config.yaml")
    options = {"name": saved.get("method"), **{k: v for k, v in saved.items() if k != "method"}}
    return located_paths({"method": options}, run_dir)["method"]


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's ``config.yaml`` in plain form, its paths relative to the folder made absolute
    (:func:`located_paths`): ready for :func:`mtpt.config.run_config_from_dict` from any working folder."""
    from mtpt.config import load_yaml

    return located_paths(load_yaml(Path(run_dir) / "config.yaml"), run_dir)


def portable_paths(plain: dict[str, Any], run_dir: str | Path, roots: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A run config in plain form (paths absolute) as its run folder records it: a path inside the working folder,
    when the run folder is inside it too, is written relative to the run folder (``./...`` or ``../...``), so that
    a project folder moved or cloned whole (a repository with its recorded benchmark runs) still finds what its runs
    name; other paths stay absolute (data or a model elsewhere on the machine). ``roots`` (default: the working
    folder) are the folders that move whole (:func:`portable_path`)."""
    from mtpt.config import map_paths

    return map_paths(plain, lambda value: portable_path(value, run_dir, roots))


def portable_path(value: str, run_dir: str | Path, roots: tuple[Path, ...] = ()) -> str:
    """``value`` (a path) as ``run_dir`` records it: relative to ``run_dir`` (``./...`` or ``../...``) when both lie
    in one of ``roots`` (default: the working folder), which are taken to move or be cloned whole; otherwise (a
    relative value, a path elsewhere on the machine) unchanged."""
    path, home = Path(value), Path(run_dir).resolve()
    if not path.is_absolute():
        return value
    for root in roots or (Path.cwd(),):
        root = root.resolve()
        if home.is_relative_to(root) and path.is_relative_to(root):
            written = Path(os.path.relpath(path, home)).as_posix()
            return written if written == ".." or written.startswith("../") else f"./{written}"
    return value


def located_paths(plain: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """The inverse of :func:`portable_paths` for a config read from ``run_dir``: every ``./`` or ``../`` path made
    absolute against the run folder. Other relative paths (written before runs recorded their paths relative to
    themselves) are left to be read against the working folder."""
    from mtpt.config import map_paths

    return map_paths(plain, lambda value: located_path(value, run_dir))


def located_path(value: str, run_dir: str | Path) -> str:
    """The inverse of :func:`portable_path`: a ``./`` or ``../`` path made absolute against ``run_dir``; any other
    value unchanged."""
    from mtpt.config import resolve_path

    return resolve_path(str(Path(run_dir) / value)) if value.startswith(RUN_RELATIVE) else value
