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
    return load(read_tsv(DEMO_DIR / ("train.tsv" if split == "train" else "dev.tsv")), _conv)


task("demo-sst2", "demo", "en", "classification", ("accuracy",), SENTIMENT, "small", """\
Bundled with mtpt (mtpt/demo_data/sst2, see ATTRIBUTION.md); needs no data root.
train/validation: LM-BFF SST-2 16-shot seed 13 train.tsv / dev.tsv (32 each, 16 per class).
test: 300 of the 872 LM-BFF SST-2 test sentences (official GLUE dev), random.Random(42) sample.
Same template and label words as glue-sst2.""",
     _build, kshot=KShotInfo("per_class", 16, (13,), "LM-BFF"), published=_published,
     needs_data_root=False)
