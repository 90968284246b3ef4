"""SPoT: choose the initial prompt from a source library, then train it as plain prompt tuning."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mtpt.contract import BuildContext, Prerequisite
from mtpt.errors import MtptError
from mtpt.library.access import learned_sources, open_for_run, select_sources
from mtpt.library.format import MIXTURE, SourceLibrary
from mtpt.library.target_run import target_prompt, target_run_prerequisite
from mtpt.library.transfer import TransferredPrompt
from mtpt.methods.spot.config import SpotConfig
from mtpt.methods.spot.retrieval import best_source, prompt_similarities

RETRIEVAL_DIR = "retrieval"
"""The retrieval run's key: its sub-folder of the run folder."""


def prerequisites(config: SpotConfig, run) -> list[Prerequisite]:
    """mode retrieve without target_prompt: a short PT run on the target from the library's initial prompt (so
    target and sources are comparable), ``retrieval_steps`` at ``retrieval_lr``."""
    if config.mode != "retrieve" or config.target_prompt:
        return []
    return target_run_prerequisite(RETRIEVAL_DIR, config.source_library, run, config.retrieval_steps,
                                   config.retrieval_lr, "retrieval_steps")


def build(config: SpotConfig, ctx: BuildContext) -> TransferredPrompt:
    library = open_for_run(config.source_library, ctx)
    if config.mode == "generic":
        record = {"method": "spot", "mode": "generic", "source": MIXTURE,
                  "sources": list(library.entry(MIXTURE, config.source_seed).sources)}
        return TransferredPrompt(library.mixture_prompt(config.source_seed), record)
    if config.mode == "fixed":
        if not config.source:
            raise MtptError("SPoT mode 'fixed' needs method.source (a task of the library).")
        learned_sources(library, select_sources(library, [config.source], ctx.task_names), config.source_seed, False)
        record = {"method": "spot", "mode": "fixed", "source": config.source}
        return TransferredPrompt(library.prompt(config.source, config.source_seed), record)
    sources = learned_sources(library, select_sources(library, config.sources, ctx.task_names), config.source_seed,
                              config.skip_unlearned)
    target, origin = target_prompt(config.target_prompt, ctx, RETRIEVAL_DIR, library)
    record = retrieve(library, sources, target, config)
    record["target_prompt"] = origin
    return TransferredPrompt(library.prompt(record["source"], config.source_seed), record)


def retrieve(library: SourceLibrary, sources: list[str], target: Tensor, config: SpotConfig) -> dict[str, Any]:
    """The most similar source to ``target`` and every similarity, as a JSON-able record."""
    if tuple(target.shape) != (library.prompt_length, library.hidden_size):
        raise MtptError(
            f"The target prompt has shape {tuple(target.shape)}; the library's prompts are "
            f"({library.prompt_length}, {library.hidden_size})."
        )
    candidates = library.prompts(sources, config.source_seed)
    if config.compare == "task_vectors":
        init = library.init_prompt()
        candidates, target = candidates - init, target - init
    similarities = prompt_similarities(target.float(), candidates, config.similarity)
    index = best_source(target.float(), candidates, config.similarity)
    return {"method": "spot", "mode": "retrieve", "source": sources[index], "similarity": config.similarity,
            "compare": config.compare, "similarities": dict(zip(sources, similarities.tolist()))}
