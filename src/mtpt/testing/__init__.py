"""Tiny random backbones and an in-memory tokenizer: offline by construction, for tests and smoke benchmarks."""

from mtpt.backbones import tiny_backbone
from mtpt.tiny_models import TINY_ARCHS, tiny_tokenizer

__all__ = ["TINY_ARCHS", "tiny_backbone", "tiny_tokenizer"]
