"""Multitask prompt tuning (MPT, METHODS.md §4): prompt composition, prompt distillation, target initialisation.

Task prompt ``P^_k = P* ∘ (u_k v_k)`` (Hadamard product) with a shared ``P* [L, d]`` and a rank-``r`` factor
``u_k [L, r]``, ``v_k [r, d]`` per task (PEFT's layout: ``prefix_task_cols [K, L, r]``, ``prefix_task_rows
[K, r, d]``). Source stage: the student ``P^_k`` is distilled from single-task PT teachers with
``L_task + lambda * (KL(teacher || student) + MSE(teacher hidden, student hidden))``; PEFT does not implement
this loss, :func:`distillation_loss` does (with an optional scale-free hidden-state distance, our addition).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

INIT_MODES = ("shared", "mean", "source", "random")
HIDDEN_DISTANCES = ("mse", "normalized_mse")

__all__ = ["HIDDEN_DISTANCES", "INIT_MODES", "distillation_loss", "init_task_factors", "mpt_task_prompts"]


def _check_factors(u: Tensor, v: Tensor) -> None:
    if u.dim() != 3 or v.dim() != 3 or u.shape[0] != v.shape[0] or u.shape[2] != v.shape[1]:
        raise ValueError(f"expected u [K, L, r] and v [K, r, d], got {tuple(u.shape)} and {tuple(v.shape)}")


def _check_task_ids(task_ids: Tensor, num_tasks: int) -> None:
    if task_ids.dim() != 1 or task_ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"task_ids must be a 1-D integer tensor, got shape {tuple(task_ids.shape)} {task_ids.dtype}")
    if task_ids.numel() and (int(task_ids.min()) < 0 or int(task_ids.max()) >= num_tasks):
        raise ValueError(f"task_ids must lie in [0, {num_tasks}), got {task_ids.tolist()}")


def mpt_task_prompts(shared: Tensor, u: Tensor, v: Tensor, task_ids: Tensor) -> Tensor:
    """Per-example task prompts ``P* ∘ (u_k v_k)`` for ``k = task_ids[b]``.

    Args:
        shared: ``[L, d]`` the shared prompt ``P*``.
        u: ``[K, L, r]`` per-task left factors.
        v: ``[K, r, d]`` per-task right factors.
        task_ids: ``[B]`` integer task index of each example.

    Returns:
        ``[B, L, d]``; examples of different tasks in one batch each get their own prompt.
    """
    _check_factors(u, v)
    if shared.shape != (u.shape[1], v.shape[2]):
        raise ValueError(f"shared must be [L, d] = {(u.shape[1], v.shape[2])}, got {tuple(shared.shape)}")
    _check_task_ids(task_ids, u.shape[0])
    # Select the factors first (cost ∝ B, not K), then one batched matmul builds every W_k = u_k v_k.
    low_rank = torch.bmm(u.index_select(0, task_ids), v.index_select(0, task_ids))
    return shared.unsqueeze(0) * low_rank


def _selected_positions(mask: Tensor | None, leading_shape: torch.Size, device: torch.device) -> Tensor:
    """Boolean ``[N]`` over the flattened leading positions; raises if the mask selects nothing."""
    if mask is None:
        return torch.ones(leading_shape.numel(), dtype=torch.bool, device=device)
    if mask.shape != leading_shape:
        raise ValueError(f"mask must have shape {tuple(leading_shape)}, got {tuple(mask.shape)}")
    selected = mask.reshape(-1).bool()
    if not bool(selected.any()):
        raise ValueError("mask selects no position: the distillation loss would be undefined")
    return selected


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    hidden_distance: str = "mse",
) -> dict[str, Tensor]:
    """MPT prompt-distillation terms.

    Args:
        student_logits, teacher_logits: ``[B, T, V]`` (any leading shape ``[...]``, shared by all inputs).
        student_hidden, teacher_hidden: ``[B, T, H]`` hidden states (the layer is the caller's choice).
        mask: ``[B, T]`` (1/True = position counts) or ``None``; masked positions contribute nothing.
        temperature: softmax temperature ``tau > 0`` for the KL term.
        hidden_distance: ``"mse"`` (the paper's) compares the raw hidden states; ``"normalized_mse"`` first
            standardises each position's hidden vector (zero mean, unit variance over the hidden units, as a layer
            norm without weights does), so the term no longer grows with the backbone's activation scale and lies
            in ``[0, 4]`` (it is ``2 (1 - r)`` for the Pearson correlation ``r`` of the two vectors).

    Returns:
        ``{"kl": ..., "mse": ...}`` scalars:

        * ``kl`` = mean over selected positions of ``KL(p_teacher || p_student)`` summed over the vocabulary,
          with ``p = softmax(logits / tau)``, multiplied by ``tau**2`` (our choice, Hinton et al. 2015: keeps
          the gradient scale independent of ``tau``; no effect at the default ``tau = 1``).
        * ``mse`` = mean over selected positions and hidden units of ``(student - teacher)**2`` (of the
          standardised vectors for ``"normalized_mse"``).

        The teacher tensors are detached (the teachers are frozen). Computed in the inputs' dtype; upcast
        low-precision logits before calling if needed.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logits shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}")
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"hidden shapes differ: {tuple(student_hidden.shape)} vs {tuple(teacher_hidden.shape)}")
    if student_logits.shape[:-1] != student_hidden.shape[:-1]:
        raise ValueError(
            f"logits {tuple(student_logits.shape)} and hidden {tuple(student_hidden.shape)} must share leading dims"
        )
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    if hidden_distance not in HIDDEN_DISTANCES:
        raise ValueError(f"hidden_distance must be one of {HIDDEN_DISTANCES}, got {hidden_distance!r}")
    selected = _selected_positions(mask, student_logits.shape[:-1], student_logits.device)

    def rows(x: Tensor) -> Tensor:  # [..., F] -> [N_selected, F]
        return x.reshape(-1, x.shape[-1])[selected]

    student_log_probs = F.log_softmax(rows(student_logits) / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(rows(teacher_logits).detach() / temperature, dim=-1)
    # log_target=True avoids log(0) when the teacher puts (numerically) zero mass on a token.
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True) * temperature**2
    student_rows, teacher_rows = rows(student_hidden), rows(teacher_hidden).detach()
    if hidden_distance == "normalized_mse":
        student_rows = F.layer_norm(student_rows, student_rows.shape[-1:])
        teacher_rows = F.layer_norm(teacher_rows, teacher_rows.shape[-1:])
    mse = F.mse_loss(student_rows, teacher_rows, reduction="mean")
    return {"kl": kl, "mse": mse}


def init_task_factors(
    u_sources: Tensor,
    v_sources: Tensor,
    mode: str = "mean",
    source_index: int | None = None,
    generator: torch.Generator | None = None,
    std: float = 0.02,
) -> tuple[Tensor, Tensor]:
    """Initial ``(u_t [L, r], v_t [r, d])`` for a new target task.

    Args:
        u_sources: ``[K, L, r]`` trained source factors.
        v_sources: ``[K, r, d]``.
        mode: ``"shared"``: ``u = 1/r``, ``v = 1``, so that ``u_t v_t = 1`` everywhere and the target's prompt
            starts exactly at the shared prompt ``P*`` (what the sources share, at its own scale);
            ``"mean"``: the mean of the source factors, taken separately for ``u`` and ``v`` as PEFT's
            ``AVERAGE_SOURCE_TASKS`` does (so ``u_t v_t`` is *not* the mean of the products: with near-orthogonal
            source factors it is close to 0, and so is the target's initial prompt);
            ``"source"``: one source's factors (``source_index``); ``"random"``: ``N(0, std)`` (PEFT: 0.02).
        source_index: required for ``"source"``.
        generator: random generator for ``"random"``.
        std: standard deviation for ``"random"``.

    Returns:
        Fresh tensors (detached copies) in the sources' dtype and device, ready to wrap in ``nn.Parameter``.
    """
    _check_factors(u_sources, v_sources)
    num_sources = u_sources.shape[0]
    if mode not in INIT_MODES:
        raise ValueError(f"mode must be one of {INIT_MODES}, got {mode!r}")
    if mode == "random":
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"std must be a positive finite number, got {std!r}")
        shape_u, shape_v = u_sources.shape[1:], v_sources.shape[1:]
        u = torch.randn(shape_u, generator=generator, dtype=u_sources.dtype, device=u_sources.device) * std
        v = torch.randn(shape_v, generator=generator, dtype=v_sources.dtype, device=v_sources.device) * std
        return u, v
    if mode == "shared":
        rank = u_sources.shape[-1]
        u = torch.full(u_sources.shape[1:], 1.0 / rank, dtype=u_sources.dtype, device=u_sources.device)
        return u, torch.ones(v_sources.shape[1:], dtype=v_sources.dtype, device=v_sources.device)
    if num_sources == 0:
        raise ValueError(f"mode {mode!r} needs at least one source task")
    if mode == "mean":
        return u_sources.detach().mean(dim=0), v_sources.detach().mean(dim=0)
    if source_index is None or not 0 <= source_index < num_sources:
        raise ValueError(f"mode 'source' needs source_index in [0, {num_sources}), got {source_index!r}")
    return u_sources[source_index].detach().clone(), v_sources[source_index].detach().clone()
