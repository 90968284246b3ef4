"""The quality benchmark's gates (``gates: true``): before reading the tables, could transfer show on this testbed?

- **Sources**: each library prompt's validation score against the best score a constant answer gets on the same
  split, and ``learned`` (both recorded in the library manifest by the source stage). A source that did not learn
  is left out of the transfer rows (``library.drop_unlearned`` and the methods' ``skip_unlearned``).
- **Zero-training matrix**: every source prompt (and the library's untrained P_init, and the bare backbone) scored
  on each target's validation set with no training at all. A source related to a target should beat the bare
  backbone there; an unrelated one need not. The validation set is the target's full validation split without the
  inputs found in any library source's training data (SST-5's validation sentences are largely SST-2 training
  sentences: a prompt's memory of them is not transfer), capped at ``data.max_eval_examples`` (seeded). One file
  per (prompt, target) under ``<out>/gates/zero-training/<prompt>/<target>.json`` caches the score with the
  prompt file's hash, so a retrained prompt is scored again; the step needs the backbone, the report does not.
- **Overlap**: ``mtpt tasks --overlap`` over the sources and targets (written to ``<out>/gates/overlap.txt``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtpt.atomic import atomic_write_text
from mtpt.bench.quality_config import QualityConfig, library_path
from mtpt.bench.sharing import Job

GATES = "gates"
ZERO_SHOT = "zero_shot"
P_INIT = "p_init"


@dataclass(frozen=True)
class GatePrompt:
    """One row of the zero-training matrix: a name and the prompt file (none: the bare backbone)."""

    name: str
    label: str
    path: Path | None


def gates_dir(config: QualityConfig) -> Path:
    return Path(config.out) / GATES


def gate_prompts(config: QualityConfig) -> list[GatePrompt]:
    """The bare backbone, the library's P_init and every library entry (mixture included), in manifest order."""
    from mtpt.library.format import INIT_FILE, PROMPT_FILE, SourceLibrary

    library = SourceLibrary.open(library_path(config))
    prompts = [GatePrompt(ZERO_SHOT, "bare backbone (zero-shot)", None),
               GatePrompt(P_INIT, "P_init (untrained library init)", library.root / INIT_FILE)]
    for entry in library.entries:
        label = f"mixture of {', '.join(entry.sources)}" if entry.is_mixture else entry.task
        prompts.append(GatePrompt(entry.path.replace("/", "."), f"{label} (seed {entry.seed})",
                                  library.root / entry.path / PROMPT_FILE))
    return prompts


def cache_file(config: QualityConfig, prompt: GatePrompt, target: str) -> Path:
    return gates_dir(config) / "zero-training" / prompt.name / f"{target}.json"


def _digest(path: Path | None) -> str:
    return "" if path is None else hashlib.sha256(path.read_bytes()).hexdigest()


def _settings(config: QualityConfig) -> dict[str, Any]:
    """What a cached score depends on besides the prompt file."""
    return {"backbone": config.backbone, "sources": list(config.library.sources),
            "max_eval_examples": config.data.max_eval_examples, "max_input_tokens": config.data.max_input_tokens,
            "scorer": config.eval.scorer, "rank_normalization": config.eval.rank_normalization,
            "precision": config.train.precision}


def cached_score(config: QualityConfig, prompt: GatePrompt, target: str) -> dict[str, Any] | None:
    """The cached record of (prompt, target) under ``out`` (or else under ``reuse``), or None when missing,
    computed from another prompt file or under other settings."""
    own = cache_file(config, prompt, target)
    paths = [own] + ([Path(config.reuse) / own.relative_to(config.out)] if config.reuse else [])
    for path in paths:
        if path.exists():
            record = json.loads(path.read_text())
            if record.get("prompt_sha256") == _digest(prompt.path) and record.get("settings") == _settings(config):
                return record
    return None


def gate_examples(config: QualityConfig, target: str):
    """The target's validation examples the matrix scores (see the module docstring) and how many were removed."""
    from mtpt.tasks import get_task
    from mtpt.tasks.kshot import cap_examples
    from mtpt.tasks.overlap import remove_leaked
    from mtpt.tasks.types import CAP_SEED, resolve_data_root

    root = resolve_data_root(config.data.data_root)
    task = get_task(target)
    examples = task.examples("validation", root)
    kept, leakage = remove_leaked(task, "validation", examples, [get_task(s) for s in config.library.sources], root)
    if config.data.max_eval_examples is not None:
        kept = cap_examples(kept, config.data.max_eval_examples, CAP_SEED)
    return task, kept, leakage.removed


def score_prompt(config: QualityConfig, prompt: GatePrompt, backbone) -> None:
    """Score one prompt, untrained, on every target's gate set and cache each result (skipping cached ones)."""
    from mtpt.config import RunConfig
    from mtpt.precision import make_accelerator
    from mtpt.runtime import build_run
    from mtpt.training.evaluate import EvalSet, evaluate_sets

    for target in config.targets:
        if cached_score(config, prompt, target) is not None:
            continue
        task, examples, removed = gate_examples(config, target)
        method = ({"name": "zero_shot"} if prompt.path is None else
                  {"name": "pt", "prompt_length": config.prompt_length, "init": "from_file",
                   "init_path": str(prompt.path)})
        run = RunConfig(backbone=config.backbone, tasks=[target], method=method, data=replace(config.data, kshot=None),
                        train=config.train, eval=config.eval, output_dir=str(cache_file(config, prompt, target).parent))
        parts = build_run(run, backbone)
        try:
            acc = make_accelerator(config.train.precision)
            parts.model.to(acc.device)
            metrics = evaluate_sets(parts.model, parts, [EvalSet(task, 0, "validation", examples)], acc)[target]
        finally:
            parts.model.detach_method()
        record = {"prompt": prompt.label, "target": target, "score": metrics["score"], "metrics": metrics,
                  "examples": len(examples), "removed_as_leaked": removed, "prompt_sha256": _digest(prompt.path),
                  "settings": _settings(config)}
        path = cache_file(config, prompt, target)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1))


def gate_jobs(config: QualityConfig, backbone: Callable[[], Any]) -> list[Job]:
    """One job per prompt of the matrix, for workers to share (:func:`mtpt.bench.sharing.share_work`)."""
    jobs = []
    for prompt in gate_prompts(config):
        done = (lambda p=prompt: all(cached_score(config, p, t) is not None for t in config.targets))
        jobs.append(Job(gates_dir(config) / "zero-training" / prompt.name,
                        lambda p=prompt: score_prompt(config, p, backbone()), done))
    return jobs


def write_overlap(config: QualityConfig) -> Path:
    """``<out>/gates/overlap.txt``: the overlap matrix of the sources and targets (no model needed)."""
    from mtpt.tasks import get_task
    from mtpt.tasks.overlap import render_overlap_matrix

    names = list(dict.fromkeys([*config.library.sources, *config.targets]))
    path = gates_dir(config) / "overlap.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"mtpt tasks --overlap {' '.join(names)}\n\n"
                      + render_overlap_matrix([get_task(n) for n in names], config.data.data_root) + "\n")
    return path


# --- the report's gate section ------------------------------------------------------------------------------------
def gate_lines(config: QualityConfig) -> list[str]:
    """Sources, zero-training matrix and overlap, as Markdown (what has been computed so far)."""
    if not config.gates:
        return []
    lines = ["", "## Gates: could transfer show here?"]
    lines += source_gate_lines(config) + matrix_lines(config) + overlap_lines(config)
    return lines


def source_gate_lines(config: QualityConfig) -> list[str]:
    from mtpt.library.format import SourceLibrary

    path = library_path(config)
    if not (path / "manifest.json").exists():
        return ["", "Sources: pending (the library has not been trained yet)."]
    lines = ["", f"Sources: each library prompt's best validation score against the best score a constant answer "
             f"gets on the same split; learned = beats it by {config.library.learned_margin:g} points "
             f"(library.learned_margin). "
             + ("Sources that did not learn are left out of the transfer rows." if config.library.drop_unlearned
                else "Sources that did not learn are still used (library.drop_unlearned is off)."), "",
             "| source prompt | validation score | best constant answer | margin | learned | best step / steps |",
             "|---|---|---|---|---|---|"]
    for e in SourceLibrary.open(path).entries:
        name = f"mixture of {', '.join(e.sources)}" if e.is_mixture else e.task
        score = "-" if e.best_metric is None else f"{e.best_metric:.1f}"
        constant = "-" if e.constant_score is None else f"{e.constant_score:.1f}"
        margin = ("-" if e.best_metric is None or e.constant_score is None
                  else f"{e.best_metric - e.constant_score:+.1f}")
        learned = {True: "yes", False: "**no**", None: "unknown"}[e.learned]
        lines.append(f"| {name} (seed {e.seed}) | {score} | {constant} | {margin} | {learned} | "
                     f"{e.best_step} / {e.steps} |")
    return lines


def matrix_lines(config: QualityConfig) -> list[str]:
    if not (library_path(config) / "manifest.json").exists():
        return []
    prompts = gate_prompts(config)
    records = {(p.name, t): cached_score(config, p, t) for p in prompts for t in config.targets}
    if not any(records.values()):
        return ["", "Zero-training matrix: pending (run the gates phase: `--phase gates`)."]
    base = {t: records[(ZERO_SHOT, t)] for t in config.targets}
    lines = ["", "Zero-training matrix: validation score of each prompt on each target with no training, Δ against "
             "the bare backbone in brackets (the target's full validation split without the inputs found in any "
             "source's training data, capped at a seeded "
             f"{config.data.max_eval_examples}; -: not scored yet):", "",
             "| prompt | " + " | ".join(config.targets) + " |", "|---" * (len(config.targets) + 1) + "|"]
    for p in prompts:
        cells = []
        for t in config.targets:
            r = records[(p.name, t)]
            if r is None:
                cells.append("-")
            elif p.name == ZERO_SHOT or base[t] is None:
                cells.append(f"{r['score']:.1f}")
            else:
                cells.append(f"{r['score']:.1f} ({r['score'] - base[t]['score']:+.1f})")
        lines.append(f"| {p.label} | " + " | ".join(cells) + " |")
    sizes = [f"{t} {r['examples']} ({r['removed_as_leaked']} removed as leaked)"
             for t in config.targets for r in [base[t]] if r is not None]
    if sizes:
        lines.append("examples per target: " + ", ".join(sizes) + ".")
    return lines


def overlap_lines(config: QualityConfig) -> list[str]:
    path = gates_dir(config) / "overlap.txt"
    if not path.exists():
        return []
    return ["", "Overlap of the sources' training data with every evaluation split (the test inputs found are removed "
            "from every row's test set; validation overlaps are only counted):", "", "```",
            *path.read_text().rstrip("\n").splitlines(), "```"]
