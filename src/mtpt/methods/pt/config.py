"""Configuration of vanilla prompt tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtpt.checks import check_range
from mtpt.config import path_option


@dataclass
class PromptTuningConfig:
    """Vanilla prompt tuning (Lester et al. 2021): one trainable soft prompt shared by every task of the run."""

    prompt_length: int = 20
    """Number of virtual tokens L."""
    init: Literal["sample_vocab", "uniform", "text", "from_file"] = "sample_vocab"
    """How the prompt starts: sample_vocab (first 5,000 vocabulary rows), uniform (U(-0.5, 0.5)), text, from_file."""
    init_text: str = ""
    """Text whose token embeddings initialise the prompt (init: text), repeated or cut to prompt_length."""
    init_path: str = path_option()
    """A prompt .safetensors, mtpt export folder or PEFT adapter folder (init: from_file)."""

    def __post_init__(self) -> None:
        check_range("method.prompt_length", self.prompt_length, at_least=1)
