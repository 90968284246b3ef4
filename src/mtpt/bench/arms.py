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


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The autocast of the reference arms (``no`` = fp32) on ``device``; method arms use their accelerator's, as
    the trainer does."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def synchronize() -> None:
    """Wait for the GPU's queued work (a no-op without one): GPU kernels run asynchronously, so a timer read
    without it would measure the launches, not the work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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


def peak_gpu_memory(arm: Arm) -> dict[str, int] | None:
    """Peak GPU memory of one step of ``arm`` (runs one extra, untimed step), or None without a GPU: ``peak`` is
    ``torch.cuda.max_memory_allocated`` during the step, the peak statistics reset just before it;
    ``above_resident`` is that peak minus what was allocated before the step (weights, every arm's state)."""
    if not torch.cuda.is_available():
        return None
    arm.enter()
    try:
        synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
        arm.step()
        synchronize()
        peak = torch.cuda.max_memory_allocated()
    finally:
        arm.exit()
    return {"peak": int(peak), "above_resident": int(peak - resident)}


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
        self.device = batch.input_ids.device
        model = backbone.model
        ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
        with torch.no_grad():
            text = model.get_input_embeddings()(ids)
        prompt = torch.zeros(len(batch), prompt_length, text.shape[-1], dtype=text.dtype, device=self.device)
        self.embeds = torch.cat([prompt, text], dim=1).requires_grad_(True)
        self.mask = torch.ones(self.embeds.shape[:2], dtype=torch.long, device=self.device)
        self.positions = torch.arange(self.embeds.shape[1], device=self.device).unsqueeze(0).expand(len(batch), -1)

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
        with autocast(self.precision, self.device):
            out = self.backbone.model(inputs_embeds=self.embeds, attention_mask=self.mask,
                                      position_ids=self.positions, logits_to_keep=t + 1, use_cache=False)
            loss = target_loss(out.logits[:, :-1], self.batch)
        loss.backward()


class PeftArm:
    """PEFT's own prompt tuning (``PromptTuningConfig``) or multitask prompt tuning (``MultitaskPromptTuningConfig``)
    on the same backbone and rows: the text and target tokens go in as ``input_ids`` and PEFT prepends its prompt.

    Two ways to step it:

    - same work (``documented=False``, arm ``peft-<kind>``): the loss uses the same target positions through
      ``logits_to_keep``, mtpt's own trick given to PEFT, gradient clipping as the trainer's; what a prompt method
      is compared with when both do the same work.
    - as documented (``documented=True``, arm ``peft-<kind>-documented``): the way PEFT's documentation trains a
      causal LM with prompt tuning: ``labels=`` passed to the PEFT model (the target ids on the target positions,
      -100 on the input and the padding; PEFT adds -100 for its virtual tokens), logits over every position and
      the whole vocabulary, the model's own loss (``out.loss``: the mean over the target tokens, the same learning
      problem as mtpt's task loss), backward, AdamW, no clipping. This is the anchor a PEFT user has.
    """

    optimizer_states = ADAM_STATES

    def __init__(self, kind: str, backbone: Backbone, batch: TokenBatch, precision: str, prompt_length: int,
                 num_tasks: int = 1, *, documented: bool = False):
        self.name = f"peft-{kind}" + ("-documented" if documented else "")
        self.kind, self.backbone, self.batch, self.precision = kind, backbone, batch, precision
        self.documented = documented
        self.num_tasks = num_tasks
        self.prompt_length = prompt_length
        self.device = batch.input_ids.device
        if documented:
            self.ids, self.mask, self.labels = documented_inputs(batch)
        else:
            self.ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
            self.mask = torch.cat([batch.input_mask, batch.target_mask], dim=1)
        self.peft_model = None

    def enter(self) -> None:
        # Wrapped only while measured: PEFT wrapping must not leak into the other arms' backbone.
        if self.peft_model is None:
            self.peft_model = self._wrap().to(self.device)
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
        loss = self.loss()
        loss.backward()
        if not self.documented:
            torch.nn.utils.clip_grad_norm_(self.trainable(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def loss(self) -> Tensor:
        """The step's loss (forward only): PEFT's own with ``labels`` as documented, else mtpt's target loss on the
        ``logits_to_keep`` columns."""
        extra: dict[str, Any] = {"task_ids": self.batch.task_ids} if self.kind == "mpt" else {}
        with autocast(self.precision, self.device):
            if self.documented:
                return self.peft_model(input_ids=self.ids, attention_mask=self.mask, labels=self.labels, **extra).loss
            t = self.batch.target_ids.shape[1]
            out = self.peft_model(input_ids=self.ids, attention_mask=self.mask, logits_to_keep=t + 1,
                                  use_cache=False, **extra)
            return target_loss(out.logits[:, :-1], self.batch)


IGNORE_INDEX = -100
"""transformers' label value for positions without a loss."""


def documented_inputs(batch: TokenBatch) -> tuple[Tensor, Tensor, Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` of ``batch``'s rows as a causal-LM user builds them: each row
    its input then its target, padded on the right; labels are the target ids on the target positions and -100 on
    the input and the padding. Positions count from the first real token, as mtpt's own layout does, so a row's
    logits are the same as in mtpt's forward."""
    rows = []
    for row in range(len(batch)):
        text = batch.input_ids[row][batch.input_mask[row].bool()]
        target = batch.target_ids[row][batch.target_mask[row].bool()]
        rows.append((text, target))
    width = max(len(text) + len(target) for text, target in rows)
    # padding ids are masked out and carry no label: any id will do
    ids = torch.zeros((len(rows), width), dtype=torch.long, device=batch.input_ids.device)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, (text, target) in enumerate(rows):
        n, t = len(text), len(target)
        ids[row, :n + t] = torch.cat([text, target])
        mask[row, :n + t] = 1
        labels[row, n:n + t] = target
    return ids, mask, labels


def target_loss(logits: Tensor, batch: TokenBatch) -> Tensor:
    """The reference arms' loss: mean cross-entropy over the batch's target tokens."""
    mask = batch.target_mask.bool()
    return F.cross_entropy(logits[mask].float(), batch.target_ids[mask])


def timed(fn: Callable[[], None]) -> float:
    """Milliseconds of one call (its GPU work included)."""
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return (time.perf_counter() - start) * 1e3
