"""Chinese suite (part 1): CLUE AFQMC / CMNLI, LCQMC, BQ, PAWS-X zh, ChnSentiCorp, THUCNews and
the online-shopping reviews (Amazon-reviews stand-in). FewCLUE-based tasks are in ``fewclue.py``.

Templates are Chinese and end with the cue "答案：", label words have no leading space. Where a
corpus has no train split here, the full-data train split is drawn from a labelled pool that
never overlaps the test split (held out with ATTEMPT's seed-42 permutation: 1,000 validation
examples, or 20 % of pools under 5,000). Leakage warnings of PROVENANCE.md are respected: AFQMC
uses only the CURC halves (``original_dev`` = their union is never read).
"""

from __future__ import annotations

from pathlib import Path

from .common import classify, load, task
from .kshot import carve, holdout
from .readers import read_csv, read_json, read_tsv
from .templates import Prompt, index_map

MATCH = Prompt("句子一：{sentence1}\n句子二：{sentence2}\n这两句话的意思相同吗？答案：", ("否", "是"))
NLI_ZH = Prompt("前提：{premise}\n假设：{hypothesis}\n根据前提，假设成立吗？答案：",
                ("是", "可能", "否"))
SENTIMENT_ZH = Prompt("评论：{text}\n这条评论的情感是正面还是负面？答案：", ("负面", "正面"))
THUCNEWS_WORDS = ("财经", "房产", "股票", "教育", "科技", "社会", "时政", "体育", "游戏", "娱乐")
THUCNEWS = Prompt("新闻标题：{title}\n这条新闻属于哪个类别？答案：", THUCNEWS_WORDS)

CURC_MATCH = index_map("不匹配", "匹配")
NLI_ZH_LABELS = index_map(("蕴含", "entailment"), ("中立", "neutral"), ("矛盾", "contradiction"))
BINARY = index_map("0", "1")


def _strip_bom(text: str) -> str:
    return text.replace("\ufeff", "").strip()


def _curc_task(name: str, family: str, prompt: Prompt, labels, rel: str, desc: str,
               size_class: str = "large", test_file: str = "test.json") -> None:
    """CURC JSON lists: k-shot / train pool = dev.json, evaluation = test.json."""
    first, second = ("premise", "hypothesis") if prompt is NLI_ZH else ("sentence1", "sentence2")
    conv = classify(name, prompt, {first: "text_a", second: "text_b"}, "label", labels)

    def build(root: Path):
        train, val = holdout(load(read_json(root / rel / "dev.json"), conv))
        return {"train": train, "validation": val,
                "test": load(read_json(root / rel / test_file), conv)}

    task(name, family, "zh", "classification", ("accuracy",), prompt, size_class, f"""\
{desc}
train: {rel}/dev.json minus a held-out validation split (ATTEMPT permutation, seed 42).
test: {rel}/{test_file}.""", build)


_curc_task("afqmc", "clue", MATCH, CURC_MATCH, "clue/afqmc/curc",
           "AFQMC (Ant Financial question matching). The CLUE train set (34k) is not available;\n"
           "the official dev set was split by CURC into dev.json / test.json (2,158 each). "
           "clue/afqmc/original_dev\n(= their union) is never read.")
_curc_task("cmnli", "clue", NLI_ZH, NLI_ZH_LABELS, "clue/cmnli/curc",
           "CMNLI (CLUE). No train split available; CURC halves of the official dev "
           "(6,117 / 6,118).\nLabels entailment / neutral / contradiction -> 是 / 可能 / 否.")
_curc_task("lcqmc", "other", MATCH, CURC_MATCH, "lcqmc/LCQMC/curc",
           "LCQMC question matching. The train set (239k) is not available; dev.json (8,802) is\n"
           "the train pool, test.json (12,499) = the official test set.")
_curc_task("pawsx-zh", "other", MATCH, CURC_MATCH, "pawsx_zh/PAWS-X-zh/curc",
           "PAWS-X Chinese (CURC subset: dev 996 / test 997 of the official dev/test).")


# -- BQ ------------------------------------------------------------------------------------------
def _bq_build(root: Path):
    conv = classify("bq", MATCH, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label",
                    BINARY)
    rows = read_tsv(root / "bq_corpus/BQ/dev.tsv", ("sentence1", "sentence2", "label"))
    train, val, test = carve(load(rows, conv), n_test=2000, n_val=1000)
    return {"train": train, "validation": val, "test": test}


task("bq", "other", "zh", "classification", ("accuracy",), MATCH, "large", """\
BQ corpus (bank question matching). Only the official dev set (10,000, labelled) is available:
  ATTEMPT permutation (seed 42) of bq_corpus/BQ/dev.tsv -> first 2,000 test, next 1,000
  validation, remaining 7,000 train.""", _bq_build)


# -- ChnSentiCorp --------------------------------------------------------------------------------
def _chnsenticorp_build(root: Path):
    conv = classify("chnsenticorp", SENTIMENT_ZH, {"text": "text_a"}, "label", BINARY)
    d = root / "chnsenticorp/ChnSentiCorp"
    return {s: load(read_tsv(d / f"{f}.tsv"), conv)
            for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))}


task("chnsenticorp", "other", "zh", "classification", ("accuracy",), SENTIMENT_ZH, "small", """\
ChnSentiCorp, the standard ERNIE/UER split (chnsenticorp/ChnSentiCorp): train 9,600,
  validation = dev 1,200, test 1,200. Label 0 negative, 1 positive. The corpus repeats many
  reviews: train/dev reviews identical to a test (or, for train, a dev) review are removed
  (687 train and 39 dev reviews).""", _chnsenticorp_build)


# -- THUCNews ------------------------------------------------------------------------------------
def _thucnews_build(root: Path):
    conv = classify("thucnews", THUCNEWS, {"title": "title"}, "label",
                    index_map(*[str(i) for i in range(10)]))
    d = root / "thucnews/THUCNews_titles"
    train, val = holdout(load(read_tsv(d / "dev.txt", ("title", "label")), conv))
    return {"train": train, "validation": val,
            "test": load(read_tsv(d / "test.txt", ("title", "label")), conv)}


task("thucnews", "other", "zh", "classification", ("accuracy",), THUCNEWS, "large", """\
THUCNews 10-class news titles. train.txt (180k) is not available: train = dev.txt (10,000) minus
  1,000 held out as validation; test = test.txt (10,000). Class ids 0-9 (class.txt: finance,
  realty, stocks, education, science, society, politics, sports, game, entertainment) ->
  财经 房产 股票 教育 科技 社会 时政 体育 游戏 娱乐.""", _thucnews_build)


# -- online_shopping_10_cats ---------------------------------------------------------------------
def _shopping_build(root: Path):
    conv = classify("online-shopping", SENTIMENT_ZH, {"text": "review"}, "label", BINARY,
                    clean=_strip_bom)
    rows = read_csv(root / "chinese_reviews/online_shopping_10_cats/online_shopping_10_cats.csv")
    train, val, test = carve(load(rows, conv), n_test=2000, n_val=1000)
    return {"train": train, "validation": val, "test": test}


task("online-shopping", "other", "zh", "classification", ("accuracy",), SENTIMENT_ZH, "large", """\
Stand-in for Amazon Chinese reviews (not available): SophonPlus online_shopping_10_cats (62,774
  e-commerce reviews over 10 product categories, label 1 positive / 0 negative). No official
  split: ATTEMPT permutation (seed 42) -> first 2,000 test, next 1,000 validation, rest train.
  Stray U+FEFF characters are removed; exact duplicates of test reviews are dropped from train /
  validation; one published row has an empty review (kept).""", _shopping_build)
