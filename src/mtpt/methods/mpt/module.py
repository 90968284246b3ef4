"""MPT: a shared prompt times per-task rank-r factors, with prompt distillation in the source stage.

Tensor names follow PEFT's multitask prompt tuning (``prompt_embeddings`` = P* ``[L, d]``, ``prefix_task_cols``
= u ``[K, L, r]``, ``prefix_task_rows`` = v ``[K, r, d]``), so a checkpoint is also a PEFT state dict
(:mod:`mtpt.methods.mpt.peft_export`). Teacher prompts are non-persistent buffers: checkpoints hold only the
student.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mtpt.errors import MtptError
from mtpt.library.access import open_for_run, select_sources
from mtpt.contract import BuildContext, CheckpointContents, LossContext, PromptBatch
from mtpt.methods.mpt.config import MptConfig
from mtpt.methods.mpt.distillation import distillation_loss, init_task_factors, mpt_task_prompts
from mtpt.prompt_init import initial_prompt

SHARED, COLS, ROWS = "prompt_embeddings", "prefix_task_cols", "prefix_task_rows"


class MultitaskPrompt(nn.Module):
    """``P^_k = P* ∘ (u_k v_k)`` per example's task; optional distillation from per-task teacher prompts."""

    def __init__(self, shared: Tensor, cols: Tensor, rows: Tensor, *, teachers: Tensor | None = None,
                 distill_weight: float = 1.0, distill_temperature: float = 1.0, hidden_distance: str = "mse",
                 train_shared: bool = True, factor_lr: float | None = None, record: dict[str, Any] | None = None):
        super().__init__()
        self.prompt_embeddings = nn.Parameter(shared.detach().float().clone(), requires_grad=train_shared)
        self.prefix_task_cols = nn.Parameter(cols.detach().float().clone())
        self.prefix_task_rows = nn.Parameter(rows.detach().float().clone())
        if teachers is not None:
            if teachers.shape != (cols.shape[0], *shared.shape):
                raise ValueError(
                    f"teachers must be [{cols.shape[0]}, *{tuple(shared.shape)}], got {tuple(teachers.shape)}"
                )
            self.register_buffer("teachers", teachers.detach().float().clone(), persistent=False)
        else:
            self.teachers = None
        self.wants_hidden_states = teachers is not None
        self.distill_weight = float(distill_weight)
        self.distill_temperature = float(distill_temperature)
        self.hidden_distance = hidden_distance
        self.factor_lr = factor_lr
        self.record = dict(record or {})

    @property
    def num_tasks(self) -> int:
        return int(self.prefix_task_cols.shape[0])

    def forward(self, batch: PromptBatch) -> Tensor:
        return mpt_task_prompts(self.prompt_embeddings, self.prefix_task_cols, self.prefix_task_rows, batch.task_ids)

    def task_prompt(self, task_index: int) -> Tensor:
        if not 0 <= task_index < self.num_tasks:
            raise MtptError(f"Task index {task_index} is outside the {self.num_tasks} tasks of this MPT run.")
        ids = torch.tensor([task_index], device=self.prompt_embeddings.device)
        with torch.no_grad():
            return mpt_task_prompts(self.prompt_embeddings, self.prefix_task_cols, self.prefix_task_rows, ids)[0]

    def prompt_parts(self) -> dict[str, Tensor]:
        """P* and each task's prompt ``P* o (u_k v_k)`` (:class:`mtpt.contract.PromptParts`)."""
        return {"shared": self.prompt_embeddings.detach(),
                **{f"task_prompt/{k}": self.task_prompt(k) for k in range(self.num_tasks)}}

    def extra_losses(self, ctx: LossContext) -> dict[str, Tensor]:
        """``distill_kl`` and ``distill_mse`` (each times lambda) against the batch's teacher prompts."""
        if self.teachers is None or not self.training:
            return {}
        if ctx.hidden is None:
            raise MtptError("MPT distillation needs the trainer to return hidden states (wants_hidden_states).")
        with torch.no_grad():  # teachers are frozen: their pass builds no graph
            teacher_logits, teacher_hidden = ctx.run_with_prompts(self.teachers.index_select(0, ctx.batch.task_ids))
        terms = distillation_loss(ctx.logits.float(), teacher_logits.float(), ctx.hidden.float(),
                                  teacher_hidden.float(), ctx.target_mask, self.distill_temperature,
                                  self.hidden_distance)
        return {"distill_kl": self.distill_weight * terms["kl"], "distill_mse": self.distill_weight * terms["mse"]}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        # P* is in embedding units, the factors multiply it and are dimensionless (train.lr_units)
        factors = {"name": "factors", "params": [self.prefix_task_cols, self.prefix_task_rows], "embedding_power": 0.0}
        if self.factor_lr is not None:
            factors["lr"] = self.factor_lr
        shared = [self.prompt_embeddings] if self.prompt_embeddings.requires_grad else []
        return [{"name": "shared", "params": shared}, factors]

    def extra_state(self) -> dict[str, Any]:
        return {"mpt": self.record}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.record = dict(state.get("mpt", self.record))


def build(config: MptConfig, ctx: BuildContext) -> MultitaskPrompt:
    _check(config)
    if config.stage == "target":
        return _build_target(config, ctx)
    return _build_source(config, ctx)


def restore(config: MptConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> MultitaskPrompt:
    """The trained module from its checkpoint, without the library or the source-stage run
    (``MethodSpec.restore``): the shared prompt and every task's factors are saved with it (the teachers only
    served distillation while training)."""
    tensors = checkpoint.tensors
    return MultitaskPrompt(tensors[SHARED], tensors[COLS], tensors[ROWS],
                           train_shared=config.stage == "source" or config.train_shared, factor_lr=config.factor_lr,
                           record=checkpoint.extra_state.get("mpt"))


def _check(config: MptConfig) -> None:
    if config.rank < 1:
        raise MtptError(f"rank must be at least 1, got {config.rank}.")
    if not config.factor_std > 0:
        raise MtptError(f"factor_std must be positive, got {config.factor_std}.")
    if config.distill_weight < 0 or not config.distill_temperature > 0:
        raise MtptError("distill_weight must be >= 0 and distill_temperature > 0.")


# --- source stage -----------------------------------------------------------------------------------------------
def _build_source(config: MptConfig, ctx: BuildContext) -> MultitaskPrompt:
    library = open_for_run(config.source_library, ctx, config.prompt_length) if config.source_library else None
    if library is None and (config.distill or config.shared_init in ("library_init", "teacher_mean")):
        raise MtptError("The MPT source stage needs method.source_library (teachers and P_init), or set "
                        "distill: false and shared_init: sample_vocab/uniform with a prompt_length.")
    length = library.prompt_length if library is not None else config.prompt_length
    if length is None:
        raise MtptError("Set method.prompt_length (no library to take it from).")
    generator = torch.Generator().manual_seed(ctx.seed)
    teachers = None
    if config.distill or config.shared_init == "teacher_mean":
        select_sources(library, ctx.task_names, [])  # every run task needs its single-task prompt
        teachers = library.prompts(ctx.task_names, config.source_seed)
    if config.shared_init == "library_init":
        shared = library.init_prompt()
    elif config.shared_init == "teacher_mean":
        shared = teachers.mean(dim=0)
    else:
        shared = initial_prompt(config.shared_init, length, ctx, generator=generator)
    cols, rows = _fresh_factors(config, len(ctx.task_names), length, ctx.hidden_size, generator)
    record = {"stage": "source", "tasks": list(ctx.task_names), "shared_init": config.shared_init,
              "distill": config.distill}
    return MultitaskPrompt(shared, cols, rows, teachers=teachers if config.distill else None,
                           distill_weight=config.distill_weight, distill_temperature=config.distill_temperature,
                           hidden_distance=config.hidden_distance, factor_lr=config.factor_lr, record=record)


def _fresh_factors(config: MptConfig, tasks: int, length: int, dim: int, generator) -> tuple[Tensor, Tensor]:
    if config.factor_init == "ones":
        # u = 1/r, v = 1 gives u_k v_k = 1 everywhere: every task prompt starts exactly at P*.
        return torch.full((tasks, length, config.rank), 1.0 / config.rank), torch.ones(tasks, config.rank, dim)
    cols = torch.randn(tasks, length, config.rank, generator=generator) * config.factor_std
    rows = torch.randn(tasks, config.rank, dim, generator=generator) * config.factor_std
    return cols, rows


# --- target stage -----------------------------------------------------------------------------------------------
def _build_target(config: MptConfig, ctx: BuildContext) -> MultitaskPrompt:
    shared, cols, rows, sources = load_source_run(config.source_run, config.source_checkpoint, ctx)
    if config.prompt_length is not None and config.prompt_length != shared.shape[0]:
        raise MtptError(f"prompt_length {config.prompt_length} differs from the source run's {shared.shape[0]}.")
    index = None
    if config.target_init == "source":
        if config.init_source not in sources:
            raise MtptError(
                f"target_init 'source' needs init_source, one of the source run's tasks: {', '.join(sources)}."
            )
        index = sources.index(config.init_source)
    generator = torch.Generator().manual_seed(ctx.seed)
    u, v = init_task_factors(cols, rows, config.target_init, index, generator, config.factor_std)
    tasks = len(ctx.task_names)
    record = {"stage": "target", "source_run": config.source_run, "sources": sources,
              "target_init": config.target_init, "init_source": config.init_source}
    return MultitaskPrompt(shared, u.unsqueeze(0).repeat(tasks, 1, 1), v.unsqueeze(0).repeat(tasks, 1, 1),
                           train_shared=config.train_shared, factor_lr=config.factor_lr, record=record)


def load_source_run(path: str, which: str, ctx: BuildContext) -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """``(P*, u [K, L, r], v [K, r, d], source task names)`` of a finished MPT source-stage run (``which``: its kept
    checkpoint, ``best``, or ``last``)."""
    from mtpt.run_folder import read_run_checkpoint

    if not path:
        raise MtptError("The MPT target stage needs method.source_run: the folder of a finished MPT source-stage run.")
    run = read_run_checkpoint(path, "mpt", which=which, weights_hash=ctx.weights_hash)
    shared, cols, rows = run.tensors[SHARED], run.tensors[COLS], run.tensors[ROWS]
    if shared.shape[1] != ctx.hidden_size:
        raise MtptError(f"{path} has hidden size {shared.shape[1]}, this backbone {ctx.hidden_size}.")
    return shared, cols, rows, run.tasks
