"""Label words that rank scoring and training handle badly under a tokenizer, found before a run trains.

Rank scoring compares the choices' summed (or mean) token log-likelihoods and training fits every target token.
When label words split into many tokens and share most of them (Chinese label words on SmolLM2's byte-level BPE:
负面 and 正面 are four tokens each, the last two the same), the loss falls on the shared, easy tokens while the
tokens that tell the labels apart barely train, and accuracy can stay at chance while the loss looks fine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import combinations

from mtpt.errors import MtptWarning

LONG_WORD_TOKENS = 3
"""A label word of this many tokens or more is "much longer than one token"."""
SHARED_FRACTION = 0.5
"""Two label words whose common first and last tokens make up this fraction of the longer one "share most of
their tokens"."""


class LabelWordWarning(MtptWarning):
    """A task's label words tokenize badly under the run's tokenizer (see :func:`label_word_problems`)."""


def shared_tokens(a: list[int], b: list[int]) -> int:
    """How many tokens two label words have in common at their start and at their end (the positions where the
    scores of both words come from the same predictions)."""
    limit = min(len(a), len(b))
    head = next((i for i in range(limit) if a[i] != b[i]), limit)
    tail = next((i for i in range(limit - head) if a[-1 - i] != b[-1 - i]), limit - head)
    return head + tail


def label_word_problems(words: Sequence[str], tokenize: Callable[[str], list[int]]) -> list[str]:
    """What is wrong with ``words`` under ``tokenize`` (a word -> token ids, no special tokens): words of
    :data:`LONG_WORD_TOKENS` tokens or more, and pairs of words sharing :data:`SHARED_FRACTION` of their tokens."""
    ids = {word: tokenize(word) for word in words}
    problems = []
    long = {w.strip(): len(t) for w, t in ids.items() if len(t) >= LONG_WORD_TOKENS}
    if long:
        shown = ", ".join(f"{w!r}: {n}" for w, n in list(long.items())[:6])
        problems.append(f"{len(long)} of {len(words)} label words are {LONG_WORD_TOKENS} or more tokens long "
                        f"({shown}{', ...' if len(long) > 6 else ''})")
    pairs = [(shared_tokens(ids[a], ids[b]) / max(len(ids[a]), len(ids[b]), 1), a, b)
             for a, b in combinations(ids, 2)]
    shared = [pair for pair in pairs if pair[0] >= SHARED_FRACTION]
    if shared:
        _, a, b = max(shared)
        problems.append(f"{len(shared)} pair(s) of label words share most of their tokens (e.g. {a.strip()!r} "
                        f"{ids[a]} and {b.strip()!r} {ids[b]})")
    return problems


def warn_label_words(tasks, tokenize: Callable[[str], list[int]], tokenizer_name: str) -> None:
    """Issue a :class:`LabelWordWarning` for each classification task whose label words tokenize badly."""
    for task in tasks:
        if task.label_words and task.kind == "classification":
            problems = label_word_problems(task.label_words, tokenize)
            if problems:
                warnings.warn(f"task {task.name!r} under the tokenizer of {tokenizer_name}: {'; '.join(problems)}. "
                              f"The training loss can fall on the tokens label words share while accuracy stays "
                              f"at chance; prefer label words of one distinct token each.",
                              LabelWordWarning, stacklevel=3)
