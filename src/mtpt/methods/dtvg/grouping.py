"""Dynamic task vector grouping (DTVG, METHODS.md §6): the pure tensor part.

Everything here is a function of tensors; the DTVG method module (:mod:`mtpt.methods.dtvg.module`) owns the
parameters and, on every training forward pass, calls :meth:`GroupingRule.details` (= :func:`group_details`),
derives the merged sources with :func:`ablation_group`, then builds the prompt fed to the backbone with
:func:`merge_prompt`. :func:`select_group` and :func:`choose_sources` are the one-call forms.

Shapes used throughout:

* ``L`` prompt length (virtual tokens), ``d`` hidden size, ``S`` number of source tasks.
* target task vector ``T_t = P_t - P_init``: ``[L, d]``; source task vectors ``T_s``: ``[S, L, d]``.
* per-token scales: target ``[L]``, sources ``[S, L]`` (row ``i`` = token ``i`` is multiplied by ``alpha[i]``).

Grouping rule (the authors' code, zpy2477/DTVG, ``ablation == 0``):

1. Scale the vectors (scales detached): ``T~ = alpha ⊙ T``.
2. ``TS_s = sim(T~_t, T~_s)`` with ``sim(X, Y) = (1/d) <mean_rows(X), mean_rows(Y)>``.
3. Keep the sources with ``TS_s >= threshold`` (0), ranked by ``TS`` descending; equal ``TS`` keep their
   source-index order (Python's stable ``sorted``). This is the rank list ``R`` (length ``N+``).
4. ``KC(1) = 0``; for ``k >= 2`` ``KC(k)`` = mean over ordered pairs ``i != j`` in ``R[:k]`` of
   ``sim(T~_i, T~_j)``. ``k* = argmax_k KC(k)``, ties to the smallest ``k``. Group ``G = R[:k*]``;
   ``N+ = 0`` gives the empty group.

The option ``objective="ts_plus_kc"`` (the paper's figure, our reading) chooses instead the prefix ``k``
maximising ``mean(TS over R[:k]) + lam * KC(k)``, ties again to the smallest ``k``.

Cost: one ``[(1+S), d] x [d, (1+S)]`` matmul of the token-means plus ``O(S^2)`` prefix sums, instead of the
authors' ``O(S^2 * L * d)`` Python double loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import torch
from torch import Tensor

from mtpt.similarity import (
    SIMILARITY_KINDS,
    check_kind,
    check_same_dtype,
    first_argmax,
    similarity_matrix,
    similarity_of_means,
)

OBJECTIVES = ("kc_prefix", "ts_plus_kc")

__all__ = [
    "Ablation",
    "GroupResult",
    "GroupingRule",
    "OBJECTIVES",
    "SIMILARITY_KINDS",
    "ablation_group",
    "choose_sources",
    "first_argmax",
    "group_details",
    "merge_prompt",
    "scale_rows",
    "select_group",
    "similarity_matrix",
]


# --------------------------------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------------------------------


def scale_rows(vectors: Tensor, scales: Tensor | None) -> Tensor:
    """Scale row (token) ``i`` of each ``[L, d]`` matrix by ``scales[..., i]``.

    Args:
        vectors: ``[..., L, d]``.
        scales: ``[..., L]`` (the leading dims of ``vectors`` without ``d``) or ``None`` (no scaling).

    Returns:
        ``[..., L, d]``; the scales are cast to the vectors' dtype so the result keeps that dtype.
    """
    if scales is None:
        return vectors
    if vectors.dim() < 2 or scales.shape != vectors.shape[:-1]:
        raise ValueError(
            f"scales must have shape vectors.shape[:-1] = {tuple(vectors.shape[:-1])}, got {tuple(scales.shape)}"
        )
    return vectors * scales.to(vectors.dtype).unsqueeze(-1)


# --------------------------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------------------------


@dataclass
class GroupResult:
    """Everything the grouping computed, for logging and ``mtpt recommend``.

    Attributes:
        group: the selected source indices ``R[:k*]``, in rank order.
        ts: ``[S]`` target similarities ``TS_s`` (of the scaled vectors).
        ranked: the rank list ``R``: indices with ``TS >= threshold``, ``TS`` descending, ties by index.
        source_similarity: ``[S, S]`` pairwise similarities of the scaled source vectors.
        kc: ``[N+]`` knowledge consistency of each prefix; ``kc[k-1] = KC(k)``, ``KC(1) = 0``.
        scores: ``[N+]`` the objective per prefix (``kc`` for ``"kc_prefix"``,
            ``mean TS + lam * KC`` for ``"ts_plus_kc"``).
        k_star: chosen prefix length (``0`` when no source passes the threshold).
        similarity, objective, threshold, lam: the settings that produced this result.
    """

    group: list[int]
    ts: Tensor
    ranked: list[int]
    source_similarity: Tensor
    kc: Tensor
    scores: Tensor
    k_star: int
    similarity: str
    objective: str
    threshold: float
    lam: float


def _check_group_inputs(
    target_vector: Tensor, source_vectors: Tensor, target_scale: Tensor | None, source_scales: Tensor | None
) -> None:
    if target_vector.dim() != 2:
        raise ValueError(f"target_vector must be [L, d], got shape {tuple(target_vector.shape)}")
    if source_vectors.dim() != 3 or source_vectors.shape[1:] != target_vector.shape:
        raise ValueError(
            f"source_vectors must be [S, L, d] with [L, d] = {tuple(target_vector.shape)}, "
            f"got shape {tuple(source_vectors.shape)}"
        )
    check_same_dtype(target_vector=target_vector, source_vectors=source_vectors)
    if target_scale is not None and target_scale.shape != target_vector.shape[:1]:
        raise ValueError(f"target_scale must be [L] = [{target_vector.shape[0]}], got {tuple(target_scale.shape)}")
    if source_scales is not None and source_scales.shape != source_vectors.shape[:2]:
        raise ValueError(
            f"source_scales must be [S, L] = {tuple(source_vectors.shape[:2])}, got {tuple(source_scales.shape)}"
        )


def _check_settings(similarity: str, objective: str, threshold: float, lam: float) -> None:
    check_kind(similarity)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if not math.isfinite(float(lam)):
        raise ValueError(f"lam must be a finite number, got {lam!r}")


def _rank_sources(ts: Tensor, threshold: float) -> Tensor:
    """Indices with ``ts >= threshold`` sorted by ``ts`` descending, ties in index order.

    Sorting ``-ts`` ascending with a stable sort keeps equal values in their original (index) order, which is
    what Python's ``sorted(..., reverse=True)`` does in the authors' code. (NaN similarities fail the
    threshold test and are dropped.)
    """
    kept = (ts >= threshold).nonzero().flatten()  # ascending index order
    order = torch.sort(-ts[kept], stable=True).indices
    return kept[order]


def _prefix_consistency(pairwise: Tensor) -> Tensor:
    """``KC(k)`` for every prefix ``k = 1..N`` of an already-ranked ``[N, N]`` similarity matrix.

    The off-diagonal entries are summed over each leading ``k x k`` block with a 2-D cumulative sum (row and
    column), so all prefixes cost ``O(N^2)`` in total; the diagonal is zeroed first (rather than subtracted
    afterwards) so that large self-similarities cannot swamp the pair sums by cancellation.
    """
    n = pairwise.shape[0]
    off_diagonal = pairwise.masked_fill(torch.eye(n, dtype=torch.bool, device=pairwise.device), 0)
    block_sums = off_diagonal.cumsum(dim=0).cumsum(dim=1).diagonal()  # [N]: sum over R[:k] x R[:k]
    k = torch.arange(1, n + 1, dtype=pairwise.dtype, device=pairwise.device)
    pair_counts = k * (k - 1)  # ordered pairs i != j inside the prefix
    kc = block_sums / pair_counts.clamp(min=1)
    return torch.where(k > 1, kc, torch.zeros_like(kc))  # KC(1) = 0 by definition


def group_details(
    target_vector: Tensor,
    source_vectors: Tensor,
    target_scale: Tensor | None = None,
    source_scales: Tensor | None = None,
    similarity: str = "dot",
    objective: str = "kc_prefix",
    threshold: float = 0.0,
    lam: float = 1.0,
) -> GroupResult:
    """Compute the DTVG group and every intermediate quantity (see the module docstring for the rule).

    Args:
        target_vector: ``[L, d]`` target task vector ``P_t - P_init``.
        source_vectors: ``[S, L, d]`` source task vectors (``S`` may be 0).
        target_scale: ``[L]`` or ``None`` (all ones).
        source_scales: ``[S, L]`` or ``None`` (all ones).
        similarity: ``"dot"`` (authors) or ``"cosine"``.
        objective: ``"kc_prefix"`` (authors' code) or ``"ts_plus_kc"`` (paper figure, our option).
        threshold: sources with ``TS < threshold`` are dropped (authors: 0).
        lam: weight of ``KC`` in ``"ts_plus_kc"``; unused by ``"kc_prefix"``.

    Returns:
        A :class:`GroupResult`. All tensors are detached and in the dtype of the vectors.
    """
    _check_group_inputs(target_vector, source_vectors, target_scale, source_scales)
    _check_settings(similarity, objective, threshold, lam)
    with torch.no_grad():  # grouping is a discrete decision: no gradient through it (scales detached)
        scaled_target = scale_rows(target_vector.detach(), None if target_scale is None else target_scale.detach())
        scaled_sources = scale_rows(
            source_vectors.detach(), None if source_scales is None else source_scales.detach()
        )
        # One matmul for every similarity: row/column 0 is the target, 1..S the sources.
        means = torch.cat([scaled_target.mean(dim=0, keepdim=True), scaled_sources.mean(dim=1)])
        sims = similarity_of_means(means, means, similarity)
        ts, source_similarity = sims[0, 1:], sims[1:, 1:]

        ranked = _rank_sources(ts, threshold)
        kc = _prefix_consistency(source_similarity[ranked][:, ranked])
        scores = kc
        if objective == "ts_plus_kc":
            ranked_ts = ts[ranked]
            prefix_sizes = torch.arange(1, ranked_ts.numel() + 1, dtype=ts.dtype, device=ts.device)
            scores = ranked_ts.cumsum(dim=0) / prefix_sizes + lam * kc
        k_star = first_argmax(scores) + 1 if scores.numel() > 0 else 0

    ranked_list = ranked.tolist()
    return GroupResult(
        group=ranked_list[:k_star],
        ts=ts,
        ranked=ranked_list,
        source_similarity=source_similarity,
        kc=kc,
        scores=scores,
        k_star=k_star,
        similarity=similarity,
        objective=objective,
        threshold=float(threshold),
        lam=float(lam),
    )


def select_group(
    target_vector: Tensor,
    source_vectors: Tensor,
    target_scale: Tensor | None = None,
    source_scales: Tensor | None = None,
    similarity: str = "dot",
    objective: str = "kc_prefix",
    threshold: float = 0.0,
    lam: float = 1.0,
) -> list[int]:
    """The DTVG group ``R[:k*]`` (source indices in rank order); ``[]`` when no source passes the threshold.

    Same arguments as :func:`group_details`.
    """
    return group_details(
        target_vector, source_vectors, target_scale, source_scales, similarity, objective, threshold, lam
    ).group


# --------------------------------------------------------------------------------------------------------------
# Ablations
# --------------------------------------------------------------------------------------------------------------


class Ablation(str, Enum):
    """The authors' ablations (their integer codes in brackets), as names.

    * ``full`` [0]: dynamic grouping, :func:`select_group` on every training step.
    * ``only_positive`` [1]: every source with ``TS >= threshold``, ranked; no KC selection.
    * ``target_only`` [3]: no sources; the target vector with its scales only.
    * ``all_sources`` [4]: every source merged with its scales, no grouping.
    * ``fixed_group`` [5]: the ``full`` group computed once (at the start of stage II) and reused.
    * ``spot`` [10]: the SPoT baseline: the single source most similar by cosine.

    (The authors' exhaustive-subset ``max KC`` variant [2] is exponential in ``S`` and is not offered.)
    """

    FULL = "full"
    ONLY_POSITIVE = "only_positive"
    TARGET_ONLY = "target_only"
    ALL_SOURCES = "all_sources"
    FIXED_GROUP = "fixed_group"
    SPOT = "spot"


def _check_group_indices(group: Sequence[int], num_sources: int) -> list[int]:
    indices = [int(i) for i in group]
    if any(i < 0 or i >= num_sources for i in indices):
        raise ValueError(f"group indices must lie in [0, {num_sources}), got {indices}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"group indices must be distinct, got {indices}")
    return indices


def choose_sources(
    ablation: Ablation | str,
    target_vector: Tensor,
    source_vectors: Tensor,
    target_scale: Tensor | None = None,
    source_scales: Tensor | None = None,
    *,
    similarity: str = "dot",
    objective: str = "kc_prefix",
    threshold: float = 0.0,
    lam: float = 1.0,
    fixed_group: Sequence[int] | None = None,
) -> list[int]:
    """The source indices merged into the prompt under ``ablation``.

    Args:
        ablation: an :class:`Ablation` or its string value.
        target_vector, source_vectors, target_scale, source_scales, similarity, objective, threshold, lam:
            as in :func:`group_details` (only the ablations that group use them).
        fixed_group: required for ``fixed_group``. The caller's responsibility: compute it **once** with
            :func:`select_group` at the start of stage II, store it (and checkpoint it), and pass it on every
            call; this function only validates and returns it, so forgetting to store it cannot silently turn
            the ablation into ``full``.

    Returns:
        Source indices. ``spot`` ranks by cosine of the **unscaled** vectors given (SPoT has no scales). The
        authors' SPoT compares full prompts ``P_init + T``, not task vectors: pass prompts to reproduce it.
        The authors' SPoT then *initialises* the target prompt from that source and runs plain PT (no merge,
        no scales); the DTVG module does exactly that for ``ablation: spot`` (:mod:`mtpt.methods.dtvg.module`).
    """
    ablation = Ablation(ablation)
    _check_group_inputs(target_vector, source_vectors, target_scale, source_scales)
    num_sources = source_vectors.shape[0]
    if ablation is Ablation.SPOT:
        if num_sources == 0:
            return []
        with torch.no_grad():
            cosine = similarity_matrix(target_vector.detach()[None], source_vectors.detach(), kind="cosine")[0]
        return [first_argmax(cosine)]
    details = None
    if ablation in _GROUPING_ABLATIONS:
        details = group_details(
            target_vector, source_vectors, target_scale, source_scales, similarity, objective, threshold, lam
        )
    return ablation_group(ablation, details, num_sources, fixed_group)


_GROUPING_ABLATIONS = (Ablation.FULL, Ablation.ONLY_POSITIVE)
"""The ablations whose group is read off :func:`group_details`."""


def ablation_group(
    ablation: Ablation | str,
    details: GroupResult | None,
    num_sources: int,
    fixed_group: Sequence[int] | None = None,
) -> list[int]:
    """The merged sources under ``ablation``, given the grouping already computed for this step.

    The DTVG module computes :func:`group_details` once per training step (it logs TS and KC whatever the
    ablation) and derives the group from it here instead of grouping a second time. ``details`` is needed by
    ``full`` and ``only_positive`` only; ``spot`` is refused, it is not a function of the DTVG grouping (see
    :func:`choose_sources`).
    """
    ablation = Ablation(ablation)
    if ablation is Ablation.SPOT:
        raise ValueError("ablation 'spot' ranks by cosine of the unscaled vectors: use choose_sources()")
    if ablation in _GROUPING_ABLATIONS:
        if details is None:
            raise ValueError(f"ablation {ablation.value!r} needs the step's group_details()")
        return list(details.ranked if ablation is Ablation.ONLY_POSITIVE else details.group)
    if ablation is Ablation.TARGET_ONLY:
        return []
    if ablation is Ablation.ALL_SOURCES:
        return list(range(num_sources))
    if fixed_group is None:
        raise ValueError(
            "ablation 'fixed_group' needs fixed_group=...: compute it once with select_group() at the start "
            "of stage II and pass the stored group on every call"
        )
    return _check_group_indices(fixed_group, num_sources)


@dataclass(frozen=True)
class GroupingRule:
    """The grouping settings of one DTVG run, checked once; :meth:`details` applies them.

    Attributes mirror :func:`group_details`: ``similarity`` (``dot``/``cosine``), ``objective``
    (``kc_prefix``/``ts_plus_kc``), ``threshold`` on TS and ``lam`` (weight of KC in ``ts_plus_kc``).
    """

    similarity: str = "dot"
    objective: str = "kc_prefix"
    threshold: float = 0.0
    lam: float = 1.0

    def __post_init__(self) -> None:
        _check_settings(self.similarity, self.objective, self.threshold, self.lam)

    def details(
        self,
        target_vector: Tensor,
        source_vectors: Tensor,
        target_scale: Tensor | None = None,
        source_scales: Tensor | None = None,
    ) -> GroupResult:
        """:func:`group_details` with these settings."""
        return group_details(
            target_vector, source_vectors, target_scale, source_scales,
            self.similarity, self.objective, self.threshold, self.lam,
        )


# --------------------------------------------------------------------------------------------------------------
# Merged prompt
# --------------------------------------------------------------------------------------------------------------


def merge_prompt(
    p_init: Tensor,
    target_prompt: Tensor,
    target_scale: Tensor | None,
    source_vectors: Tensor,
    source_scales: Tensor | None,
    group: Sequence[int],
) -> Tensor:
    """``P_mix = P_init + alpha_t ⊙ (P_t - P_init) + sum_{s in group} alpha_s ⊙ T_s``.

    Args:
        p_init: ``[L, d]`` the shared initial prompt (a constant for DTVG).
        target_prompt: ``[L, d]`` the trainable target prompt ``P_t``.
        target_scale: ``[L]`` ``alpha_t`` or ``None`` (ones).
        source_vectors: ``[S, L, d]`` constant source task vectors ``T_s``.
        source_scales: ``[S, L]`` ``alpha_s`` or ``None`` (ones).
        group: source indices to merge (distinct, in ``[0, S)``); may be empty.

    Returns:
        ``[L, d]``, differentiable w.r.t. ``target_prompt``, ``target_scale`` and ``source_scales`` (unlike
        the grouping, the scales are **not** detached here: this is where they learn).
    """
    if p_init.dim() != 2 or target_prompt.shape != p_init.shape:
        raise ValueError(
            f"p_init and target_prompt must both be [L, d], got {tuple(p_init.shape)} and {tuple(target_prompt.shape)}"
        )
    _check_group_inputs(target_prompt, source_vectors, target_scale, source_scales)
    check_same_dtype(p_init=p_init, target_prompt=target_prompt)
    indices = _check_group_indices(group, source_vectors.shape[0])

    merged = p_init + scale_rows(target_prompt - p_init, target_scale)
    if not indices:
        return merged
    index = torch.tensor(indices, dtype=torch.long, device=source_vectors.device)
    chosen = source_vectors.index_select(0, index)
    chosen_scales = None if source_scales is None else source_scales.index_select(0, index)
    return merged + scale_rows(chosen, chosen_scales).sum(dim=0)
