"""``mtpt params CONFIG``: trainable parameter counts, shared and per task, of any method on any backbone.

The run is built exactly as ``mtpt train`` would build it (its prerequisite runs trained or reused first). A method
with the :class:`~mtpt.contract.ParameterCounts` capability splits its count; otherwise every trainable parameter
counts as shared.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mtpt.contract import ParameterCounts

__all__ = ["cmd_params", "parameter_report"]

HELP = "Count a run config's trainable parameters: shared by all tasks and per task (any method, any backbone)."


def method_counts(method: nn.Module) -> dict[str, int]:
    """The method's own split, or all trainable parameters as shared."""
    if isinstance(method, ParameterCounts):
        result = method.parameter_counts()
        return {"shared": int(result["shared"]), "per_task": int(result["per_task"])}
    return {"shared": sum(p.numel() for p in method.parameters() if p.requires_grad), "per_task": 0}


def parameter_report(parts: Any) -> dict[str, Any]:
    """Counts for built run parts (:class:`mtpt.runtime.RunParts`)."""
    method = parts.model.method
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    return {
        "method": parts.spec.name,
        "backbone": parts.backbone.name,
        "tasks": list(parts.task_names),
        "trainable": trainable,
        **method_counts(method),
        "frozen_method": sum(p.numel() for p in method.parameters() if not p.requires_grad),
        "backbone_parameters": sum(p.numel() for p in parts.backbone.model.parameters()),
    }


def render(report: dict[str, Any]) -> str:
    tasks = report["tasks"]
    lines = [
        f"method {report['method']} on {report['backbone']}, {len(tasks)} task(s): {', '.join(tasks)}",
        f"trainable parameters: {report['trainable']:,}",
        f"  shared by all tasks: {report['shared']:,}",
        f"  per task:            {report['per_task']:,}"
        + (f"  (x {len(tasks)} = {report['per_task'] * len(tasks):,})" if len(tasks) > 1 else ""),
        f"frozen method tensors: {report['frozen_method']:,}",
        f"backbone parameters (frozen): {report['backbone_parameters']:,}",
    ]
    accounted = report["shared"] + report["per_task"] * len(tasks)
    if accounted != report["trainable"]:
        lines.append(f"note: shared + per task x tasks = {accounted:,}, not the trainable total (the method's split "
                     "does not cover every parameter once).")
    return "\n".join(lines)


def cmd_params(argv: list[str]) -> int:
    """``mtpt params CONFIG [--field value ...]``."""
    from mtpt.config import parse_run_config, run_parser

    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: mtpt params CONFIG [--field value ...]\n\n{HELP}\n")
        run_parser("mtpt params").print_help()
        return 0
    from mtpt.runner import build

    parts = build(parse_run_config(argv))
    try:
        print(render(parameter_report(parts)))
    finally:
        parts.model.detach_method()
    return 0
