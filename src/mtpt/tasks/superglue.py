"""SuperGLUE suite: BoolQ, CB, COPA, MultiRC, WiC, WSC, ReCoRD (source only).

Data: FewGLUE_32dev (``superglue/<T>/fewglue_32dev``: the FewGLUE 32-example train set, a
32-example ``dev32`` drawn from the unused train data, and ``val.jsonl`` = the official
validation set) plus full train sets where they exist (CB, RTE, WiC). All SuperGLUE tasks are
"small" in ATTEMPT's convention: the official validation set is halved (ATTEMPT's seed-42
permutation) into validation and test. Where the full train set is missing (BoolQ, COPA, MultiRC,
WSC) the full-data train split is FewGLUE train + dev32 (64 examples): say so when reporting.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from .base import Example, KShotInfo, TaskDataError
from .common import classify, task
from .english import NLI, NLI3
from .kshot import halve
from .readers import Row, read_jsonl
from .templates import Prompt, index_map, lookup

FEWGLUE = KShotInfo("total", 32, (0,), "FewGLUE")
BOOL = index_map(("False", "false", "0"), ("True", "true", "1"))
NO_YES = (" No", " Yes")

BOOLQ = Prompt("{passage}\nQuestion: {question}?\nAnswer:", NO_YES)
COPA = Prompt("{premise} What was the {question}? Answer:")
MULTIRC = Prompt("{paragraph}\nQuestion: {question}\nCandidate answer: {answer}\n"
                 "Is the candidate answer correct? Answer:", NO_YES)
WIC = Prompt('Sentence 1: {sentence1}\nSentence 2: {sentence2}\n'
             'Does the word "{word}" mean the same thing in both sentences? Answer:', NO_YES)
WSC = Prompt('{text}\nQuestion: In the passage above, does the pronoun "*{pronoun}*" refer to '
             '"{candidate}"? Answer:', NO_YES)
RECORD = Prompt('{passage}\nQuery: {query}\nQuestion: What does "@placeholder" refer to? Answer:')


def _dir(name: str) -> str:
    return f"superglue/{name}/fewglue_32dev"


def _fewglue(name: str, conv) -> callable:
    """Published FewGLUE split: train.jsonl (train) / dev32.jsonl (validation)."""

    def published(root: Path, seed: int, split: str) -> list[Example]:
        fname = "train.jsonl" if split == "train" else "dev32.jsonl"
        return conv(read_jsonl(root / _dir(name) / fname))

    return published


def _standard(name: str, conv, train_files: tuple[str, ...] = ("train.jsonl", "dev32.jsonl"),
              train_dir: str | None = None):
    """train = concatenated train files; validation/test = ATTEMPT halves of val.jsonl."""

    def build(root: Path):
        tdir = root / (train_dir or _dir(name))
        train = [e for f in train_files for e in conv(read_jsonl(tdir / f))]
        val, test = halve(conv(read_jsonl(root / _dir(name) / "val.jsonl")))
        return {"train": train, "validation": val, "test": test}

    return build


def _rows(conv_one):
    return lambda rows: [conv_one(r) for r in rows]


_FEWGLUE_TRAIN = ("train: FewGLUE train.jsonl + dev32.jsonl (64; the full train set is not "
                  "available).")
_HALVES = "validation/test: ATTEMPT halves of fewglue_32dev/val.jsonl (official validation, {n})."
_KSHOT = "k-shot: FewGLUE 32 total, one published split (seed 0): train.jsonl / dev32.jsonl."

# -- BoolQ ---------------------------------------------------------------------------------------
_boolq = _rows(classify("superglue-boolq", BOOLQ, {"passage": "passage", "question": "question"},
                        "label", BOOL))
task("superglue-boolq", "superglue", "en", "classification", ("accuracy",), BOOLQ, "small",
     "\n".join([_FEWGLUE_TRAIN, _HALVES.format(n="3,270"), _KSHOT]),
     _standard("BoolQ", _boolq), kshot=FEWGLUE, published=_fewglue("BoolQ", _boolq))

# -- CB ------------------------------------------------------------------------------------------
_cb = _rows(classify("superglue-cb", NLI, {"premise": "premise", "hypothesis": "hypothesis"},
                     "label", NLI3))
task("superglue-cb", "superglue", "en", "classification", ("macro_f1", "accuracy"), NLI, "small",
     "\n".join(["train: superglue/CB/full/train.jsonl (official train, 250).",
                _HALVES.format(n="56"), _KSHOT]),
     _standard("CB", _cb, ("train.jsonl",), "superglue/CB/full"),
     kshot=FEWGLUE, published=_fewglue("CB", _cb))


# -- COPA ----------------------------------------------------------------------------------------
def _copa_one(row: Row) -> Example:
    question = row.text("question")
    if question not in ("cause", "effect"):
        raise TaskDataError(f"{row.where}: question {question!r} is neither 'cause' nor 'effect'")
    label = lookup(index_map("0", "1"), row["label"], row.where)
    choices = (" " + row.text("choice1").strip(), " " + row.text("choice2").strip())
    return COPA.choose("superglue-copa", {"premise": row.text("premise"), "question": question},
                       choices, label, row.where)


_copa = _rows(_copa_one)
task("superglue-copa", "superglue", "en", "multiple_choice", ("accuracy",), COPA, "small",
     "\n".join([_FEWGLUE_TRAIN, _HALVES.format(n="100"), _KSHOT,
                "choices: the two alternatives (leading space); label = the correct one."]),
     _standard("COPA", _copa), kshot=FEWGLUE, published=_fewglue("COPA", _copa))


# -- MultiRC -------------------------------------------------------------------------------------
def _multirc(rows) -> list[Example]:
    """One example per answer option; ``group`` = "<passage idx>-<question idx>"."""
    out = []
    for row in rows:
        passage = row["passage"]
        for qi, q in enumerate(passage.get("questions", [])):
            group = f"{row.get('idx')}-{q.get('idx', qi)}"
            for ai, ans in enumerate(q.get("answers", [])):
                where = f"{row.where} question {qi} answer {ai}"
                fields = {"paragraph": passage.get("text", ""), "question": q.get("question", ""),
                          "answer": ans.get("text", "")}
                label = lookup(BOOL, ans.get("label"), where)
                out.append(replace(MULTIRC.classify("superglue-multirc", fields, label, where),
                                   group=group))
    if not out:
        raise TaskDataError(f"{rows[0].file if rows else 'MultiRC file'}: no answer options found")
    return out


def _multirc_build(root: Path):
    d = root / _dir("MultiRC")
    train = _multirc(read_jsonl(d / "train.jsonl")) + _multirc(read_jsonl(d / "dev32.jsonl"))
    val_all = _multirc(read_jsonl(d / "val.jsonl"))
    val_groups, _ = halve(list(dict.fromkeys(e.group for e in val_all)))
    in_val = set(val_groups)
    return {"train": train, "validation": [e for e in val_all if e.group in in_val],
            "test": [e for e in val_all if e.group not in in_val]}


task("superglue-multirc", "superglue", "en", "classification", ("multirc_f1a", "multirc_em"),
     MULTIRC, "small", """\
One example per (question, answer option); group = question id (for EM per question).
train: FewGLUE train.jsonl + dev32.jsonl (64 questions; the full train set is not available).
validation/test: ATTEMPT halves of val.jsonl (953 questions, 4,848 options) made over QUESTIONS,
  not options, so no question is split between validation and test.
k-shot: FewGLUE 32 questions total, one published split (seed 0).""",
     _multirc_build, kshot=FEWGLUE, published=_fewglue("MultiRC", _multirc))

# -- WiC -----------------------------------------------------------------------------------------
_wic_json = _rows(classify("superglue-wic", WIC, {"word": "word", "sentence1": "sentence1",
                                                  "sentence2": "sentence2"}, "label", BOOL))
_WIC_TEXT = re.compile(r"^Word: (.+?)\. Sentence 1: (.*) Sentence 2: (.*)$", re.S)


def _wic_reformatted(rows) -> list[Example]:
    out = []
    for row in rows:
        m = _WIC_TEXT.match(row.text("text"))
        if not m:
            raise TaskDataError(f"{row.where}: text is not 'Word: w. Sentence 1: ... Sentence 2: "
                                f"...'; fix this line")
        fields = {"word": m[1], "sentence1": m[2], "sentence2": m[3]}
        out.append(WIC.classify("superglue-wic", fields, lookup(BOOL, row["label"], row.where),
                                row.where))
    return out


def _wic_build(root: Path):
    d = root / "superglue/WiC/full_train_reformatted"
    train = _wic_reformatted(read_jsonl(d / "train.jsonl")) + _wic_reformatted(
        read_jsonl(d / "test.jsonl"))
    val, test = halve(_wic_json(read_jsonl(root / _dir("WiC") / "val.jsonl")))
    return {"train": train, "validation": val, "test": test}


task("superglue-wic", "superglue", "en", "classification", ("accuracy",), WIC, "small", """\
train: superglue/WiC/full_train_reformatted/{train,test}.jsonl = all 5,428 official train pairs,
  parsed back from "Word: w. Sentence 1: ... Sentence 2: ..." (their sentences are tokenised,
  unlike the raw validation sentences).
validation/test: ATTEMPT halves of fewglue_32dev/val.jsonl (official validation, 638).
k-shot: FewGLUE 32 total, one published split (seed 0).""",
     _wic_build, kshot=FEWGLUE, published=_fewglue("WiC", _wic_json))


# -- WSC -----------------------------------------------------------------------------------------
def mark_words(text: str, index: int | None, span: str) -> str:
    """Wrap the ``span`` starting at word ``index`` in asterisks (T5's WSC format), so that a
    pronoun occurring twice is unambiguous. The published indices are occasionally off by one
    or two words: the nearest match within two words is used; with none, ``text`` is returned."""
    words, n = text.split(" "), len(span.split())
    strip = ".,!?;:'\""
    if index is None or not span:
        return text
    for i in (index, index - 1, index + 1, index - 2, index + 2):
        if 0 <= i and i + n <= len(words) and \
                " ".join(words[i:i + n]).strip(strip).lower() == span.strip(strip).lower():
            return " ".join([*words[:i], "*" + " ".join(words[i:i + n]) + "*", *words[i + n:]])
    return text


def _wsc_one(row: Row) -> Example:
    target = row["target"]
    pronoun = target.get("span2_text", "")
    fields = {"text": mark_words(row.text("text"), target.get("span2_index"), pronoun),
              "pronoun": pronoun, "candidate": target.get("span1_text", "")}
    return WSC.classify("superglue-wsc", fields, lookup(BOOL, row["label"], row.where), row.where)


_wsc = _rows(_wsc_one)
task("superglue-wsc", "superglue", "en", "classification", ("accuracy",), WSC, "small",
     "\n".join([_FEWGLUE_TRAIN, _HALVES.format(n="104"), _KSHOT,
                "The pronoun is marked *like this* in the passage (T5 style) at its span2_index.",
                "Note: the published FewGLUE WSC train set is all 'True' (32/32)."]),
     _standard("WSC", _wsc), kshot=FEWGLUE, published=_fewglue("WSC", _wsc))


# -- ReCoRD (source only) ------------------------------------------------------------------------
def _record(rows) -> list[Example]:
    out = []
    for row in rows:
        passage = row["passage"].get("text", "").replace("\n@highlight\n", "\n- ")
        for qi, qa in enumerate(row.get("qas", [])):
            answers = list(dict.fromkeys(a.get("text", "") for a in qa.get("answers", [])))
            where = f"{row.where} query {qi}"
            out.append(RECORD.generate("superglue-record",
                                       {"passage": passage, "query": qa.get("query", "")},
                                       answers, where, prefix=" "))
    return out


def _record_build(root: Path):
    d = root / _dir("ReCoRD")
    files = ("train.jsonl", "dev32.jsonl")
    return {"train": [e for f in files for e in _record(read_jsonl(d / f))]}


task("superglue-record", "superglue", "en", "generation", ("em", "f1_qa"), RECORD, "large", """\
Source task only: the ReCoRD validation set (>4 MiB) is not available, so there is no
  validation or test split here.
train: FewGLUE ReCoRD train.jsonl + dev32.jsonl (64 queries). target = " " + first answer;
  gold = all answer strings. "@highlight" lines become "- " bullet lines.""",
     _record_build, source_only=True)
