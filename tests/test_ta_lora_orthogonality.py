"""TA-LoRA orthogonality penalties and low-rank delta (METHODS.md §7), against brute force with explicit matrices."""

from __future__ import annotations

import pytest
import torch

from mtpt.methods.ta_lora.orthogonality import low_rank_delta, orthogonality_penalty, paper_penalty_lower_bound


def brute_force(u: torch.Tensor, v: torch.Tensor, mode: str) -> torch.Tensor:
    """Form every A_i = u_i v_i^T (r x d) and every product explicitly (d x d for 'paper')."""
    factors = [torch.outer(u[i], v[i]) for i in range(u.shape[0])]
    eye = torch.eye(v.shape[1], dtype=v.dtype)
    total = u.new_zeros(())
    for i, a_i in enumerate(factors):
        for j, a_j in enumerate(factors):
            if i == j:
                continue
            if mode == "cross":
                total = total + (a_i @ a_j.T).square().sum()
            else:
                total = total + (a_i.T @ a_j - eye).square().sum()
    return total


def _factors(tasks=4, r=3, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(tasks, r, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(tasks, d, generator=gen, dtype=torch.float64, requires_grad=True)
    return u, v


@pytest.mark.parametrize("mode", ["cross", "paper"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_and_gradient_match_brute_force(mode, seed):
    u, v = _factors(seed=seed)
    fast = orthogonality_penalty(u, v, mode)
    slow = brute_force(u, v, mode)
    torch.testing.assert_close(fast, slow)
    grad_fast = torch.autograd.grad(fast, (u, v))
    grad_slow = torch.autograd.grad(slow, (u, v))
    for g_fast, g_slow in zip(grad_fast, grad_slow):
        torch.testing.assert_close(g_fast, g_slow)


def test_hand_case_cross():
    # T = 2, u = [1], [2]; v = [1, 1], [1, 0]: v0.v1 = 1 -> each ordered pair 1 * 1 * 4 = 4 -> 8.
    u = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert orthogonality_penalty(u, v, "cross").item() == 8.0


def test_hand_case_paper():
    # M = (u0.u1) v0 v1^T = 2 [[1, 0], [1, 0]]; ||M - I||^2 = (2-1)^2 + 0 + 2^2 + 1 = 6 per ordered pair.
    u = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert orthogonality_penalty(u, v, "paper").item() == 12.0


def test_cross_is_zero_for_orthogonal_v():
    u = torch.randn(3, 4, dtype=torch.float64)
    v = torch.eye(5, dtype=torch.float64)[:3] * torch.tensor([[2.0], [-1.0], [0.5]], dtype=torch.float64)
    assert orthogonality_penalty(u, v, "cross").item() == 0.0
    assert orthogonality_penalty(u, v + 0.1, "cross").item() > 0


def test_paper_mode_cannot_reach_zero():
    # The bound T(T-1)(d-1) holds on random inputs and is attained with u_i . u_j = 1 and v_i = v_j = a unit vector.
    for seed in range(5):
        u, v = _factors(tasks=3, r=2, d=6, seed=seed)
        assert orthogonality_penalty(u, v, "paper").item() >= paper_penalty_lower_bound(3, 6) - 1e-9
    u = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    v = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]] * 3, dtype=torch.float64)
    torch.testing.assert_close(
        orthogonality_penalty(u, v, "paper"), torch.tensor(paper_penalty_lower_bound(3, 6), dtype=torch.float64)
    )
    # Orthonormal v's (the 'cross' optimum, 0 there) cost ||M||^2 + d = 1 + 6 per pair under 'paper'.
    v_orth = torch.eye(6, dtype=torch.float64)[:3]
    assert orthogonality_penalty(u, v_orth, "cross").item() == 0.0
    assert orthogonality_penalty(u, v_orth, "paper").item() == 3 * 2 * (1 + 6)


def test_single_task_and_none_mode():
    u, v = _factors(tasks=1)
    for mode in ("cross", "paper", "none"):
        assert orthogonality_penalty(u, v, mode).item() == 0.0
    u, v = _factors()
    assert orthogonality_penalty(u, v, "none").item() == 0.0


def test_penalty_keeps_dtype_and_validates():
    u, v = _factors()
    assert orthogonality_penalty(u.float(), v.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="mode"):
        orthogonality_penalty(u, v, "frobenius")
    with pytest.raises(ValueError, match="same T"):
        orthogonality_penalty(u, v[:2])
    with pytest.raises(ValueError, match="dtype"):
        orthogonality_penalty(u, v.float())


# ----------------------------------------------------------------------------------------------------------------
# Low-rank delta
# ----------------------------------------------------------------------------------------------------------------


def _delta_inputs(length=4, r=3, d=5, tasks=3):
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(length, r, generator=gen, dtype=torch.float64, requires_grad=True)
    u = torch.randn(tasks, r, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(tasks, d, generator=gen, dtype=torch.float64, requires_grad=True)
    return B, u, v


def test_delta_matches_explicit_matrices():
    B, u, v = _delta_inputs()
    delta = low_rank_delta(B, u, v, torch.tensor([1]), scale=0.5)
    torch.testing.assert_close(delta[0], 0.5 * B @ torch.outer(u[1], v[1]))


def test_mixed_task_batch_equals_per_task_deltas():
    B, u, v = _delta_inputs()
    task_ids = torch.tensor([2, 0, 2, 1])
    mixed = low_rank_delta(B, u, v, task_ids, scale=2.0)
    assert mixed.shape == (4, 4, 5)
    for b, t in enumerate(task_ids.tolist()):
        torch.testing.assert_close(mixed[b], low_rank_delta(B, u, v, torch.tensor([t]), scale=2.0)[0])


def test_delta_gradients():
    B, u, v = _delta_inputs()
    assert torch.autograd.gradcheck(lambda b, uu, vv: low_rank_delta(b, uu, vv, torch.tensor([0, 2]), 0.7), (B, u, v))
    low_rank_delta(B, u, v, torch.tensor([0]), 1.0).sum().backward()
    assert torch.all(u.grad[1:] == 0) and torch.all(v.grad[1:] == 0)  # only task 0's fast weight moves


def test_delta_validation():
    B, u, v = _delta_inputs()
    with pytest.raises(ValueError, match="B must be"):
        low_rank_delta(B[:, :2], u, v, torch.tensor([0]), 1.0)
    with pytest.raises(ValueError, match="task_ids"):
        low_rank_delta(B, u, v, torch.tensor([3]), 1.0)
    with pytest.raises(ValueError, match="task_ids"):
        low_rank_delta(B, u, v, torch.tensor([[0]]), 1.0)
    with pytest.raises(ValueError, match="scale"):
        low_rank_delta(B, u, v, torch.tensor([0]), float("nan"))


def test_penalty_survives_bf16_autocast_with_large_norms():
    """Regression: total - trace cancelled to exactly 0 in bf16 when the diagonal dominates."""
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(3, 8, generator=generator) * 0.25
    v = torch.randn(3, 576, generator=generator) * 0.4
    exact = orthogonality_penalty(u.double(), v.double(), "cross")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = orthogonality_penalty(u, v, "cross")
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast.double(), exact, rtol=1e-4, atol=0)
