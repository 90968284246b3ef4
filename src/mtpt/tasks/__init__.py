"""Tasks and data for mtpt: the registry, the English and Chinese suites, k-shot protocols and
user task specs.

Data is found through a ``data_root`` argument or ``$MTPT_DATA_ROOT`` (see
``shared/data/PROVENANCE.md`` for its layout); without either only the bundled ``demo-sst2``
works. Typical use::

    from mtpt.tasks import get_task
    task = get_task("glue-rte")                      # or get_task("path/to/spec.yaml")
    train = task.examples("train", kshot=16, seed=13)
    test = task.examples("test", max_examples=500)

Inputs duplicated across a task's splits are removed when it is built (a
:class:`DecontaminationWarning` gives the counts, :func:`decontamination_report` returns them);
inputs of an evaluation split that occur in *another* task's training data are found by
:mod:`mtpt.tasks.overlap` (``mtpt tasks --overlap``).

Over-long inputs are not shortened or dropped here: the trainer truncates ``Example.text`` on
the token level at tokenization time and never the target.
"""

from .base import (
    CAP_SEED,
    ENV_VAR,
    SPLITS,
    DecontaminationWarning,
    Example,
    KShotInfo,
    Task,
    TaskDataError,
    decontamination_report,
    resolve_data_root,
)
from .kshot import format_mean_std, mean_std, seed_spread, stratified_kshot
from .protocols import SuiteSplit, split_suite
from .registry import get_task, list_tasks, register, render_task_table
from .user_spec import load_spec, validate_spec

__all__ = [
    "CAP_SEED",
    "ENV_VAR",
    "SPLITS",
    "DecontaminationWarning",
    "Example",
    "KShotInfo",
    "SuiteSplit",
    "Task",
    "TaskDataError",
    "decontamination_report",
    "format_mean_std",
    "get_task",
    "list_tasks",
    "load_spec",
    "mean_std",
    "register",
    "render_task_table",
    "resolve_data_root",
    "seed_spread",
    "split_suite",
    "stratified_kshot",
    "validate_spec",
]
