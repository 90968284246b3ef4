"""Working with finished run folders: rebuild, re-evaluate, export."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from mtpt.atomic import atomic_write_text
from mtpt.backbones import Backbone, load_backbone, local_reference
from mtpt.config import DataConfig, RunConfig, method_config, run_config_from_dict, validate
from mtpt.errors import MtptError, MtptWarning
from mtpt.contract import CheckpointContents, ExtraState, TaskPrompts
from mtpt.peft_io import export_peft_prompt
from mtpt.precision import make_accelerator
from mtpt.prompt_io import save_prompt
from mtpt.run_folder import read_run_config
from mtpt.runner import build, finished_prerequisites
from mtpt.runtime import RunParts, build_run
from mtpt.training.checkpoint import apply_checkpoint_contents, read_checkpoint_contents
from mtpt.training.evaluate import evaluate_sets, load_eval_sets


def checkpoint_dir(run_dir: str | Path, which: str) -> Path:
    """``best`` / ``last`` inside a run folder, or a checkpoint folder given directly."""
    if which in ("best", "last"):
        folder = Path(run_dir) / "checkpoints" / which
    else:
        folder = Path(which)
    if not folder.exists():
        raise MtptError(f"No checkpoint at {folder}: has `mtpt train` finished an evaluation in {run_dir}?")
    return folder


def load_run(run_dir: str | Path, which: str = "best", backbone: Backbone | None = None) -> RunParts:
    """Rebuild a trained run's model from its resolved config and load a checkpoint into it.

    The run is rebuilt as it was trained (its method reads the files its options name: an init prompt, a source
    library, its prerequisite runs, which must have finished; none is trained here). Where that fails (a run folder
    copied without its library) and the method's registry entry has ``restore``, the model is rebuilt from the
    checkpoint alone, with a warning that says what was missing. A method with nothing to load (no tensors and no
    extra state, such as ``zero_shot``) needs no checkpoint: ``mtpt train`` writes such a run's config and results
    but no checkpoints, and nothing is loaded, whatever ``which`` says."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.exists():
        raise MtptError(f"{run_dir} has no config.yaml: not a folder written by `mtpt train`.")
    try:
        config = run_config_from_dict(read_run_config(run_dir))
    except MtptError as err:
        message = str(err)
        raise MtptError(message if str(config_path) in message else f"{config_path}: {message}") from None
    config.output_dir = str(run_dir)  # the folder may have moved; its prerequisite runs live in sub-folders of it
    backbone = backbone or load_backbone(config.backbone)
    contents = None  # the restore path reads the checkpoint before the module exists: read once
    try:
        parts = build_run(config, backbone, finished_prerequisites(config))
    except MtptError as err:
        parts, contents = _restored(config, which, backbone, err)
    if not has_state(parts.model.method):
        return parts
    folder = checkpoint_dir(run_dir, which)
    meta = apply_checkpoint_contents(contents or read_checkpoint_contents(folder), parts.model.method, folder)
    if meta.get("weights_hash") not in (None, parts.backbone.weights_hash):
        raise MtptError(
            f"Checkpoint was trained on backbone {meta.get('backbone')!r} with other weights "
            f"({meta.get('weights_hash')} vs {parts.backbone.weights_hash})."
        )
    return parts


class RestoredFromCheckpointWarning(MtptWarning):
    """A trained run rebuilt from its checkpoint alone, because what its config names is gone."""


def _restored(config: RunConfig, which: str, backbone: Backbone,
              build_error: MtptError) -> tuple[RunParts, CheckpointContents]:
    """The run rebuilt from its checkpoint by its method's ``restore``, and the checkpoint's contents; the build's
    error when it cannot be."""
    run_dir = Path(config.output_dir)
    spec, _ = method_config(config.method)
    if spec.restore is None:
        raise _rebuild_error(run_dir, build_error, "") from None
    try:
        folder = checkpoint_dir(run_dir, which)
    except MtptError:
        raise _rebuild_error(run_dir, build_error, "") from None
    try:
        contents = read_checkpoint_contents(folder)
        parts = build_run(config, backbone, restore_from=contents)
    except MtptError as err:
        raise _rebuild_error(run_dir, build_error, f" Rebuilding it from its checkpoint alone failed too: {err}") \
            from None
    warnings.warn(f"{run_dir}: rebuilt from its checkpoint {folder} alone, as rebuilding it as it was trained "
                  f"failed: {build_error}", RestoredFromCheckpointWarning, stacklevel=3)
    return parts, contents


def _rebuild_error(run_dir: Path, build_error: MtptError, more: str) -> MtptError:
    # the method is built as it was trained before its checkpoint is loaded, so a file its options name (an
    # init prompt, a source library) must still be there: say so, or the error reads like a training problem
    return MtptError(f"{run_dir}: rebuilding the trained run from its config.yaml failed: {build_error} A run is "
                     f"rebuilt as it was trained (its backbone, tasks, and the files its method options name, such "
                     f"as an init prompt or a source library), then its checkpoint is loaded: restore what is "
                     f"missing, or edit {run_dir / 'config.yaml'} to name where it lies now.{more}")


def has_state(method) -> bool:
    """Whether a method has anything a checkpoint would restore: tensors or JSON extra state."""
    return bool(method.state_dict()) or isinstance(method, ExtraState)


def zero_shot_config(backbone: str, tasks: list[str], data_root: str | None = None) -> RunConfig:
    """The run config of a bare backbone on ``tasks`` (the ``zero_shot`` method), with the default evaluation
    settings, for zero-shot ``mtpt evaluate`` / ``predict`` / ``serve``."""
    if not tasks:
        raise MtptError("A zero-shot evaluation needs at least one task (a registered name or a YAML task spec).")
    return RunConfig(backbone=backbone, tasks=list(tasks), method={"name": "zero_shot"},
                     data=DataConfig(data_root=data_root))


def evaluate_run(run_dir, which="best", splits=("test",), max_eval_examples=None, scorer=None, backbone=None,
                 predictions: str | Path | None = None, precision: str | None = None) -> dict:
    """Metrics of a run's checkpoint on ``splits`` (also written to the run folder's ``eval_<which>.json``);
    ``predictions`` names a JSONL file for one record per example (see :mod:`mtpt.inference.records`)."""
    parts = load_run(run_dir, which, backbone)
    results = evaluate_parts(parts, splits, max_eval_examples, scorer, predictions, precision)
    out = Path(run_dir) / f"eval_{which if which in ('best', 'last') else 'custom'}.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    return results


def evaluate_zero_shot(backbone: str, tasks: list[str], splits=("test",), max_eval_examples=None, scorer=None,
                       data_root: str | None = None, predictions: str | Path | None = None,
                       precision: str | None = None) -> dict:
    """Metrics of a bare backbone (no prompt) on ``tasks``: the zero-shot baseline, without a run folder."""
    return evaluate_parts(build(zero_shot_config(backbone, tasks, data_root)), splits, max_eval_examples,
                          scorer, predictions, precision)


def evaluate_parts(parts: RunParts, splits, max_eval_examples=None, scorer=None,
                   predictions: str | Path | None = None, precision: str | None = None) -> dict:
    """Metrics per split and task of a built run; with ``predictions``, per-example records to that JSONL file;
    ``precision`` overrides the run's autocast precision."""
    if precision is not None:
        parts.config.train.precision = precision
    if max_eval_examples is not None:
        parts.config.data.max_eval_examples = max_eval_examples
    if scorer is not None:
        parts.config.eval.scorer = scorer
    validate(parts.config)  # the overrides above, checked like the run's own values
    acc = make_accelerator(parts.config.train.precision)  # the precision the run validated with
    parts.model.to(acc.device)
    records: list[dict] = []
    try:
        results = {}
        for split in splits:
            collect = (lambda eval_set, preds, split=split: records.extend(split_records(split, eval_set, preds))
                       ) if predictions is not None else None
            results[split] = evaluate_sets(parts.model, parts, load_eval_sets(parts, split), acc, collect)
    finally:
        parts.model.detach_method()
    if predictions is not None and acc.is_main_process:
        Path(predictions).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(predictions), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return results


def split_records(split: str, eval_set, preds) -> list[dict]:
    """Prediction records of one evaluated set, with the split, the example's index and its gold answer."""
    from mtpt.inference.records import gold_fields, prediction_record

    task = eval_set.task
    return [{"split": split, "index": i, **prediction_record(task, ex, value, scores, text), **gold_fields(task, ex)}
            for i, (ex, value, scores, text) in enumerate(zip(eval_set.examples, preds.values, preds.scores,
                                                              preds.texts))]


def export_run(run_dir, out, fmt="peft", task=None, which="best", backbone=None) -> Path:
    parts = load_run(run_dir, which, backbone)
    method = parts.model.method
    if not isinstance(method, TaskPrompts):
        raise MtptError(f"Method {parts.spec.name!r} has no single prompt per task to export.")
    names = parts.task_names
    if task is None and len(names) > 1:
        raise MtptError(f"The run has several tasks ({', '.join(names)}): choose one with --task.")
    if task is not None and task not in names:
        raise MtptError(f"Task {task!r} is not in this run ({', '.join(names)}).")
    index = names.index(task) if task is not None else 0
    prompt = method.task_prompt(index)
    if fmt == "prompt":
        save_prompt(prompt, out)
        return Path(out)
    return export_peft_prompt(prompt, out, parts.backbone.model, local_reference(parts.backbone.name))
