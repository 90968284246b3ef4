"""TPV modules: a fixed-vector combination with scalar coefficients, or a prompt initialised from one."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mtpt.errors import MtptError
from mtpt.contract import BuildContext, CheckpointContents, Prerequisite, PromptBatch
from mtpt.library.access import learned_sources, open_for_run, select_sources
from mtpt.library.target_run import target_prompt, target_run_prerequisite
from mtpt.library.transfer import TransferredPrompt, restored_transfer
from mtpt.methods.tpv.arithmetic import apply_to, most_similar
from mtpt.methods.tpv.config import TpvConfig


class PromptCombination(nn.Module):
    """``P = P_init + sum_k lambda_k tau_k``: ``P_init`` and the task vectors are frozen buffers (saved with the
    checkpoint, so a finished run does not depend on the library), ``lambda`` ``[K]`` is the only parameter."""

    def __init__(self, init: Tensor, vectors: Tensor, lambdas: Sequence[float], sources: Sequence[str]):
        super().__init__()
        if vectors.dim() != 3 or vectors.shape[1:] != init.shape or vectors.shape[0] != len(sources):
            raise ValueError(f"vectors must be [{len(sources)}, *{tuple(init.shape)}], got {tuple(vectors.shape)}")
        self.register_buffer("init", init.detach().float().clone())
        self.register_buffer("vectors", vectors.detach().float().clone())
        self.lambdas = nn.Parameter(torch.tensor(list(lambdas), dtype=torch.float32))
        self.sources = list(sources)

    def combined(self) -> Tensor:
        """The combined prompt ``[L, d]``."""
        return apply_to(self.init, self.vectors, self.lambdas)

    def forward(self, batch: PromptBatch) -> Tensor:
        return self.combined().unsqueeze(0).expand(batch.input_embeds.shape[0], -1, -1)

    def task_prompt(self, task_index: int) -> Tensor:
        return self.combined().detach()

    @torch.no_grad()
    def set_lambdas(self, values: Sequence[float]) -> None:
        """Set the coefficients (``tpv-grid`` evaluates each grid point this way)."""
        self.lambdas.copy_(torch.as_tensor(list(values), dtype=self.lambdas.dtype))

    def lambda_record(self) -> dict[str, float]:
        return dict(zip(self.sources, (float(v) for v in self.lambdas.detach())))

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        # the coefficients are dimensionless (train.lr_units)
        return [{"name": "lambdas", "params": [self.lambdas], "embedding_power": 0.0}]

    def after_step(self, step: int) -> dict[str, Any]:
        # Under `mtpt train` the coefficients learn; log their trajectory.
        return {"lambdas": self.lambda_record()}

    def extra_state(self) -> dict[str, Any]:
        return {"sources": self.sources, "lambdas": self.lambda_record()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("sources") and list(state["sources"]) != self.sources:
            raise MtptError(
                f"Checkpoint combines sources {state['sources']}, this configuration {self.sources}: "
                "list the run's sources explicitly in method.sources."
            )


def expand_lambdas(values: Sequence[float], sources: Sequence[str]) -> list[float]:
    """One coefficient per source: a single value is repeated, otherwise the lengths must match."""
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * len(sources)
    if len(values) != len(sources):
        raise MtptError(f"lambdas has {len(values)} values for {len(sources)} sources ({', '.join(sources)}).")
    return values


STAGE1_DIR = "stage1"
"""The key of the target's PT run (top_k selection without target_prompt): its sub-folder of the run folder."""


def prerequisites(config: TpvConfig, run) -> list[Prerequisite]:
    """mode init with init_selection top_k and no target_prompt: a PT run on the target from the library's P_init,
    whose task vector picks the sources."""
    if config.mode != "init" or config.init_selection != "top_k" or config.target_prompt:
        return []
    return target_run_prerequisite(STAGE1_DIR, config.source_library, run, config.target_steps, config.target_lr,
                                   "target_steps")


def build(config: TpvConfig, ctx: BuildContext) -> nn.Module:
    library = open_for_run(config.source_library, ctx)
    sources = learned_sources(library, select_sources(library, config.sources, ctx.task_names), config.source_seed,
                              config.skip_unlearned)
    init, vectors = library.init_prompt(), library.task_vectors(sources, config.source_seed)
    if config.mode == "combine":
        return PromptCombination(init, vectors, expand_lambdas(config.lambdas, sources), sources)
    if config.init_selection == "all":
        lambdas = expand_lambdas(config.lambdas, sources)
        record = {"method": "tpv", "mode": "init", "selection": "all", "lambdas": dict(zip(sources, lambdas))}
        return TransferredPrompt(apply_to(init, vectors, lambdas), record)
    if len(config.lambdas) != 1:
        raise MtptError("init_selection top_k takes one lambda (it scales the mean of the chosen vectors); "
                        f"got {len(config.lambdas)}.")
    if config.top_k < 1:
        raise MtptError(f"top_k must be at least 1, got {config.top_k}.")
    target, origin = target_prompt(config.target_prompt, ctx, STAGE1_DIR, library)
    chosen = most_similar(target - init, vectors, config.top_k)
    weight = float(config.lambdas[0]) / len(chosen)
    record = {"method": "tpv", "mode": "init", "selection": "top_k", "target_prompt": origin,
              "lambdas": {sources[i]: weight for i in chosen}}
    return TransferredPrompt(apply_to(init, vectors[chosen], weight), record)


def restore(config: TpvConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> nn.Module:
    """The trained module from its checkpoint, without the library (``MethodSpec.restore``): the combination's
    frozen P_init and vectors are saved with it, as is the initialised prompt."""
    if config.mode == "combine":
        tensors = checkpoint.tensors
        return PromptCombination(tensors["init"], tensors["vectors"], tensors["lambdas"].tolist(),
                                 checkpoint.extra_state.get("sources", []))
    return restored_transfer(checkpoint)
