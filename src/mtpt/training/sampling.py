"""Multi-task batch sampling: which examples each optimizer step sees.

Tasks are drawn per example from the mixing distribution (proportional to size, temperature-scaled, or
uniform); within a task, examples come in epochs of seeded permutations. The only state is one cursor per
task, so a resumed run draws exactly the batches it would have drawn.
"""

from __future__ import annotations

from enum import Enum
from typing import Sequence

import torch


class Mixing(str, Enum):
    PROPORTIONAL = "proportional"
    TEMPERATURE = "temperature"
    UNIFORM = "uniform"


def mixing_weights(sizes: Sequence[int], mixing: Mixing | str, temperature: float = 2.0) -> torch.Tensor:
    """Probability of drawing each task: ∝ n, ∝ n^(1/T), or uniform."""
    mixing = Mixing(mixing)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every task needs at least one training example, got sizes {list(sizes)}")
    counts = torch.tensor(sizes, dtype=torch.float64)
    if mixing is Mixing.UNIFORM:
        weights = torch.ones_like(counts)
    elif mixing is Mixing.TEMPERATURE:
        if temperature <= 0:
            raise ValueError(f"mixing_temperature must be positive, got {temperature}")
        weights = counts ** (1.0 / temperature)
    else:
        weights = counts
    return weights / weights.sum()


class MixtureSampler:
    """Deterministic, resumable draws of (task index, example index) pairs."""

    def __init__(self, sizes: Sequence[int], weights: torch.Tensor, seed: int):
        self.sizes = list(sizes)
        self.weights = weights
        self.seed = seed
        self.cursors = [0] * len(self.sizes)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def draw(self, step: int, count: int) -> list[tuple[int, int]]:
        """The examples of optimizer step ``step`` (the same on every process)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        tasks = torch.multinomial(self.weights, count, replacement=True, generator=generator).tolist()
        return [(task, self._next(task)) for task in tasks]

    def _next(self, task: int) -> int:
        epoch, position = divmod(self.cursors[task], self.sizes[task])
        self.cursors[task] += 1
        key = (task, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != task}  # keep one epoch per task
            generator = torch.Generator().manual_seed(self.seed * 7919 + task * 104_729 + epoch)
            self._perms[key] = torch.randperm(self.sizes[task], generator=generator)
        return int(self._perms[key][position])

    def state_dict(self) -> dict:
        return {"cursors": list(self.cursors)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["cursors"]) != len(self.sizes):
            raise ValueError("sampler state does not match the run's task list")
        self.cursors = list(state["cursors"])
