"""Multi-task batch sampling: mixing weights, epochs, determinism, resumability."""

from __future__ import annotations

import pytest
import torch

from mtpt.training.sampling import MixtureSampler, mixing_weights


def test_mixing_weights():
    torch.testing.assert_close(mixing_weights([10, 30], "proportional"), torch.tensor([0.25, 0.75], dtype=torch.float64))
    torch.testing.assert_close(mixing_weights([10, 30], "uniform"), torch.tensor([0.5, 0.5], dtype=torch.float64))
    t = mixing_weights([1, 4], "temperature", temperature=2.0)  # ∝ sqrt(n)
    torch.testing.assert_close(t, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    with pytest.raises(ValueError):
        mixing_weights([0, 3], "uniform")


def test_every_example_is_seen_once_per_epoch():
    sampler = MixtureSampler([5], mixing_weights([5], "uniform"), seed=3)
    drawn = [i for step in range(5) for _, i in sampler.draw(step, 2)]
    assert sorted(drawn) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(drawn[:5]) == [0, 1, 2, 3, 4]


def test_draws_are_deterministic_and_resumable():
    weights = mixing_weights([7, 3], "proportional")
    a = MixtureSampler([7, 3], weights, seed=1)
    straight = [a.draw(step, 4) for step in range(6)]
    b = MixtureSampler([7, 3], weights, seed=1)
    first = [b.draw(step, 4) for step in range(3)]
    c = MixtureSampler([7, 3], weights, seed=1)
    c.load_state_dict(b.state_dict())
    assert first + [c.draw(step, 4) for step in range(3, 6)] == straight


def test_task_frequencies_follow_the_weights():
    sampler = MixtureSampler([90, 10], mixing_weights([90, 10], "proportional"), seed=0)
    tasks = [t for step in range(200) for t, _ in sampler.draw(step, 10)]
    assert 0.85 < tasks.count(0) / len(tasks) < 0.95
