"""The things the speed benchmark times ("arms"): one training step of a method, of the bare backbone, of PEFT.

Every arm runs the same rows (same token ids, same prompt length, same target positions) so that their times
are comparable. An arm has ``enter()``/``exit()`` (untimed: e.g. TA-LoRA attaches its attention hook to the
shared backbone only while it is measured) and ``step()`` (timed).

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtpt.backbones import Backbone
from mtpt.batching import TokenBatch
from mtpt.contract import (
    BackboneHooks,
    ExtraLosses,
    LossContext,
    PromptBatch,
    StepCallbacks,
    WantsHiddenStates,
)
from mtpt.model import SoftPromptModel, task_loss
from mtpt.training.loop import optimizer_groups

LR = 1e-3
ADAM_STATES = 2  # AdamW keeps two moments per trainable value


def autocast(precision: str):
    """The same autocast for every arm (``no`` = fp32)."""
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


class Arm:
    """One measured training step; subclasses fill :meth:`_forward_loss` and the trainable tensors."""

    name = "arm"

    def __init__(self, backbone: Backbone, batch: TokenBatch, precision: str):
        self.backbone = backbone
        self.batch = batch
        self.precision = precision
        self.step_index = 0

    def enter(self) -> None:
        """Make the shared backbone ready for this arm (untimed)."""

    def exit(self) -> None:
        """Undo :meth:`enter` (untimed)."""

    def trainable(self) -> list[Tensor]:
        raise NotImplementedError

    def _forward_loss(self) -> Tensor:
        raise NotImplementedError

    def _update(self) -> None:
        """Optimizer work after backward (none for the bare backbone)."""

    def step(self) -> None:
        with autocast(self.precision):
            loss = self._forward_loss()
        loss.backward()
        self._update()
        self.step_index += 1

    def memory_bytes(self) -> dict[str, int]:
        """Autograd memory of one step (see the module docstring); runs one extra, untimed step."""
        counter = SavedBytes(self.backbone.model)
        with counter.hooks():
            self.step()
        state = _bytes(self.trainable()) * (1 + self.optimizer_states())
        return {"activations": counter.total, "trainable_state": state, "total": counter.total + state}

    def optimizer_states(self) -> int:
        return ADAM_STATES

    def excluded_ms(self) -> float:
        """Milliseconds of the last step that the benchmark leaves out of the step time (MPT's teacher pass)."""
        return 0.0


class BareArm(Arm):
    """The physical limit of any prompt method: the frozen backbone, forward + backward to ``inputs_embeds`` (a
    leaf requiring grad) of the full length (prompt + text + target), logits on the target positions only."""

    name = "bare"

    def __init__(self, backbone: Backbone, batch: TokenBatch, precision: str, prompt_length: int):
        super().__init__(backbone, batch, precision)
        model = backbone.model
        ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
        with torch.no_grad():
            text = model.get_input_embeddings()(ids)
        prompt = torch.zeros(len(batch), prompt_length, text.shape[-1], dtype=text.dtype)
        self.embeds = torch.cat([prompt, text], dim=1).requires_grad_(True)
        self.mask = torch.ones(self.embeds.shape[:2], dtype=torch.long)
        self.positions = torch.arange(self.embeds.shape[1]).unsqueeze(0).expand(len(batch), -1)

    def trainable(self) -> list[Tensor]:
        return [self.embeds]

    def optimizer_states(self) -> int:
        return 0  # nothing is optimised: only the gradient of the leaf exists

    def _forward_loss(self) -> Tensor:
        self.embeds.grad = None
        t = self.batch.target_ids.shape[1]
        out = self.backbone.model(inputs_embeds=self.embeds, attention_mask=self.mask, position_ids=self.positions,
                                  logits_to_keep=t + 1, use_cache=False)
        return _target_loss(out.logits[:, :-1], self.batch)


class MethodArm(Arm):
    """A registered method inside :class:`SoftPromptModel`, stepped as the trainer steps it: forward, task loss
    plus the method's extra losses, backward, gradient clipping, AdamW over its parameter groups, step callbacks."""

    def __init__(self, name: str, model: SoftPromptModel, backbone: Backbone, batch: TokenBatch, precision: str):
        super().__init__(backbone, batch, precision)
        self.name = name
        self.model = model.train()
        self.method = model.method
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.method, LR, 0.0))
        self.want_hidden = isinstance(self.method, WantsHiddenStates) and bool(self.method.wants_hidden_states)
        self._extra_pass_ms = 0.0
        self.exit()  # SoftPromptModel attached any hook at construction; enter() re-attaches it when measured

    def enter(self) -> None:
        if isinstance(self.method, BackboneHooks):
            self.method.attach(self.backbone.model)

    def exit(self) -> None:
        if isinstance(self.method, BackboneHooks):
            self.method.detach(self.backbone.model)

    def trainable(self) -> list[Tensor]:
        return [p for p in self.method.parameters() if p.requires_grad]

    def _forward_loss(self) -> Tensor:
        self._extra_pass_ms = 0.0
        out = self.model(self.batch, want_hidden=self.want_hidden)
        loss = task_loss(out)
        if isinstance(self.method, ExtraLosses):
            loss = loss + sum(self.method.extra_losses(self._context(out)).values())
        return loss

    def _context(self, out) -> LossContext:
        def run_with_prompts(prompts: Tensor):
            # a second forward with other prompts (MPT's frozen teachers): timed so that it can be reported apart
            start = time.perf_counter()
            other = self.model(self.batch, want_hidden=out.hidden is not None, prompts=prompts)
            self._extra_pass_ms += (time.perf_counter() - start) * 1e3
            return other.logits, other.hidden

        text = self.model.embed(self.batch.input_ids)
        return LossContext(PromptBatch(text, self.batch.input_mask, self.batch.task_ids), out.prompts, out.logits,
                           out.hidden, out.target_mask, run_with_prompts)

    def excluded_ms(self) -> float:
        return self._extra_pass_ms

    def _update(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.trainable(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if isinstance(self.method, StepCallbacks):
            self.method.after_step(self.step_index + 1)

    @torch.no_grad()
    def infer(self, task_ids: Tensor) -> None:
        """One evaluation-mode forward (target-position logits, as the rank scorer) with the given task ids."""
        batch = TokenBatch(self.batch.input_ids, self.batch.input_mask, self.batch.target_ids,
                           self.batch.target_mask, task_ids)
        self.model.eval()
        try:
            with autocast(self.precision):
                self.model(batch)
        finally:
            self.model.train()


class BlockSkippedArm(MethodArm):
    """TA-LoRA's gated step with the task block skipped in every layer: the gated attention implementation stays
    attached (the attention-interface dispatch, the method's prompt and bookkeeping all run), but each layer returns
    the base attention's output. Paired with the real gated step, it measures what the block itself costs inside a
    step (cache state and all), which a block timed alone underestimates.

    Without the block nothing trainable would reach the backbone and autograd would skip its backward, so this arm
    trains the input prompt theta0 instead: the backward runs through every layer, as in the other arms. ``arm``
    must be an instance of its own (not the measured gated arm): its method's theta0 is made trainable. The skip
    patches the hook class while this arm is entered, and arms are entered one at a time.
    """

    def __init__(self, arm: MethodArm):
        self._skip = contextlib.ExitStack()  # before MethodArm's __init__, which calls exit()
        super().__init__(arm.name + " (block skipped)", arm.model, arm.backbone, arm.batch, arm.precision)
        self.method.theta0.requires_grad_(True)
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.method, LR, 0.0))

    def enter(self) -> None:
        super().enter()
        self._skip.enter_context(_block_skipped())

    def exit(self) -> None:
        self._skip.close()
        super().exit()


@contextlib.contextmanager
def _block_skipped():
    from mtpt.methods.ta_lora.injection import GatedDeltaAttention

    original = GatedDeltaAttention.add_gated
    GatedDeltaAttention.add_gated = lambda self, module, slot, query, out, kwargs: out  # type: ignore[method-assign]
    try:
        yield
    finally:
        GatedDeltaAttention.add_gated = original  # type: ignore[method-assign]


class PeftArm(Arm):
    """PEFT's own prompt tuning (``PromptTuningConfig``) or multitask prompt tuning (``MultitaskPromptTuningConfig``)
    on the same backbone and rows: the text and target tokens go in as ``input_ids`` and PEFT prepends its
    prompt; the loss uses the same target positions through ``logits_to_keep``."""

    def __init__(self, kind: str, backbone: Backbone, batch: TokenBatch, precision: str, prompt_length: int,
                 num_tasks: int = 1):
        super().__init__(backbone, batch, precision)
        self.name = f"peft-{kind}"
        self.kind = kind
        self.num_tasks = num_tasks
        self.prompt_length = prompt_length
        self.ids = torch.cat([batch.input_ids, batch.target_ids], dim=1)
        self.mask = torch.cat([batch.input_mask, batch.target_mask], dim=1)
        self.peft_model = None

    def enter(self) -> None:
        # Wrapped only while measured: PEFT wrapping must not leak into the other arms' backbone.
        if self.peft_model is None:
            self.peft_model = self._wrap()
            params = [p for p in self.peft_model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(params, lr=LR)

    def _wrap(self):
        from peft import (
            MultitaskPromptTuningConfig,
            PromptTuningConfig,
            TaskType,
            get_peft_model,
        )

        if self.kind == "mpt":
            config = MultitaskPromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.prompt_length,
                                                 num_tasks=self.num_tasks)
        else:
            config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.prompt_length)
        return get_peft_model(self.backbone.model, config)

    def trainable(self) -> list[Tensor]:
        return [p for p in self.peft_model.parameters() if p.requires_grad]

    def _forward_loss(self) -> Tensor:
        t = self.batch.target_ids.shape[1]
        extra: dict[str, Any] = {"task_ids": self.batch.task_ids} if self.kind == "mpt" else {}
        out = self.peft_model(input_ids=self.ids, attention_mask=self.mask, logits_to_keep=t + 1, use_cache=False,
                              **extra)
        return _target_loss(out.logits[:, :-1], self.batch)

    def _update(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.trainable(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _target_loss(logits: Tensor, batch: TokenBatch) -> Tensor:
    mask = batch.target_mask.bool()
    return F.cross_entropy(logits[mask].float(), batch.target_ids[mask])


def timed(fn: Callable[[], None]) -> float:
    """Milliseconds of one call."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3
