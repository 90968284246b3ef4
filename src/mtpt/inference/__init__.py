"""Using a trained run (or a bare backbone, zero-shot) on new inputs: ``mtpt predict``, ``mtpt serve`` and
:func:`load_predictor`.

Rows (mappings of a task's input fields, plus ``task`` for runs with several tasks) are rendered through the
task's own template and scored by the run's scorer; every answer is a record (see :mod:`.records`). Rows of
different tasks share batches: the model takes a task id per row.
"""

from mtpt.inference.inputs import InputError
from mtpt.inference.predictor import Predictor, load_predictor

__all__ = ["InputError", "Predictor", "load_predictor"]
