"""TA-LoRA (METHODS.md §7, our reconstruction): task factor orthogonality and the low-rank prompt delta.

Task ``i`` has a rank-1 fast weight ``A_i = u_i v_i^T`` with ``u_i in R^r`` and ``v_i in R^d`` (so
``A_i in R^{r x d}``); the shared slow weight is ``B in R^{L x r}`` and the task's prompt delta is
``Delta P_i = s * B A_i in R^{L x d}``.

Orthogonality regularisers over the ``T`` tasks, all computed from the two ``[T, T]`` Gram matrices
``G_u = U U^T`` and ``G_v = V V^T`` (no ``r x d`` or ``d x d`` matrix is ever formed):

* ``cross`` (default): ``sum_{i != j} ||A_i A_j^T||_F^2``. ``A_i A_j^T = (v_i . v_j) u_i u_j^T``, hence
  ``||.||^2 = (v_i . v_j)^2 ||u_i||^2 ||u_j||^2``. It is 0 exactly when the tasks' ``v`` are orthogonal (or a
  factor is 0), i.e. the tasks write into orthogonal directions of the hidden space.
* ``paper``: the printed ``sum_{i != j} ||A_i^T A_j - I_d||_F^2``. With ``M = A_i^T A_j = (u_i . u_j) v_i v_j^T``:
  ``||M - I||^2 = ||M||^2 - 2 tr(M) + d``, ``||M||^2 = (u_i . u_j)^2 ||v_i||^2 ||v_j||^2``,
  ``tr(M) = (u_i . u_j)(v_i . v_j)``. ``M`` has rank <= 1, so each pair costs at least ``d - 1`` (the
  distance from ``I_d`` to the nearest rank-1 matrix); the penalty is bounded below by ``T (T - 1)(d - 1)``
  and can never reach 0. It is offered for fidelity to the paper only.
* ``none``: 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ORTHOGONALITY_MODES = ("cross", "paper", "none")

__all__ = ["ORTHOGONALITY_MODES", "low_rank_delta", "orthogonality_penalty", "paper_penalty_lower_bound"]


def _check_task_factors(u: Tensor, v: Tensor) -> None:
    if u.dim() != 2 or v.dim() != 2 or u.shape[0] != v.shape[0]:
        raise ValueError(f"expected u [T, r] and v [T, d] with the same T, got {tuple(u.shape)} and {tuple(v.shape)}")
    if u.dtype != v.dtype:
        raise ValueError(f"u ({u.dtype}) and v ({v.dtype}) must share a dtype")


def _off_diagonal_sum(pair_values: Tensor) -> Tensor:
    """Sum of a ``[T, T]`` matrix over ordered pairs ``i != j``.

    Masked, not ``total - trace``: the diagonal terms (``‖u_i‖⁴‖v_i‖⁴``) can be orders of magnitude larger than
    the off-diagonal ones, and the subtraction would cancel them to 0 in low precision.
    """
    off_diagonal = ~torch.eye(pair_values.shape[0], dtype=torch.bool, device=pair_values.device)
    return pair_values[off_diagonal].sum()


def orthogonality_penalty(u: Tensor, v: Tensor, mode: str = "cross") -> Tensor:
    """Orthogonality regulariser over all ordered task pairs ``i != j`` (see the module docstring).

    Args:
        u: ``[T, r]`` task factors ``u_i``.
        v: ``[T, d]`` task factors ``v_i``.
        mode: ``"cross"``, ``"paper"`` or ``"none"``.

    Returns:
        A scalar tensor in the factors' dtype, differentiable w.r.t. ``u`` and ``v``; 0 for ``T = 1``.
    """
    _check_task_factors(u, v)
    if mode not in ORTHOGONALITY_MODES:
        raise ValueError(f"mode must be one of {ORTHOGONALITY_MODES}, got {mode!r}")
    if mode == "none" or u.shape[0] < 2:
        return u.new_zeros(())
    with torch.autocast(u.device.type, enabled=False):  # in the factors' dtype, never bf16 under autocast
        return _penalty(u, v, mode)


def _penalty(u: Tensor, v: Tensor, mode: str) -> Tensor:
    gram_u, gram_v = u @ u.T, v @ v.T  # [T, T]: u_i . u_j and v_i . v_j
    sq_norm_u, sq_norm_v = gram_u.diagonal(), gram_v.diagonal()
    if mode == "cross":
        pair_values = gram_v.square() * torch.outer(sq_norm_u, sq_norm_u)
        return _off_diagonal_sum(pair_values)
    dim = v.shape[1]
    pair_values = gram_u.square() * torch.outer(sq_norm_v, sq_norm_v) - 2 * gram_u * gram_v + dim
    return _off_diagonal_sum(pair_values)


def paper_penalty_lower_bound(num_tasks: int, d: int) -> float:
    """``T (T - 1)(d - 1)``: the value below which the ``paper`` penalty can never go."""
    if num_tasks < 0 or d < 1:
        raise ValueError(f"need num_tasks >= 0 and d >= 1, got {num_tasks} and {d}")
    return float(num_tasks * (num_tasks - 1) * (d - 1))


def low_rank_delta(B: Tensor, u: Tensor, v: Tensor, task_ids: Tensor, scale: float) -> Tensor:
    """Per-example task-specific prompt delta ``scale * B (u_t v_t^T)`` with ``t = task_ids[b]``.

    ``B A_t = (B u_t) v_t^T``: the ``[L]`` vector ``B u_t`` times ``v_t`` (an outer product), so no
    ``r x d`` matrix is formed.

    Args:
        B: ``[L, r]`` shared slow weight.
        u: ``[T, r]``; v: ``[T, d]`` task fast weights.
        task_ids: ``[N]`` integer task index per example.
        scale: ``s`` (LoRA-style ``alpha / r`` by default in the method config).

    Returns:
        ``[N, L, d]``.
    """
    _check_task_factors(u, v)
    if B.dim() != 2 or B.shape[1] != u.shape[1]:
        raise ValueError(f"B must be [L, r] with r = {u.shape[1]}, got {tuple(B.shape)}")
    if task_ids.dim() != 1 or task_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"task_ids must be a 1-D integer tensor, got shape {tuple(task_ids.shape)} {task_ids.dtype}")
    if task_ids.numel() and (int(task_ids.min()) < 0 or int(task_ids.max()) >= u.shape[0]):
        raise ValueError(f"task_ids must lie in [0, {u.shape[0]}), got {task_ids.tolist()}")
    if not math.isfinite(float(scale)):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    b_u = u.index_select(0, task_ids) @ B.T  # [N, L]: (B u_t)^T for each example
    return scale * b_u.unsqueeze(-1) * v.index_select(0, task_ids).unsqueeze(1)
