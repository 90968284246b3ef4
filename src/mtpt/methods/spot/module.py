"""SPoT: choose the initial prompt from a source library, then train it as plain prompt tuning."""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor

from mtpt.contract import BuildContext, CheckpointContents, Prerequisite
from mtpt.errors import MtptError
from mtpt.library.access import learned_sources, open_for_run, select_sources
from mtpt.library.format import MIXTURE, SourceLibrary
from mtpt.library.target_run import target_prompt, target_run_prerequisite
from mtpt.library.transfer import TransferredPrompt, restored_transfer
from mtpt.methods.spot.config import SpotConfig
from mtpt.methods.spot.retrieval import best_source, prompt_similarities
from mtpt.similarity import first_argmax


class SpotRetrievalWarning(UserWarning):
    """The paper's retrieval (``compare: prompts``) picked another source than the task vectors would."""


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


def restore(config: SpotConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> TransferredPrompt:
    """The trained prompt from its checkpoint, without the library (``MethodSpec.restore``)."""
    return restored_transfer(checkpoint)


def retrieve(library: SourceLibrary, sources: list[str], target: Tensor, config: SpotConfig) -> dict[str, Any]:
    """The most similar source to ``target`` and every similarity, as a JSON-able record."""
    if tuple(target.shape) != (library.prompt_length, library.hidden_size):
        raise MtptError(
            f"The target prompt has shape {tuple(target.shape)}; the library's prompts are "
            f"({library.prompt_length}, {library.hidden_size})."
        )
    prompts, init = library.prompts(sources, config.source_seed).float(), library.init_prompt().float()
    vectors, target_vector = prompts - init, target.float() - init
    if config.compare == "task_vectors":
        candidates, query = vectors, target_vector
    else:
        candidates, query = prompts, target.float()
    similarities = prompt_similarities(query, candidates, config.similarity)
    index = first_argmax(similarities)
    vectors_pick = index if config.compare == "task_vectors" else best_source(target_vector, vectors,
                                                                              config.similarity)
    record = {"method": "spot", "mode": "retrieve", "source": sources[index], "similarity": config.similarity,
              "compare": config.compare, "similarities": dict(zip(sources, similarities.tolist()))}
    if index != vectors_pick:
        # compare: prompts only: every library prompt starts from one shared P_init, so the prompts' similarity
        # can be carried by P_init (the source that moved least looks closest) rather than by what was learned
        record["task_vectors_source"] = sources[vectors_pick]
        warnings.warn(f"SPoT (compare: prompts) retrieved {sources[index]!r}; comparing what the prompts learned "
                      f"(compare: task_vectors, the default) would retrieve {sources[vectors_pick]!r}. The prompts "
                      "share the library's initial prompt, which can dominate their similarity.",
                      SpotRetrievalWarning, stacklevel=2)
    return record
