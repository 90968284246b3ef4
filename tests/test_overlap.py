"""Cross-task leakage (mtpt.tasks.overlap), its removal from a run's test split, and the within-task
decontamination report. In-memory toy tasks only; the real-data check is marked slow."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from mtpt.cli import main as cli_main
from mtpt.tasks import DecontaminationWarning, Example, KShotInfo, Task, decontamination_report, get_task
from mtpt.tasks.overlap import (MIN_WORDS, find_leaked, input_key, normalize, overlap_matrix, remove_leaked,
                                render_overlap_matrix, training_keys, words)
from mtpt.tasks.registry import register
from mtpt.tasks.templates import Prompt

WORDS = (" no", " yes")


def make_task(name: str, template: str, splits: dict[str, list[str]], published: list[str] | None = None) -> Task:
    """A registered in-memory task; every input gets label i % 2. ``published``: the train set of a
    one-seed published k-shot split."""
    prompt = Prompt(template, WORDS)
    field = template[template.index("{") + 1:template.index("}")]

    def examples(split: str, texts: list[str]) -> list[Example]:
        return [prompt.classify(name, {field: t}, i % 2, f"{name} {split} {i}") for i, t in enumerate(texts)]

    kshot = dict(kshot=KShotInfo("total", len(published), (0,), "toy"),
                 published=lambda root, seed, split: examples(split, published)) if published else {}
    task = Task(name=name, family="toy", language="en", kind="classification", metrics=("accuracy",),
                label_words=WORDS, size_class="small", template=template, notes="in-memory leakage test task",
                build=lambda root: {s: examples(s, texts) for s, texts in splits.items()},
                needs_data_root=False, **kshot)
    return register(task, replace=True)


def sentences(tag: str, n: int) -> list[str]:
    return [f"the {tag} film number {i} was a {'joy' if i % 2 else 'bore'}" for i in range(n)]


# -- normalisation --------------------------------------------------------------------------------
def test_normalisation_folds_case_punctuation_whitespace_and_width():
    assert words("Don't  STOP—the\tmusic!!") == ["don", "t", "stop", "the", "music"]
    assert normalize("ＦＵＬＬ－width ﬁne") == "full width fine"  # NFKC: full-width forms, ligatures
    assert normalize("snake_case  and-dash") == "snake case and dash"
    assert words("我喜欢这部电影。") == list("我喜欢这部电影")  # every ideograph is a word


def test_keys_ignore_tokenisation_and_short_inputs():
    def ex(*inputs: str) -> Example:
        return Example(" | ".join(inputs), " a", (" a", " b"), 0, inputs=inputs)

    assert input_key(ex("they wo n't sit still , really .")) == input_key(ex("They won't sit still, really"))
    assert input_key(ex("it 's a gem")) == input_key(ex("It's a GEM!"))
    assert input_key(ex("too short here")) is None  # three words
    assert input_key(ex("just four words here")) is not None
    assert MIN_WORDS == 4
    # fields count together, but stay apart: a pair is not its concatenation
    assert input_key(ex("two words", "two more")) is not None
    assert input_key(ex("two words", "two more")) != input_key(ex("two words two more"))


def test_keys_use_the_raw_inputs_not_the_rendered_template():
    # two examples a split: a classification split needs two classes
    a = make_task("toy-a", "Review: {text}\nSentiment:", {"train": ["A fine film, all in all.", "d e f g"],
                                                         "test": ["x y z w", "h i j k"]})
    b = make_task("toy-b", "Sentence: {s}\nSubjective?", {"train": ["q r s t", "l m n o"],
                                                        "test": ["a FINE film -- all in all", "p q r s"]})
    test = b.examples("test")
    assert test[0].inputs == ("a FINE film -- all in all",)
    assert find_leaked(test, {"toy-a": training_keys(a)}) == {"toy-a": [0]}
    # an example built without inputs falls back to its rendered text
    bare = Example("a fine film all in all", " no", WORDS, 0)
    assert find_leaked([bare], {"toy-a": training_keys(a)}) == {"toy-a": [0]}


def test_training_data_includes_the_published_kshot_sets_but_not_validation():
    src = make_task("toy-src", "{text}", {"train": sentences("train", 4), "validation": sentences("val", 4),
                                          "test": sentences("test", 4)},
                    published=sentences("published", 2))
    keys = training_keys(src)
    assert len(keys) == 6
    assert input_key(src.examples("validation")[0]) not in keys


# -- removal and the matrix -----------------------------------------------------------------------
@pytest.fixture
def leaky_pair():
    """toy-tgt's test has 8 inputs, 3 of which (and one 3-word input) are in toy-src's training data in
    another case, punctuation and tokenisation; one of its validation inputs is too."""
    test = sentences("test", 7) + ["good fun indeed"]
    val = sentences("val", 6)
    src_train = [test[0].upper(), test[3].replace(" ", "  ") + " !", test[5].replace("was", "was,"),
                 "Good fun, indeed.", val[2] + "..."] + sentences("src", 10)
    src = make_task("toy-src", "Sentence: {sentence}\nSubjective?", {
        "train": src_train, "validation": sentences("src-val", 4), "test": sentences("src-test", 4)})
    tgt = make_task("toy-tgt", "Review: {text}\nSentiment:", {
        "train": sentences("train", 12), "validation": val, "test": test})
    return tgt, src, test


def test_remove_leaked_drops_test_inputs_found_in_the_sources(leaky_pair):
    tgt, src, test = leaky_pair
    kept, leakage = remove_leaked(tgt, "test", tgt.examples("test"), [src, tgt])  # the target itself is skipped
    assert [e.inputs[0] for e in kept] == [t for i, t in enumerate(test) if i not in (0, 3, 5)]
    assert leakage.to_json() == {"examined": 8, "found": 3, "removed": 3, "kept": 5, "by_source": {"toy-src": 3}}
    same, counted = remove_leaked(tgt, "validation", tgt.examples("validation"), [src], remove=False)
    assert len(same) == 6 and counted.to_json() == {"examined": 6, "found": 1, "removed": 0, "kept": 6, "by_source": {"toy-src": 1}}


def test_an_input_in_two_sources_counts_for_both_but_is_removed_once(leaky_pair):
    tgt, src, test = leaky_pair
    other = make_task("toy-other", "{text}", {"train": [test[0], test[1]], "test": sentences("o", 2)})
    kept, leakage = remove_leaked(tgt, "test", tgt.examples("test"), [src, other])
    assert leakage.by_source == {"toy-src": 3, "toy-other": 2}
    assert leakage.found == leakage.removed == 4 and len(kept) == leakage.kept == 4


def test_overlap_matrix_and_its_rendering(leaky_pair):
    tgt, src, _ = leaky_pair
    rows = {(r.task, r.split): r for r in overlap_matrix([tgt, src])}
    assert rows["toy-tgt", "test"].found == {"toy-src": 3} and rows["toy-tgt", "test"].n == 8
    assert rows["toy-tgt", "validation"].found == {"toy-src": 1}
    assert rows["toy-src", "test"].found == {"toy-tgt": 0}
    text = render_overlap_matrix([tgt, src])
    line = next(ln for ln in text.splitlines() if ln.startswith("toy-tgt test"))
    assert line.split()[2:] == ["8", "-", "3", "(37.5%)"]


def test_cli_overlap_prints_the_matrix(leaky_pair, capsys):
    assert cli_main(["tasks", "--overlap", "toy-tgt", "toy-src"]) == 0
    out = capsys.readouterr().out
    assert "toy-tgt validation" in out and "1 (16.7%)" in out and "3 (37.5%)" in out
    assert cli_main(["tasks", "--overlap", "toy-tgt", "no-such-task"]) == 1
    assert "unknown task 'no-such-task'" in capsys.readouterr().err
    assert cli_main(["tasks", "--overlap", "toy-tgt", "toy-tgt"]) == 1
    assert "each task must appear once" in capsys.readouterr().err


# -- a run with sources ---------------------------------------------------------------------------
def run_config(tmp_path):
    from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig

    return RunConfig(backbone="tiny-llama", tasks=["toy-tgt"], method={"name": "pt", "prompt_length": 4},
                     data=DataConfig(), train=TrainConfig(steps=2, batch_size=4, lr=0.1, eval_every=2, log_every=1),
                     eval=EvalConfig(batch_size=8), output_dir=str(tmp_path / "run"))


def test_a_run_with_sources_evaluates_without_the_leaked_test_inputs_and_reports_them(leaky_pair, tmp_path):
    from mtpt.runtime import build_run
    from mtpt.training.evaluate import leakage_report, load_eval_sets
    from mtpt.training.loop import Trainer

    tgt, src, test = leaky_pair
    parts = build_run(run_config(tmp_path))
    try:
        assert leakage_report(parts) is None  # no sources: nothing removed or reported
        assert len(load_eval_sets(parts, "test")[0].examples) == 8
        parts.source_tasks = ["toy-src"]
        with pytest.warns(DecontaminationWarning, match=r"'toy-tgt': 3 of 8 test inputs .* \(3 in toy-src\); "
                                                         r"removed 3, 5 left"):
            (test_set,) = load_eval_sets(parts, "test")
        assert [e.inputs[0] for e in test_set.examples] == [t for i, t in enumerate(test) if i not in (0, 3, 5)]
        with pytest.warns(DecontaminationWarning, match="1 of 6 validation inputs .* kept"):
            assert len(load_eval_sets(parts, "validation")[0].examples) == 6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DecontaminationWarning)
            Trainer(parts).fit()
    finally:
        parts.model.detach_method()
    run = tmp_path / "run"
    expected = {"sources": ["toy-src"], "min_words": 4,
                "validation": {"toy-tgt": {"examined": 6, "found": 1, "removed": 0, "kept": 6, "by_source": {"toy-src": 1}}},
                "test": {"toy-tgt": {"examined": 8, "found": 3, "removed": 3, "kept": 5, "by_source": {"toy-src": 3}}}}
    assert json.loads((run / "results.json").read_text())["leakage"] == expected
    logged = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["leakage"] for r in logged if r.get("event") == "leakage"] == [expected]


def test_a_run_whose_whole_test_split_leaked_is_an_error(tmp_path):
    from mtpt.errors import MtptError
    from mtpt.runtime import build_run
    from mtpt.training.evaluate import load_eval_sets

    test = sentences("test", 4)
    make_task("toy-src", "{text}", {"train": test + sentences("x", 2), "test": sentences("y", 2)})
    make_task("toy-tgt", "{text}", {"train": sentences("train", 8), "validation": sentences("v", 4), "test": test})
    parts = build_run(run_config(tmp_path))
    parts.source_tasks = ["toy-src"]
    try:
        with pytest.raises(MtptError, match="Every test input of task 'toy-tgt' occurs .*`mtpt tasks --overlap toy-tgt toy-src`"):
            load_eval_sets(parts, "test")
    finally:
        parts.model.detach_method()


# -- within-task decontamination ------------------------------------------------------------------
def test_a_user_spec_with_duplicated_rows_warns_with_the_counts(tmp_path):
    rows = [(f"this is review number {i} of many", i % 2) for i in range(32)]
    test_rows = rows[:3] + [(f"a new test review {i} here", i % 2) for i in range(5)]
    # rows[0] is also a test input; the two kept validation rows hold both classes
    val_rows = [rows[3], (rows[0][0], 0), ("fresh validation review text", 0)]

    def write(name, data):
        lines = ["text,label"] + [f"{t},{y}" for t, y in data]
        (tmp_path / name).write_text("\n".join(lines) + "\n")

    write("train.csv", rows)
    write("val.csv", val_rows)
    write("test.csv", test_rows)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: dup-reviews\ntemplate: 'Review: {text}\\nSentiment:'\nlabel_column: label\n"
                    "label_words: {0: negative, 1: positive}\n"
                    "files: {train: train.csv, validation: val.csv, test: test.csv}\n")
    task = get_task(str(spec))
    with pytest.warns(DecontaminationWarning) as caught:
        sizes = task.sizes()
    assert sizes == {"train": 28, "validation": 2, "test": 8}
    message = str(caught[0].message)
    assert "'dup-reviews'" in message
    assert "train -4 of 32 (duplicates of test inputs: 3, validation inputs: 1)" in message
    assert "validation -1 of 3 (duplicates of test inputs: 1)" in message
    assert decontamination_report(task) == {"train": {"test": 3, "validation": 1}, "validation": {"test": 1}}


def test_tasks_verbose_shows_what_decontamination_removed(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("text,label\none two three four,0\nfive six seven eight,1\nnine ten,0\n")
    (tmp_path / "val.csv").write_text("text,label\nthirteen,0\nfourteen,1\n")
    (tmp_path / "test.csv").write_text("text,label\nnine ten,0\neleven twelve,1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: dup-small\ntemplate: '{text}'\nlabel_column: label\nlabel_words: [negative, positive]\n"
                    "files: {train: train.csv, validation: val.csv, test: test.csv}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli_main(["tasks", "--spec", str(spec), "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert "removed duplicates: train -1 (duplicates of test inputs: 1)" in out
    # the CLI prints mtpt's warnings as one plain line naming the command
    assert re.search(r"mtpt tasks: warning: task 'dup-small': .* train -1 of 3", err)


# -- the real data ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_real_lmbff_overlaps_of_issue_29(shared_data):
    """MR and Subj test sentences in SST-2's training data, SST-5's in Subj's; none between CR and SST-2."""
    tasks = [get_task(n) for n in ("glue-sst2", "mr", "subj", "cr", "sst5")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecontaminationWarning)
        rows = {(r.task, r.split): r.found for r in overlap_matrix(tasks, shared_data)}
    assert 450 <= rows["mr", "test"]["glue-sst2"] <= 800  # issue 29: 641 of 2,000
    assert 280 <= rows["subj", "test"]["glue-sst2"] <= 500  # 397 of 2,000
    assert 380 <= rows["sst5", "test"]["subj"] <= 600  # 465 of 2,210
    assert rows["cr", "test"]["glue-sst2"] == rows["glue-sst2", "test"]["cr"] == 0


def test_exclude_overlap_with_gives_runs_without_sources_the_same_test_examples(leaky_pair, tmp_path):
    """A PT or zero-shot row of a benchmark has no sources of its own: data.exclude_overlap_with names the
    benchmark's sources, so it is scored on the same test examples as the transfer rows (here: a run whose method
    reads toy-src, and one that reads it and a second source listed in both)."""
    from dataclasses import replace

    from mtpt.runner import train
    from mtpt.runtime import build_run
    from mtpt.training.evaluate import leakage_report, leakage_sources, load_eval_sets

    tgt, src, test = leaky_pair
    base = run_config(tmp_path)
    config = replace(base, data=replace(base.data, exclude_overlap_with=["toy-src"]))
    with_sources = build_run(base)
    excluded = build_run(config)
    try:
        with_sources.source_tasks = ["toy-src"]
        assert leakage_sources(excluded) == ["toy-src"] and leakage_sources(with_sources) == ["toy-src"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DecontaminationWarning)
            (a,), (b,) = load_eval_sets(with_sources, "test"), load_eval_sets(excluded, "test")
            assert [e.text for e in a.examples] == [e.text for e in b.examples] and len(a.examples) == 5
            excluded.source_tasks = ["toy-src"]  # named twice: counted once
            assert leakage_report(excluded)["sources"] == ["toy-src"]
    finally:
        with_sources.model.detach_method()
        excluded.model.detach_method()
    zero_shot = replace(config, method={"name": "zero_shot"}, eval=replace(config.eval, final_splits=["test"]),
                        output_dir=str(tmp_path / "zero"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecontaminationWarning)
        train(zero_shot)
    leakage = json.loads((tmp_path / "zero" / "results.json").read_text())["leakage"]
    assert leakage["sources"] == ["toy-src"] and leakage["test"]["toy-tgt"]["kept"] == 5


def test_leaked_test_inputs_are_removed_before_the_split_is_capped(leaky_pair, tmp_path):
    """A capped test set keeps its size when inputs leaked (none of them left in it), and is the sample a run
    without sources evaluates when nothing leaked."""
    from dataclasses import replace

    from mtpt.runtime import build_run
    from mtpt.training.evaluate import load_eval_sets

    tgt, src, test = leaky_pair  # 8 test inputs; 0, 3 and 5 occur in toy-src's training data
    make_task("toy-clean", "{text}", {"train": sentences("unrelated", 6), "test": sentences("z", 2)})
    base = run_config(tmp_path)
    parts = build_run(replace(base, data=replace(base.data, max_eval_examples=4)))
    try:
        plain = [e.text for e in load_eval_sets(parts, "test")[0].examples]
        assert len(plain) == 4
        parts.source_tasks = ["toy-clean"]
        assert [e.text for e in load_eval_sets(parts, "test")[0].examples] == plain
        parts.source_tasks = ["toy-src"]
        with pytest.warns(DecontaminationWarning, match=r"3 of 8 test inputs .* removed 3, 5 left, of which the "
                                                         r"data.max_eval_examples cap evaluates 4"):
            (test_set,) = load_eval_sets(parts, "test")
        inputs = [e.inputs[0] for e in test_set.examples]
        assert len(inputs) == 4 and not {test[0], test[3], test[5]} & set(inputs)
    finally:
        parts.model.detach_method()
