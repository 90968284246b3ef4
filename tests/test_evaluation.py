"""Scorers: rank (sum / mean, single-token fast path = pair path) and generate (exact match, invalid rate)."""

from __future__ import annotations

import pytest
import torch

from helpers import pt_model
from mtpt.batching import Tokenizer
from mtpt.evaluation import (RankNormalization, _cached_scores, _rank_pairs, _score_pairs, generate_answers,
                             normalize_answer, rank_choices)
from mtpt.model import SoftPromptModel
from mtpt.tasks import Example


def examples(choices):
    return [Example(f"question {i}:", choices[i % len(choices)], tuple(choices), i % len(choices), i % len(choices))
            for i in range(5)]


def test_single_token_fast_path_agrees_with_pair_scoring():
    model, tok = pt_model("llama")
    exs = examples(["a", "b", "c"])  # one byte-level token each
    fast = rank_choices(model, tok, exs, [0] * 5).values
    choice_ids = [[tok.target_ids(c, eos=False) for c in ex.choices] for ex in exs]
    slow = _rank_pairs(model, tok, exs, [0] * 5, choice_ids, 4, RankNormalization.SUM, "cpu")
    assert fast == slow


def test_mixed_length_choices_match_scoring_every_pair():
    """Single-token choices from the one shared pass, multi-token ones from their own: the same ranking as
    scoring every (example, choice) pair, under both normalisations."""
    model, tok = pt_model("llama")
    exs = examples(["a", " b c", "d", " e f g"])
    choice_ids = [[tok.target_ids(c, eos=False) for c in ex.choices] for ex in exs]
    lengths = {len(c) for c in choice_ids[0]}
    assert min(lengths) == 1 and len(lengths) > 2  # single-token and two lengths of multi-token choices
    for norm in RankNormalization:
        fast = rank_choices(model, tok, exs, [0] * 5, normalization=norm, batch_size=3).values
        assert fast == _rank_pairs(model, tok, exs, [0] * 5, choice_ids, 4, norm, "cpu")


MIXED_CHOICES = ("a", " b c", "d", " e f g", "xy")


def _scores_both_ways(model, tok, exs, ids, normalization):
    """Scores from the cached continuation and from one full pass per (example, choice) pair."""
    choice_ids = [[tok.target_ids(c, eos=False) for c in ex.choices] for ex in exs]
    pairs = [(i, c) for i, row in enumerate(choice_ids) for c in range(len(row))]
    longer = [(i, c) for i, c in pairs if len(choice_ids[i][c]) > 1]
    cached = _cached_scores(model, tok, exs, ids, choice_ids, longer, 3, normalization, "cpu")
    full = torch.full_like(cached, float("-inf"))
    _score_pairs(model, tok, exs, ids, choice_ids, pairs, full, 4, normalization, "cpu")
    return cached, full


def _long_and_short_examples():
    # inputs of 3 to 60 tokens: beyond the tiny Gemma 3's 16-token sliding window, and unequal padding per chunk
    return [Example("w " * n + "?", "a", MIXED_CHOICES, 0, 0) for n in (1, 29, 6, 17, 3, 9, 12)]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gpt2"])
@pytest.mark.parametrize("normalization", list(RankNormalization))
def test_cached_continuation_gives_the_scores_of_full_passes(arch, normalization):
    """Continuing the input pass's key/value cache with a choice's later tokens scores it as running the whole
    input again would (positions, padding, sliding-window layers), for every choice length."""
    model, tok = pt_model(arch)
    exs = _long_and_short_examples()
    cached, full = _scores_both_ways(model, tok, exs, [0] * len(exs), normalization)
    assert torch.isfinite(cached).all()
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_cached_continuation_runs_each_row_through_its_own_task_block(arch):
    """TA-LoRA's gated attention reads a per-row task block set by the method's forward: the continuation of a
    mixed-task batch must see, for each (example, choice) row, that example's block."""
    from mtpt.methods.ta_lora.config import TaLoraConfig
    from mtpt.methods.ta_lora.stages import build
    from mtpt.runtime import build_context
    from mtpt.testing import tiny_backbone

    backbone = tiny_backbone(arch)
    method = build(TaLoraConfig(prompt_length=4, rank=2), build_context(backbone, ["a", "b"], 0))
    model = SoftPromptModel(backbone, method)
    with torch.no_grad():
        method.gates.copy_(torch.linspace(-2.0, 2.0, method.gates.numel()).view_as(method.gates))
        method.fast_u.normal_(std=1.0)
        method.fast_v.normal_(std=1.0)
    tok = Tokenizer(backbone.tokenizer, max_input_tokens=128)
    exs = _long_and_short_examples()
    ids = [i % 2 for i in range(len(exs))]
    cached, full = _scores_both_ways(model, tok, exs, ids, RankNormalization.SUM)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=1e-4)
    same_task = _scores_both_ways(model, tok, exs, [0] * len(exs), RankNormalization.SUM)[0]
    assert not torch.allclose(cached[1::2], same_task[1::2], atol=1e-3)  # the task block matters here
    model.detach_method()


def test_sum_favours_short_answers_and_mean_scores_per_token():
    model, tok = pt_model("llama")
    exs = examples([" x", " a much longer answer"])
    total = rank_choices(model, tok, exs, [0] * 5, normalization=RankNormalization.SUM).values
    mean = rank_choices(model, tok, exs, [0] * 5, normalization=RankNormalization.MEAN).values
    assert total == [0] * 5  # a long answer's summed log-probability is far lower
    choice_ids = [[tok.target_ids(c, eos=False) for c in ex.choices] for ex in exs]
    assert _rank_pairs(model, tok, exs, [0] * 5, choice_ids, 4, RankNormalization.MEAN, "cpu") == mean


def test_generate_reports_invalid_outputs():
    model, tok = pt_model("llama")
    with torch.no_grad():
        preds = generate_answers(model, tok, examples([" yes", " no"]), [0] * 5, max_new_tokens=2)
    assert len(preds.values) == 5
    assert preds.invalid == sum(v == -1 for v in preds.values)


def test_normalize_answer():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("是的。") == "是的"


def test_predict_scores_by_length_but_answers_in_the_given_order():
    """predict() batches examples by input length; its predictions must still line up with its examples: the
    same as scoring each example alone (batch of one, no padding)."""
    from types import SimpleNamespace

    from mtpt.config import EvalConfig
    from mtpt.training.evaluate import predict

    model, tok = pt_model("llama")
    exs = [Example("q " * n + "?", "a", ("a", "b", "c"), 0, 0) for n in (9, 1, 5, 14, 2, 7, 3)]
    parts = SimpleNamespace(config=SimpleNamespace(eval=EvalConfig(batch_size=3)), tokenizer=tok)
    alone = [rank_choices(model, tok, [ex], [0]).values[0] for ex in exs]
    assert len(set(alone)) > 1  # otherwise any order would pass
    assert predict(model, parts, exs, 0, "cpu").values == alone


def test_prediction_shares_show_a_prompt_that_answers_one_class():
    from mtpt.evaluation import Predictions, prediction_shares

    exs = [Example(f"q{i}", " yes", (" no", " yes", " maybe"), 1, 1) for i in range(8)]
    shares = prediction_shares(exs, Predictions([1, 1, 1, 1, 1, 1, 0, -1]))  # -1: a generated answer matching none
    assert shares == {"predicted/no": 12.5, "predicted/yes": 75.0, "predicted/maybe": 0.0}
    mixed = exs[:1] + [Example("q", "a", ("a", "b"), 0, 0)]  # multiple choice: each example its own choices
    assert prediction_shares(mixed, Predictions([0, 1])) == {}
