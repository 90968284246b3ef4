"""Working with finished run folders: rebuild, re-evaluate, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtpt.atomic import atomic_write_text
from mtpt.backbones import Backbone
from mtpt.config import load_yaml, run_config_from_dict, validate
from mtpt.errors import MtptError
from mtpt.contract import TaskPrompts
from mtpt.peft_io import export_peft_prompt
from mtpt.precision import make_accelerator
from mtpt.prompt_io import save_prompt
from mtpt.runtime import RunParts, build_run
from mtpt.training.checkpoint import load_method_state
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
    """Rebuild a trained run's model from its resolved config and load a checkpoint into it."""
    config_path = Path(run_dir) / "config.yaml"
    if not config_path.exists():
        raise MtptError(f"{run_dir} has no config.yaml: not a folder written by `mtpt train`.")
    try:
        config = run_config_from_dict(load_yaml(config_path))
    except MtptError as err:
        message = str(err)
        raise MtptError(message if str(config_path) in message else f"{config_path}: {message}") from None
    config.output_dir = str(run_dir)  # the folder may have moved; methods read sub-folders of it
    parts = build_run(config, backbone)
    meta = load_method_state(checkpoint_dir(run_dir, which), parts.model.method)
    if meta.get("weights_hash") not in (None, parts.backbone.weights_hash):
        raise MtptError(
            f"Checkpoint was trained on backbone {meta.get('backbone')!r} with other weights "
            f"({meta.get('weights_hash')} vs {parts.backbone.weights_hash})."
        )
    return parts


def evaluate_run(run_dir, which="best", splits=("test",), max_eval_examples=None, scorer=None, backbone=None) -> dict:
    parts = load_run(run_dir, which, backbone)
    if max_eval_examples is not None:
        parts.config.data.max_eval_examples = max_eval_examples
    if scorer is not None:
        parts.config.eval.scorer = scorer
    validate(parts.config)  # the overrides above, checked like the run's own values
    acc = make_accelerator(parts.config.train.precision)  # the precision the run validated with
    parts.model.to(acc.device)
    results = {split: evaluate_sets(parts.model, parts, load_eval_sets(parts, split), acc) for split in splits}
    out = Path(run_dir) / f"eval_{which if which in ('best', 'last') else 'custom'}.json"
    atomic_write_text(out, json.dumps(results, indent=1))
    parts.model.detach_method()
    return results


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
    return export_peft_prompt(prompt, out, parts.backbone.model, parts.backbone.name)


# fields that change where or how a run is logged, resumed or guarded, not what it trains or measures
BOOKKEEPING_FIELDS = frozenset({"output_dir", "train.resume", "train.log_every", "train.tensorboard",
                                "eval.batch_size", "train.allow_config_change", "train.divergence_factor"})


def refuse_changed_run(planned) -> None:
    """Raise when ``planned.output_dir`` (a :class:`~mtpt.config.RunConfig`) holds a finished run recorded with
    another config: reusing it would silently mix protocols (e.g. after editing ``kshot`` or ``steps``). A run
    that recorded no config (zero-shot trains nothing) has nothing to compare; ``output_dir`` itself is not
    compared (a moved folder holds the same run), nor are the fields of :data:`BOOKKEEPING_FIELDS`."""
    out = Path(planned.output_dir)
    if not (out / "results.json").exists() or not (out / "config.yaml").exists():
        return
    changed = recorded_changes(planned)
    if changed:
        raise MtptError(f"{out} finished with another configuration than the one it is asked to run with now "
                        f"({'; '.join(changed)}). Delete that folder to rerun it with the current config, "
                        f"or restore the config.")


def recorded_changes(planned) -> list[str]:
    """``"field: recorded -> planned"`` for every field that alters what is trained or measured in which
    ``planned`` differs from the run folder's own ``config.yaml`` (and, where recorded, the method's resolved
    options in ``method_config.yaml``). Paths are compared resolved on both sides, so a recorded relative path and
    the same file named absolutely agree."""
    from mtpt.config import load_yaml, method_config, resolved_paths, to_plain

    out = Path(planned.output_dir)
    changed = changed_fields(resolved_paths(load_yaml(out / "config.yaml")), resolved_paths(to_plain(planned)),
                             ignore=BOOKKEEPING_FIELDS)
    if (out / "method_config.yaml").exists():
        spec, options = method_config(planned.method)
        saved = load_yaml(out / "method_config.yaml")  # {method: <name>, ...every option}
        saved = {"name": saved.get("method"), **{k: v for k, v in saved.items() if k != "method"}}
        recorded = resolved_paths({"method": saved})["method"]
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
