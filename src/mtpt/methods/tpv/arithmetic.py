"""Task prompt vector arithmetic (TPV, METHODS.md §5): pure tensor functions.

All tasks start from the same initial prompt ``P_init`` (``[L, d]``), so a trained prompt ``P*_k`` is described
by its task vector ``tau_k = P*_k - P_init`` and prompts can be combined as ``P = P_init + sum_k lambda_k tau_k``.
Every function checks shapes and keeps the dtype of its tensor inputs (scalar coefficients are cast to it).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
from torch import Tensor

# 0.0, 0.1, ..., 1.0, rounded so that 0.3 is 0.3 and not 0.30000000000000004.
DEFAULT_LAMBDAS = tuple(round(0.1 * i, 1) for i in range(11))
GRID_MODES = ("shared", "per_task")

__all__ = [
    "DEFAULT_LAMBDAS",
    "GRID_MODES",
    "add",
    "apply_to",
    "lambda_grid",
    "most_similar",
    "negate",
    "scale",
    "subtract",
    "task_vector",
]


def _check_same_shape(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def task_vector(prompt: Tensor, init: Tensor) -> Tensor:
    """``tau = prompt - init``; both ``[L, d]`` (any equal shapes)."""
    _check_same_shape(prompt, init, "prompt and init")
    return prompt - init


def add(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` for two task vectors of equal shape."""
    _check_same_shape(a, b, "task vectors")
    return a + b


def subtract(a: Tensor, b: Tensor) -> Tensor:
    """``a - b`` (= ``add(a, negate(b))``) for two task vectors of equal shape."""
    _check_same_shape(a, b, "task vectors")
    return a - b


def negate(a: Tensor) -> Tensor:
    """``-a``: the task vector pointing away from the task ("forgetting" it)."""
    return -a


def scale(a: Tensor, factor: float | Tensor) -> Tensor:
    """``factor * a`` with a scalar ``factor`` (a 0-d tensor is accepted); the result keeps ``a``'s dtype."""
    factor = torch.as_tensor(factor)
    if factor.dim() != 0:
        raise ValueError(f"scale factor must be a scalar, got shape {tuple(factor.shape)}")
    return a * factor.to(dtype=a.dtype, device=a.device)


def _stack_vectors(vectors: Tensor | Sequence[Tensor], origin: Tensor) -> Tensor:
    """``vectors`` as a ``[K, *origin.shape]`` tensor (``K`` may be 0)."""
    if isinstance(vectors, Tensor):
        stacked = vectors
    elif len(vectors) == 0:
        stacked = origin.new_zeros((0, *origin.shape))
    else:
        for k, vector in enumerate(vectors):
            if vector.shape != origin.shape:
                raise ValueError(f"vector {k} has shape {tuple(vector.shape)}, origin has {tuple(origin.shape)}")
        stacked = torch.stack(list(vectors))
    if stacked.shape[1:] != origin.shape:
        raise ValueError(f"vectors must be [K, {', '.join(map(str, origin.shape))}], got {tuple(stacked.shape)}")
    if stacked.dtype != origin.dtype:
        raise ValueError(f"vectors ({stacked.dtype}) and origin ({origin.dtype}) must share a dtype")
    return stacked


def _lambda_vector(lambdas: float | Sequence[float] | Tensor, num_vectors: int, like: Tensor) -> Tensor:
    """``lambdas`` as a ``[K]`` tensor in ``like``'s dtype; a scalar is broadcast to every vector."""
    lam = torch.as_tensor(lambdas, dtype=like.dtype, device=like.device)
    if lam.dim() == 0:
        return lam.expand(num_vectors)
    if lam.shape != (num_vectors,):
        raise ValueError(f"lambdas must be a scalar or have shape [{num_vectors}], got {tuple(lam.shape)}")
    return lam


def apply_to(
    origin: Tensor, vectors: Tensor | Sequence[Tensor], lambdas: float | Sequence[float] | Tensor = 1.0
) -> Tensor:
    """``origin + sum_k lambdas[k] * vectors[k]``.

    Args:
        origin: ``[L, d]`` (usually ``P_init``).
        vectors: ``[K, L, d]`` tensor or a list of ``K`` ``[L, d]`` tensors; ``K = 0`` returns a copy of origin.
        lambdas: ``[K]`` (tensor or sequence) or one scalar for all vectors. Differentiable if a tensor
            requiring grad is given (e.g. learnt coefficients).

    Returns:
        ``[L, d]`` in origin's dtype.
    """
    stacked = _stack_vectors(vectors, origin)
    lam = _lambda_vector(lambdas, stacked.shape[0], origin)
    # tensordot over K: one fused multiply-add instead of a Python loop over tasks.
    return origin + torch.tensordot(lam, stacked, dims=1)


def most_similar(target_vector: Tensor, vectors: Tensor, k: int) -> list[int]:
    """Indices of the ``k`` vectors most cosine-similar (token-averaged, as SPoT compares prompts) to
    ``target_vector``, most similar first; ties keep the vectors' order.

    Args:
        target_vector: ``[L, d]``.
        vectors: ``[K, L, d]``.
        k: how many, at least 1 (capped at ``K``).
    """
    from mtpt.similarity import similarity_matrix

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if vectors.dim() != 3 or vectors.shape[0] == 0:
        raise ValueError(f"vectors must be [K, L, d] with K >= 1, got shape {tuple(vectors.shape)}")
    cosine = similarity_matrix(target_vector.unsqueeze(0).to(vectors.dtype), vectors, kind="cosine")[0]
    order = sorted(range(len(cosine)), key=lambda i: (-float(cosine[i]), i))
    return order[: min(k, len(order))]


def lambda_grid(
    num_tasks: int,
    values: Sequence[float] = DEFAULT_LAMBDAS,
    mode: str = "shared",
    max_combinations: int = 1331,
) -> list[tuple[float, ...]]:
    """Candidate coefficient tuples ``(lambda_1, ..., lambda_K)`` to evaluate on validation.

    Args:
        num_tasks: ``K`` >= 1.
        values: the grid of one coefficient (default 0.0, 0.1, ..., 1.0).
        mode: ``"shared"``: one lambda for all tasks (``len(values)`` tuples); ``"per_task"``: the cartesian
            product (``len(values) ** K`` tuples, each a full validation run).
        max_combinations: refuse ``per_task`` grids larger than this (default 11**3: three tasks on the default
            grid) instead of silently launching an exponential search; raise it deliberately if wanted.
    """
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    values = tuple(float(v) for v in values)
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"values must be a non-empty sequence of finite numbers, got {values}")
    if mode == "shared":
        return [(v,) * num_tasks for v in values]
    if mode != "per_task":
        raise ValueError(f"mode must be one of {GRID_MODES}, got {mode!r}")
    size = len(values) ** num_tasks
    if size > max_combinations:
        raise ValueError(
            f"per_task grid has {len(values)}**{num_tasks} = {size} combinations > max_combinations="
            f"{max_combinations}; use mode='shared', fewer values, or raise max_combinations"
        )
    return list(itertools.product(values, repeat=num_tasks))
