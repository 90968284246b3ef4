"""Helpers the transfer methods share: opening a library for a run, choosing sources, reading prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch import Tensor

from mtpt.errors import MtptError, MtptWarning
from mtpt.library.format import SourceLibrary
from mtpt.loading import read_tensors
from mtpt.contract import BuildContext
from mtpt.prompt_io import PROMPT_KEY, load_prompt_tensor
from mtpt.run_folder import kept_checkpoint

__all__ = ["UnlearnedSourceWarning", "finished_run_prompt", "learned_sources", "open_for_run", "read_prompt",
           "select_sources"]


def open_for_run(path: str, ctx: BuildContext, prompt_length: int | None = None) -> SourceLibrary:
    """Open the method's ``source_library`` and refuse it if it was built on another backbone or shape."""
    if not path:
        raise MtptError(
            "This method reads a source-prompt library: set method.source_library to a folder built by "
            "`mtpt train-source`."
        )
    library = SourceLibrary.open(path)
    library.check_compatible(ctx.backbone_name, ctx.weights_hash, prompt_length, ctx.hidden_size)
    return library


def select_sources(library: SourceLibrary, requested: Sequence[str], run_tasks: Sequence[str]) -> list[str]:
    """The source tasks a method uses: ``requested`` as given (each must be in the library), or when empty every
    library task that is not one of the run's own tasks (the mixture entry never counts as a source)."""
    if requested:
        missing = [t for t in requested if t not in library.tasks]
        if missing:
            raise MtptError(
                f"Library {library.root} has no prompt for {', '.join(missing)} (it holds: "
                f"{', '.join(library.tasks) or 'nothing'}). Add them with `mtpt train-source`."
            )
        if len(set(requested)) != len(requested):
            raise MtptError(f"'sources' lists a task twice: {list(requested)}.")
        return list(requested)
    chosen = [t for t in library.tasks if t not in set(run_tasks)]
    if not chosen:
        raise MtptError(
            f"Library {library.root} holds no task other than this run's own ({', '.join(run_tasks)}): "
            "add source tasks with `mtpt train-source`."
        )
    return chosen


class UnlearnedSourceWarning(MtptWarning):
    """A library source whose prompt never beat a constant answer on its own validation set."""


def learned_sources(library: SourceLibrary, sources: Sequence[str], seed: int | None, skip: bool) -> list[str]:
    """``sources`` without those whose entry did not learn (``learned: false`` in the manifest) when ``skip``; the
    unlearned ones are warned about either way (transferring a prompt that stayed at the label prior transfers
    nothing). Entries recorded without the gate count as learned."""
    import warnings

    unlearned = [name for name in sources if library.entry(name, seed).learned is False]
    if unlearned:
        action = "left out (skip_unlearned)" if skip else "used anyway (set skip_unlearned: true to leave them out)"
        warnings.warn(f"library {library.root}: source(s) {', '.join(unlearned)} did not beat a constant answer on "
                      f"their validation sets; {action}.", UnlearnedSourceWarning, stacklevel=2)
    kept = [name for name in sources if not (skip and name in unlearned)]
    if not kept:
        raise MtptError(f"Every source of {library.root} this run would use ({', '.join(sources)}) did not learn: "
                        "retrain them (more steps, another lr) or set skip_unlearned: false.")
    return kept


def finished_run_prompt(run_dir: str | Path) -> Tensor:
    """The prompt of a finished ``pt`` run (see :func:`kept_checkpoint` for which checkpoint)."""
    return read_prompt(kept_checkpoint(run_dir))


def read_prompt(path: str | Path, backbone=None) -> Tensor:
    """An ``[L, d]`` prompt from a prompt file, an export or PEFT folder, a checkpoint folder or a run folder.

    A checkpoint of a method other than ``pt`` (no ``prompt`` tensor) is rebuilt from its run folder and asked
    for its first task's prompt (:meth:`task_prompt`), which loads the backbone.
    """
    path = Path(path)
    if not path.exists():
        raise MtptError(f"{path} does not exist: give a prompt file, an export folder or a run folder.")
    if path.is_dir() and (path / "checkpoints").is_dir():
        path = kept_checkpoint(path)
    if path.is_dir() and (path / "method.safetensors").exists():
        tensors = read_tensors(path / "method.safetensors", "checkpoint file")
        prompt = tensors.get(PROMPT_KEY)
        if prompt is not None and prompt.dim() == 2:
            return prompt.float()
        return _rebuilt_task_prompt(path, backbone)
    return load_prompt_tensor(path).float()


def _rebuilt_task_prompt(checkpoint: Path, backbone) -> Tensor:
    from mtpt.contract import TaskPrompts
    from mtpt.runs import load_run

    run_dir = checkpoint.parent.parent
    parts = load_run(run_dir, str(checkpoint), backbone)
    try:
        method = parts.model.method
        if not isinstance(method, TaskPrompts):
            raise MtptError(f"Method {parts.spec.name!r} of {run_dir} has no fixed prompt to read.")
        return method.task_prompt(0).detach().float().cpu()
    finally:
        parts.model.detach_method()
