"""Working with finished run folders: rebuild, re-evaluate, export."""

from __future__ import annotations

import json
from pathlib import Path

from mtpt.backbones import Backbone
from mtpt.config import load_yaml, run_config_from_dict
from mtpt.errors import MtptError
from mtpt.contract import TaskPrompts
from mtpt.peft_io import export_peft_prompt
from mtpt.precision import make_accelerator
from mtpt.prompt_io import save_prompt
from mtpt.runner import build
from mtpt.runtime import RunParts
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
    config = run_config_from_dict(load_yaml(config_path))
    config.output_dir = str(run_dir)  # the folder may have moved; its prerequisite runs live in sub-folders of it
    parts = build(config, backbone)
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
    acc = make_accelerator(parts.config.train.precision)  # the precision the run validated with
    parts.model.to(acc.device)
    results = {split: evaluate_sets(parts.model, parts, load_eval_sets(parts, split), acc) for split in splits}
    out = Path(run_dir) / f"eval_{which if which in ('best', 'last') else 'custom'}.json"
    out.write_text(json.dumps(results, indent=1))
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
