"""A model ready to answer new rows: a finished run (its best checkpoint by default) or a bare backbone
(zero-shot, the ``zero_shot`` method) with one or more tasks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from mtpt.errors import MtptError
from mtpt.inference.inputs import PreparedRow, input_fields, prepare_rows
from mtpt.inference.records import prediction_record
from mtpt.runtime import RunParts
from mtpt.tasks import Task


class Predictor:
    """Scores rows with a run's model, scorer and precision, exactly as ``mtpt evaluate`` scores a split.

    ``predict(rows, task=...)`` returns one record per row, in the order of ``rows`` (see
    :mod:`mtpt.inference.records`). Rows are scored in batches sorted by input length; rows of different tasks
    share batches. ``task`` (or the constructor's ``task``) is the task of rows without a ``task`` field; a
    single-task model needs neither."""

    def __init__(self, parts: RunParts, *, task: str | None = None, batch_size: int | None = None,
                 precision: str | None = None):
        from mtpt.precision import make_accelerator

        self.parts = parts
        if task is not None and task not in parts.task_names:
            raise MtptError(f"Unknown task {task!r}; this model's tasks: {', '.join(parts.task_names)}.")
        self.default_task = task
        if batch_size is not None:
            if batch_size < 1:
                raise MtptError(f"The batch size must be at least 1, got {batch_size}.")
            parts.config.eval.batch_size = batch_size
        if precision is not None:
            parts.config.train.precision = precision
        # By default the precision the run validated with, so that predictions equal `mtpt evaluate`'s. Under bf16
        # a row's scores shift with its batch's shapes by bf16 rounding (a few 0.01 on SmolLM2); fp32 ("no")
        # makes them independent of how rows are batched to about 1e-5.
        self.accelerator = make_accelerator(parts.config.train.precision)
        parts.model.to(self.accelerator.device)
        parts.model.eval()

    @property
    def tasks(self) -> list[Task]:
        return self.parts.tasks

    @property
    def batch_size(self) -> int:
        return self.parts.config.eval.batch_size

    def describe_tasks(self) -> list[dict[str, Any]]:
        """Each task's name, kind, language, input fields, template and label words (``GET /tasks``)."""
        return [{"name": t.name, "kind": t.kind, "language": t.language, "input_fields": input_fields(t),
                 "template": t.template, "label_words": [w.strip() for w in t.label_words or ()]}
                for t in self.tasks]

    def prepare(self, rows: Sequence[Any], task: str | None = None,
                where: Sequence[str] | None = None) -> list[PreparedRow]:
        """Check and render rows (raises :class:`~mtpt.inference.InputError` naming the row and field)."""
        return prepare_rows(self.tasks, rows, task if task is not None else self.default_task, where)

    def predict(self, rows: Sequence[Any], task: str | None = None, *, progress: bool = False) -> list[dict]:
        """One record per row, in order; ``progress`` shows a progress bar on stderr."""
        return self.predict_prepared(self.prepare(rows, task), progress=progress)

    def predict_prepared(self, rows: Sequence[PreparedRow], *, progress: bool = False) -> list[dict]:
        """Records for rows already checked by :meth:`prepare`."""
        from mtpt.progress import progress_bar
        from mtpt.training.evaluate import predict

        if not rows:
            return []
        examples = [row.example for row in rows]
        with progress_bar(progress, total=len(rows), unit="row", file=sys.stderr) as bar, \
                self.accelerator.autocast():
            preds = predict(self.parts.model, self.parts, examples, [row.task_index for row in rows],
                            self.accelerator.device, with_scores=True, progress=bar.update)
        return [prediction_record(self.tasks[row.task_index], row.example, value, scores, text)
                for row, value, scores, text in zip(rows, preds.values, preds.scores, preds.texts)]

    def close(self) -> None:
        """Remove the method's hooks from the backbone (for methods that attach any)."""
        self.parts.model.detach_method()


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``mtpt train`` (it holds the run's ``config.yaml``)."""
    return (Path(path) / "config.yaml").is_file()


def load_predictor(run_or_backbone: str | Path, task: str | Sequence[str] | None = None, *,
                   checkpoint: str = "best", batch_size: int | None = None, precision: str | None = None,
                   data_root: str | None = None) -> Predictor:
    """A :class:`Predictor` for a run folder written by ``mtpt train`` (its ``checkpoint``: ``best``, ``last`` or a
    checkpoint folder), or for a backbone (an alias such as ``smollm2-135m``, a model folder, a hub id) used
    zero-shot on ``task``: a registered task name, a YAML task spec, or a list of them.

    For a run, ``task`` (one name) is the default task of rows without a ``task`` field. ``precision`` (``auto``,
    ``no``, ``bf16``, ``fp16``) overrides the run's (zero-shot: ``auto``). ``data_root`` is only needed by the tasks
    of a zero-shot predictor that read benchmark data when built."""
    from mtpt.runs import load_run, zero_shot_config
    from mtpt.runtime import build_run

    if is_run_folder(run_or_backbone):
        if task is not None and not isinstance(task, str):
            raise MtptError("For a run, `task` is one task name: the default task of rows without a task field.")
        return Predictor(load_run(run_or_backbone, checkpoint), task=task, batch_size=batch_size,
                         precision=precision)
    if not task:
        raise MtptError(f"{run_or_backbone} is not a run folder (no config.yaml), so it is read as a backbone, "
                        f"which needs a task (a registered name or a YAML task spec) to predict zero-shot.")
    tasks = [task] if isinstance(task, str) else list(task)
    parts = build_run(zero_shot_config(str(run_or_backbone), tasks, data_root))
    return Predictor(parts, batch_size=batch_size, precision=precision)
