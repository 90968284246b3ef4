"""Exchange with HF PEFT's prompt-tuning format (``adapter_config.json`` + ``adapter_model.safetensors``).

PEFT places the prompt before any left padding, mtpt after it; on unpadded inputs both give the same
logits. The config is written by PEFT's own ``PromptTuningConfig`` so that ``PeftModel.from_pretrained``
accepts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file
from torch import Tensor

from mtpt.errors import MtptError
from mtpt.loading import read_json
from mtpt.prompt_io import PEFT_KEY, PEFT_WEIGHTS, load_prompt_tensor

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def export_peft_prompt(prompt: Tensor, out_dir: str | Path, model: PreTrainedModel, base_model: str = "") -> Path:
    """Write one ``[L, d]`` prompt as a PEFT prompt-tuning adapter (encoder side only for seq2seq models)."""
    from peft import PromptTuningConfig, TaskType  # lazy: importing peft takes seconds

    if prompt.dim() != 2:
        raise MtptError(f"A PEFT prompt must be [L, d], got shape {tuple(prompt.shape)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    task_type = TaskType.SEQ_2_SEQ_LM if config.is_encoder_decoder else TaskType.CAUSAL_LM
    peft_config = PromptTuningConfig(
        task_type=task_type,
        num_virtual_tokens=int(prompt.shape[0]),
        token_dim=int(prompt.shape[1]),
        num_transformer_submodules=1,  # mtpt prompts the encoder only, never the decoder
        num_attention_heads=int(getattr(config, "num_attention_heads", 0) or getattr(config, "num_heads", 0)),
        num_layers=int(getattr(config, "num_hidden_layers", 0) or getattr(config, "num_layers", 0)),
        base_model_name_or_path=base_model or None,
    )
    peft_config.save_pretrained(str(out))
    save_file({PEFT_KEY: prompt.detach().float().contiguous().cpu()}, str(out / PEFT_WEIGHTS))
    return out


def import_peft_prompt(adapter_dir: str | Path) -> Tensor:
    """Read the prompt of a PEFT prompt-tuning adapter folder, refusing other adapter types."""
    adapter_dir = Path(adapter_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.exists():
        raise MtptError(f"{adapter_dir} has no adapter_config.json: not a PEFT adapter folder.")
    peft_type = read_json(config_path, what="PEFT adapter config").get("peft_type")
    if peft_type != "PROMPT_TUNING":
        raise MtptError(f"{adapter_dir} is a {peft_type} adapter; only PROMPT_TUNING adapters can be imported.")
    return load_prompt_tensor(adapter_dir / PEFT_WEIGHTS)
