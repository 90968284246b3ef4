"""The things the speed benchmark times ("arms"): one training step of a method, of the bare backbone, of PEFT.

Every arm runs the same rows (same token ids, same prompt length, same target positions) so that their times
are comparable. An arm (the :class:`Arm` protocol) has ``enter()``/``exit()`` (untimed: e.g. TA-LoRA attaches its
attention hook to the shared backbone only while it is measured) and ``step()`` (timed). A method's arm runs the
trainer's own step (:class:`mtpt.training.step.TrainingStep`), so what is timed is the step users run.

Memory: each arm also reports its autograd memory in one step, counted exactly rather than sampled: the bytes of
the tensors autograd saves for the backward pass (distinct storages, the frozen weights excluded since every arm
shares them) plus the gradients and AdamW state of what it trains. This is the memory a training step adds on
top of the loaded model; it leaves out short-lived temporaries inside single operators, which are freed before
the next one. (Process RSS cannot separate arms that share one process, and a process per arm would forbid the
interleaved timing.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn

from mtpt.backbones import Backbone
from mtpt.batching import TokenBatch
from mtpt.contract import BackboneHooks, SkippableTaskBlock
from mtpt.model import SoftPromptModel
from mtpt.training.loop import optimizer_groups
from mtpt.training.step import MicroBatch, TrainingStep

LR = 1e-3
MAX_GRAD_NORM = 1.0  # the trainer's default clipping
ADAM_STATES = 2  # AdamW keeps two moments per trainable value


class Arm(Protocol):
    """One measured training step."""

    name: str
    optimizer_states: int
    """Optimizer tensors kept per trainable value (AdamW: 2; the bare backbone optimises nothing)."""

    def enter(self) -> None:
        """Make the shared backbone ready for this arm (untimed)."""

    def exit(self) -> None:
        """Undo :meth:`enter` (untimed)."""

    def step(self) -> None:
        """One training step (timed)."""

    def trainable(self) -> list[Tensor]: ...

    def excluded_ms(self) -> float:
        """Milliseconds of the last step the benchmark leaves out of the step time (MPT's teacher pass)."""


def autocast(precision: str):
    """The autocast of the reference arms (``no`` = fp32); method arms use their accelerator's, as the trainer."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class SavedBytes:
    """Counts the bytes autograd saves for backward while active (distinct storages, frozen weights excluded)."""

    def __init__(self, frozen: nn.Module):
        self._frozen = {p.untyped_storage().data_ptr() for p in frozen.parameters()}
        self.seen: dict[int, int] = {}

    def _pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._frozen:
            self.seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def memory_bytes(arm: Arm, backbone: Backbone) -> dict[str, int]:
    """Autograd memory of one step of ``arm`` (see the module docstring); runs one extra, untimed step."""
    counter = SavedBytes(backbone.model)
    arm.enter()
    try:
        with counter.hooks():
            arm.step()
    finally:
        arm.exit()
    state = _bytes(arm.trainable()) * (1 + arm.optimizer_states)
    return {"activations": counter.total, "trainable_state": state, "total": counter.total + state}


class MethodArm:
    """A registered method inside :class:`SoftPromptModel`, stepped by the trainer's :class:`TrainingStep`:
    forward, task loss plus the method's extra losses, backward, gradient clipping, AdamW over its parameter
    groups, step callbacks.

    ``skip_task_block``: the method's :class:`~mtpt.contract.SkippableTaskBlock` switch is turned on before the
    optimizer is built (its input prompt trains in the block's place). Use a separately built model for it: the
    switch stays on for the method's lifetime."""

    optimizer_states = ADAM_STATES

    def __init__(self, name: str, model: SoftPromptModel, batch: TokenBatch, accelerator: Accelerator, *,
                 skip_task_block: bool = False):
        self.name = name
        self.batch = batch
        self.method = model.method
        if skip_task_block:
            if not isinstance(self.method, SkippableTaskBlock):
                raise ValueError(f"{name}: the method has no task block to skip")
            self.method.skip_task_block(True)
        optimizer = torch.optim.AdamW(optimizer_groups(self.method, LR, 0.0))
        prepared, optimizer = accelerator.prepare(model, optimizer)
        self.model = accelerator.unwrap_model(prepared)
        self.stepper = TrainingStep(prepared, optimizer, accelerator, max_grad_norm=MAX_GRAD_NORM)
        self.accelerator = accelerator
        self.tokens = float(batch.target_mask.sum())
        self.steps = 0
        self._excluded = 0.0
        self.exit()  # SoftPromptModel attached any hook at construction; enter() re-attaches it when measured

    def enter(self) -> None:
        if isinstance(self.method, BackboneHooks):
            self.method.attach(self.model.backbone)

    def exit(self) -> None:
        if isinstance(self.method, BackboneHooks):
            self.method.detach(self.model.backbone)

    def trainable(self) -> list[Tensor]:
        return [p for p in self.method.parameters() if p.requires_grad]

    def step(self) -> None:
        result = self.stepper.run([MicroBatch(self.batch, self.tokens)], self.steps)
        self._excluded = result.extra_pass_ms
        self.steps += 1

    def excluded_ms(self) -> float:
        return self._excluded

    @torch.no_grad()
    def infer(self, task_ids: Tensor) -> None:
        """One evaluation-mode forward (target-position logits, as the rank scorer) with the given task ids."""
        batch = TokenBatch(self.batch.input_ids, self.batch.input_mask, self.batch.target_ids,
                           self.batch.target_mask, task_ids)
        self.model.eval()
        try:
            with self.accelerator.autocast():
                self.model(batch)
        finally:
            self.model.train()


class BareArm:
    """The physical limit of any prompt method: the frozen backbone, forward + backward to ``inputs_embeds`` (a
    leaf requiring grad) of the full length (prompt + text + target), logits on the target positions only."""

    name = "bare"
    optimizer_states = 0  # nothing is optimised: only the gradient of the leaf exists

    def __init__(self, backbone: Backbone, batch: TokenBatch, precision: str, prompt_length: int):
        self.backbone, self.batch, self.precision = backbone, batch, precision
        model = backbone.model
        ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
        with torch.no_grad():
            text = model.get_input_embeddings()(ids)
        prompt = torch.zeros(len(batch), prompt_length, text.shape[-1], dtype=text.dtype)
        self.embeds = torch.cat([prompt, text], dim=1).requires_grad_(True)
        self.mask = torch.ones(self.embeds.shape[:2], dtype=torch.long)
        self.positions = torch.arange(self.embeds.shape[1]).unsqueeze(0).expand(len(batch), -1)

    def enter(self) -> None:
        pass

    def exit(self) -> None:
        pass

    def trainable(self) -> list[Tensor]:
        return [self.embeds]

    def excluded_ms(self) -> float:
        return 0.0

    def step(self) -> None:
        self.embeds.grad = None
        t = self.batch.target_ids.shape[1]
        with autocast(self.precision):
            out = self.backbone.model(inputs_embeds=self.embeds, attention_mask=self.mask,
                                      position_ids=self.positions, logits_to_keep=t + 1, use_cache=False)
            loss = target_loss(out.logits[:, :-1], self.batch)
        loss.backward()


class PeftArm:
    """PEFT's own prompt tuning (``PromptTuningConfig``) or multitask prompt tuning (``MultitaskPromptTuningConfig``)
    on the same backbone and rows: the text and target tokens go in as ``input_ids`` and PEFT prepends its
    prompt; the loss uses the same target positions through ``logits_to_keep``."""

    optimizer_states = ADAM_STATES

    def __init__(self, kind: str, backbone: Backbone, batch: TokenBatch, precision: str, prompt_length: int,
                 num_tasks: int = 1):
        self.name = f"peft-{kind}"
        self.kind, self.backbone, self.batch, self.precision = kind, backbone, batch, precision
        self.num_tasks = num_tasks
        self.prompt_length = prompt_length
        self.ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
        self.mask = torch.cat([batch.input_mask, batch.target_mask], dim=1)
        self.peft_model = None

    def enter(self) -> None:
        # Wrapped only while measured: PEFT wrapping must not leak into the other arms' backbone.
        if self.peft_model is None:
            self.peft_model = self._wrap()
            self.optimizer = torch.optim.AdamW(self.trainable(), lr=LR)

    def exit(self) -> None:
        pass

    def excluded_ms(self) -> float:
        return 0.0

    def _wrap(self):
        from peft import MultitaskPromptTuningConfig, PromptTuningConfig, TaskType, get_peft_model

        if self.kind == "mpt":
            config = MultitaskPromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.prompt_length,
                                                 num_tasks=self.num_tasks)
        else:
            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.prompt_length)
        return get_peft_model(self.backbone.model, config)

    def trainable(self) -> list[Tensor]:
        return [p for p in self.peft_model.parameters() if p.requires_grad]

    def step(self) -> None:
        t = self.batch.target_ids.shape[1]
        extra: dict[str, Any] = {"task_ids": self.batch.task_ids} if self.kind == "mpt" else {}
        with autocast(self.precision):
            out = self.peft_model(input_ids=self.ids, attention_mask=self.mask, logits_to_keep=t + 1,
                                  use_cache=False, **extra)
            loss = target_loss(out.logits[:, :-1], self.batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def target_loss(logits: Tensor, batch: TokenBatch) -> Tensor:
    """The reference arms' loss: mean cross-entropy over the batch's target tokens."""
    mask = batch.target_mask.bool()
    return F.cross_entropy(logits[mask].float(), batch.target_ids[mask])


def timed(fn: Callable[[], None]) -> float:
    """Milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3
