"""Reading and writing single prompts as safetensors (never pickle)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save
from torch import Tensor

from mtpt.atomic import atomic_write_bytes
from mtpt.errors import MtptError
from mtpt.loading import read_tensors

PROMPT_KEY = "prompt"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_KEY = "prompt_embeddings"


def save_prompt(prompt: Tensor, path: str | Path) -> None:
    """Save an ``[L, d]`` prompt to a safetensors file under the key ``prompt`` (atomically, synced)."""
    atomic_write_bytes(path, save({PROMPT_KEY: prompt.detach().float().contiguous().cpu()}))


def load_prompt_tensor(path: str | Path) -> Tensor:
    """Load an ``[L, d]`` prompt from a prompt file, an mtpt export folder or a PEFT prompt-tuning adapter folder."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "prompt.safetensors", path / PEFT_WEIGHTS):
            if candidate.exists():
                return load_prompt_tensor(candidate)
        raise MtptError(f"{path} holds neither prompt.safetensors nor {PEFT_WEIGHTS}.")
    if not path.exists():
        raise MtptError(f"Prompt file {path} does not exist.")
    tensors = read_tensors(path, "Prompt file")  # checked finite: a NaN prompt must never pass as a result
    for key in (PROMPT_KEY, PEFT_KEY):
        if key in tensors:
            return tensors[key]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    if not tensors:
        raise MtptError(f"{path} holds no tensor: not a prompt file.")
    raise MtptError(f"{path} holds several tensors ({', '.join(tensors)}) and none is named '{PROMPT_KEY}'.")
