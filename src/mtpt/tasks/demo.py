"""``demo-sst2``: the bundled SST-2 subset (``mtpt/demo_data``), usable without a data root."""

from __future__ import annotations

from pathlib import Path

from .base import KShotInfo
from .common import classify, load, task
from .english import BINARY, SENTIMENT
from .readers import read_tsv

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_data" / "sst2"
_conv = classify("demo-sst2", SENTIMENT, {"sentence": "sentence"}, "label", BINARY)


def _build(_root):
    return {"train": load(read_tsv(DEMO_DIR / "train.tsv"), _conv),
            "validation": load(read_tsv(DEMO_DIR / "dev.tsv"), _conv),
            "test": load(read_tsv(DEMO_DIR / "test.tsv"), _conv)}


def _published(_root, _seed, split):
    return load(read_tsv(DEMO_DIR / ("train16.tsv" if split == "train" else "dev16.tsv")), _conv)


task("demo-sst2", "demo", "en", "classification", ("accuracy",), SENTIMENT, "small", """\
Bundled with mtpt (mtpt/demo_data/sst2, see ATTRIBUTION.md); needs no data root.
train/validation: 256 / 100 sentences sampled (random.Random(42)) from the train-derived SST-2
train.json / dev.json of shared/data/glue/SST-2/glue_pretrain (never from the official dev set).
k-shot (kshot: 16): the LM-BFF SST-2 16-shot seed-13 train16.tsv / dev16.tsv (16 per class each).
test: 300 of the 872 LM-BFF SST-2 test sentences (official GLUE dev), random.Random(42) sample.
Same template and label words as glue-sst2.""",
     _build, kshot=KShotInfo("per_class", 16, (13,), "LM-BFF"), published=_published,
     needs_data_root=False)
