"""Building a run's parts from its config: backbone, tasks, method and the soft-prompt model.

The method's prerequisite runs must have finished before (:mod:`mtpt.runner` trains or reuses them); they come in
as plain :class:`~mtpt.contract.FinishedRun` values and go to the builder in its :class:`BuildContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtpt.backbones import Backbone, load_backbone
from mtpt.batching import Tokenizer
from mtpt.config import RunConfig, method_config
from mtpt.errors import MtptError
from mtpt.contract import BuildContext, CheckpointContents, FinishedRun
from mtpt.registry import MethodSpec
from mtpt.model import SoftPromptModel
from mtpt.tasks import Task, get_task
from mtpt.tasks.label_words import warn_label_words


@dataclass
class RunParts:
    config: RunConfig
    backbone: Backbone
    tasks: list[Task]
    spec: MethodSpec
    method_config: Any
    model: SoftPromptModel
    tokenizer: Tokenizer
    source_tasks: list[str] | None = field(default_factory=list)
    """Tasks whose training data the method's sources were trained on (a library's source tasks, a source-stage
    run's tasks): the test inputs of this run's tasks that occur in them are leakage. ``None``: unknown (a run
    rebuilt from a checkpoint that did not record them, its library gone)."""

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]


def build_context(backbone: Backbone, task_names: list[str], seed: int, *, run_dir: str | Path | None = None,
                  prerequisites: dict[str, FinishedRun] | None = None) -> BuildContext:
    """The plain values a method builder may use."""
    embeddings = backbone.model.get_input_embeddings()
    tokenizer = backbone.tokenizer
    return BuildContext(
        hidden_size=backbone.hidden_size,
        vocab_size=int(embeddings.num_embeddings),
        task_names=list(task_names),
        embed_tokens=lambda ids: embeddings(ids.to(embeddings.weight.device)),
        tokenize=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        backbone_name=backbone.name,
        weights_hash=backbone.weights_hash,
        seed=seed,
        run_dir=None if run_dir is None else Path(run_dir),
        backbone=backbone,
        prerequisites=dict(prerequisites or {}),
    )


def build_run(config: RunConfig, backbone: Backbone | None = None,
              prerequisites: dict[str, FinishedRun] | None = None, *,
              restore_from: CheckpointContents | None = None) -> RunParts:
    """Load (or reuse) the backbone, resolve the tasks and build the method and model. ``prerequisites`` are the
    method's finished prerequisite runs (:func:`mtpt.runner.build` resolves them; a method that declares some
    cannot be built without them). With ``restore_from`` (a trained run's checkpoint) the method is rebuilt from
    it alone by its registry entry's ``restore``, reading no file its options name, and the source tasks are
    those the checkpoint recorded (``None`` when it predates recording them)."""
    spec, options = method_config(config.method)
    tasks = [get_task(name) for name in config.tasks]
    backbone = backbone or load_backbone(config.backbone)
    torch.manual_seed(config.train.seed)
    ctx = build_context(backbone, [t.name for t in tasks], config.train.seed, run_dir=config.output_dir,
                        prerequisites=prerequisites)
    if restore_from is None:
        method = spec.build(options, ctx)
        source_tasks = source_tasks_of(spec, options)
    else:
        method = restored_method(spec, options, ctx, restore_from)
        source_tasks = restored_source_tasks(spec, options, restore_from)
    model = SoftPromptModel(backbone, method)
    tokenizer = Tokenizer(backbone.tokenizer, config.data.max_input_tokens, config.data.target_eos)
    warn_label_words(tasks, lambda word: tokenizer.target_ids(word, eos=False), backbone.name)
    return RunParts(config, backbone, tasks, spec, options, model, tokenizer, source_tasks)


def source_tasks_of(spec: MethodSpec, options: Any) -> list[str]:
    """The tasks the method's sources were trained on, found through its option roles: the source tasks of the
    library it reads and the tasks of the source-stage run it continues (after the build, which has checked
    both exist)."""
    from mtpt.library.format import SourceLibrary
    from mtpt.run_folder import kept_checkpoint
    from mtpt.training.checkpoint import read_meta

    names: list[str] = []
    library = getattr(options, spec.roles.library) if spec.roles.library else ""
    if library:
        names += SourceLibrary.open(library).tasks
    source_run = getattr(options, spec.roles.source_run) if spec.roles.source_run else ""
    if source_run:
        folder = Path(source_run)
        names += read_meta(kept_checkpoint(folder) if (folder / "checkpoints").is_dir() else folder).get("tasks", [])
    return list(dict.fromkeys(names))


def restored_method(spec: MethodSpec, options: Any, ctx: BuildContext, checkpoint: CheckpointContents):
    """The method rebuilt by ``spec.restore`` from a checkpoint of that method; a checkpoint that does not hold what
    it needs (another method's, damaged) is an error saying so."""
    if spec.restore is None:
        raise MtptError(f"Method {spec.name!r} cannot be rebuilt from its checkpoint alone.")
    saved_by = checkpoint.meta.get("method")
    if saved_by not in (None, spec.name):
        raise MtptError(f"the checkpoint was saved by method {saved_by!r}, not {spec.name!r}.")
    try:
        return spec.restore(options, ctx, checkpoint)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise MtptError(f"the checkpoint does not hold what method {spec.name!r} needs to be rebuilt from it "
                        f"({type(err).__name__}: {err}).") from None


def restored_source_tasks(spec: MethodSpec, options: Any, checkpoint: CheckpointContents) -> list[str] | None:
    """The source tasks of a run rebuilt from its checkpoint: as the checkpoint recorded them; for an older one,
    none when no option names a library or source run, else read through those options where they still exist;
    ``None`` (unknown) when they do not."""
    if "source_tasks" in checkpoint.meta:
        return list(checkpoint.meta["source_tasks"] or [])
    try:
        return source_tasks_of(spec, options)
    except MtptError:
        return None
