"""Initial values of the TA-LoRA factors and the target stage's new fast weights.

All of ``B [L, r]``, ``u [T, r]`` and ``v [T, d]`` start random and non-zero. Unlike LoRA (``B = 0``), a zero
factor would never move here: with the gate at 0 the only gradient is the gate's, and it is proportional to the
low-rank block; once the gate opens, a zero factor would still kill the gradient of the other two.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["balanced_std", "principal_factors", "random_factors", "target_factors"]


def balanced_std(delta_rms: float, scale: float, rank: int) -> float:
    """The sigma such that ``B, u, v ~ N(0, sigma^2)`` give ``Delta P = s B u v^T`` entries of RMS ``delta_rms``.

    An entry is ``s * sum_j B_lj u_j * v_k``: variance ``s^2 * r sigma^4 * sigma^2``, hence
    ``sigma = (rms^2 / (s^2 r))^(1/6)``. All three factors get the same sigma so that no factor's relative
    learning speed is set by its init (their learning rates do that).
    """
    if not (delta_rms > 0 and math.isfinite(delta_rms)):
        raise ValueError(f"delta_rms must be a positive number, got {delta_rms!r}")
    if scale == 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be finite and non-zero, got {scale!r}")
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    return (delta_rms**2 / (scale**2 * rank)) ** (1.0 / 6.0)


def random_factors(length: int, rank: int, tasks: int, dim: int, std: float,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``B [L, r]``, ``u [T, r]``, ``v [T, d]``, all ``N(0, std^2)``."""
    b = torch.randn(length, rank, generator=generator) * std
    u = torch.randn(tasks, rank, generator=generator) * std
    v = torch.randn(tasks, dim, generator=generator) * std
    return b, u, v


def principal_factors(slow_b: Tensor, source_u: Tensor, source_v: Tensor) -> tuple[Tensor, Tensor]:
    """One fast weight ``(u [r], v [d])`` whose block ``B u v^T`` is the best rank-1 approximation of the mean source
    block ``mean_i B u_i v_i^T``, rescaled to the mean norm of the source blocks.

    Why rescaled: with near-orthogonal source factors the mean block is about ``1/S`` of one block, and so is its
    rank-1 approximation; its direction is what the sources have in common, its size should be one task block's.
    The scale factor ``s`` multiplies every block alike and is left out. Of the ``(c u, v / c)`` pairs giving the
    block, the one with ``||v||`` equal to the sources' mean ``||v_i||`` is returned (the learning rates then move
    ``v`` as much, relatively, as they moved the sources').
    """
    if source_u.dim() != 2 or source_v.dim() != 2 or source_u.shape[0] != source_v.shape[0] or not len(source_u):
        raise ValueError(f"expected source u [S, r] and v [S, d] with S >= 1, got {tuple(source_u.shape)}, "
                         f"{tuple(source_v.shape)}")
    b, u_s, v_s = slow_b.double(), source_u.double(), source_v.double()
    left = u_s @ b.transpose(0, 1)  # [S, L]: B u_i, the column factor of block i
    blocks = left.unsqueeze(2) * v_s.unsqueeze(1)  # [S, L, d]
    mean_norm = blocks.flatten(1).norm(dim=1).mean()
    columns, singular, rows = torch.linalg.svd(blocks.mean(dim=0), full_matrices=False)
    if not singular[0] > 0:
        raise ValueError("the mean source block is zero: no direction to start the target from")
    column, row = columns[:, 0], rows[0]  # unit vectors; column lies in B's column space (every block's does)
    v_norm = v_s.norm(dim=1).mean()
    v = row * v_norm
    # B u = column * mean_norm / ||v||: solved exactly (column is in B's span) by least squares
    u = torch.linalg.lstsq(b, (column * mean_norm / v_norm).unsqueeze(1)).solution.squeeze(1)
    return u.to(source_u.dtype), v.to(source_v.dtype)


def target_factors(source_u: Tensor, source_v: Tensor, mode: str, tasks: int, *, index: int | None = None,
                   std: float = 1.0, generator: torch.Generator | None = None,
                   slow_b: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """New fast weights ``u [tasks, r]``, ``v [tasks, d]`` for the target stage.

    ``principal``: every target starts at :func:`principal_factors` (needs ``slow_b``); ``mean``: at the mean of the
    source factors, ``u`` and ``v`` averaged separately (with near-orthogonal ``v_i`` the block nearly cancels);
    ``source``: at source ``index``'s; ``random``: ``N(0, std^2)`` (the source stage's sigma). (``reuse`` is
    handled by the caller: it copies rows.)
    """
    if source_u.dim() != 2 or source_v.dim() != 2 or source_u.shape[0] != source_v.shape[0] or not len(source_u):
        raise ValueError(f"expected source u [S, r] and v [S, d] with S >= 1, got {tuple(source_u.shape)}, "
                         f"{tuple(source_v.shape)}")
    if mode == "principal":
        if slow_b is None:
            raise ValueError("mode 'principal' needs the slow weight B")
        u, v = principal_factors(slow_b, source_u, source_v)
    elif mode == "mean":
        u, v = source_u.mean(dim=0), source_v.mean(dim=0)
    elif mode == "source":
        if index is None or not 0 <= index < len(source_u):
            raise ValueError(f"mode 'source' needs an index in [0, {len(source_u)}), got {index!r}")
        u, v = source_u[index], source_v[index]
    elif mode == "random":
        u = torch.randn(tasks, source_u.shape[1], generator=generator) * std
        v = torch.randn(tasks, source_v.shape[1], generator=generator) * std
        return u, v
    else:
        raise ValueError(f"unknown target init {mode!r}")
    return u.unsqueeze(0).repeat(tasks, 1).clone(), v.unsqueeze(0).repeat(tasks, 1).clone()
