"""mtpt: multi-task prompt transfer on frozen language models.

Public entry points: :func:`mtpt.backbones.load_backbone`, :class:`mtpt.model.SoftPromptModel`,
:mod:`mtpt.methods` (the registry and the method contract), :mod:`mtpt.tasks`, :func:`mtpt.training.loop.train`.
"""

__version__ = "0.1.0"
