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


class LengthGroupedSampler:
    """The draws of a :class:`MixtureSampler`, regrouped by length (``data.length_grouping``, opt-in).

    The examples of ``window`` consecutive steps are drawn together (the same examples the inner sampler gives
    those steps), sorted by ``length(task, index)`` and cut into ``window`` batches, which run in a random order
    seeded by the sampler's seed and the window. Each batch then pads to about its own length instead of to the
    longest of a random draw. Every window of steps sees the same examples as without grouping, in another
    order, so training changes: that is why it is off by default.

    Resuming: the state is the inner sampler's cursors at the start of the window that the next step falls in,
    so a run resumed mid-window draws that window again and gets the same batches."""

    def __init__(self, inner: MixtureSampler, length, window: int):
        if window < 1:
            raise ValueError(f"length grouping needs a window of at least 1 step, got {window}")
        self.inner = inner
        self.length = length
        self.window = window
        self._start: int | None = None
        self._start_cursors: list[int] = list(inner.cursors)
        self._batches: list[list[tuple[int, int]]] = []
        self._last_step: int | None = None

    def draw(self, step: int, count: int) -> list[tuple[int, int]]:
        start = step - step % self.window
        if self._start != start or len(self._batches[0]) != count:
            self._fill(start, count)
        self._last_step = step
        return list(self._batches[step - start])

    def _fill(self, start: int, count: int) -> None:
        self._start_cursors = list(self.inner.cursors)
        pool = [pair for i in range(self.window) for pair in self.inner.draw(start + i, count)]
        ordered = sorted(pool, key=lambda pair: self.length(*pair))  # stable: ties keep the drawn order
        batches = [ordered[i * count:(i + 1) * count] for i in range(self.window)]
        generator = torch.Generator().manual_seed(self.inner.seed * 1_000_003 + start + 17)
        self._batches = [batches[i] for i in torch.randperm(self.window, generator=generator).tolist()]
        self._start = start

    def state_dict(self) -> dict:
        finished = self._last_step is None or self._start is None or self._last_step == self._start + self.window - 1
        return {"cursors": list(self.inner.cursors if finished else self._start_cursors)}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
        self._start, self._batches, self._last_step = None, [], None
