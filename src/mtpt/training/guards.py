"""Loss guards: stop a run whose loss is no longer finite, or that diverges while staying finite, with a message
that says which checkpoint is left and what to change.

A diverging run is one whose mean loss over the last :data:`WINDOW` steps exceeds ``train.divergence_factor``
times the loss of its first step (the loss of the starting prompt, before any update can have spoilt it), or of
:data:`FIRST_LOSS_FLOOR` when that is lower. Noise
cannot trip it: the window mean moves slowly, and training lowers the loss from its first value.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

import torch

from mtpt.errors import MtptError

WINDOW = 10
"""Steps averaged before the loss is compared with its first value."""

FIRST_LOSS_FLOOR = 1.0
"""The first step's loss counts as at least this (nats per target token) when it is the yardstick: a start that
already fits its batch (a transferred prompt, first loss 0.07 on 16-shot CR) would otherwise make ordinary noise
(losses of 0.1-0.7) look like a 4x divergence. A diverging prompt's losses are several nats."""


class LossGuard:
    """Watches the loss of every step and remembers the last step a checkpoint was saved at."""

    def __init__(self, factor: float | None, checkpoints: Path, lr: float):
        self.factor = factor
        self.checkpoints = checkpoints
        self.lr = lr
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.saved_step: int | None = None

    def observe(self, step: int, loss: float) -> None:
        """The loss of optimizer step ``step`` (1-based); raises when it is non-finite or has diverged."""
        if not math.isfinite(loss):
            raise MtptError(f"The loss became {loss} at step {step}. {self.advice()}")
        if self.first is None:
            self.first = loss
        self.recent.append(loss)
        if self.factor is None or len(self.recent) < WINDOW or self.first <= 0:
            return
        mean = sum(self.recent) / len(self.recent)
        yardstick = max(self.first, FIRST_LOSS_FLOOR)
        if mean > self.factor * yardstick:
            first = (f"the first step's {self.first:.4g}" if self.first >= FIRST_LOSS_FLOOR else
                     f"{FIRST_LOSS_FLOOR:g} (the first step's {self.first:.4g}, raised to the floor)")
            raise MtptError(
                f"Training diverged: the mean loss of steps {step - WINDOW + 1}-{step} is {mean:.4g}, "
                f"{mean / yardstick:.1f}x {first} (train.divergence_factor {self.factor:g}). {self.advice()}")

    def advice(self) -> str:
        if self.saved_step is None:
            kept = "No checkpoint of this run was saved before it."
        else:
            kept = (f"{self.checkpoints / 'last'} holds step {self.saved_step}, saved before this happened (with "
                    f"finite values: a non-finite checkpoint is never saved), but it may already be on the way up.")
        return (f"Nothing was saved for this step. Lower train.lr (now {self.lr:g}), keep train.max_grad_norm set, "
                f"or check the task data. {kept}")

    def check_terms(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Raise before the backward pass when a loss term of ``step`` is NaN or infinite, naming every term."""
        for name, value in terms.items():
            if not torch.isfinite(value):
                values = {k: float(v.detach()) for k, v in terms.items()}
                raise MtptError(f"The {name!r} loss became {float(value.detach())} at step {step} (all terms: "
                                f"{values}). {self.advice()}")

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any] | None, saved_step: int) -> None:
        """Restore from a trainer state (older ones have no guard state: the guard then starts over)."""
        state = state or {}
        self.first = state.get("first")
        self.recent = deque((float(v) for v in state.get("recent", [])), maxlen=WINDOW)
        self.saved_step = saved_step
