"""``mtpt bench speed --profile``: what one training step's time is made of, per arm.

Each arm (the method's step, PEFT as documented, PEFT with the same work, the bare backbone) runs one untimed
warm-up step, then ``steps`` steps under ``torch.profiler`` (CPU). The backbone's modules are labelled while the
profile runs (a ``record_function`` range around each forward of the embedding, the attention blocks, the MLPs,
the norms and the LM head), and each operator's time goes to a group:

- forward: ``embedding``, ``attention``, ``MLP``, ``norms``, ``LM head`` (inside those modules); ``loss``
  (everything after the LM head and before the backward: selecting the target logits, the fp32 upcast, the
  cross-entropy); ``other forward`` (the prompt and its placement, rotary embeddings, masks, residual additions);
- ``backward: <group>``: each autograd node's time, given to the group of the forward operator that created it
  (matched by the autograd sequence number the profiler records for both);
- ``optimizer``: everything after the backward (gradient clipping, AdamW, zero_grad, the scheduler);
- ``python``: the step's wall time under the profiler minus the operators' time (the interpreter between
  operators, hooks, the profiler's own cost).

The profiler slows every operator, so the speed benchmark's paired wall-clock ratios are the measurement; this
only says where the time goes and what stands between a method's step and a target ratio. CPU only: on a GPU
the operators' CPU time is their launch time, so the profile is skipped there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from mtpt.bench.arms import Arm

PREFIX = "mtpt/"
STEP = PREFIX + "step"
FORWARD = ("embedding", "attention", "MLP", "norms", "LM head", "loss", "other forward")
GROUPS = FORWARD + tuple(f"backward: {g}" for g in FORWARD) + ("backward: other", "optimizer", "python")


def module_groups(model: nn.Module) -> dict[nn.Module, str]:
    """The backbone's modules to label: the outermost embedding, attention, MLP, norm and LM head modules."""
    found: dict[nn.Module, str] = {}
    special = {model.get_input_embeddings(): "embedding"}
    head = model.get_output_embeddings()
    if head is not None:
        special[head] = "LM head"
    inside: set[str] = set()
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside):
            continue
        group = special.get(module) or _group_of(type(module).__name__)
        if group is not None:
            found[module] = group
            inside.add(name)
    return found


def _group_of(class_name: str) -> str | None:
    if "Attention" in class_name:
        return "attention"
    if "MLP" in class_name or "DenseReluDense" in class_name:
        return "MLP"
    if "Norm" in class_name:
        return "norms"
    return None


class Labels:
    """Forward hooks that put a profiler range around each labelled module's forward while active."""

    def __init__(self, model: nn.Module):
        self.groups = module_groups(model)
        self._handles: list[Any] = []
        self._open: dict[int, list[record_function]] = defaultdict(list)

    def __enter__(self) -> "Labels":
        for module, group in self.groups.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(group)))
            self._handles.append(module.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre(self, group: str):
        def hook(module, args):
            label = record_function(PREFIX + group)
            label.__enter__()
            self._open[id(module)].append(label)

        return hook

    def _post(self, module, args, output):
        self._open[id(module)].pop().__exit__(None, None, None)


def profile_arm(arm: Arm, backbone: nn.Module, steps: int) -> dict[str, Any]:
    """Milliseconds per step of each group (see the module docstring) over ``steps`` profiled steps of ``arm``."""
    arm.enter()
    try:
        arm.step()  # warm-up outside the profile
        with Labels(backbone), profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                with record_function(STEP):
                    arm.step()
            wall_ms = (time.perf_counter() - start) * 1e3 / steps
    finally:
        arm.exit()
    groups: dict[str, float] = defaultdict(float)
    for step in (e for e in prof.events() if e.name == STEP):
        for group, value in group_times(step.cpu_children).items():
            groups[group] += value
    ms = {group: value / 1e3 / steps for group, value in groups.items()}
    ms["python"] = max(0.0, wall_ms - sum(ms.values()))
    return {"wall_ms": wall_ms, "groups": {g: ms.get(g, 0.0) for g in GROUPS}}


def group_times(events) -> dict[str, float]:
    """Microseconds per group of one step's top-level profiler events (forward, backward, optimizer in order)."""
    top = sorted(events, key=lambda e: e.time_range.start)
    backward = [e for e in top if _is_backward(e)]
    first_backward = backward[0].time_range.start if backward else float("inf")
    last_backward = backward[-1].time_range.end if backward else float("inf")
    heads = [e.time_range.end for e in top if e.name == PREFIX + "LM head" and e.time_range.start < first_backward]
    head_end = max(heads) if heads else float("inf")
    forward_group: dict[int, str] = {}  # autograd sequence number -> group of the forward op that created the node
    totals: dict[str, float] = defaultdict(float)
    for event in top:
        if _is_backward(event):
            continue
        start = event.time_range.start
        if start < first_backward:
            group = (event.name[len(PREFIX):] if event.name.startswith(PREFIX)
                     else "loss" if start >= head_end else "other forward")
            _map_sequence(event, group, forward_group)
        elif start > last_backward:
            group = "optimizer"
        else:
            group = "backward: other"
        totals[group] += event.cpu_time_total
    for event in backward:
        group = forward_group.get(event.sequence_nr)
        totals[f"backward: {group}" if group else "backward: other"] += event.cpu_time_total
    return totals


def _is_backward(event) -> bool:
    return event.name.startswith("autograd::engine::evaluate_function")


def _map_sequence(event, group: str, found: dict[int, str]) -> None:
    stack = [event]
    while stack:
        current = stack.pop()
        if current.sequence_nr >= 0:
            found.setdefault(current.sequence_nr, group)
        stack.extend(current.cpu_children)


def profile_arms(arms: list[Arm], steps: int) -> dict[str, Any]:
    """Each arm's profile by arm name; an empty mapping on a GPU (see the module docstring)."""
    if torch.cuda.is_available():
        return {}
    out = {}
    for arm in arms:
        backbone = _backbone_of(arm)
        out[arm.name] = profile_arm(arm, backbone, steps)
    return out


def _backbone_of(arm: Arm) -> nn.Module:
    model = getattr(arm, "model", None)
    if model is not None and hasattr(model, "backbone"):
        return model.backbone  # a method arm's SoftPromptModel
    return arm.backbone.model  # the bare and PEFT arms hold the Backbone


def render_profile(report: dict[str, Any], target: float) -> str:
    """profile.md: per method, the groups' ms per step for each arm, and the gap to ``target`` × PEFT documented."""
    s = report["settings"]
    lines = [f"# Step profile — {s['backbone']}, batch {s['batch']}, {s['text_tokens']} text tokens, precision "
             f"{s['precision']}, {s['threads']} threads, {s['profile_steps']} profiled steps per arm", "",
             "Milliseconds per step under torch.profiler (slower than the timed steps; see mtpt.bench.profile for "
             "the groups). The timed medians of the same run are in speed.md.", ""]
    for method, arms in report["methods"].items():
        if not arms:
            lines += [f"## {method}", "", "Not profiled (GPU: the profile is CPU-only).", ""]
            continue
        names = list(arms)
        lines += [f"## {method}", "", "| group | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for group in GROUPS:
            values = [arms[name]["groups"][group] for name in names]
            if any(v >= 0.05 for v in values):
                lines.append(f"| {group} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
        lines.append("| **step (wall, profiled)** | " + " | ".join(f"{arms[n]['wall_ms']:.1f}" for n in names) + " |")
        lines += [""] + gap_lines(method, arms, report.get("steps", {}).get(method, {}), target) + [""]
    return "\n".join(lines) + "\n"


def gap_lines(method: str, arms: dict[str, Any], timed: dict[str, float], target: float) -> list[str]:
    """What stands between the method's timed step and ``target`` × PEFT documented, read from the profile."""
    documented = next((name for name in arms if name.endswith("-documented")), None)
    if documented is None or method not in arms or documented not in timed or method not in timed:
        return []
    goal = target * timed[documented]
    gap = timed[method] - goal
    mine, theirs = arms[method]["groups"], arms[documented]["groups"]
    saved = {g: theirs[g] - mine[g] for g in GROUPS if abs(theirs[g] - mine[g]) >= 0.05 * max(1.0, theirs[g])}
    core = sum(mine[g] for g in ("attention", "MLP", "backward: attention", "backward: MLP"))
    lines = [f"Timed medians: {method} {timed[method]:.1f} ms, {documented} {timed[documented]:.1f} ms, so "
             f"{target:g}× is {goal:.1f} ms and the step is {gap:+.1f} ms from it"
             + (f" (the bare backbone's step: {timed['bare']:.1f} ms)." if "bare" in timed else ".")]
    if saved:
        parts = ", ".join(f"{g} {v:+.1f}" for g, v in sorted(saved.items(), key=lambda kv: -abs(kv[1])))
        lines.append(f"Profiled ms {documented} spends more than {method} (negative: less), by group: {parts}.")
    lines.append(f"{method}'s attention and MLP, forward and backward, take {core:.1f} profiled ms of its "
                 f"{arms[method]['wall_ms']:.1f}: the frozen backbone's work on the same rows, which every arm does.")
    return lines
