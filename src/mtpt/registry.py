"""The method registry: name -> config dataclass + builder (+ optional CLI subcommands).

Built-in methods register themselves from their folder's ``__init__``; :func:`discover` imports every
subpackage of ``mtpt.methods`` and every ``mtpt.methods`` entry point, so a new method needs only its folder
(or an installed plugin), never an edit here, in the trainer, the CLI or the checkpoint code.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from mtpt.errors import MtptError
from mtpt.contract import BuildContext

CliCommand = Callable[[list[str]], int]
"""A subcommand: receives its own argv, returns an exit code."""


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
