"""mtpt: multi-task prompt transfer on frozen language models.

Public entry points: :func:`mtpt.backbones.load_backbone`, :class:`mtpt.model.SoftPromptModel`,
:mod:`mtpt.methods` (the registry and the method contract), :mod:`mtpt.tasks`, :func:`mtpt.training.loop.train`,
and :func:`mtpt.load_predictor` (a trained run, or a backbone zero-shot, answering new rows).
"""

__version__ = "0.1.0"

__all__ = ["load_predictor"]


def __getattr__(name: str):
    # Lazy, so that `import mtpt` (e.g. for the CLI's --help) does not import torch and transformers.
    if name == "load_predictor":
        from mtpt.inference.predictor import load_predictor

        return load_predictor
    raise AttributeError(f"module 'mtpt' has no attribute {name!r}")
