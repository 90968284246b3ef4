"""Export an MPT run in PEFT's multitask prompt-tuning format (``MultitaskPromptTuningConfig``).

The tensors keep PEFT's names (``prompt_embeddings``, ``prefix_task_cols``, ``prefix_task_rows``) and the config
is written by PEFT's own class, so ``PeftModel.from_pretrained`` loads the folder; pass ``task_ids`` to PEFT in
the run's task order. Like the single-prompt export, PEFT puts the prompt before left padding (mtpt after it) and
prompts the encoder only (``num_transformer_submodules=1``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file

from mtpt.errors import MtptError
from mtpt.prompt_io import PEFT_WEIGHTS

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["cmd_export_mpt", "export_peft_multitask"]


def export_peft_multitask(method, out_dir: str | Path, model: PreTrainedModel, base_model: str = "") -> Path:
    """Write an MPT module (``prompt_embeddings``, ``prefix_task_cols``, ``prefix_task_rows``) as a PEFT adapter."""
    from peft import MultitaskPromptTuningConfig, TaskType  # lazy: importing peft takes seconds

    from mtpt.methods.mpt.module import COLS, ROWS, SHARED

    names = (SHARED, COLS, ROWS)
    state = {k: v.detach().float().contiguous().cpu() for k, v in method.state_dict().items() if k in names}
    if set(state) != set(names):
        raise MtptError("Only MPT runs export to PEFT's multitask prompt-tuning format.")
    tasks, length, rank = state[COLS].shape
    config = model.config
    peft_config = MultitaskPromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if config.is_encoder_decoder else TaskType.CAUSAL_LM,
        num_virtual_tokens=int(length),
        token_dim=int(state[SHARED].shape[1]),
        num_transformer_submodules=1,  # mtpt prompts the encoder only
        num_attention_heads=int(getattr(config, "num_attention_heads", 0) or getattr(config, "num_heads", 0)),
        num_layers=int(getattr(config, "num_hidden_layers", 0) or getattr(config, "num_layers", 0)),
        num_tasks=int(tasks),
        num_ranks=int(rank),
        base_model_name_or_path=base_model or None,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_config.save_pretrained(str(out))
    save_file(state, str(out / PEFT_WEIGHTS))
    return out


def cmd_export_mpt(argv: list[str]) -> int:
    """Export an MPT run (all its tasks) in PEFT's multitask prompt-tuning format."""
    parser = argparse.ArgumentParser(prog="mtpt export-mpt", description=cmd_export_mpt.__doc__)
    parser.add_argument("run_dir", help="A folder written by `mtpt train` with method mpt.")
    parser.add_argument("--out", required=True, help="Output folder (adapter_config.json + adapter_model.safetensors).")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint folder.")
    args = parser.parse_args(argv)
    from mtpt.backbones import local_reference
    from mtpt.runs import load_run

    parts = load_run(args.run_dir, args.checkpoint)
    try:
        out = export_peft_multitask(parts.model.method, args.out, parts.backbone.model,
                                     local_reference(parts.backbone.name))
    finally:
        parts.model.detach_method()
    (out / "mtpt_tasks.json").write_text(json.dumps({"task_ids": {n: i for i, n in enumerate(parts.task_names)}}))
    print(f"wrote {out} (task ids: {', '.join(f'{i}={n}' for i, n in enumerate(parts.task_names))})")
    return 0
