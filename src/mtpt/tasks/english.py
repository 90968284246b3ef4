"""English suite: GLUE, SNLI, WinoGrande, IMDB, Yelp (polarity and 5-class), Amazon (5-class), MR, CR, Subj,
TREC, SST-5, AG News, Yahoo! Answers.

Every task's ``notes`` state where its train / validation / test come from (paths are relative
to the data root; see ``shared/data/PROVENANCE.md``). "ATTEMPT halves" = the official validation
set shuffled with ATTEMPT's seed-42 permutation and split into validation (first half) and test;
"held out" = validation drawn from the train pool with the same permutation (1,000 examples, or
20 % of pools under 5,000). Exact-text duplicates of test inputs are always removed from train and
validation; a test input duplicating a published k-shot example is removed from test instead.
"""

from __future__ import annotations

from pathlib import Path

from .base import TaskDataError
from .common import LMBFF16, classify, lmbff_published, load, task
from .kshot import halve, holdout
from .readers import Row, read_csv, read_json, read_jsonl, read_label_lines, read_tsv
from .templates import Prompt, float_grid, grid_words, index_map, lookup, template_fields

SENTIMENT = Prompt("Review: {sentence}\nSentiment:", (" negative", " positive"))
COLA = Prompt("Sentence: {sentence}\nIs this sentence grammatically correct? Answer:",
              (" No", " Yes"))
MRPC = Prompt("Sentence 1: {sentence1}\nSentence 2: {sentence2}\n"
              "Do both sentences mean the same thing? Answer:", (" No", " Yes"))
QQP = Prompt("Question 1: {question1}\nQuestion 2: {question2}\n"
             "Do both questions ask the same thing? Answer:", (" No", " Yes"))
RTE = Prompt("{premise} Question: {hypothesis} True or False? Answer:", (" True", " False"))
NLI = Prompt("{premise} Question: {hypothesis} True, False or Neither? Answer:",
             (" True", " Neither", " False"))
QNLI = Prompt("Question: {question}\nSentence: {sentence}\n"
              "Does the sentence answer the question? Answer:", (" Yes", " No"))
SUBJ = Prompt("Sentence: {sentence}\nIs this sentence subjective or objective? Answer:",
              (" subjective", " objective"))
TREC = Prompt("Question: {question}\nAnswer type:",
              (" description", " entity", " abbreviation", " person", " location", " number"))
SST5 = Prompt("Review: {sentence}\nSentiment:", (" terrible", " bad", " okay", " good", " great"))
AGNEWS = Prompt("Article: {text}\nTopic:", (" World", " Sports", " Business", " Technology"))
# Yahoo! Answers topics 1-10 (Zhang et al. 2015): one capitalised SmolLM2 token each, in AG News's style (" Sports"
# and " Business" are the same words there)
YAHOO = Prompt("Question: {text}\nTopic:", (" Society", " Science", " Health", " Education", " Computers",
                                            " Sports", " Business", " Entertainment", " Family", " Politics"))
WINOGRANDE = Prompt('{sentence}\nQuestion: In the sentence above, who or what is "_"? Answer:')

BINARY = index_map("0", "1")
ENTAIL2 = index_map("entailment", "not_entailment")
NLI3 = index_map("entailment", "neutral", "contradiction")
STSB_GRID = float_grid(0.0, 5.0, 0.2)  # T5 / ATTEMPT round STS-B targets to 0.2 steps
STSB_WORDS = grid_words(STSB_GRID)
# The grid's words are STS-B's label words: the choices rank scoring compares (`mtpt predict` ranks them too).
STSB = Prompt("Sentence 1: {sentence1}\nSentence 2: {sentence2}\nSimilarity from 0 to 5:", STSB_WORDS)


def _pairs(name, prompt, a, b, labels, label="label"):
    """Converter for sentence-pair records: the template's two tags <- record fields a, b."""
    first, second = template_fields(prompt.template)
    return classify(name, prompt, {first: a, second: b}, label, labels)


def _pretrain(root: Path, rel: str, *names: str) -> list[Row]:
    """PowerfulPromptFT ``glue_pretrain`` JSON files (drawn from the original train sets)."""
    return [r for n in names for r in read_json(root / rel / "glue_pretrain" / f"{n}.json")]


# -- SST-2 ---------------------------------------------------------------------------------------
def _sst2_build(root):
    conv = classify("glue-sst2", SENTIMENT, {"sentence": "text"}, "label", BINARY)
    pool = load(read_label_lines(root / "glue/SST-2/stsa_sentence_level/stsa.binary.train"), conv)
    train, val = holdout(pool)
    test_conv = classify("glue-sst2", SENTIMENT, {"sentence": "sentence"}, "label", BINARY)
    return {"train": train, "validation": val,
            "test": load(read_tsv(root / "glue/SST-2/k-shot/test.tsv"), test_conv)}


task("glue-sst2", "glue", "en", "classification", ("accuracy",), SENTIMENT, "large", """\
train: glue/SST-2/stsa_sentence_level/stsa.binary.train (the 6,920 sentence-level SST-2 train
  sentences) minus 1,000 held out (seed-42 ATTEMPT permutation) as validation.
test: glue/SST-2/k-shot/test.tsv = official GLUE SST-2 dev (872).
k-shot: LM-BFF 16/class, seeds 13/21/42/87/100 (glue/SST-2/k-shot/16-<seed>/{train,dev}.tsv).""",
     _sst2_build, kshot=LMBFF16,
     published=lmbff_published("glue/SST-2/k-shot", ".tsv", read_tsv,
                               classify("glue-sst2", SENTIMENT, {"sentence": "sentence"},
                                        "label", BINARY)))

# -- CoLA ----------------------------------------------------------------------------------------
_COLA_COLS = ("source", "label", "orig_label", "sentence")
_cola_tsv = classify("glue-cola", COLA, {"sentence": "sentence"}, "label", BINARY)


def _cola_build(root):
    conv = classify("glue-cola", COLA, {"sentence": "text_a"}, "label", BINARY)
    val, test = halve(load(read_tsv(root / "glue/CoLA/k-shot/test.tsv", _COLA_COLS), _cola_tsv))
    return {"train": load(_pretrain(root, "glue/CoLA", "train", "dev"), conv),
            "validation": val, "test": test}


task("glue-cola", "glue", "en", "classification", ("matthews",), COLA, "small", """\
train: glue/CoLA/glue_pretrain/{train,dev}.json = all 8,551 CoLA train sentences.
validation/test: ATTEMPT halves of glue/CoLA/k-shot/test.tsv (official dev, 1,043).
k-shot: LM-BFF 16/class x5 seeds.""",
     _cola_build, kshot=LMBFF16,
     published=lmbff_published("glue/CoLA/k-shot", ".tsv",
                               lambda p: read_tsv(p, _COLA_COLS), _cola_tsv))

# -- MRPC ----------------------------------------------------------------------------------------
_mrpc_tsv = classify("glue-mrpc", MRPC, {"sentence1": "#1 String", "sentence2": "#2 String"},
                     "Quality", BINARY)


def _mrpc_build(root):
    conv = _pairs("glue-mrpc", MRPC, "text_a", "text_b", BINARY)
    val, test = halve(load(read_tsv(root / "glue/MRPC/k-shot/test.tsv"), _mrpc_tsv))
    return {"train": load(_pretrain(root, "glue/MRPC", "train", "dev"), conv),
            "validation": val, "test": test}


task("glue-mrpc", "glue", "en", "classification", ("f1", "accuracy"), MRPC, "small", """\
train: glue/MRPC/glue_pretrain/{train,dev}.json (3,667 of the 3,668 MRPC train pairs).
validation/test: ATTEMPT halves of glue/MRPC/k-shot/test.tsv (official dev, 408).
k-shot: LM-BFF 16/class x5 seeds.""",
     _mrpc_build, kshot=LMBFF16,
     published=lmbff_published("glue/MRPC/k-shot", ".tsv", read_tsv, _mrpc_tsv))

# -- RTE -----------------------------------------------------------------------------------------
_rte_tsv = _pairs("glue-rte", RTE, "sentence1", "sentence2", ENTAIL2)


def _rte_build(root):
    conv = _pairs("glue-rte", RTE, "premise", "hypothesis", ENTAIL2)
    val, test = halve(load(read_jsonl(root / "superglue/RTE/full/val.jsonl"), conv))
    return {"train": load(read_jsonl(root / "superglue/RTE/full/train.jsonl"), conv),
            "validation": val, "test": test}


task("glue-rte", "glue", "en", "classification", ("accuracy",), RTE, "small", """\
train: superglue/RTE/full/train.jsonl (official train, 2,490).
validation/test: ATTEMPT halves of superglue/RTE/full/val.jsonl (official validation, 277).
k-shot: LM-BFF 16/class x5 seeds (glue/RTE/k-shot).""",
     _rte_build, kshot=LMBFF16,
     published=lmbff_published("glue/RTE/k-shot", ".tsv", read_tsv, _rte_tsv))


# -- STS-B ---------------------------------------------------------------------------------------
def _stsb_conv(a: str, b: str, score: str):
    def conv(row: Row):
        try:
            value = float(row[score])
        except ValueError:
            raise TaskDataError(f"{row.where}: score {row[score]!r} is not a number") from None
        return STSB.regress("glue-stsb", {"sentence1": row.text(a), "sentence2": row.text(b)},
                            value, STSB_GRID, STSB_WORDS, row.where)

    return conv


def _stsb_build(root):
    rows = read_tsv(root / "glue/STS-B/stsbenchmark_full/stsbenchmark.tsv")
    conv = _stsb_conv("sentence1", "sentence2", "score")
    train = load((r for r in rows if r["split"] == "train"), conv)
    val, test = halve(load((r for r in rows if r["split"] == "dev"), conv))
    return {"train": train, "validation": val, "test": test}


task("glue-stsb", "glue", "en", "regression", ("pearson", "spearman"), STSB, "small", """\
train: glue/STS-B/stsbenchmark_full/stsbenchmark.tsv split=train (5,749).
validation/test: ATTEMPT halves of its split=dev (official dev, 1,500). (The labelled official
  test, 1,379, is not used, to keep the convention.)
targets: the score rounded to the 0.2 grid (" 0.0" ... " 5.0", the rank-scoring choices);
  gold = the raw score. k-sampling strata: score > 2.5 vs <= 2.5 (LM-BFF's binarisation).
k-shot: LM-BFF 16/class x5 seeds (classes = the two score bins).""",
     _stsb_build, kshot=LMBFF16,
     published=lmbff_published("glue/STS-B/k-shot", ".tsv", read_tsv,
                               _stsb_conv("sentence1", "sentence2", "score")),
     kshot_key=lambda e: int(e.gold > 2.5))

# -- QNLI ----------------------------------------------------------------------------------------
_qnli_tsv = _pairs("glue-qnli", QNLI, "question", "sentence", ENTAIL2)


def _qnli_build(root):
    conv = _pairs("glue-qnli", QNLI, "text_a", "text_b", ENTAIL2)
    return {"train": load(_pretrain(root, "glue/QNLI", "train"), conv),
            "validation": load(_pretrain(root, "glue/QNLI", "dev"), conv),
            "test": load(read_tsv(root / "glue/QNLI/k-shot/test.tsv"), _qnli_tsv)}


task("glue-qnli", "glue", "en", "classification", ("accuracy",), QNLI, "large", """\
train: glue/QNLI/glue_pretrain/train.json (8,999 of a 10k train sample).
validation: glue/QNLI/glue_pretrain/dev.json (the other 1,000 of that sample: a held-out 1k).
test: glue/QNLI/k-shot/test.tsv = official dev (5,463).
k-shot: LM-BFF 16/class x5 seeds.""",
     _qnli_build, kshot=LMBFF16,
     published=lmbff_published("glue/QNLI/k-shot", ".tsv", read_tsv, _qnli_tsv))

# -- QQP -----------------------------------------------------------------------------------------
_qqp_tsv = _pairs("glue-qqp", QQP, "question1", "question2", BINARY, "is_duplicate")


def _qqp_build(root):
    conv = _pairs("glue-qqp", QQP, "text_a", "text_b", BINARY)
    train, val = holdout(load(_pretrain(root, "glue/QQP", "train"), conv))
    return {"train": train, "validation": val,
            "test": load(_pretrain(root, "glue/QQP", "dev"), conv)}


task("glue-qqp", "glue", "en", "classification", ("f1", "accuracy"), QQP, "large", """\
official dev not available: test = glue/QQP/glue_pretrain/dev.json (1,000 train pairs never in
  glue_pretrain/train.json), minus the 1 pair that also occurs in LM-BFF seed 87's k-shot train.
train: glue/QQP/glue_pretrain/train.json (8,999) minus 1,000 held out as validation.
k-shot: LM-BFF 16/class x5 seeds.""",
     _qqp_build, kshot=LMBFF16,
     published=lmbff_published("glue/QQP/k-shot", ".tsv", read_tsv, _qqp_tsv))

# -- MNLI / SNLI ---------------------------------------------------------------------------------
_TF_NLI = ("label", "premise", "hypothesis")


def _nli_tsv_reader(path: Path):
    return read_tsv(path, last_field="gold_label")


def _nli_task(name: str):
    pretrain = _pairs(name, NLI, "text_a", "text_b", NLI3)
    tsv = _pairs(name, NLI, "sentence1", "sentence2", NLI3, "gold_label")
    textfooler = _pairs(name, NLI, "premise", "hypothesis", NLI3)
    return pretrain, tsv, lambda p: load(read_tsv(p, _TF_NLI), textfooler)


_mnli_pre, _mnli_tsv, _mnli_tf = _nli_task("glue-mnli")


def _mnli_build(root):
    d = root / "glue/MNLI"
    return {"train": load(_pretrain(root, "glue/MNLI", "train", "dev"), _mnli_pre),
            "validation": _mnli_tf(d / "textfooler_1k/mnli_mismatched"),
            "test": _mnli_tf(d / "textfooler_1k/mnli_matched")}


task("glue-mnli", "glue", "en", "classification", ("accuracy",), NLI, "large", """\
train: glue/MNLI/glue_pretrain/{train,dev}.json (a 10k sample of the MNLI train set; 9,999).
validation: glue/MNLI/textfooler_1k/mnli_mismatched (1,000 of official dev-mismatched).
test: glue/MNLI/textfooler_1k/mnli_matched (1,000 of official dev-matched) - the convention's
  mismatched=validation / matched=test on the 1k samples available (tokenised text).
k-shot: LM-BFF 16/class x5 seeds (its dev file is dev_matched.tsv, drawn from train).""",
     _mnli_build, kshot=LMBFF16,
     published=lmbff_published("glue/MNLI/k-shot", ".tsv", _nli_tsv_reader, _mnli_tsv,
                               dev_name="dev_matched"))

_snli_pre, _snli_tsv, _snli_tf = _nli_task("snli")


def _snli_build(root):
    return {"train": load(_pretrain(root, "snli/SNLI", "train"), _snli_pre),
            "validation": load(_pretrain(root, "snli/SNLI", "dev"), _snli_pre),
            "test": _snli_tf(root / "snli/SNLI/textfooler_1k/snli")}


task("snli", "other", "en", "classification", ("accuracy",), NLI, "large", """\
train: snli/SNLI/glue_pretrain/train.json (8,999 of a 10k train sample).
validation: snli/SNLI/glue_pretrain/dev.json (the held-out 1,000 of that sample).
test: snli/SNLI/textfooler_1k/snli (1,000 sampled from the official test set; tokenised).
k-shot: LM-BFF 16/class x5 seeds.""",
     _snli_build, kshot=LMBFF16,
     published=lmbff_published("snli/SNLI/k-shot", ".tsv", _nli_tsv_reader, _snli_tsv))


# -- LM-BFF single-sentence tasks ----------------------------------------------------------------
def _lmbff_single(name: str, rel: str, prompt: Prompt, field: str, desc: str, test_n: str):
    labels = index_map(*[str(i) for i in range(len(prompt.label_words))])
    pre = classify(name, prompt, {field: "text_a"}, "label", labels)
    csv_conv = classify(name, prompt, {field: "sentence"}, "label", labels)
    cols = ("label", "sentence")

    def build(root):
        return {"train": load(_pretrain(root, rel, "train"), pre),
                "validation": load(_pretrain(root, rel, "dev"), pre),
                "test": load(read_csv(root / rel / "k-shot/test.csv", cols), csv_conv)}

    task(name, "other", "en", "classification", ("accuracy",), prompt, "large", f"""\
{desc}
train: {rel}/glue_pretrain/train.json (90 % of LM-BFF's train portion).
validation: {rel}/glue_pretrain/dev.json (the other 10 %).
test: {rel}/k-shot/test.csv (LM-BFF test set, {test_n}).
k-shot: LM-BFF 16/class x5 seeds.""",
         build, kshot=LMBFF16,
         published=lmbff_published(f"{rel}/k-shot", ".csv", lambda p: read_csv(p, cols),
                                   csv_conv))


_lmbff_single("mr", "lmbff_single_sentence/mr", SENTIMENT, "sentence",
              "Movie-review polarity (Pang & Lee); label 0 negative, 1 positive.", "2,000")
_lmbff_single("cr", "lmbff_single_sentence/cr", SENTIMENT, "sentence",
              "Customer-review polarity (Hu & Liu). A few published rows have an empty sentence "
              "(kept as published).", "2,000")
_lmbff_single("subj", "lmbff_single_sentence/subj", SUBJ, "sentence",
              "Subjectivity (Pang & Lee); label 0 subjective, 1 objective.", "2,000")
_lmbff_single("trec", "lmbff_single_sentence/trec", TREC, "question",
              "TREC question type, LM-BFF ids: 0 DESC, 1 ENTY, 2 ABBR, 3 HUM, 4 LOC, 5 NUM.",
              "the official 500")
_lmbff_single("sst5", "lmbff_single_sentence/sst-5", SST5, "sentence",
              "SST-5 fine-grained sentiment; 0 very negative ... 4 very positive.", "2,210")


# -- USB subsets: IMDB, Yelp, AG News ------------------------------------------------------------
def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").strip()


def _usb(name, prompt, field, labels, path_dev, path_test=None, test_loader=None,
         keep=lambda row: True):
    conv = classify(name, prompt, {field: "ori"}, "label", labels, clean=_unescape)

    def build(root):
        train, val = holdout(load((r for r in read_json(root / path_dev) if keep(r)), conv))
        if test_loader is not None:
            test = test_loader(root)
        else:
            test = load((r for r in read_json(root / path_test) if keep(r)), conv)
        return {"train": train, "validation": val, "test": test}

    return build


task("imdb", "other", "en", "classification", ("accuracy",), SENTIMENT, "large", """\
IMDB train is not available: train = imdb/usb_subset/dev.json (1,000 balanced reviews) minus 20 %
  (200) held out as validation; test = imdb/usb_subset/test.json (1,000, balanced).
Literal "\\n" sequences become newlines. Long reviews are truncated by the trainer (input side).""",
     _usb("imdb", SENTIMENT, "sentence", BINARY, "imdb/usb_subset/dev.json",
          "imdb/usb_subset/test.json"))

# Yelp polarity substitute: 5-star labels 0-4 (stars - 1) -> 1-2 stars negative, 4-5 positive.
_YELP = index_map(("0", "1"), ("3", "4"))
task("yelp", "other", "en", "classification", ("accuracy",), SENTIMENT, "large", """\
Yelp polarity train is not available; built from yelp_review_full/usb_subset (5-class, label =
  stars - 1): 1-2 stars -> negative, 4-5 stars -> positive, 3 stars dropped.
train: dev.json mapped (800) minus 20 % (160) held out as validation; test: test.json mapped (800).
(yelp_polarity/textfooler_1k is not used: tokenised, and possibly overlapping the USB sets.)""",
     _usb("yelp", SENTIMENT, "sentence", _YELP, "yelp_review_full/usb_subset/dev.json",
          "yelp_review_full/usb_subset/test.json", keep=lambda r: str(r["label"]) != "2"))

_AG_FULL = index_map("1", "2", "3", "4")


def _agnews_test(root):
    def conv(row: Row):
        text = f"{row.text('Title')} {row.text('Description')}".replace("\\", " ")
        label = lookup(_AG_FULL, row["Class Index"], row.where, "Class Index")
        return AGNEWS.classify("ag_news", {"text": " ".join(text.split())}, label, row.where)

    return load(read_csv(root / "agnews/full/test.csv"), conv)


task("ag_news", "other", "en", "classification", ("accuracy",), AGNEWS, "large", """\
AG News train is not available: train = agnews/usb_subset/dev.json (1,000, balanced, drawn from
  train) minus 20 % (200) held out as validation.
test: agnews/full/test.csv = the official test set (7,600; "Title Description", backslashes ->
  spaces). Classes 1-4 = World, Sports, Business, Sci/Tech (USB ids 0-3).""",
     _usb("ag_news", AGNEWS, "text", index_map("0", "1", "2", "3"),
          "agnews/usb_subset/dev.json", test_loader=_agnews_test))


_USB5 = index_map("0", "1", "2", "3", "4")
task("yelp5", "other", "en", "classification", ("accuracy",), SST5, "large", """\
Yelp review full, 5 classes (stars 1-5 -> terrible, bad, okay, good, great: SST-5's words and template).
train: yelp_review_full/usb_subset/dev.json (1,000, balanced) minus 20 % (200) held out as validation.
test: yelp_review_full/usb_subset/test.json (1,000, balanced). The same reviews as `yelp` (its 1-2 / 4-5 star
  polarity view): never use one of the two as a source and the other as a target.""",
     _usb("yelp5", SST5, "sentence", _USB5, "yelp_review_full/usb_subset/dev.json",
          "yelp_review_full/usb_subset/test.json"))

task("amazon5", "other", "en", "classification", ("accuracy",), SST5, "large", """\
Amazon review full, 5 classes (stars 1-5 -> terrible, bad, okay, good, great: SST-5's words and template).
train: amazon_review_full/usb_subset/dev.json (1,000, balanced) minus 20 % (200) held out as validation.
test: amazon_review_full/usb_subset/test.json (1,000, balanced). Inputs are "title" + "body" as USB ships them
  (no separator).""",
     _usb("amazon5", SST5, "sentence", _USB5, "amazon_review_full/usb_subset/dev.json",
          "amazon_review_full/usb_subset/test.json"))

task("yahoo_answers", "other", "en", "classification", ("accuracy",), YAHOO, "large", """\
Yahoo! Answers topics, 10 classes (USB ids 0-9 = Society & Culture, Science & Mathematics, Health, Education &
  Reference, Computers & Internet, Sports, Business & Finance, Entertainment & Music, Family & Relationships,
  Politics & Government; label words: the first word of each).
Yahoo Answers train is not available: train = yahoo_answers/usb_subset/dev.json (1,000, balanced) minus 20 %
  (200) held out as validation; test = yahoo_answers/usb_subset/test.json (1,000, balanced).
Inputs are the question title + body as USB ships them (no separator; literal "\\n" become newlines).""",
     _usb("yahoo_answers", YAHOO, "text", index_map(*[str(i) for i in range(10)]),
          "yahoo_answers/usb_subset/dev.json", "yahoo_answers/usb_subset/test.json"))


# -- WinoGrande ----------------------------------------------------------------------------------
def _winogrande_build(root):
    rows = read_csv(root / "winogrande/WinoGrande/winogrande.csv")
    answers = index_map("1", "2")

    def conv(row: Row):
        label = lookup(answers, row["Answer"], row.where, "Answer")
        options = (" " + row.text("English Option 1").strip(),
                   " " + row.text("English Option 2").strip())
        return WINOGRANDE.choose("winogrande", {"sentence": row.text("English Sentence")},
                                 options, label, row.where)

    train, val = holdout(load((r for r in rows if r["Split"] == "train_s"), conv))
    return {"train": train, "validation": val,
            "test": load((r for r in rows if r["Split"] == "dev"), conv)}


task("winogrande", "other", "en", "multiple_choice", ("accuracy",), WINOGRANDE, "large", """\
WinoGrande 1.1 (winogrande/WinoGrande/winogrande.csv). train: Split=train_s (640) minus 20 %
  (128) held out as validation. test: Split=dev (the official dev, 1,267).
The Split=test answers in this file are unofficial and are not used.
choices: the two options (with a leading space); label = Answer - 1.""",
     _winogrande_build)
