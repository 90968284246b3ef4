"""mtpt.metrics against scikit-learn / scipy on random inputs, plus hand-checked cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from mtpt.metrics import METRICS, compute_metrics, exact_match, normalize_answer, token_f1


def _labels(seed: int, n: int, k: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n).tolist(), rng.integers(0, k, n).tolist()


@pytest.mark.parametrize("seed", range(8))
def test_classification_metrics_match_sklearn(seed):
    pred, ref = _labels(seed, 97, 2)
    out = compute_metrics(["accuracy", "f1", "matthews"], pred, ref)
    assert out["accuracy"] == pytest.approx(100 * accuracy_score(ref, pred))
    assert out["f1"] == pytest.approx(100 * f1_score(ref, pred))
    assert out["matthews"] == pytest.approx(100 * matthews_corrcoef(ref, pred))
    assert out["score"] == pytest.approx(np.mean([out["accuracy"], out["f1"], out["matthews"]]))


@pytest.mark.parametrize("seed", range(8))
def test_macro_f1_matches_sklearn(seed):
    pred, ref = _labels(seed, 120, 3)
    out = compute_metrics(["macro_f1", "accuracy"], np.array(pred), ref)
    assert out["macro_f1"] == pytest.approx(100 * f1_score(ref, pred, average="macro"))


@pytest.mark.parametrize("seed", range(8))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 5, 60)
    pred = ref + rng.normal(0, 1.5, 60)
    out = compute_metrics(["pearson", "spearman"], pred.tolist(), ref.tolist())
    assert out["pearson"] == pytest.approx(100 * pearsonr(pred, ref)[0])
    assert out["spearman"] == pytest.approx(100 * spearmanr(pred, ref)[0])
    assert out["score"] == pytest.approx((out["pearson"] + out["spearman"]) / 2)


def test_degenerate_inputs_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compute_metrics(["pearson", "spearman"], [2.0, 2.0, 2.0], [1.0, 3.0, 4.0])
        assert out == {"pearson": 0.0, "spearman": 0.0, "score": 0.0}
        assert compute_metrics(["pearson"], [1.0], [2.0])["pearson"] == 0.0
        assert compute_metrics(["matthews"], [1, 1, 1], [1, 1, 1])["matthews"] == 0.0
        assert compute_metrics(["f1"], [0, 0], [0, 0])["f1"] == 0.0


def test_invalid_predictions_count_as_wrong():
    # -1 = unparseable generated output: never the positive class, never correct
    out = compute_metrics(["accuracy", "f1", "macro_f1"], [1, -1, 0, 1], [1, 1, 0, 0])
    assert out["accuracy"] == 50.0
    assert out["f1"] == pytest.approx(100 * 2 * 0.5 * 0.5 / 1.0)  # P = 1/2, R = 1/2
    assert out["macro_f1"] == pytest.approx(100 * np.mean([2 / 3, 0.5]))
    reg = compute_metrics(["pearson"], [None, "abc", 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert reg["pearson"] == pytest.approx(100 * pearsonr([-1, -1, 3, 4], [1, 2, 3, 4])[0])


def test_bool_and_numpy_labels_agree():
    a = compute_metrics(["accuracy"], [True, False, np.int64(1)], [1, 0, 1.0])
    assert a["accuracy"] == 100.0


def test_squad_normalisation_and_hand_cases():
    assert normalize_answer("The  Cat!") == "cat"
    assert exact_match("the cat", "Cat.") == 1.0
    assert exact_match("a dog", ["cat", "Dog"]) == 1.0
    assert exact_match("dogs", "dog") == 0.0
    # pred "cat sat" vs gold "cat sat on mat": P = 2/2, R = 2/4
    assert token_f1("The cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("blue", ["red", "light blue"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert token_f1("北京大学", "北京") == pytest.approx(2 * 0.5 * 1 / 1.5)  # characters
    out = compute_metrics(["em", "f1_qa"], ["Shakespeare", "in Paris"],
                          [("William Shakespeare", "Shakespeare"), ("Paris",)])
    assert out["em"] == 50.0
    assert out["f1_qa"] == pytest.approx(100 * (1.0 + 2 * 0.5 * 1 / 1.5) / 2)


def test_multirc_metrics():
    pred = [1, 0, 1, 1, 0, 0]
    ref = [1, 0, 0, 1, 0, 1]
    groups = ["q1", "q1", "q1", "q2", "q2", "q3"]
    out = compute_metrics(["multirc_f1a", "multirc_em"], pred, ref, groups)
    assert out["multirc_f1a"] == pytest.approx(100 * f1_score(ref, pred))
    assert out["multirc_em"] == pytest.approx(100 / 3)  # only q2 fully right
    with pytest.raises(ValueError, match="groups"):
        compute_metrics(["multirc_em"], pred, ref)


def test_input_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(["bleu"], [1], [1])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        compute_metrics(["accuracy"], [1, 0], [1])
    with pytest.raises(ValueError, match="no examples"):
        compute_metrics(["accuracy"], [], [])
    assert set(METRICS) >= {"accuracy", "f1", "macro_f1", "matthews", "pearson", "spearman",
                            "em", "f1_qa", "multirc_f1a", "multirc_em"}
