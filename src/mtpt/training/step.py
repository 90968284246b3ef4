"""One optimizer step of a method: the code the trainer runs and the speed benchmark times.

A step is a list of micro-batches (gradient accumulation, and this process's share of a multi-process step).
Each micro-batch: the forward through :class:`~mtpt.model.SoftPromptModel`, the task loss plus the method's extra
loss terms, backward. Then gradient clipping, the optimizer and scheduler steps, and the method's step callback.
What a step is made of (which examples, how they are split) is the trainer's business; the benchmark hands it a
fixed batch.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

import torch
from accelerate import Accelerator

from mtpt.batching import TokenBatch
from mtpt.contract import ExtraLosses, LossContext, PromptBatch, StepCallbacks, WantsHiddenStates
from mtpt.errors import MtptError
from mtpt.model import ForwardOutput, SoftPromptModel, task_loss

__all__ = ["MicroBatch", "StepResult", "TrainingStep"]


@dataclass
class MicroBatch:
    """One forward/backward of a step."""

    batch: TokenBatch
    token_normalizer: float
    """The task loss is the sum over this micro-batch's target tokens divided by this: the whole step's token
    count (divided by the number of processes), so the step's gradient is exactly that of one big batch."""
    share: float = 1.0
    """This micro-batch's share of the process's examples: extra loss terms are per-batch means, weighted by it."""


@dataclass
class StepResult:
    terms: dict[str, torch.Tensor]
    """Each loss term summed over the micro-batches (detached, divided by the number of processes)."""
    record: dict[str, Any] | None
    """What the method's step callback returned (the trainer appends it to ``method_log.jsonl``)."""
    extra_pass_ms: float
    """Milliseconds spent in backbone passes with other prompts (MPT's frozen teachers), part of the step."""


class TrainingStep:
    """Runs optimizer steps of ``model`` (an Accelerate-prepared :class:`SoftPromptModel`)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator, *,
                 scheduler: Any = None, max_grad_norm: float | None = None,
                 check_terms: Callable[[dict[str, torch.Tensor], int], None] | None = None):
        """``check_terms(terms, step)`` sees every micro-batch's loss terms before the backward pass and raises to
        stop the run (the trainer's :class:`~mtpt.training.guards.LossGuard`); by default a non-finite term
        raises."""
        self.model = model
        self.optimizer = optimizer
        self.acc = accelerator
        self.scheduler = scheduler
        self.max_grad_norm = max_grad_norm
        self.check_terms = check_terms or _finite_terms
        self._extra_pass_ms = 0.0

    @property
    def unwrapped(self) -> SoftPromptModel:
        return self.acc.unwrap_model(self.model)

    def run(self, micro_batches: list[MicroBatch], step: int) -> StepResult:
        """Optimizer step number ``step + 1`` over ``micro_batches``."""
        self.model.train()
        self._extra_pass_ms = 0.0
        world = self.acc.num_processes
        totals: dict[str, torch.Tensor] = {}
        for index, micro in enumerate(micro_batches):
            # Gradients are synchronised across processes on the step's last micro-batch only.
            sync = nullcontext() if index == len(micro_batches) - 1 else self.acc.no_sync(self.model)
            with sync:
                terms = self.losses(micro, step)
                self.acc.backward(sum(terms.values()))
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach() / world
        if self.max_grad_norm is not None:
            self.acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        method = self.unwrapped.method
        record = method.after_step(step + 1) if isinstance(method, StepCallbacks) else None
        return StepResult(totals, record, self._extra_pass_ms)

    def losses(self, micro: MicroBatch, step: int) -> dict[str, torch.Tensor]:
        """The loss terms of one micro-batch, scaled so that their sum over the step is the step's mean loss."""
        batch = micro.batch.to(self.acc.device)
        method = self.unwrapped.method
        want_hidden = isinstance(method, WantsHiddenStates) and bool(method.wants_hidden_states)
        with self.acc.autocast():
            out = self.model(batch, want_hidden=want_hidden)
            terms = {"task": task_loss(out, micro.token_normalizer)}
            if isinstance(method, ExtraLosses):
                context = self._loss_context(batch, out)
                terms.update({k: v * micro.share for k, v in method.extra_losses(context).items()})
        self._stop_together(terms, step + 1)
        self.check_terms(terms, step + 1)
        return terms

    def _stop_together(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """With several processes, raise on every process when any process's loss terms are not finite.

        ``check_terms`` sees only this process's terms: a process that stopped alone would leave the others waiting
        in the backward pass's gradient all-reduce until the process group times out (30 minutes or more), so the
        processes first agree, with one small all-gather per micro-batch, on whether any of them must stop. The
        process whose terms are not finite then raises ``check_terms``'s detailed error; the others name it."""
        if self.acc.num_processes == 1:
            return
        local = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
        bad_here = (~torch.isfinite(local)).any().to(torch.float32).reshape(1)
        flags = self.acc.gather(bad_here.to(self.acc.device))
        if bool(bad_here.item()) or not bool(flags.any()):
            return
        ranks = [str(rank) for rank, flag in enumerate(flags.tolist()) if flag]
        raise MtptError(f"Stopped at step {step}: the loss of process {', '.join(ranks)} (of {self.acc.num_processes}) "
                        f"is not finite; that process's error gives its loss terms and what to change. Every process "
                        f"stops, so none is left waiting for the others.")

    def _loss_context(self, batch: TokenBatch, out: ForwardOutput) -> LossContext:
        model = self.unwrapped

        def run_with_prompts(prompts: torch.Tensor):
            start = time.perf_counter()
            other = model(batch, want_hidden=out.hidden is not None, prompts=prompts)
            self._extra_pass_ms += (time.perf_counter() - start) * 1e3
            return other.logits, other.hidden

        text = model.embed(batch.input_ids)
        return LossContext(PromptBatch(text, batch.input_mask, batch.task_ids), out.prompts, out.logits, out.hidden,
                           out.target_mask, run_with_prompts)


def _finite_terms(terms: dict[str, torch.Tensor], step: int) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value):
            values = {k: float(v.detach()) for k, v in terms.items()}
            raise MtptError(f"The {name!r} loss became {float(value.detach())} at step {step} (all terms: {values}).")
