"""Scorers: rank (sum / mean, single-token fast path = pair path) and generate (exact match, invalid rate)."""

from __future__ import annotations

import torch

from helpers import pt_model
from mtpt.evaluation import RankNormalization, _rank_pairs, generate_answers, normalize_answer, rank_choices
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
