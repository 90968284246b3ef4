"""DTVG grouping (METHODS.md §6): hand cases, ablations, merge, and a loop-based reference on random inputs."""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path

import pytest
import torch

from mtpt.methods.dtvg.grouping import (
    Ablation,
    choose_sources,
    first_argmax,
    group_details,
    merge_prompt,
    scale_rows,
    select_group,
    similarity_matrix,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def vecs(*rows, dtype=torch.float64):
    """Sources with L = 1: each argument is one d-dimensional token -> [S, 1, d]."""
    return torch.tensor([[list(r) if isinstance(r, (list, tuple)) else [r]] for r in rows], dtype=dtype)


def one(*values, dtype=torch.float64):
    """A single [1, d] target vector."""
    return torch.tensor([list(values)], dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# Independent reference: the authors' procedure with plain Python loops and Python floats.
# ----------------------------------------------------------------------------------------------------------------


def ref_scale(matrix, scale):
    if scale is None:
        return matrix
    return [[x * scale[i] for x in row] for i, row in enumerate(matrix)]


def ref_sim(x, y, kind):
    length, dim = len(x), len(x[0])
    mx = [sum(x[i][c] for i in range(length)) / length for c in range(dim)]
    my = [sum(y[i][c] for i in range(length)) / length for c in range(dim)]
    dot = sum(mx[c] * my[c] for c in range(dim))
    if kind == "dot":
        return dot / dim
    nx = sum(v * v for v in mx) ** 0.5
    ny = sum(v * v for v in my) ** 0.5
    return dot / (max(nx, 1e-12) * max(ny, 1e-12))


def ref_group(target, sources, t_scale, s_scales, kind, objective, threshold, lam):
    """Returns (group, ranked, kc list, ts list) exactly as the authors' code would (stable sort, first argmax)."""
    tt = ref_scale(target, t_scale)
    ss = [ref_scale(s, None if s_scales is None else s_scales[i]) for i, s in enumerate(sources)]
    ts = [ref_sim(tt, s, kind) for s in ss]
    order = sorted(range(len(ss)), key=lambda i: -ts[i])  # stable: equal TS keep index order
    ranked = [i for i in order if ts[i] >= threshold]
    kc = [0.0]
    for k in range(2, len(ranked) + 1):
        pair_sims = [ref_sim(ss[i], ss[j], kind) for i in ranked[:k] for j in ranked[:k] if i != j]
        kc.append(sum(pair_sims) / len(pair_sims))
    if not ranked:
        return [], [], [], ts
    if objective == "kc_prefix":
        scores = kc
    else:
        scores = [sum(ts[i] for i in ranked[:k]) / k + lam * kc[k - 1] for k in range(1, len(ranked) + 1)]
    best = max(scores)
    k_star = next(k for k, s in enumerate(scores, start=1) if s == best)
    return ranked[:k_star], ranked, kc[: len(ranked)], ts


def _random_case(rng: random.Random, exact: bool, dtype: torch.dtype):
    """Random inputs. exact=True: small integers, L and d powers of two, so every operation is exact in
    float32/float64 and ties (duplicated sources, equal similarities) are genuine, not rounding accidents."""
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    num_sources = rng.randrange(0, 9)
    if exact:
        length, dim = rng.choice([1, 2, 4, 8]), rng.choice([1, 2, 4, 8, 16])
        target = torch.randint(-2, 3, (length, dim), generator=gen).to(dtype)
        sources = torch.randint(-2, 3, (num_sources, length, dim), generator=gen).to(dtype)
        for _ in range(rng.randrange(0, 3)):  # forced duplicates -> tied TS and tied pair similarities
            if num_sources >= 2:
                i, j = rng.sample(range(num_sources), 2)
                sources[j] = sources[i]
        t_scale = torch.randint(-1, 3, (length,), generator=gen).to(dtype) if rng.random() < 0.5 else None
        s_scales = torch.randint(-1, 3, (num_sources, length), generator=gen).to(dtype) if rng.random() < 0.5 else None
        kind, lam = "dot", rng.choice([0.5, 1.0, 2.0])
        threshold = rng.choice([0.0, 0.0, -0.5, 0.5])
    else:
        length, dim = rng.randrange(1, 7), rng.randrange(1, 8)
        target = torch.randn(length, dim, generator=gen, dtype=dtype)
        sources = torch.randn(num_sources, length, dim, generator=gen, dtype=dtype)
        if rng.random() < 0.3:  # mostly-negative similarities
            sources = sources - 2 * target
        t_scale = torch.rand(length, generator=gen, dtype=dtype) * 2 if rng.random() < 0.5 else None
        s_scales = torch.rand(num_sources, length, generator=gen, dtype=dtype) * 2 if rng.random() < 0.5 else None
        kind, lam = rng.choice(["dot", "cosine"]), rng.uniform(0.0, 3.0)
        threshold = rng.choice([0.0, 0.0, -0.1, 0.05])
    objective = rng.choice(["kc_prefix", "ts_plus_kc"])
    return target, sources, t_scale, s_scales, kind, objective, threshold, lam


def _as_lists(target, sources, t_scale, s_scales):
    return (
        target.double().tolist(),
        sources.double().tolist(),
        None if t_scale is None else t_scale.double().tolist(),
        None if s_scales is None else s_scales.double().tolist(),
    )


@pytest.mark.parametrize(
    "exact,dtype,count,seed",
    [(False, torch.float64, 200, 1), (True, torch.float64, 250, 2), (True, torch.float32, 100, 3)],
)
def test_matches_loop_reference_on_random_inputs(exact, dtype, count, seed):
    rng = random.Random(seed)
    stats = {"ties": 0, "empty": 0, "partial": 0}
    for case in range(count):
        target, sources, t_scale, s_scales, kind, objective, threshold, lam = _random_case(rng, exact, dtype)
        expected_group, expected_ranked, expected_kc, expected_ts = ref_group(
            *_as_lists(target, sources, t_scale, s_scales), kind, objective, threshold, lam
        )
        details = group_details(target, sources, t_scale, s_scales, kind, objective, threshold, lam)
        context = f"case {case}: S={sources.shape[0]} kind={kind} objective={objective} threshold={threshold}"
        assert details.group == expected_group, context
        assert details.ranked == expected_ranked, context
        assert details.k_star == len(expected_group), context
        assert select_group(target, sources, t_scale, s_scales, kind, objective, threshold, lam) == expected_group
        torch.testing.assert_close(details.ts.double(), torch.tensor(expected_ts, dtype=torch.float64).reshape(-1))
        torch.testing.assert_close(details.kc.double(), torch.tensor(expected_kc, dtype=torch.float64).reshape(-1))
        stats["ties"] += len(set(expected_ts)) < len(expected_ts)
        stats["empty"] += not expected_group
        stats["partial"] += 0 < len(expected_group) < len(expected_ranked)
    # The random cases must actually exercise ties (exact cases), empty groups and non-trivial prefixes.
    assert stats["empty"] > 0 and stats["partial"] > 0
    if exact:
        assert stats["ties"] > count // 10


# ----------------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------------------


def test_worked_example_from_methods_md():
    details = group_details(one(1.0), vecs(2.0, 1.0, -1.0))
    assert details.ts.tolist() == [2.0, 1.0, -1.0]
    assert details.ranked == [0, 1]
    assert details.kc.tolist() == [0.0, 2.0]
    assert details.k_star == 2
    assert details.group == [0, 1]


def test_equal_ts_keep_source_index_order():
    # TS = [1, 2, 1, 2] -> R = [1, 3, 0, 2]; KC = [0, 4, 8/3, 13/6] -> k* = 2.
    details = group_details(one(1.0), vecs(1.0, 2.0, 1.0, 2.0))
    assert details.ranked == [1, 3, 0, 2]
    torch.testing.assert_close(details.kc, torch.tensor([0.0, 4.0, 8 / 3, 13 / 6], dtype=torch.float64))
    assert details.group == [1, 3]


def test_equal_kc_chooses_smallest_group():
    assert group_details(one(1.0), vecs(1.0, 1.0, 1.0)).kc.tolist() == [0.0, 1.0, 1.0]
    assert select_group(one(1.0), vecs(1.0, 1.0, 1.0)) == [0, 1]
    # KC(1) = KC(2) = 0 (TS = 0 passes the threshold 0 inclusively) -> the single best source.
    details = group_details(one(1.0), vecs(1.0, 0.0))
    assert details.ranked == [0, 1] and details.kc.tolist() == [0.0, 0.0]
    assert details.group == [0]


def test_all_negative_similarities_give_empty_group():
    details = group_details(one(1.0), vecs(-1.0, -2.0))
    assert details.group == [] and details.ranked == [] and details.k_star == 0
    assert details.kc.numel() == 0


def test_single_positive_source():
    assert select_group(one(1.0), vecs(-1.0, 3.0, -2.0)) == [1]


def test_negative_pair_similarity_keeps_only_the_best():
    # TS = [0.5, 0.5]; sim(s0, s1) = (-2 - 2) / 2 = -2 < KC(1) = 0.
    details = group_details(one(1.0, 1.0), vecs([2.0, -1.0], [-1.0, 2.0]))
    assert details.ranked == [0, 1]
    assert details.kc.tolist() == [0.0, -2.0]
    assert details.group == [0]


def test_empty_source_set():
    empty = torch.zeros(0, 1, 1, dtype=torch.float64)
    assert select_group(one(1.0), empty) == []
    details = group_details(one(1.0), empty, torch.ones(1, dtype=torch.float64), torch.ones(0, 1, dtype=torch.float64))
    assert details.ts.shape == (0,) and details.source_similarity.shape == (0, 0) and details.k_star == 0


def test_threshold():
    sources = vecs(2.0, 1.0, 0.5)
    assert group_details(one(1.0), sources, threshold=0.75).ranked == [0, 1]
    assert select_group(one(1.0), sources, threshold=1.5) == [0]
    assert select_group(one(1.0), sources, threshold=2.5) == []
    assert group_details(one(1.0), vecs(1.0, -1.0), threshold=-1.0).ranked == [0, 1]


def test_scales_change_the_grouping():
    target, sources = one(1.0), vecs(1.0, 2.0)
    assert select_group(target, sources) == [1, 0]
    assert select_group(target, sources, source_scales=torch.tensor([[3.0], [1.0]], dtype=torch.float64)) == [0, 1]
    assert select_group(target, sources, source_scales=torch.tensor([[-1.0], [1.0]], dtype=torch.float64)) == [1]
    assert select_group(target, sources, target_scale=torch.tensor([-1.0], dtype=torch.float64)) == []
    # Row (token) scaling with L = 2: zeroing token 0 of the target flips the sign of both TS (.125, -.125).
    target2 = torch.tensor([[1.0], [-0.5]], dtype=torch.float64)
    sources2 = torch.tensor([[[1.0], [0.0]], [[0.0], [-1.0]]], dtype=torch.float64)
    assert select_group(target2, sources2) == [0]
    assert select_group(target2, sources2, target_scale=torch.tensor([0.0, 1.0], dtype=torch.float64)) == [1]


def test_scales_are_detached_for_grouping():
    target_scale = torch.ones(1, dtype=torch.float64, requires_grad=True)
    source_scales = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
    details = group_details(one(1.0), vecs(1.0, 2.0), target_scale, source_scales)
    assert not details.ts.requires_grad and not details.kc.requires_grad


def test_float64_is_computed_in_float64():
    # TS differ by 1e-12: float64 orders them, float32 would round both to 1 and keep index order.
    sources = vecs(1.0, 1.0 + 1e-12)
    details = group_details(one(1.0), sources)
    assert details.ts.dtype == details.kc.dtype == details.scores.dtype == torch.float64
    assert details.ranked == [1, 0]
    details32 = group_details(one(1.0, dtype=torch.float32), sources.float())
    assert details32.ts.dtype == torch.float32 and details32.ranked == [0, 1]


def test_mixed_dtypes_are_rejected():
    with pytest.raises(ValueError, match="dtype"):
        select_group(one(1.0), vecs(1.0, dtype=torch.float32))


def test_grouping_follows_the_vectors():
    sources = vecs(1.0, -1.0)
    assert select_group(one(1.0), sources) == [0]
    assert select_group(one(-1.0), sources) == [1]


def test_cosine_and_dot_differ():
    # dot: TS = [5, .5, .5] -> R = [1, 0, 2], KC = [0, 5, -1.5] -> [1, 0]
    # cosine: TS = [1, .707, .316] -> R = [0, 1, 2], KC(2) = .707 > KC(3) -> [0, 1]
    target, sources = one(1.0, 0.0), vecs([1.0, 0.0], [10.0, 10.0], [1.0, -3.0])
    dot = group_details(target, sources, similarity="dot")
    cosine = group_details(target, sources, similarity="cosine")
    assert dot.ranked == [1, 0, 2] and dot.group == [1, 0]
    torch.testing.assert_close(dot.kc, torch.tensor([0.0, 5.0, -1.5], dtype=torch.float64))
    assert cosine.ranked == [0, 1, 2] and cosine.group == [0, 1]


def test_ts_plus_kc_objective():
    # TS = [3, 1, 1], KC = [0, 3, 7/3]. kc_prefix -> k = 2. ts_plus_kc: [3, 2 + 3 lam, 5/3 + 7/3 lam].
    target, sources = one(1.0), vecs(3.0, 1.0, 1.0)
    assert select_group(target, sources) == [0, 1]
    assert select_group(target, sources, objective="ts_plus_kc", lam=1.0) == [0, 1]
    details = group_details(target, sources, objective="ts_plus_kc", lam=0.1)
    torch.testing.assert_close(details.scores, torch.tensor([3.0, 2.3, 5 / 3 + 0.7 / 3], dtype=torch.float64))
    assert details.group == [0]
    assert select_group(target, sources, objective="ts_plus_kc", lam=0.0) == [0]


def test_ts_plus_kc_ties_choose_smallest_group():
    # target [2], sources [2], [1]: TS = [4, 2], KC(2) = 2. lam = .5: scores [4, 3 + 1] -> tie -> k = 1.
    target, sources = one(2.0), vecs(2.0, 1.0)
    assert group_details(target, sources, objective="ts_plus_kc", lam=0.5).scores.tolist() == [4.0, 4.0]
    assert select_group(target, sources, objective="ts_plus_kc", lam=0.5) == [0]
    assert select_group(target, sources, objective="ts_plus_kc", lam=0.75) == [0, 1]


def test_similarity_matrix_values():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # token mean [2, 3]
    b = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])  # means [1, 0], [0, 1]
    torch.testing.assert_close(similarity_matrix(a, b), torch.tensor([[1.0, 1.5]]))
    cos = similarity_matrix(a, b, kind="cosine")
    torch.testing.assert_close(cos, torch.tensor([[2.0, 3.0]]) / 13**0.5)
    assert similarity_matrix(a, torch.zeros(1, 2, 2), kind="cosine").item() == 0.0


def test_scale_rows():
    x = torch.arange(6.0).reshape(3, 2)
    expected = torch.tensor([[0.0, 1], [0, 0], [-8, -10]])
    torch.testing.assert_close(scale_rows(x, torch.tensor([1.0, 0.0, -2.0])), expected)
    assert scale_rows(x, None) is x
    assert scale_rows(x.double(), torch.ones(3)).dtype == torch.float64


def test_first_argmax_ties_to_lowest_index():
    assert first_argmax(torch.tensor([1.0, 3.0, 3.0, 2.0])) == 1
    with pytest.raises(ValueError):
        first_argmax(torch.tensor([]))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: select_group(torch.zeros(2), torch.zeros(1, 2, 1)), "target_vector"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 4)), "source_vectors"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), target_scale=torch.ones(3)), "target_scale"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), source_scales=torch.ones(2)), "source_scales"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), similarity="l2"), "similarity kind"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), objective="best"), "objective"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), threshold=float("nan")), "threshold"),
        (lambda: select_group(torch.zeros(2, 3), torch.zeros(1, 2, 3), lam=float("inf")), "lam"),
        (lambda: similarity_matrix(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4)), "share"),
        (lambda: scale_rows(torch.zeros(2, 3), torch.ones(3)), "scales"),
    ],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------------------------------------
# Ablations
# ----------------------------------------------------------------------------------------------------------------

ABLATION_TARGET = one(1.0, 0.0)
# dot TS = [5, .5, -.5, .25]; cosine = [.707, 1, -1, .0995]
ABLATION_SOURCES = vecs([10.0, 10.0], [1.0, 0.0], [-1.0, 0.0], [0.5, -5.0])


def test_ablation_full_and_only_positive():
    details = group_details(ABLATION_TARGET, ABLATION_SOURCES)
    assert details.ranked == [0, 1, 3]
    assert choose_sources(Ablation.FULL, ABLATION_TARGET, ABLATION_SOURCES) == details.group
    assert choose_sources("only_positive", ABLATION_TARGET, ABLATION_SOURCES) == [0, 1, 3]


def test_ablation_target_only_and_all_sources():
    assert choose_sources("target_only", ABLATION_TARGET, ABLATION_SOURCES) == []
    assert choose_sources(Ablation.ALL_SOURCES, ABLATION_TARGET, ABLATION_SOURCES) == [0, 1, 2, 3]


def test_ablation_fixed_group_returns_the_given_group():
    assert choose_sources("fixed_group", ABLATION_TARGET, ABLATION_SOURCES, fixed_group=[2, 0]) == [2, 0]
    with pytest.raises(ValueError, match="compute it once"):
        choose_sources("fixed_group", ABLATION_TARGET, ABLATION_SOURCES)
    with pytest.raises(ValueError, match="group indices"):
        choose_sources("fixed_group", ABLATION_TARGET, ABLATION_SOURCES, fixed_group=[4])


def test_ablation_spot_uses_cosine_argmax():
    assert choose_sources(Ablation.SPOT, ABLATION_TARGET, ABLATION_SOURCES) == [1]  # dot would pick 0
    assert choose_sources("spot", ABLATION_TARGET, vecs([1.0, 0.0], [2.0, 0.0])) == [0]  # tie -> lowest index
    assert choose_sources("spot", ABLATION_TARGET, torch.zeros(0, 1, 2, dtype=torch.float64)) == []


def test_ablation_names():
    assert [a.value for a in Ablation] == [
        "full", "only_positive", "target_only", "all_sources", "fixed_group", "spot",
    ]
    with pytest.raises(ValueError):
        choose_sources("random", ABLATION_TARGET, ABLATION_SOURCES)


# ----------------------------------------------------------------------------------------------------------------
# Merged prompt
# ----------------------------------------------------------------------------------------------------------------


def _merge_inputs(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    p_init = torch.randn(3, 4, generator=gen, dtype=dtype)
    target_prompt = torch.randn(3, 4, generator=gen, dtype=dtype, requires_grad=True)
    target_scale = torch.rand(3, generator=gen, dtype=dtype).requires_grad_()
    sources = torch.randn(5, 3, 4, generator=gen, dtype=dtype)
    source_scales = torch.rand(5, 3, generator=gen, dtype=dtype).requires_grad_()
    return p_init, target_prompt, target_scale, sources, source_scales


def test_merge_prompt_value():
    p_init, target_prompt, target_scale, sources, source_scales = _merge_inputs()
    merged = merge_prompt(p_init, target_prompt, target_scale, sources, source_scales, [3, 1])
    expected = p_init + target_scale[:, None] * (target_prompt - p_init)
    for s in (3, 1):
        expected = expected + source_scales[s][:, None] * sources[s]
    torch.testing.assert_close(merged, expected)
    empty = merge_prompt(p_init, target_prompt, target_scale, sources, source_scales, [])
    torch.testing.assert_close(empty, p_init + target_scale[:, None] * (target_prompt - p_init))
    unscaled = merge_prompt(p_init, target_prompt, None, sources, None, [0])
    torch.testing.assert_close(unscaled, target_prompt + sources[0])


def test_merge_prompt_gradients():
    p_init, target_prompt, target_scale, sources, source_scales = _merge_inputs()

    def merged(tp, ts, ss):
        return merge_prompt(p_init, tp, ts, sources, ss, [4, 0, 2])

    assert torch.autograd.gradcheck(merged, (target_prompt, target_scale, source_scales))
    merged(target_prompt, target_scale, source_scales).sum().backward()
    assert target_prompt.grad is not None and target_scale.grad is not None
    assert torch.all(source_scales.grad[[1, 3]] == 0)  # sources outside the group get no gradient
    torch.testing.assert_close(source_scales.grad[0], sources[0].sum(dim=1))


def test_merge_prompt_rejects_bad_groups():
    p_init, target_prompt, target_scale, sources, source_scales = _merge_inputs()
    with pytest.raises(ValueError, match="distinct"):
        merge_prompt(p_init, target_prompt, target_scale, sources, source_scales, [1, 1])
    with pytest.raises(ValueError, match="group indices"):
        merge_prompt(p_init, target_prompt, target_scale, sources, source_scales, [5])
    with pytest.raises(ValueError, match="p_init"):
        merge_prompt(p_init[:2], target_prompt, target_scale, sources, source_scales, [0])


# ----------------------------------------------------------------------------------------------------------------
# Microbenchmark smoke test
# ----------------------------------------------------------------------------------------------------------------


def _load_microbench():
    # Loaded by path so the test does not depend on the repository root being on sys.path.
    path = REPO_ROOT / "benchmarks" / "grouping_microbench.py"
    spec = importlib.util.spec_from_file_location("grouping_microbench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_microbenchmark_smoke():
    bench = _load_microbench()
    threads_before = torch.get_num_threads()
    start = time.perf_counter()
    results = bench.run(sources=(2, 5), L=4, d=8, repeats=3)
    assert time.perf_counter() - start < 2.0
    assert set(results["results"]) == {2, 5}
    for row in results["results"].values():
        assert row["median_ms"] > 0 and row["min_ms"] <= row["median_ms"]
    assert torch.get_num_threads() == threads_before  # the benchmark restores the thread count
    assert "sources" in bench.format_table(results)
