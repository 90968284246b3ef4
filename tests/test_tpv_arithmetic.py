"""Task prompt vector arithmetic (METHODS.md §5)."""

from __future__ import annotations

import pytest
import torch

from mtpt.methods.tpv.arithmetic import (
    DEFAULT_LAMBDAS,
    add,
    apply_to,
    lambda_grid,
    negate,
    scale,
    subtract,
    task_vector,
)


@pytest.fixture
def prompts():
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    trained = [torch.randn(5, 7, generator=gen, dtype=torch.float64) for _ in range(3)]
    return init, trained


def test_task_vector_round_trip(prompts):
    init, (p, *_) = prompts
    tau = task_vector(p, init)
    torch.testing.assert_close(tau, p - init)
    torch.testing.assert_close(apply_to(init, [tau], [1.0]), p)
    torch.testing.assert_close(apply_to(init, tau[None], torch.tensor([1.0], dtype=torch.float64)), p)


def test_add_negate_is_zero(prompts):
    init, (p, *_) = prompts
    tau = task_vector(p, init)
    assert torch.equal(add(tau, negate(tau)), torch.zeros_like(tau))


def test_subtract_equals_add_negate(prompts):
    init, (a, b, _) = prompts
    tau_a, tau_b = task_vector(a, init), task_vector(b, init)
    torch.testing.assert_close(subtract(tau_a, tau_b), add(tau_a, negate(tau_b)))


def test_add_is_associative_and_commutative(prompts):
    init, trained = prompts
    a, b, c = (task_vector(p, init) for p in trained)
    torch.testing.assert_close(add(add(a, b), c), add(a, add(b, c)))
    torch.testing.assert_close(add(a, b), add(b, a))


def test_scaling_is_linear(prompts):
    init, (a, b, _) = prompts
    tau_a, tau_b = task_vector(a, init), task_vector(b, init)
    torch.testing.assert_close(scale(add(tau_a, tau_b), 0.3), add(scale(tau_a, 0.3), scale(tau_b, 0.3)))
    torch.testing.assert_close(scale(tau_a, 0.25 + 0.5), add(scale(tau_a, 0.25), scale(tau_a, 0.5)))
    torch.testing.assert_close(scale(tau_a, -1.0), negate(tau_a))
    assert scale(tau_a.float(), torch.tensor(2.0, dtype=torch.float64)).dtype == torch.float32


def test_apply_to_weighted_sum(prompts):
    init, trained = prompts
    taus = [task_vector(p, init) for p in trained]
    lambdas = [0.2, -0.5, 1.5]
    expected = init + sum(l * t for l, t in zip(lambdas, taus))
    torch.testing.assert_close(apply_to(init, taus, lambdas), expected)
    torch.testing.assert_close(apply_to(init, torch.stack(taus), 0.5), init + 0.5 * sum(taus))
    empty = apply_to(init, [], [])
    torch.testing.assert_close(empty, init)
    assert empty is not init


def test_apply_to_is_differentiable_in_lambdas(prompts):
    init, trained = prompts
    taus = torch.stack([task_vector(p, init) for p in trained])
    lambdas = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    apply_to(init, taus, lambdas).sum().backward()
    torch.testing.assert_close(lambdas.grad, taus.sum(dim=(1, 2)))


def test_dtype_is_preserved(prompts):
    init, trained = prompts
    init32 = init.float()
    taus = [task_vector(p.float(), init32) for p in trained]
    assert apply_to(init32, taus, [0.5, 0.5, 0.5]).dtype == torch.float32


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda i, t: task_vector(t[0][:4], i), "same shape"),
        (lambda i, t: add(t[0], t[1][:, :3]), "same shape"),
        (lambda i, t: subtract(t[0], t[1].T), "same shape"),
        (lambda i, t: scale(t[0], torch.ones(2)), "scalar"),
        (lambda i, t: apply_to(i, [t[0], t[1][:4]], 1.0), "vector 1"),
        (lambda i, t: apply_to(i, torch.stack(t)[:, :4], 1.0), r"\[K, 5, 7\]"),
        (lambda i, t: apply_to(i, t, [1.0, 2.0]), r"shape \[3\]"),
        (lambda i, t: apply_to(i, [x.float() for x in t], 1.0), "dtype"),
    ],
)
def test_shape_errors(prompts, call, match):
    init, trained = prompts
    with pytest.raises(ValueError, match=match):
        call(init, trained)


def test_lambda_grid_shared():
    grid = lambda_grid(3)
    assert len(grid) == 11
    assert grid[0] == (0.0, 0.0, 0.0) and grid[3] == (0.3, 0.3, 0.3) and grid[-1] == (1.0, 1.0, 1.0)
    assert DEFAULT_LAMBDAS[3] == 0.3


def test_lambda_grid_per_task():
    grid = lambda_grid(2, values=(0.0, 0.5, 1.0), mode="per_task")
    assert len(grid) == 9 and len(set(grid)) == 9
    assert (0.0, 1.0) in grid and (1.0, 0.5) in grid
    assert len(lambda_grid(3, mode="per_task")) == 11**3


def test_lambda_grid_limits_and_validation():
    with pytest.raises(ValueError, match="max_combinations"):
        lambda_grid(4, mode="per_task")
    assert len(lambda_grid(4, mode="per_task", max_combinations=11**4)) == 11**4
    with pytest.raises(ValueError, match="mode"):
        lambda_grid(2, mode="each")
    with pytest.raises(ValueError, match="num_tasks"):
        lambda_grid(0)
    with pytest.raises(ValueError, match="values"):
        lambda_grid(2, values=())
    with pytest.raises(ValueError, match="values"):
        lambda_grid(2, values=(0.0, float("nan")))
