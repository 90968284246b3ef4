"""Never-seen user tasks for the prediction and serving tests: data files written here and specs taken from the
worked examples of docs/tasks.md (so the docs are what a user follows)."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
POSITIVE = ["good", "great", "lovely", "superb", "fine"]
NEGATIVE = ["bad", "awful", "dull", "poor", "weak"]
NOUNS = ["plot", "cast", "score", "pace", "ending", "script"]


def doc_specs() -> list[dict]:
    """The YAML task specs of docs/tasks.md's worked examples, in order."""
    text = (REPO / "docs" / "tasks.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _sentence(rng: random.Random, positive: bool) -> str:
    words = POSITIVE if positive else NEGATIVE
    return f"the {rng.choice(NOUNS)} was {rng.choice(words)}"


def review_task(folder: Path, n_train: int = 24, n_test: int = 10) -> Path:
    """docs/tasks.md example 1 (a CSV with a header row) with data written in ``folder``; returns the spec's
    absolute path."""
    rng = random.Random(0)
    (folder / "reviews").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with open(folder / "reviews" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                writer.writerow([f"{_sentence(rng, i % 2 == 0)} ({split} {i})", "pos" if i % 2 == 0 else "neg"])
    spec = folder / "reviews.yaml"
    spec.write_text(yaml.safe_dump(doc_specs()[0], sort_keys=False), encoding="utf-8")
    return spec.resolve()


def grammar_task(folder: Path, n_train: int = 16, n_test: int = 8) -> Path:
    """docs/tasks.md example 2 (a headerless TSV with named columns) with data written in ``folder``."""
    rng = random.Random(1)
    data = folder / "data" / "CoLA" / "k-shot"
    (data / "16-13").mkdir(parents=True, exist_ok=True)
    for path, n in ((data / "16-13" / "train.tsv", n_train), (data / "16-13" / "dev.tsv", n_test),
                    (data / "test.tsv", n_test)):
        lines = []
        for i in range(n):
            ok = i % 2 == 0
            sentence = f"{rng.choice(NOUNS)} {'is' if ok else 'are is'} here {path.stem} {i}."
            lines.append(f"src{i}\t{int(ok)}\t{'' if ok else '*'}\t{sentence}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = folder / "cola.yaml"
    spec.write_text(yaml.safe_dump(doc_specs()[1], sort_keys=False), encoding="utf-8")
    return spec.resolve()


def review_rows(spec: Path, split: str = "test") -> list[dict]:
    """The rows of a review task's test file."""
    with open(spec.parent / "reviews" / f"{split}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def labels(records: list[dict]) -> list[str | None]:
    return [r["label"] for r in records]


def log_likelihoods(records: list[dict]) -> list[list[float]]:
    return [[s["log_likelihood"] for s in r["scores"]] for r in records]
