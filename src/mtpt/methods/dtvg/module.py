"""The DTVG stage-II module: a trainable target prompt and scales, regrouped on every training forward pass.

Training (``self.training``): each forward pass groups the scaled task vectors (scales detached, see
:mod:`mtpt.methods.dtvg.grouping`) and returns ``P_mix = P_init + a_t*(P_t - P_init) + sum_{s in G} a_s*T_s``,
through which gradients reach ``P_t``, ``a_t`` and ``a_s``.

Evaluation: a **fixed** merged prompt, the ``eval_prompt`` buffer. It is recomputed only by
:meth:`DynamicGrouping.after_step` (after every optimizer step, so before any evaluation or checkpoint of that
step) from the updated parameters, and saved with every checkpoint: the best checkpoint's buffer is the prompt
that is tested and exported. Evaluation never regroups.

``spot`` is the authors' SPoT baseline inside DTVG: the builder starts ``P_t`` from the chosen source prompt and
the module is then plain prompt tuning (the prompt is ``P_t``; no scales train, nothing is merged).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mtpt.errors import MtptError
from mtpt.contract import PromptBatch
from mtpt.methods.dtvg.grouping import Ablation, GroupingRule, GroupResult, ablation_group, merge_prompt

PARAM_GROUPS = ("target_prompt", "target_scale", "source_scales")
"""Optimizer parameter groups, named after the parameters they hold."""
EVAL_GROUP_MODES = ("after_step", "last_forward")

__all__ = ["EVAL_GROUP_MODES", "PARAM_GROUPS", "DynamicGrouping"]


class DynamicGrouping(nn.Module):
    """DTVG stage II for one target task.

    Args:
        p_init: ``[L, d]`` the library's shared initial prompt (a constant buffer).
        target_prompt: ``[L, d]`` initial ``P_t`` (its stage-I optimum; for ``spot`` the chosen source prompt).
        source_vectors: ``[S, L, d]`` constant source task vectors ``T_s`` (buffer: a checkpoint is self-contained).
        source_names: ``S`` distinct names, in source-index order.
        rule: the grouping settings.
        ablation: see :class:`mtpt.methods.dtvg.grouping.Ablation`.
        fixed_group: ``fixed_group`` only: the group computed once at the start of stage II.
        eval_group: ``after_step`` (regroup once with the updated parameters for the evaluation prompt) or
            ``last_forward`` (the group of the last training forward pass).
        lrs: learning rate per :data:`PARAM_GROUPS` name; missing or ``None`` = the run's learning rate.
        record: JSON-able facts about how the module was built (stage-I origin, SPoT choice), checkpointed.
    """

    def __init__(
        self,
        p_init: Tensor,
        target_prompt: Tensor,
        source_vectors: Tensor,
        source_names: Sequence[str],
        *,
        rule: GroupingRule | None = None,
        ablation: Ablation | str = Ablation.FULL,
        fixed_group: Sequence[int] | None = None,
        eval_group: str = "after_step",
        lrs: dict[str, float | None] | None = None,
        record: dict[str, Any] | None = None,
    ):
        super().__init__()
        _check_inputs(p_init, target_prompt, source_vectors, source_names)
        self.ablation = Ablation(ablation)
        if eval_group not in EVAL_GROUP_MODES:
            raise ValueError(f"eval_group must be one of {EVAL_GROUP_MODES}, got {eval_group!r}")
        if (fixed_group is not None) != (self.ablation is Ablation.FIXED_GROUP):
            raise ValueError("fixed_group is given exactly when ablation is 'fixed_group'")
        unknown = set(lrs or {}) - set(PARAM_GROUPS)
        if unknown:
            raise ValueError(f"lrs names unknown parameter groups {sorted(unknown)}; known: {PARAM_GROUPS}")
        length, num_sources = p_init.shape[0], source_vectors.shape[0]
        self.register_buffer("p_init", p_init.detach().float().clone())
        self.register_buffer("source_vectors", source_vectors.detach().float().clone())
        self.target_prompt = nn.Parameter(target_prompt.detach().float().clone())
        # Scales that can never receive a gradient are frozen, so that the optimizer does not list them.
        self.target_scale = nn.Parameter(torch.ones(length), requires_grad=self.ablation is not Ablation.SPOT)
        self.source_scales = nn.Parameter(
            torch.ones(num_sources, length), requires_grad=self.ablation not in (Ablation.SPOT, Ablation.TARGET_ONLY)
        )
        self.register_buffer("eval_prompt", torch.zeros_like(self.p_init))
        self.source_names = list(source_names)
        self.rule = rule or GroupingRule()
        self.eval_group_mode = eval_group
        self.fixed_group = None if fixed_group is None else ablation_group(
            Ablation.FIXED_GROUP, None, num_sources, fixed_group
        )
        self.lrs = dict(lrs or {})
        self.record = copy.deepcopy(record or {})
        self.eval_group: list[int] = []
        self.history: list[tuple[int, list[int]]] = []
        """Change points ``(step, group)``: the group merged from ``step`` on, until the next change point."""
        self._last: tuple[list[int], GroupResult | None] | None = None
        self._spot_logged = False
        self.refresh_eval_prompt()  # evaluation before the first step sees the start-of-stage-II prompt

    # --- grouping and merging -----------------------------------------------------------------------------------
    def decide(self) -> tuple[list[int], GroupResult | None]:
        """This step's merged sources and the grouping details (``None`` for ``spot``), from the current
        parameters (scales detached). Always computed in fp32: autocast would round the similarities."""
        if self.ablation is Ablation.SPOT:
            return [], None
        with torch.no_grad(), torch.autocast(device_type=self.p_init.device.type, enabled=False):
            details = self.rule.details(
                self.target_prompt - self.p_init, self.source_vectors, self.target_scale, self.source_scales
            )
        group = ablation_group(self.ablation, details, len(self.source_names), self.fixed_group)
        return group, details

    def merged(self, group: Sequence[int]) -> Tensor:
        """``P_mix`` ``[L, d]`` for ``group``, differentiable w.r.t. ``P_t``, ``a_t`` and ``a_s``."""
        if self.ablation is Ablation.SPOT:
            return self.target_prompt
        return merge_prompt(
            self.p_init, self.target_prompt, self.target_scale, self.source_vectors, self.source_scales, group
        )

    def forward(self, batch: PromptBatch) -> Tensor:
        if self.training:
            self._last = self.decide()
            prompt = self.merged(self._last[0])
            if not self._last[0] and self.source_scales.requires_grad and _distributed():
                # DDP (without find_unused_parameters) fails on a trainable parameter without a gradient: an
                # empty group gives a_s an exact zero gradient instead of none. Single-process runs keep "none",
                # as the authors' code does (AdamW then skips a_s for that step).
                prompt = prompt + 0.0 * self.source_scales.sum()
        else:
            prompt = self.eval_prompt
        return prompt.unsqueeze(0).expand(batch.input_embeds.shape[0], -1, -1)

    @torch.no_grad()
    def refresh_eval_prompt(self) -> list[int]:
        """Recompute the fixed evaluation prompt from the current parameters; returns its group."""
        if self.eval_group_mode == "last_forward" and self._last is not None:
            group = self._last[0]
        else:
            group = self.decide()[0]
        self.eval_prompt.copy_(self.merged(group).detach())
        self.eval_group = list(group)
        return self.eval_group

    # --- trainer capabilities -----------------------------------------------------------------------------------
    def prompt_parts(self) -> dict[str, Tensor]:
        """P_t, its task vector, the sources' vectors (scaled, mean over sources) and the evaluation prompt
        (:class:`mtpt.contract.PromptParts`)."""
        scaled = self.source_vectors * self.source_scales.detach().unsqueeze(-1)
        return {"target_prompt": self.target_prompt.detach(),
                "target_vector": (self.target_prompt - self.p_init).detach(),
                "source_vectors_mean": scaled.mean(dim=0), "eval_prompt": self.eval_prompt.detach()}

    def after_step(self, step: int) -> dict[str, Any] | None:
        """Log the step's grouping (the last training forward pass) and refresh the evaluation prompt."""
        group, details = self._last if self._last is not None else self.decide()
        self._note_group(step, group)
        self.refresh_eval_prompt()
        self._last = None  # consumed: the next step's record comes from the next forward pass
        if self.ablation is Ablation.SPOT:
            if self._spot_logged:
                return None
            self._spot_logged = True
            return {"spot": self.record.get("spot", {})}
        record = self.step_record(group, details)
        record["eval_group"] = self._names(self.eval_group)
        return record

    def step_record(self, group: Sequence[int], details: GroupResult | None) -> dict[str, Any]:
        """The grouping of one step with task names: group, ranked list R, TS per source, KC per prefix, k*."""
        record: dict[str, Any] = {"group": self._names(group)}
        if details is not None:
            record.update(ranked=self._names(details.ranked), k_star=details.k_star,
                          ts=dict(zip(self.source_names, details.ts.tolist())), kc=details.kc.tolist())
            if details.objective == "ts_plus_kc":
                record["scores"] = details.scores.tolist()
        return record

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Three groups (P_t, a_t, a_s) with their own learning rates; frozen scales are left out by the trainer."""
        groups = []
        for name in PARAM_GROUPS:
            lr = self.lrs.get(name)
            # P_t is in embedding units; the scales are dimensionless (train.lr_units)
            power = 1.0 if name == "target_prompt" else 0.0
            groups.append({"name": name, "params": [getattr(self, name)], "lr": base_lr if lr is None else lr,
                           "embedding_power": power})
        return groups

    def task_prompt(self, task_index: int) -> Tensor:
        """The fixed merged prompt (the one evaluation uses), for PEFT export."""
        if task_index != 0:
            raise MtptError(f"DTVG trains a single target task; there is no task {task_index}.")
        return self.eval_prompt.detach().clone()

    def extra_state(self) -> dict[str, Any]:
        return {
            "sources": list(self.source_names),
            "ablation": self.ablation.value,
            "rule": asdict(self.rule),
            "eval_group_mode": self.eval_group_mode,
            "fixed_group": None if self.fixed_group is None else self._names(self.fixed_group),
            "eval_group": self._names(self.eval_group),
            "group_history": [[step, self._names(group)] for step, group in self.history],
            "record": copy.deepcopy(self.record),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("sources") is not None and list(state["sources"]) != self.source_names:
            raise MtptError(
                f"The checkpoint groups sources {state['sources']}, this configuration {self.source_names}: "
                "list the run's sources in method.sources, in the same order."
            )
        if state.get("ablation") not in (None, self.ablation.value):
            raise MtptError(f"The checkpoint was trained with ablation {state['ablation']!r}, "
                            f"this configuration asks for {self.ablation.value!r}.")
        if state.get("fixed_group") is not None:
            self.fixed_group = self._indices(state["fixed_group"])
        self.eval_group = self._indices(state.get("eval_group", []))
        self.history = [(int(step), self._indices(names)) for step, names in state.get("group_history", [])]
        self.record = copy.deepcopy(state.get("record", self.record))

    # --- helpers ------------------------------------------------------------------------------------------------
    def _note_group(self, step: int, group: Sequence[int]) -> None:
        if not self.history or self.history[-1][1] != list(group):
            self.history.append((int(step), list(group)))

    def _names(self, indices: Sequence[int]) -> list[str]:
        return [self.source_names[i] for i in indices]

    def _indices(self, names: Sequence[str]) -> list[int]:
        unknown = [n for n in names if n not in self.source_names]
        if unknown:
            raise MtptError(f"The checkpoint names sources {unknown} that this run does not have.")
        return [self.source_names.index(n) for n in names]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _check_inputs(p_init: Tensor, target_prompt: Tensor, source_vectors: Tensor, names: Sequence[str]) -> None:
    if p_init.dim() != 2 or target_prompt.shape != p_init.shape:
        raise ValueError(f"p_init and target_prompt must be [L, d] alike, got {tuple(p_init.shape)} and "
                         f"{tuple(target_prompt.shape)}")
    if source_vectors.dim() != 3 or source_vectors.shape[1:] != p_init.shape:
        raise ValueError(f"source_vectors must be [S, {p_init.shape[0]}, {p_init.shape[1]}], "
                         f"got {tuple(source_vectors.shape)}")
    if len(names) != source_vectors.shape[0] or len(set(names)) != len(names):
        raise ValueError(f"need {source_vectors.shape[0]} distinct source names, got {list(names)}")
