"""Tiny random models of each supported family, built from configs (no download, a few ms to build).

:func:`mtpt.backbones.load_backbone` turns them into frozen backbones (the ``tiny-<family>`` names); this module
imports nothing of mtpt, so the loader can reach it without an import cycle.

The tokenizer is byte-level with no merges: every UTF-8 byte is a token, so any English or Chinese text
tokenises without a vocabulary file.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    T5Config,
)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
VOCAB = 272  # 4 specials + 256 bytes, rounded up


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer built in memory: pad 0, bos 1, eos 2, unk 3."""
    byte_chars = sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + byte_chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _config(arch: str):
    common = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if arch == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, **common)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=512, **common)
    if arch == "gemma3":
        return Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=8, max_position_embeddings=512,
                                sliding_window=16, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512, **common)
    if arch == "t5":
        return T5Config(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, decoder_start_token_id=0,
                        is_encoder_decoder=True, **common)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {TINY_ARCHS}")


TINY_ARCHS = ("llama", "qwen2", "gemma3", "gpt2", "t5")


def tiny_model(arch: str = "llama", seed: int = 0):
    """A tiny random model of the given family (weights seeded by ``seed``) and the in-memory tokenizer."""
    config = _config(arch)
    torch.manual_seed(seed)
    factory = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return factory.from_config(config, dtype=torch.float32), tiny_tokenizer()


RANDOM_MODELS = ("smollm2-135m",)


def random_model(name: str = "smollm2-135m", seed: int = 0):
    """A randomly initialised model of a real model's shape (``random-<name>``) and the in-memory tokenizer: for
    speed readings where the weights cannot travel (speed does not depend on the weights' values), never for
    results. ``smollm2-135m``: SmolLM2-135M's Llama dimensions (30 layers, hidden 576, 9 heads of 64 with 3
    key/value heads, MLP 1536, vocabulary 49,152, tied embeddings); the tokenizer only uses its first 260 ids,
    which leaves every matrix shape, the LM head's included, as in the real model."""
    if name != "smollm2-135m":
        raise ValueError(f"unknown random model {name!r}; choose from {RANDOM_MODELS}")
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32), tiny_tokenizer()

