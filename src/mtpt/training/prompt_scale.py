"""The scale of a method's prompts against the backbone's embeddings: recorded with every run's step-0 score.

A transfer that collapses at initialisation (an initial prompt of almost zero norm, a task block far below the
prompt it complements, a sum of task vectors several times the prompt's own size) shows here before any step: each
entry is ``rms`` (the root-mean-square of the tensor's entries divided by the backbone's embedding RMS, so 1.0 is
the scale of a real token embedding on any backbone) and ``norm`` (its Frobenius norm, in the backbone's units).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtpt.contract import PromptBatch, PromptParts
from mtpt.model import SoftPromptModel

__all__ = ["prompt_scales", "scale_of"]


def scale_of(tensor: Tensor, unit: float) -> dict[str, float]:
    """``{"rms": RMS / unit, "norm": Frobenius norm}`` of ``tensor``."""
    values = tensor.detach().float()
    rms = float(values.pow(2).mean().sqrt()) if values.numel() else 0.0
    return {"rms": rms / unit if unit > 0 else float("nan"), "norm": float(values.norm())}


@torch.no_grad()
def prompt_scales(model: SoftPromptModel, inputs: dict[str, tuple[int, list[int]]], unit: float) -> dict[str, Any]:
    """The scale of the prompt the method gives one input of each task (``inputs``: task name -> (task index, token
    ids)) and of each part it names (:class:`~mtpt.contract.PromptParts`), relative to the embedding RMS
    ``unit``."""
    method = model.method
    device = next(model.backbone.parameters()).device
    was_training = method.training
    method.eval()
    try:
        scales: dict[str, Any] = {"embedding_rms": unit, "prompt": {}}
        for name, (index, ids) in inputs.items():
            tokens = torch.tensor([ids], device=device)
            mask = torch.ones_like(tokens)
            prompt = method(PromptBatch(model.embed(tokens), mask, torch.tensor([index], device=device)))
            scales["prompt"][name] = scale_of(prompt[0], unit)
        if isinstance(method, PromptParts):
            scales["parts"] = {name: scale_of(part, unit) for name, part in method.prompt_parts().items()}
        return scales
    finally:
        method.train(was_training)
