"""Scoring examples: ``rank`` (label log-likelihood) and ``generate`` (greedy decoding + exact match).

``rank`` picks the choice with the highest log-likelihood after the input: by default the sum of its tokens'
log-probabilities, option ``mean`` per token. One forward pass over the inputs scores every single-token choice
at once (the distribution at the last input position). Multi-token choices continue that pass from its key/value
cache on decoder-only backbones (only the choice's own tokens are run); encoder-decoder backbones give each
multi-token (example, choice) pair a pass of its own. ``generate`` decodes greedily and compares normalised text with the choices
(classification) or the references (free text); an output matching no choice is invalid and counts as wrong.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import torch

from mtpt.batching import Tokenizer, pad_batch
from mtpt.model import SoftPromptModel, token_log_probs
from mtpt.tasks import Example


class Scorer(str, Enum):
    RANK = "rank"
    GENERATE = "generate"


class RankNormalization(str, Enum):
    SUM = "sum"
    MEAN = "mean"


@dataclass
class Predictions:
    values: list
    """Per example: the chosen choice index (rank / classification generate) or the generated text."""
    invalid: int = 0
    """How many generated outputs matched no choice."""
    scores: list[list[float]] | None = None
    """Per example (rank): the log-likelihood of each of its choices under the rank normalisation."""
    texts: list[str] | None = None
    """Per example (generate): the decoded output."""


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation (lower case, no punctuation, articles or extra spaces); CJK punctuation too."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@torch.no_grad()
def rank_choices(
    model: SoftPromptModel,
    tok: Tokenizer,
    examples: Sequence[Example],
    task_ids: Sequence[int],
    *,
    batch_size: int = 16,
    normalization: RankNormalization = RankNormalization.SUM,
    device: torch.device | str = "cpu",
    share_prefix: bool = True,
) -> Predictions:
    """Index of the most likely choice for each example, and every choice's log-likelihood (``scores``).

    One forward pass over a chunk's inputs gives the next-token distribution at the last input position, which
    scores every single-token choice (sum and mean coincide for one token). Multi-token choices: on decoder-only
    backbones the pass's key/value cache is continued with each choice's remaining tokens, so a Chinese 15-label
    task with four 2-token labels costs one input pass per example plus four 1-token rows, instead of five
    input passes; encoder-decoder backbones run one full row per (example, choice).

    ``share_prefix=False`` (a benchmark switch, ``mtpt bench levers``) gives every (example, choice) pair a full
    pass of its own on every backbone: the same scores, one input pass per choice."""
    best: list[int] = []
    all_scores: list[list[float]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        ids = task_ids[start:start + batch_size]
        choice_ids = [[tok.target_ids(c, eos=False) for c in ex.choices] for ex in chunk]
        longer = [(i, c) for i, row in enumerate(choice_ids) for c, choice in enumerate(row) if len(choice) > 1]
        if not share_prefix:
            scores = _pair_scores(model, tok, chunk, ids, choice_ids, batch_size, normalization, device)
        elif model.is_encoder_decoder:
            scores = _first_token_scores(model, tok, chunk, ids, choice_ids, device)
            if longer:
                _score_pairs(model, tok, chunk, ids, choice_ids, longer, scores, batch_size, normalization, device)
        else:
            scores = _cached_scores(model, tok, chunk, ids, choice_ids, longer, batch_size, normalization, device)
        best.extend(scores.argmax(dim=1).tolist())
        all_scores.extend(row[:len(choices)] for row, choices in zip(scores.tolist(), choice_ids))
    return Predictions(best, scores=all_scores)


def _cached_scores(model, tok, chunk, ids, choice_ids, longer, batch_size, normalization, device) -> torch.Tensor:
    """``[len(chunk), max choices]`` log-likelihoods (sum or per-token mean) from one cached pass over the inputs,
    continued for the multi-token choices."""
    batch = pad_batch([tok.input_ids(ex.text) for ex in chunk], [[] for _ in chunk], ids, tok.pad_id).to(device)
    next_logits, prefix = model.encode_prefix(batch)
    first = torch.log_softmax(next_logits.float(), dim=-1).cpu()
    scores = torch.full((len(chunk), max(len(r) for r in choice_ids)), float("-inf"))
    for i, row in enumerate(choice_ids):
        for c, choice in enumerate(row):
            if len(choice) == 1:
                scores[i, c] = first[i, choice[0]]
    for start in range(0, len(longer), batch_size):
        part = longer[start:start + batch_size]
        # Feed every token but the last; the logits after token j score token j + 1.
        fed = pad_batch([[] for _ in part], [choice_ids[i][c][:-1] for i, c in part], [0] * len(part), tok.pad_id)
        rows = torch.tensor([i for i, _ in part], device=device)
        logits = model.continue_prefix(prefix, rows, fed.target_ids.to(device), fed.target_mask.to(device))
        wanted = pad_batch([[] for _ in part], [choice_ids[i][c][1:] for i, c in part], [0] * len(part), tok.pad_id)
        rest = (token_log_probs(logits, wanted.target_ids.to(device)) * wanted.target_mask.to(device)).sum(dim=1)
        for (i, c), value in zip(part, rest.cpu().tolist()):
            total = first[i, choice_ids[i][c][0]].item() + value
            scores[i, c] = total / len(choice_ids[i][c]) if normalization is RankNormalization.MEAN else total
    return scores


def _first_token_scores(model, tok, chunk, ids, choice_ids, device) -> torch.Tensor:
    """``[len(chunk), max choices]``: log p(choice | input) for single-token choices, -inf elsewhere."""
    inputs = [tok.input_ids(ex.text) for ex in chunk]
    # Any one-token target gives the next-token distribution at the last input position (causality).
    dummy = [[next((choice[0] for choice in row if choice), tok.pad_id)] for row in choice_ids]
    out = model(pad_batch(inputs, dummy, ids, tok.pad_id).to(device))
    log_probs = torch.log_softmax(out.logits[:, 0].float(), dim=-1).cpu()
    scores = torch.full((len(chunk), max(len(r) for r in choice_ids)), float("-inf"))
    for i, row in enumerate(choice_ids):
        for c, choice in enumerate(row):
            if len(choice) == 1:
                scores[i, c] = log_probs[i, choice[0]]
    return scores


def _score_pairs(model, tok, chunk, ids, choice_ids, pairs, scores, batch_size, normalization, device) -> None:
    """Fill ``scores[i, c]`` with the (sum or per-token mean) log-likelihood of each (example i, choice c) pair."""
    inputs = [tok.input_ids(ex.text) for ex in chunk]
    for start in range(0, len(pairs), batch_size):
        part = pairs[start:start + batch_size]
        batch = pad_batch([inputs[i] for i, _ in part], [choice_ids[i][c] for i, c in part],
                          [ids[i] for i, _ in part], tok.pad_id).to(device)
        out = model(batch)
        per_token = token_log_probs(out.logits, out.target_ids) * out.target_mask
        total = per_token.sum(dim=1)
        if normalization is RankNormalization.MEAN:
            total = total / out.target_mask.sum(dim=1)
        for (i, c), value in zip(part, total.tolist()):
            scores[i, c] = value


def _pair_scores(model, tok, chunk, ids, choice_ids, batch_size, normalization, device) -> torch.Tensor:
    """``[len(chunk), max choices]``: every (example, choice) pair scored by a full pass of its own."""
    pairs = [(i, c) for i, row in enumerate(choice_ids) for c in range(len(row))]
    scores = torch.full((len(chunk), max(len(r) for r in choice_ids)), float("-inf"))
    _score_pairs(model, tok, chunk, ids, choice_ids, pairs, scores, batch_size, normalization, device)
    return scores


def _rank_pairs(model, tok, chunk, ids, choice_ids, batch_size, normalization, device) -> list[int]:
    """Every (example, choice) pair scored by its own pass: the reference the fast path is tested against."""
    return _pair_scores(model, tok, chunk, ids, choice_ids, batch_size, normalization, device).argmax(dim=1).tolist()


@torch.no_grad()
def generate_answers(
    model: SoftPromptModel,
    tok: Tokenizer,
    examples: Sequence[Example],
    task_ids: Sequence[int],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    device: torch.device | str = "cpu",
) -> Predictions:
    """Greedy outputs; for examples with choices, the index of the matching choice (-1 when invalid)."""
    values: list = []
    texts: list[str] = []
    invalid = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        inputs = [tok.input_ids(ex.text) for ex in chunk]
        batch = pad_batch(inputs, [[] for _ in chunk], task_ids[start:start + batch_size], tok.pad_id).to(device)
        for ex, new_ids in zip(chunk, model.generate(batch, max_new_tokens=max_new_tokens)):
            text = tok.tokenizer.decode(new_ids, skip_special_tokens=True)
            texts.append(text)
            if not ex.choices:
                values.append(text)
                continue
            wanted = normalize_answer(text)
            match = [i for i, c in enumerate(ex.choices) if normalize_answer(c) == wanted]
            invalid += not match
            values.append(match[0] if match else -1)
    return Predictions(values, invalid, texts=texts)


def prediction_shares(examples: Sequence[Example], predictions: Predictions) -> dict[str, float]:
    """``predicted/<choice>``: the percentage of examples predicted as each choice, for a set whose examples share
    one choice list (classification). Shows a prompt that answers one class for everything, which accuracy and F1
    alone hide. An output that matched no choice (generate) counts for none."""
    choices = examples[0].choices if examples else ()
    if not choices or any(ex.choices != choices for ex in examples):
        return {}
    counts = [0] * len(choices)
    for value in predictions.values:
        if isinstance(value, int) and 0 <= value < len(choices):
            counts[value] += 1
    return {f"predicted/{choice.strip() or index}": 100.0 * n / len(examples)
            for index, (choice, n) in enumerate(zip(choices, counts))}


def metric_inputs(kind: str, examples: Sequence[Example], predictions: Predictions) -> tuple[list, list]:
    """Predictions and references in the form :func:`mtpt.metrics.compute_metrics` takes for a task kind."""
    if kind == "regression":
        preds = [float(ex.choices[p]) if p >= 0 else float("nan") for ex, p in zip(examples, predictions.values)]
        return preds, [float(ex.gold) for ex in examples]
    if kind == "generation":
        return list(predictions.values), [ex.gold if ex.gold is not None else (ex.target,) for ex in examples]
    return list(predictions.values), [ex.label for ex in examples]
