"""Unit tests of the task layer on small fixtures (no benchmark data needed)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from mtpt.metrics import METRICS
from mtpt.tasks import (
    Example,
    KShotInfo,
    TaskDataError,
    format_mean_std,
    get_task,
    list_tasks,
    load_spec,
    mean_std,
    seed_spread,
    render_task_table,
    resolve_data_root,
    split_suite,
    stratified_kshot,
    validate_spec,
)
from mtpt.tasks.kshot import (
    attempt_permutation,
    cap_examples,
    carve,
    decontaminate,
    describe_dropped,
    halve,
    holdout,
    holdout_size,
)
from mtpt.tasks.readers import read_csv, read_json, read_jsonl, read_label_lines, read_tsv
from mtpt.tasks.templates import Prompt, render, template_fields

FIX = Path(__file__).parent / "fixtures" / "tasks"
BROKEN = FIX / "broken"


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("MTPT_DATA_ROOT", raising=False)


def _pool(counts: dict[int, int], words=(" a", " b", " c")) -> list[Example]:
    out = []
    for label, n in counts.items():
        out += [Example(f"x{label}-{i}", words[label], words, label, gold=label) for i in range(n)]
    random.Random(0).shuffle(out)
    return out


# -- registry ------------------------------------------------------------------------------------
def test_suites_are_complete():
    en = {t.name for t in list_tasks("en")}
    zh = {t.name for t in list_tasks("zh")}
    assert len(en) >= 20 and len(zh) >= 12
    for name in ["glue-mnli", "glue-qnli", "glue-qqp", "glue-sst2", "glue-stsb", "glue-mrpc",
                 "glue-rte", "glue-cola", "superglue-boolq", "superglue-cb", "superglue-copa",
                 "superglue-multirc", "superglue-wic", "superglue-wsc", "superglue-record", "snli",
                 "winogrande", "imdb", "yelp", "mr", "cr", "subj", "trec", "ag_news", "demo-sst2"]:
        assert name in en, name
    for name in ["afqmc", "cmnli", "ocnli", "tnews", "iflytek", "csl", "cluewsc", "chnsenticorp",
                 "thucnews", "lcqmc", "bq", "eprstmt", "bustm", "pawsx-zh", "online-shopping"]:
        assert name in zh, name


@pytest.mark.parametrize("task", list_tasks(), ids=lambda t: t.name)
def test_task_metadata(task):
    assert task.kind in ("classification", "multiple_choice", "regression", "generation")
    assert task.size_class in ("small", "large")
    assert task.metrics and all(m in METRICS for m in task.metrics)
    assert task.notes.strip()
    cue = task.template.rstrip()
    assert cue.endswith((":", "：")), task.template
    if task.kind == "classification":
        words = task.label_words
        assert words and len(set(words)) == len(words)
        for w in words:
            assert w.strip()
            assert w.startswith(" ") if task.language == "en" else not w[0].isspace()
    if task.kshot:
        assert task.kshot.kind in ("per_class", "total") and task.kshot.seeds


def test_get_task_unknown_name_suggests():
    with pytest.raises(KeyError, match="glue-rte"):
        get_task("rte")


def test_resolve_data_root(monkeypatch, tmp_path):
    assert resolve_data_root() is None
    monkeypatch.setenv("MTPT_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"


def test_missing_data_root_is_a_clear_error():
    with pytest.raises(TaskDataError, match="MTPT_DATA_ROOT"):
        get_task("glue-rte").examples("train")


def test_render_task_table():
    tasks = [get_task("demo-sst2"), get_task("glue-rte"), get_task("ocnli")]
    table = render_task_table(tasks, None)
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["task", "lang", "family", "kind", "size"]
    demo = next(ln for ln in lines if ln.startswith("demo-sst2"))
    assert demo.split()[5:8] == ["256", "100", "300"]
    assert demo.endswith("16 per class, 1 seed (LM-BFF)")
    assert "32 total, 5 seeds (FewCLUE)" in table and "MTPT_DATA_ROOT" in table
    verbose = render_task_table(tasks, None, verbose=True)
    assert "template:" in verbose and "ATTEMPT halves" in verbose


# -- demo task -----------------------------------------------------------------------------------
def test_demo_task_works_without_data_root():
    task = get_task("demo-sst2")
    assert task.sizes() == {"train": 256, "validation": 100, "test": 300}
    ex = task.examples("test")[0]
    assert ex.text.startswith("Review: ") and ex.text.endswith("\nSentiment:")
    assert ex.choices == (" negative", " positive") and ex.target == ex.choices[ex.label]
    assert ex.gold == ex.label and ex.task == "demo-sst2"
    assert task.template == get_task("glue-sst2").template
    assert task.label_words == get_task("glue-sst2").label_words


def test_demo_published_kshot_seed_mapping():
    task = get_task("demo-sst2")
    by_value = task.examples("train", kshot=16, seed=13)
    by_index = task.examples("train", kshot=16, seed=0)
    assert by_value == by_index and Counter(e.label for e in by_value) == {0: 16, 1: 16}
    with pytest.raises(ValueError, match="published=False"):
        task.examples("train", kshot=16, seed=21)
    sampled = task.examples("train", kshot=4, seed=21)
    assert Counter(e.label for e in sampled) == {0: 4, 1: 4}
    resampled = task.examples("train", kshot=16, seed=21, published=False)  # 16 per class from the 256
    assert Counter(e.label for e in resampled) == {0: 16, 1: 16} and resampled != by_value
    # the test split is never k-shot
    assert task.examples("test", kshot=4, seed=1) == task.examples("test")


def test_kshot_seeds():
    assert get_task("glue-rte").kshot_seeds(16) == (13, 21, 42, 87, 100)
    assert get_task("eprstmt").kshot_seeds(32) == (0, 1, 2, 3, 4)
    assert get_task("superglue-cb").kshot_seeds(32) == (0,)
    assert get_task("superglue-cb").kshot_seeds(8) == (13, 21, 42, 87, 100)  # sampled


def test_max_examples_is_a_fixed_seeded_sample():
    task = get_task("demo-sst2")
    full = task.examples("test")
    capped = task.examples("test", max_examples=50)
    assert len(capped) == 50 and capped == task.examples("test", max_examples=50, seed=7)
    positions = [full.index(e) for e in capped]
    assert positions == sorted(positions)
    assert task.examples("test", max_examples=1000) == full


# -- k-shot --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [13, 21, 42, 87, 100])
@pytest.mark.parametrize("k", [1, 4, 8])
def test_stratified_kshot_exact_counts(k, seed):
    pool = _pool({0: 10, 1: 9, 2: 8})
    out = stratified_kshot(pool, k, seed)
    assert Counter(e.label for e in out) == {0: k, 1: k, 2: k}
    assert len(set(e.text for e in out)) == 3 * k
    assert out == stratified_kshot(pool, k, seed)  # reproducible
    positions = [pool.index(e) for e in out]
    assert positions == sorted(positions)  # deterministic order: the pool's


def test_stratified_kshot_seeds_differ_and_errors_name_the_class():
    pool = _pool({0: 10, 1: 9, 2: 3})
    assert stratified_kshot(pool, 2, 1) != stratified_kshot(pool, 2, 2)
    with pytest.raises(TaskDataError, match=r"class 2 \('c'\) has only 3"):
        stratified_kshot(pool, 4, 0)
    with pytest.raises(TaskDataError, match="class 5"):
        stratified_kshot(pool, 1, 0, classes=[0, 1, 2, 5])
    keyed = stratified_kshot(pool, 1, 0, key=lambda e: e.label % 2)
    assert Counter(e.label % 2 for e in keyed) == {0: 1, 1: 1}


def test_kshot_info():
    info = KShotInfo("per_class", 16, (13, 21, 42, 87, 100), "LM-BFF")
    assert [info.resolve_seed(s) for s in (0, 4, 13, 100, 5, 7)] == [13, 100, 13, 100, None, None]
    assert info.describe() == "16 per class, 5 seeds (LM-BFF)"
    assert KShotInfo("total", 32, (0,), "FewGLUE").describe() == "32 total, 1 seed (FewGLUE)"


def test_split_rules():
    import torch

    gen = torch.Generator()
    gen.manual_seed(42)
    assert attempt_permutation(17) == torch.randperm(17, generator=gen).tolist()
    items = list(range(101))
    val, test = halve(items)
    assert len(val) == 50 and len(test) == 51 and set(val) | set(test) == set(items)
    assert val == [items[i] for i in attempt_permutation(101)[:50]]
    train, val = holdout(items)
    assert len(val) == holdout_size(101) == 20 and not set(train) & set(val)
    train, val, test = carve(list(range(50)), n_test=10, n_val=5)
    assert (len(train), len(val), len(test)) == (35, 5, 10)
    assert len(set(train) | set(val) | set(test)) == 50


def test_holdout_size_rule():
    assert holdout_size(5000) == 1000
    assert holdout_size(640) == 128
    assert holdout_size(2) == 1


def test_decontaminate():
    ex = lambda t: Example(t, " a", (" a", " b"), 0)  # noqa: E731
    splits = {"train": [ex("1"), ex("2"), ex("3")], "validation": [ex("3"), ex("4")],
              "test": [ex("2"), ex("4"), ex("5"), ex("9")]}
    out, dropped = decontaminate(splits, {"9"}, "t")
    assert [e.text for e in out["test"]] == ["2", "4", "5"]
    assert [e.text for e in out["validation"]] == ["3"]
    assert [e.text for e in out["train"]] == ["1"]
    assert dropped == {"test": {"published k-shot": 1}, "validation": {"test": 1},
                       "train": {"test": 1, "validation": 1}}
    assert describe_dropped(dropped, {"train": 3, "validation": 2, "test": 4}) == (
        "train -2 of 3 (duplicates of test inputs: 1, validation inputs: 1); "
        "validation -1 of 2 (duplicates of test inputs: 1); "
        "test -1 of 4 (duplicates of published k-shot examples: 1)")
    assert decontaminate({"train": [ex("1")], "test": [ex("2")]}, set(), "t")[1] == {}
    with pytest.raises(TaskDataError, match="empty"):
        decontaminate({"train": [ex("1")], "test": [ex("1")]}, set(), "t")


def test_cap_keeps_groups_whole():
    exs = [Example(f"q{g}-{i}", " a", (" a", " b"), 0, group=str(g))
           for g in range(10) for i in range(g % 3 + 1)]
    capped = cap_examples(exs, 7, 42)
    assert len(capped) <= 7
    for g in {e.group for e in capped}:
        assert sum(e.group == g for e in capped) == sum(e.group == g for e in exs)


def test_mean_std():
    m, s = mean_std([80.0, 82.0, 84.0])
    assert m == pytest.approx(82.0) and s == pytest.approx((8 / 3) ** 0.5)
    assert mean_std([80.0, 82.0, 84.0], ddof=1)[1] == pytest.approx(2.0)
    assert mean_std([5.0]) == (5.0, 0.0)
    assert format_mean_std([80, 82, 84]) == "82.0 ± 1.6"
    assert format_mean_std([80]) == "80.0"  # one seed: no spread to report
    assert seed_spread([80.0]) == (80.0, None) and seed_spread([80.0, 84.0]) == (82.0, 2.0)
    with pytest.raises(ValueError):
        mean_std([])


# -- templates and readers -----------------------------------------------------------------------
def test_templates():
    assert template_fields("{a} and {b}, {{literal}}") == ["a", "b"]
    assert render("{a} -> {{x}}", {"a": "1"}, "here") == "1 -> {x}"
    with pytest.raises(TaskDataError, match=r"f\.csv:3: the template needs field 'b'"):
        render("{a} {b}", {"a": 1}, "f.csv:3")
    with pytest.raises(ValueError):
        template_fields("{a:>10}")
    with pytest.raises(ValueError, match="distinct"):
        Prompt("{a}:", (" x", " x"))


def test_jsonl_reader_keeps_unicode_line_separators():
    rows = read_jsonl(FIX / "data/u2028.jsonl")
    assert len(rows) == 2 and "\u2028" in rows[0]["sentence"]
    assert rows[1].where.endswith("u2028.jsonl:2")


def test_reader_errors_name_file_and_line():
    with pytest.raises(TaskDataError, match=r"reviews_malformed\.jsonl:2: malformed JSON"):
        read_jsonl(FIX / "data/reviews_malformed.jsonl")
    with pytest.raises(TaskDataError, match=r"bad_fields\.tsv:3: expected 4 tab-separated"):
        read_tsv(FIX / "data/bad_fields.tsv")
    with pytest.raises(TaskDataError, match=r"reviews_bad_row\.csv:3: expected 3 fields"):
        read_csv(FIX / "data/reviews_bad_row.csv")
    with pytest.raises(TaskDataError, match="data file not found.*nope.json"):
        read_json(FIX / "data/nope.json")
    with pytest.raises(TaskDataError, match=r"reviews_dev\.csv:1: expected <label>\|<text>"):
        read_label_lines(FIX / "data/reviews_dev.csv", sep="|")
    row = read_csv(FIX / "data/reviews_train.csv")[2]
    assert row.where.endswith("reviews_train.csv:4") and row["text"] == "warm, funny and wise"
    with pytest.raises(TaskDataError, match=r"reviews_train\.csv:4: field 'review' is missing"):
        row["review"]


def test_tsv_bom_and_ragged_gold_label(tmp_path):
    rows = read_tsv(FIX / "data/bom.tsv")
    assert list(rows[0].data) == ["Quality", "#1 String", "#2 String"]
    p = tmp_path / "nli.tsv"
    p.write_text("a\tb\tgold_label\n1\t2\tentailment\n3\t4\tneutral\tneutral\tcontradiction\n")
    rows = read_tsv(p, last_field="gold_label")
    assert [r["gold_label"] for r in rows] == ["entailment", "contradiction"]


def test_json_reader_dict_layout(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"0": {"text_a": "x", "label": "1"}, "1": {"text_a": "y", "label": 0}}))
    rows = read_json(p)
    assert [r["text_a"] for r in rows] == ["x", "y"] and rows[1].where.endswith("(item 1)")


# -- a built-in task on a fake data root ---------------------------------------------------------
def _write_rte_root(root: Path) -> None:
    full = root / "superglue/RTE/full"
    full.mkdir(parents=True)
    labels = ["entailment", "not_entailment"]
    with open(full / "train.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"premise": f"train premise {i}", "hypothesis": f"h{i}",
                                "label": labels[i % 2], "idx": i}) + "\n")
    with open(full / "val.jsonl", "w") as f:
        for i in range(10):
            premise = "kshot premise 13-0" if i == 3 else f"val premise {i}"
            f.write(json.dumps({"premise": premise, "hypothesis": "h13-0" if i == 3 else f"v{i}",
                                "label": labels[i % 2], "idx": i}) + "\n")
    for seed in (13, 21, 42, 87, 100):
        d = root / f"glue/RTE/k-shot/16-{seed}"
        d.mkdir(parents=True)
        for name in ("train", "dev"):
            rows = ["index\tsentence1\tsentence2\tlabel"]
            for i in range(32):
                tag = f"{seed}-{i}" if name == "train" else f"{seed}-dev-{i}"
                rows.append(f"{i}\tkshot premise {tag}\th{tag}\t{labels[i % 2]}")
            (d / f"{name}.tsv").write_text("\n".join(rows) + "\n")


def test_builtin_task_on_fake_root(tmp_path):
    _write_rte_root(tmp_path)
    task = get_task("glue-rte")
    sizes = task.sizes(tmp_path)
    # halves of 10 -> 5 / 5; the val item duplicating a published k-shot example leaves test
    assert sizes["train"] == 20 and sizes["validation"] + sizes["test"] == 9
    test = task.examples("test", tmp_path)
    assert all("kshot" not in e.text for e in test)
    ex = task.examples("train", tmp_path)[0]
    assert ex.text == "train premise 0 Question: h0 True or False? Answer:" and ex.target == " True"
    k13 = task.examples("train", tmp_path, kshot=16, seed=13)
    assert k13 == task.examples("train", tmp_path, kshot=16, seed=0)
    assert Counter(e.label for e in k13) == {0: 16, 1: 16}
    assert all("kshot premise 13-dev" in e.text
               for e in task.examples("validation", tmp_path, kshot=16, seed=13))
    sampled = task.examples("train", tmp_path, kshot=3, seed=5)
    assert Counter(e.label for e in sampled) == {0: 3, 1: 3}
    assert all(e.text.startswith("train premise") for e in sampled)
    assert len(task.examples("train", str(tmp_path), max_examples=4)) == 4


def test_env_var_root(tmp_path, monkeypatch):
    _write_rte_root(tmp_path)
    monkeypatch.setenv("MTPT_DATA_ROOT", str(tmp_path))
    assert get_task("glue-rte").sizes()["train"] == 20


# -- user specs ----------------------------------------------------------------------------------
def test_user_spec_classification():
    task = get_task(str(FIX / "reviews.yaml"))
    assert task.name == "user-reviews" and task.family == "user"
    assert task.label_words == (" negative", " positive")
    assert task.metrics == ("accuracy", "macro_f1")
    assert task.sizes() == {"train": 12, "validation": 4, "test": 4}
    ex = task.examples("train")[0]
    assert ex.text == "Review: a gripping film\nSentiment:" and ex.target == " positive"
    test = task.examples("test")
    assert [e.label for e in test] == [1, 0, 1, 0]  # JSON ints match YAML int keys
    assert Counter(e.label for e in task.examples("train", kshot=2, seed=3)) == {0: 2, 1: 2}


def test_user_spec_carves_validation():
    task = load_spec(FIX / "reviews_no_dev.yaml")
    sizes = task.sizes()
    assert sizes == {"train": 9, "validation": 3, "test": 4}
    train_texts = {e.text for e in task.examples("train")}
    val = task.examples("validation")
    assert not train_texts & {e.text for e in val}
    assert val == load_spec(FIX / "reviews_no_dev.yaml").examples("validation")  # seeded
    assert "Stars: 5" in task.examples("train")[0].text
    assert "carved from train" in task.notes


def test_user_spec_chinese_regression_generation():
    zh = get_task(FIX / "zh_match.yaml")
    ex = zh.examples("train")[0]
    assert zh.language == "zh" and zh.label_words == ("否", "是")
    assert ex.text.endswith("答案：") and ex.target in ("否", "是")
    with pytest.raises(TaskDataError, match="no test split"):
        zh.examples("test")

    sts = get_task(FIX / "sts.yaml")
    ex = next(e for e in sts.examples("train") + sts.examples("validation") if e.gold == 4.8)
    assert ex.target == " 4.8" and ex.choices[0] == " 0.0" and len(ex.choices) == 26
    assert sts.metrics == ("pearson", "spearman")

    qa = get_task(FIX / "qa.yaml")
    exs = qa.examples("train") + qa.examples("validation")
    hamlet = next(e for e in exs if "Hamlet" in e.text)
    assert hamlet.target == " William Shakespeare" and hamlet.choices == () and hamlet.label == -1
    assert hamlet.gold == ("William Shakespeare", "Shakespeare")
    assert qa.metrics == ("em", "f1_qa")


@pytest.mark.parametrize("spec, pattern", [
    ("bad_label.yaml", r"reviews_bad_label\.csv:4: label 'maybe' is not in the label set"),
    ("missing_column.yaml", r"reviews_train\.csv: the header row \['label', 'stars', 'text'\] has no column \['review'\]"),
    ("missing_label_column.yaml", r"reviews_train\.csv: the header row .* has no column \['sentiment'\]"),
    ("missing_file.yaml", r"missing_file\.yaml: files\.train: file not found: .*does_not_exist"),
    ("empty_split.yaml", r"reviews_empty\.csv: no examples in the test file"),
    ("malformed_jsonl.yaml", r"reviews_malformed\.jsonl:2: malformed JSON"),
    ("malformed_csv.yaml", r"reviews_bad_row\.csv:3: expected 3 fields"),
    ("bad_yaml.yaml", r"bad_yaml\.yaml: invalid YAML"),
    ("unknown_key.yaml", r"unknown key\(s\) \['label_colum'\]"),
    ("no_template.yaml", r"'template' is required"),
    ("bad_metric.yaml", r"unknown metric\(s\) \['bleu'\]"),
])
def test_broken_specs_raise_clear_errors(spec, pattern):
    with pytest.raises(TaskDataError, match=pattern):
        validate_spec(BROKEN / spec)


def test_validate_spec_returns_task():
    assert validate_spec(FIX / "reviews.yaml").name == "user-reviews"


class _FakeHF:
    """Stand-in for datasets.load_dataset: a DatasetDict built locally (no network)."""

    calls: list = []

    @staticmethod
    def load(path, name=None):
        import datasets

        _FakeHF.calls.append((path, name))
        feats = datasets.Features({"sentence1": datasets.Value("string"),
                                   "sentence2": datasets.Value("string"),
                                   "label": datasets.ClassLabel(names=["entailment",
                                                                       "not_entailment"])})

        def part(n, tag):
            return datasets.Dataset.from_dict(
                {"sentence1": [f"{tag} p{i}" for i in range(n)],
                 "sentence2": [f"{tag} h{i}" for i in range(n)],
                 "label": [i % 2 for i in range(n)]},
                features=feats)

        return datasets.DatasetDict(train=part(10, "tr"), validation=part(4, "va"))


def test_hf_source(monkeypatch):
    from mtpt.tasks import user_spec

    _FakeHF.calls.clear()
    monkeypatch.setattr(user_spec, "_hf_load", lambda spec, path, name: _FakeHF.load(path, name))
    task = get_task(FIX / "hf_rte.yaml")
    assert task.examples("test")[0].text == "va p0 Question: va h0 True or False? Answer:"
    assert task.examples("test")[0].target == " True"
    assert task.sizes() == {"train": 7, "validation": 3, "test": 4}  # validation carved
    assert _FakeHF.calls[0] == ("glue", "rte")


def test_hf_unreachable_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TaskDataError, match=r"could not load Hugging Face dataset 'glue' "
                                            r"\(config 'rte'\).*hub is unreachable"):
        get_task(FIX / "hf_rte.yaml").examples("train")


def test_hf_offline_for_real(tmp_path):
    """The real datasets.load_dataset in offline mode (no network used) gives the clear error."""
    import os
    import subprocess
    import sys

    code = ("from mtpt.tasks import get_task, TaskDataError\n"
            "try:\n    get_task(%r).examples('train')\n"
            "except TaskDataError as e:\n    print('CLEAR', e)\n") % str(FIX / "hf_rte.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert "CLEAR" in out.stdout and "hub is unreachable" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("source, expected", [
    ("hf:glue/rte", ("glue", "rte")),
    ("hf:imdb", ("imdb", None)),
    ("hf:nyu-mll/glue/rte", ("nyu-mll/glue", "rte")),
    ("hf:stanfordnlp/imdb:", ("stanfordnlp/imdb", None)),
    ("hf:nyu-mll/glue:mrpc", ("nyu-mll/glue", "mrpc")),
])
def test_hf_source_forms(source, expected):
    from mtpt.tasks.user_spec import _hf_source

    assert _hf_source(Path("s.yaml"), {"source": source}) == expected


# -- protocols -----------------------------------------------------------------------------------
def test_split_suite():
    s = split_suite(["glue-mnli", "glue-qnli", "superglue-record"], protocol="unseen_data")
    assert s.source_train == (("glue-mnli", "train"), ("glue-qnli", "train"),
                              ("superglue-record", "train"))
    assert s.evaluation == (("glue-mnli", "test"), ("glue-qnli", "test"))
    t = split_suite(["glue-mnli", "glue-qnli"], ["glue-rte", FIX / "reviews.yaml"])
    assert t.protocol == "unseen_task" and t.targets == ("glue-rte", "user-reviews")
    assert t.target_train == (("glue-rte", "train"), ("user-reviews", "train"))
    assert t.evaluation == (("glue-rte", "test"), ("user-reviews", "test"))
    with pytest.raises(ValueError, match="unseen"):
        split_suite(["glue-rte"], ["glue-rte"])
    with pytest.raises(ValueError, match="source-only"):
        split_suite(["glue-rte"], ["superglue-record"])
    with pytest.raises(ValueError, match="no targets"):
        split_suite(["glue-rte"], ["glue-cola"], protocol="unseen_data")
    with pytest.raises(ValueError, match="protocol"):
        split_suite(["glue-rte"], ["glue-cola"], protocol="zero_shot")
