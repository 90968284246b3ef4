"""The soft-prompt wrapper shared by every method.

A method returns one prompt per example (``[B, L, d]``); this module puts it in front of the text through
``inputs_embeds`` and runs the frozen backbone.

Decoder-only layout of one row: ``[left pads | prompt (L) | input | target | right pads]``. The prompt sits
after the padding and takes positions ``0..L-1``, the text continues from ``L``: exactly as if the prompt were
real leading tokens, so an example's logits do not depend on how much padding its batch adds (PEFT puts
prompts before the padding instead). Encoder-decoder models get the same layout on the encoder side only; the
target goes to the decoder.

Logits are computed only on target positions: because every row's input ends at the same column, the target
positions are the last ``T + 1`` columns, which ``logits_to_keep`` selects before the (large) LM head. (The
benchmarks switch this off, ``target_only_logits = False``, to measure what it saves: the same logits on the
target positions, taken from a pass over every position.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Cache

from mtpt.backbones import Backbone
from mtpt.batching import TokenBatch
from mtpt.contract import BackboneHooks, PromptBatch


@dataclass
class Prefix:
    """A decoder-only pass over ``[left pads | prompt | input]`` kept to continue its rows (see
    :meth:`SoftPromptModel.continue_prefix`)."""

    batch: TokenBatch
    cache: Cache
    mask: Tensor
    """``[B, L+N]`` attention mask of the cached columns."""
    next_position: Tensor
    """``[B]`` position id of the first token after the input."""


@dataclass
class ForwardOutput:
    logits: Tensor
    """``[B, T, V]`` logits predicting each target token."""
    target_ids: Tensor
    target_mask: Tensor
    prompts: Tensor
    hidden: Tensor | None = None
    """``[B, T, d]`` last hidden states on the same positions, when asked for."""


def place_prompts(prompts: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Insert per-example prompts between the left padding and the text.

    prompts ``[B, L, d]``, text ``[B, N, d]`` left-padded with mask ``[B, N]``. Returns embeddings
    ``[B, L+N, d]``, attention mask ``[B, L+N]`` and position ids ``[B, L+N]`` counted from the prompt's first
    token.
    """
    batch, length, dim = prompts.shape
    n = text.shape[1]
    pads = (mask == 0).sum(dim=1, keepdim=True)  # left padding per row
    col = torch.arange(length + n, device=text.device).unsqueeze(0)
    # Source column in cat([prompts, text]) for each output column: pads first, then prompt, then text.
    source = torch.where(col < pads, length + col, torch.where(col < pads + length, col - pads, col))
    stacked = torch.cat([prompts.to(text.dtype), text], dim=1)
    embeds = torch.gather(stacked, 1, source.unsqueeze(-1).expand(-1, -1, dim))
    full_mask = (col >= pads).to(mask.dtype)
    positions = (col - pads).clamp(min=0)
    return embeds, full_mask, positions


class SoftPromptModel(nn.Module):
    """A frozen backbone plus a prompt method; only the method's parameters train."""

    def __init__(self, backbone: Backbone, method: nn.Module):
        super().__init__()
        self.backbone = backbone.model
        self.method = method
        self.is_encoder_decoder = backbone.is_encoder_decoder
        self.pad_id = int(backbone.tokenizer.pad_token_id)
        self.eos_id = backbone.tokenizer.eos_token_id
        self.target_only_logits = True
        """Benchmark switch (``mtpt bench levers``): False computes the LM head on every position, as a plain
        causal-LM loss does, and keeps the target positions' logits; the values are the same."""
        self._compiled = None
        if isinstance(method, BackboneHooks):
            method.attach(self.backbone)

    def compile_backbone(self) -> None:
        """Run the training forward's backbone call through ``torch.compile`` (``train.compile``). Shapes are
        dynamic, so batches of other lengths reuse the compiled graph; the first step pays the compilation
        (minutes on a CPU). Evaluation (cached prefixes, generation) keeps the eager backbone."""
        # a compiled function, not a module: an nn.Module attribute would enter the state dict a second time
        self._compiled = torch.compile(self.backbone.forward, dynamic=True)

    def detach_method(self) -> None:
        """Remove any hooks the method attached to the backbone."""
        if isinstance(self.method, BackboneHooks):
            self.method.detach(self.backbone)

    def train(self, mode: bool = True) -> "SoftPromptModel":
        super().train(mode)
        self.backbone.eval()  # the frozen backbone never uses dropout
        return self

    def embed(self, ids: Tensor) -> Tensor:
        # The embedding module (not its weight) so that embedding scaling such as Gemma's is applied.
        return self.backbone.get_input_embeddings()(ids)

    def prompts_for(self, batch: TokenBatch) -> tuple[Tensor, Tensor]:
        """Text embeddings of the inputs and the method's prompts for them."""
        text = self.embed(batch.input_ids)
        prompts = self.method(PromptBatch(text, batch.input_mask, batch.task_ids))
        return text, prompts

    def forward(self, batch: TokenBatch, *, want_hidden: bool = False, prompts: Tensor | None = None) -> ForwardOutput:
        """Logits on the target positions; ``prompts`` overrides the method's (for teachers)."""
        text, own = self.prompts_for(batch) if prompts is None else (self.embed(batch.input_ids), None)
        used = own if prompts is None else prompts
        embeds, mask, positions = place_prompts(used, text, batch.input_mask)
        if self.is_encoder_decoder:
            logits, hidden = self._encoder_decoder(embeds, mask, batch, want_hidden)
        else:
            logits, hidden = self._decoder_only(embeds, mask, positions, batch, want_hidden)
        return ForwardOutput(logits, batch.target_ids, batch.target_mask, used, hidden)

    def _decoder_only(self, embeds, mask, positions, batch: TokenBatch, want_hidden: bool):
        t = batch.target_ids.shape[1]
        target_embeds = self.embed(batch.target_ids)
        after = positions[:, -1:] + 1 + torch.arange(t, device=positions.device)
        out = (self._compiled or self.backbone)(
            inputs_embeds=torch.cat([embeds, target_embeds.to(embeds.dtype)], dim=1),
            attention_mask=torch.cat([mask, batch.target_mask.to(mask.dtype)], dim=1),
            position_ids=torch.cat([positions, after], dim=1),
            logits_to_keep=t + 1 if self.target_only_logits else 0,  # 0: every position
            output_hidden_states=want_hidden,
            use_cache=False,
        )
        # Column j of the kept logits predicts target token j; the last column predicts past the target.
        hidden = out.hidden_states[-1][:, -(t + 1):-1] if want_hidden else None
        return out.logits[:, -(t + 1):-1], hidden

    def _encoder_decoder(self, embeds, mask, batch: TokenBatch, want_hidden: bool):
        start = self.backbone.config.decoder_start_token_id
        decoder_ids = torch.cat(
            [torch.full_like(batch.target_ids[:, :1], start), batch.target_ids[:, :-1]], dim=1
        ) if batch.target_ids.shape[1] else torch.full_like(batch.input_ids[:, :1], start)
        decoder_mask = torch.ones_like(decoder_ids)
        out = self.backbone(
            inputs_embeds=embeds,
            attention_mask=mask,
            decoder_input_ids=decoder_ids,
            decoder_attention_mask=decoder_mask,
            output_hidden_states=want_hidden,
            use_cache=False,
        )
        hidden = out.decoder_hidden_states[-1] if want_hidden else None
        logits = out.logits if batch.target_ids.shape[1] else out.logits[:, :0]
        return logits, hidden

    @torch.no_grad()
    def encode_prefix(self, batch: TokenBatch) -> tuple[Tensor, Prefix]:
        """Decoder-only: the logits after each row's input (``[B, V]``) and the cached pass that
        :meth:`continue_prefix` extends. Rank scoring uses it to score multi-token choices without running the input
        again for every choice."""
        if self.is_encoder_decoder:
            raise NotImplementedError("encode_prefix is for decoder-only backbones.")
        text, prompts = self.prompts_for(batch)
        embeds, mask, positions = place_prompts(prompts, text, batch.input_mask)
        out = self.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1)
        return out.logits[:, -1], Prefix(batch, out.past_key_values, mask, positions[:, -1] + 1)

    @torch.no_grad()
    def continue_prefix(self, prefix: Prefix, rows: Tensor, tokens: Tensor, token_mask: Tensor) -> Tensor:
        """Logits ``[R, T, V]`` after each of ``tokens`` (``[R, T]``, right-padded per ``token_mask``) appended to
        the input of prefix row ``rows[r]``: column ``j`` predicts the token after ``tokens[:, j]``. The prefix's
        cache is copied, so one prefix serves any number of continuations."""
        if isinstance(self.method, BackboneHooks):
            # Hooks (TA-LoRA's gated attention) read per-row state the method sets in its forward: set it for
            # exactly the rows this pass runs.
            self.prompts_for(prefix.batch.rows(rows))
        cache = copy.deepcopy(prefix.cache)
        cache.batch_select_indices(rows)
        positions = prefix.next_position[rows].unsqueeze(1) + torch.arange(tokens.shape[1], device=tokens.device)
        out = self.backbone(
            inputs_embeds=self.embed(tokens),
            attention_mask=torch.cat([prefix.mask[rows], token_mask.to(prefix.mask.dtype)], dim=1),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits

    @torch.no_grad()
    def generate(self, batch: TokenBatch, max_new_tokens: int = 8) -> list[list[int]]:
        """Greedy decoding behind the method's prompts; returns the new token ids of each row (EOS cut)."""
        text, prompts = self.prompts_for(batch)
        embeds, mask, _ = place_prompts(prompts, text, batch.input_mask)
        out = self.backbone.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
        )
        rows = []
        for seq in out.tolist():
            if self.is_encoder_decoder:
                seq = seq[1:]  # drop the decoder start token
            if self.eos_id is not None and self.eos_id in seq:
                seq = seq[: seq.index(self.eos_id)]
            rows.append([tok for tok in seq if tok != self.pad_id])
        return rows


def token_log_probs(logits: Tensor, target_ids: Tensor) -> Tensor:
    """Log-probability of each target token, ``[B, T]`` (computed in fp32)."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, target_ids.unsqueeze(-1)).squeeze(-1)


def task_loss(out: ForwardOutput, normalizer: float | None = None) -> Tensor:
    """Token-level cross-entropy over the target tokens of the batch.

    By default the mean over this batch's target tokens; with ``normalizer``, the sum divided by it (the
    trainer passes the whole optimizer step's token count, so that accumulation and multi-process runs give
    exactly the gradient of one big batch).
    """
    mask = out.target_mask.bool()
    if normalizer is None:
        return F.cross_entropy(out.logits[mask].float(), out.target_ids[mask])
    return F.cross_entropy(out.logits[mask].float(), out.target_ids[mask], reduction="sum") / normalizer
