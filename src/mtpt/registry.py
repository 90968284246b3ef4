"""The method registry: name -> config dataclass + builder, and what tools need to know about a method.

Built-in methods register themselves from their folder's ``__init__``; :func:`discover` imports every
subpackage of ``mtpt.methods`` and every ``mtpt.methods`` entry point, so a new method needs only its folder
(or an installed plugin), never an edit here, in the trainer, the CLI, the checkpoint code or the benchmarks:
what those need beyond the builder (the runs to train first, which options point at shared artefacts, how the
speed benchmark builds the method) is a field of its :class:`MethodSpec`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from torch import nn

from mtpt.contract import BuildContext, CheckpointContents, Prerequisite
from mtpt.errors import MtptError

if TYPE_CHECKING:
    from mtpt.config import RunConfig

CliCommand = Callable[[list[str]], int]
"""A subcommand: receives its own argv, returns an exit code."""


@dataclass(frozen=True)
class OptionRoles:
    """Which of a method's options point at shared artefacts, for tools that fill them in or follow them (the
    quality benchmark fills them; a run's source tasks are read through them). ``None``: no such option."""

    library: str | None = None
    """The option naming a source-prompt library folder."""
    source_run: str | None = None
    """The option naming a finished multi-task source-stage run."""
    prompt_length: str | None = None
    """The option holding the method's own prompt length (a benchmark sets it to its shared length); methods that
    take their length from a library or source run have none."""
    learning_rates: tuple[str, ...] = ()
    """The options that are learning rates (of the method's parameter groups, or of the prerequisite runs it trains),
    each null or a rate; null ones follow ``train.lr``. A benchmark that scales "all of a method's learning rates"
    multiplies ``train.lr`` and every one of these that is set."""


@dataclass(frozen=True)
class SpeedVariant:
    """One row of ``mtpt bench speed`` for a method: how to build it and what to compare it with.

    String options may use ``{library}`` (a synthetic library of the benchmark's prompt shape, sources
    ``src-0``...), ``{teachers}`` (a synthetic library holding a prompt for every benchmark task),
    ``{target_prompt}`` (a synthetic target prompt file) and ``{prompt_length}``; anything else the builder
    needs must be an option."""

    label: str
    """The row's name (``--methods`` choice)."""
    options: dict[str, Any]
    """The method section (without ``name``)."""
    multi_task: bool = False
    """Per-task prompt parameters: trained on rows of several tasks, and timed on mixed-task inference."""
    peft: Literal["pt", "mpt"] | None = None
    """PEFT's counterpart timed beside it: prompt tuning or multitask prompt tuning; None when PEFT has none."""
    bare_target: float = 1.05
    """The step-time target against the bare backbone (per-example prompt computation gets more)."""
    mixed_inference: bool | None = None
    """Time mixed-task inference; ``None`` = ``multi_task``."""
    extra: Callable[[int, int, int, float | None], dict[str, Any]] | None = None
    """A measurement of the method's own computation reported beside its row (DTVG's regrouping):
    ``extra(prompt_length, hidden_size, repeats, step_ms)`` with the variant's measured step time, returning a
    JSON-able dict with ``title``, ``columns`` and ``rows`` (strings) for the report's table."""

    @property
    def times_mixed_inference(self) -> bool:
        return self.multi_task if self.mixed_inference is None else self.mixed_inference


RestoreFn = Callable[[Any, BuildContext, CheckpointContents], nn.Module]
"""``restore(method_config, context, checkpoint) -> module``: the trained module rebuilt from its checkpoint alone."""

PrerequisitesFn = Callable[[Any, "RunConfig"], list[Prerequisite]]
"""``prerequisites(method_config, run_config) -> [Prerequisite, ...]``: the runs to finish before building."""


@dataclass(frozen=True)
class MethodSpec:
    """Everything the framework knows about a method."""

    name: str
    config_cls: type
    """A dataclass whose fields (with docstrings) are the method's options."""
    build: Callable[[Any, BuildContext], nn.Module]
    """``build(config, context) -> module`` implementing :mod:`mtpt.contract`."""
    summary: str = ""
    cli_commands: dict[str, tuple[str, CliCommand]] = field(default_factory=dict)
    """Extra ``mtpt`` subcommands: name -> (one-line help, function)."""
    prerequisites: PrerequisitesFn | None = None
    """The runs the method needs finished before ``build`` (see :class:`mtpt.contract.Prerequisite`)."""
    roles: OptionRoles = field(default_factory=OptionRoles)
    """Which options point at a library, a source run, or hold the prompt length."""
    speed: tuple[SpeedVariant, ...] = ()
    """How ``mtpt bench speed`` builds and judges the method (none: it is not benchmarked)."""
    restore: RestoreFn | None = None
    """Rebuilds a trained module from its checkpoint alone, reading none of the files its options name (a source
    library, an init prompt, a prerequisite run), so that a run folder copied without them can still predict,
    evaluate and export. The module's ``state_dict`` must have the checkpoint's keys and shapes (the checkpoint is
    then loaded into it as usual). Used only when the run cannot be rebuilt as it was trained (``build``); ``None``
    for a method whose checkpoint does not hold everything its trained module computes with (tensors kept out of
    the ``state_dict``), whose runs then need what their config names."""
    trains: bool = True
    """False for a method with nothing to train (zero-shot): its runs only evaluate, and a learning-rate search
    skips it."""

    def prerequisite_runs(self, config: Any, run: "RunConfig") -> list[Prerequisite]:
        """The prerequisite runs for this method config inside ``run`` (none when the method declares none)."""
        return list(self.prerequisites(config, run)) if self.prerequisites is not None else []


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register_method(spec: MethodSpec) -> MethodSpec:
    """Register a method under ``spec.name`` (called from the method folder's ``__init__``)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing.build is not spec.build:
        raise MtptError(f"Two methods are registered under the name {spec.name!r}.")
    _REGISTRY[spec.name] = spec
    return spec


def discover() -> None:
    """Import built-in method folders and installed plugins once."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("mtpt.methods")  # found at run time: the core never imports a method

    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{package.__name__}.{info.name}")
    for entry in importlib.metadata.entry_points(group="mtpt.methods"):
        entry.load()
    _discovered = True


def get_method(name: str) -> MethodSpec:
    discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MtptError(f"Unknown method {name!r}. Registered methods: {', '.join(sorted(_REGISTRY))}.") from None


def list_methods() -> list[MethodSpec]:
    discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
