"""``mtpt bench quality CONFIG``: every method on every target task and seed, under one shared protocol.

Layout of the output folder::

    <out>/library/                              the source library (``train_sources``, run once, reused)
    <out>/source-stages/<method>-<hash>/        a multi-task source-stage run a method's target stage needs
                                                (MPT, TA-LoRA), run once on the library sources, reused
    <out>/cells/<method>/<target>/seed-<s>/     one ordinary training run folder per cell
    <out>/results.{csv,json,md,png}             the table: per task x method, mean ± std over seeds

A cell whose ``results.json`` exists is finished and skipped, so an interrupted benchmark is resumed by running
the same command again (an unfinished cell resumes from its last checkpoint through the trainer). Several workers
running the same command share the cells: each claims a cell with a lock file beside it (``.seed-<s>.lock``)
and leaves a cell another worker holds (status ``busy``); shared stages are trained by one worker, waited for by
the others. Every method shares steps, prompt length (where the method has one of its own), data, k-shot split
and evaluation caps.

Method sections may use ``{library}``, ``{source_run}`` and ``{target_stage1}`` in string options;
``source_library`` is filled in when left empty. ``{target_stage1}`` is the cell's short PT run on the target from
the library's ``P_init`` (:mod:`mtpt.library.target_run`), trained once per target and seed under
``<out>/target-stage1/`` and shared by every section that names it (SPoT's retrieval prompt, DTVG's stage I). A section's ``source_stage`` (method options) is trained once into ``source-stages/`` and
becomes its ``source_run``. A section's ``targets`` replaces the config's target list for that row (TA-LoRA's
unseen-data protocol runs on source tasks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mtpt.config import DataConfig, EvalConfig, RunConfig, TrainConfig, parse_config
from mtpt.errors import MtptError
from mtpt.locking import exclusive, lock_path_for

CELLS = "cells"
TARGET_STAGE1 = "{target_stage1}"
SECTION_KEYS = ("source_stage", "targets")
"""Keys of a method section that belong to the benchmark, not to the method's config."""


@dataclass
class LibrarySection:
    """The source stage shared by every method (a library of single-task prompts from one P_init)."""

    sources: list[str] = field(default_factory=lambda: ["demo-sst2"])
    """Source tasks; each gets one prompt per seed."""
    steps: int = 500
    """Prompt-tuning steps per source (and of the methods' source-stage runs)."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """Seeds of the source prompts."""
    lr: float | None = None
    """Learning rate of the source stage; null = train.lr."""
    max_train_examples: int | None = 20000
    """Cap on each source's training set (the sources are large: a seeded sample of this size)."""
    mixture: bool = True
    """Also tune the mixture-of-sources prompt (generic SPoT, TA-LoRA's theta0 from library_mixture)."""
    eval_every: int | None = None
    """Validation interval of the source runs (library and source stages); null = train.eval_every."""
    path: str = ""
    """Library folder; empty = <out>/library."""


@dataclass
class TargetStage1Section:
    """The short PT run per target and seed that ``{target_stage1}`` stands for (from the library's P_init)."""

    steps: int = 50
    """Steps of the run (SPoT's retrieval steps, DTVG's stage-I steps)."""
    lr: float | None = None
    """Its learning rate; null = train.lr."""


@dataclass
class QualityConfig:
    """A quality benchmark: a source library, target tasks, seeds and the methods to compare."""

    backbone: str = "smollm2-135m"
    """Backbone of every run (tiny-llama for smoke runs)."""
    out: str = "runs/bench/quality"
    """Output folder (library, cells, results)."""
    library: LibrarySection = field(default_factory=LibrarySection)
    target_stage1: TargetStage1Section = field(default_factory=TargetStage1Section)
    targets: list[str] = field(default_factory=lambda: ["demo-sst2"])
    """Target tasks; every method trains one run per target and seed."""
    kshot: int | None = 16
    """k examples per class for the target runs (null = full data)."""
    seeds: list[int] = field(default_factory=lambda: [13, 21, 42])
    """Seeds: the k-shot split seed and the training seed of each cell."""
    target_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-target data overrides (DataConfig fields), e.g. {superglue-cb: {kshot: 32, kshot_seed: 0}}: FewGLUE's
    one published 32-example split, whose cells then differ only in their training seed."""
    steps: int = 100
    """Optimizer steps of every target run."""
    prompt_length: int = 20
    """Prompt length of the library and of every method whose own default is a number (PT)."""
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"pt": {"name": "pt"}})
    """Method sections by row label: {label: {name: <method>, ...options, source_stage: {...}}}."""
    report_split: str = "test"
    """Split whose scores go into the results table."""
    baseline: str = "pt"
    """Row label every other row is compared with cell by cell (same task and seed) in the table's paired
    column; empty = no paired column."""
    own_targets_baseline: str = ""
    """The same for the table of sections with their own ``targets`` (TA-LoRA's unseen-data protocol): the row
    they are compared with on their tasks, e.g. PT on the same k-shot source data; empty = no paired column."""
    data: DataConfig = field(default_factory=lambda: DataConfig(max_eval_examples=500))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --- configuration ---------------------------------------------------------------------------------------------
def parse_quality_args(argv: list[str]) -> tuple[QualityConfig, argparse.Namespace]:
    """``CONFIG [--methods ...] [--targets ...] [--seeds ...] [--field value ...]``: the three selectors pick
    a subset of the config's cells; every other flag overrides a config field."""
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--methods", nargs="+", default=None)
    selector.add_argument("--targets", nargs="+", default=None)
    selector.add_argument("--seeds", nargs="+", type=int, default=None)
    selector.add_argument("--status", action="store_true")
    selector.add_argument("--tables", action="store_true")
    picked, rest = selector.parse_known_args(argv)
    config = parse_config(QualityConfig, rest, "mtpt bench quality", "bench")
    unknown = sorted(set(picked.methods or []) - set(config.methods))
    if unknown:
        raise MtptError(f"--methods {' '.join(unknown)}: not in the config's methods ({', '.join(config.methods)}).")
    return config, picked


def library_path(config: QualityConfig) -> Path:
    return Path(config.library.path or Path(config.out) / "library")


def cell_dir(config: QualityConfig, method: str, target: str, seed: int) -> Path:
    return Path(config.out) / CELLS / method / target / f"seed-{seed}"


def section_targets(config: QualityConfig, label: str, selected: list[str] | None = None) -> list[str]:
    """The targets of a method section: its own ``targets`` (e.g. TA-LoRA's unseen-data protocol, whose targets
    are source tasks) or the config's; a ``--targets`` selection filters a section's own list and replaces the
    config's."""
    own = config.methods[label].get("targets")
    if own is None:
        return list(selected or config.targets)
    if not isinstance(own, list) or not all(isinstance(t, str) for t in own):
        raise MtptError(f"methods.{label}.targets: expected a list of task names, got {own!r}.")
    return [t for t in own if selected is None or t in selected]


def target_data(config: QualityConfig, target: str, seed: int) -> DataConfig:
    """The data section of a target's cells: the shared one, k-shot split ``seed``, then the target's overrides."""
    overrides = config.target_data.get(target, {})
    known = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise MtptError(f"target_data.{target}: unknown data field(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(sorted(known))}.")
    return replace(config.data, **{"kshot": config.kshot, "kshot_seed": seed, **overrides})


def source_stage_dir(config: QualityConfig, method: dict[str, Any]) -> Path:
    """``source-stages/<method>-<hash of its options>``: sections with the same source stage share one run (e.g.
    TA-LoRA's unseen-task and unseen-data rows)."""
    digest = hashlib.sha256(json.dumps(method, sort_keys=True).encode()).hexdigest()[:8]
    return Path(config.out) / "source-stages" / f"{method['name']}-{digest}"


def section_source_stage(config: QualityConfig, options: dict[str, Any], library: str) -> tuple[dict[str, Any], Path]:
    """The filled method options of a section's ``source_stage`` and the folder its run lives in."""
    method = _own_prompt_length(fill_options(options["source_stage"], library), config.prompt_length)
    return method, source_stage_dir(config, method)


def target_stage1_dir(config: QualityConfig, target: str, seed: int) -> Path:
    """``target-stage1/<target>/seed-<s>-steps<n>-lr<lr>``: steps and lr in the name, so that changing them in the
    config trains a new run instead of reusing a stale one."""
    stage = config.target_stage1
    return (Path(config.out) / "target-stage1" / target
            / f"seed-{seed}-steps{stage.steps}-lr{stage.lr or config.train.lr:g}")


def _substitute(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every placeholder of ``mapping`` replaced in its strings (nested lists and dicts too)."""
    if isinstance(value, str):
        for placeholder, replacement in mapping.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, mapping) for k, v in value.items()}
    return value


def _mentions(value: Any, placeholder: str) -> bool:
    if isinstance(value, str):
        return placeholder in value
    if isinstance(value, list):
        return any(_mentions(v, placeholder) for v in value)
    if isinstance(value, dict):
        return any(_mentions(v, placeholder) for v in value.values())
    return False


def _method_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """The option names of the method a section names, with their defaults."""
    from mtpt.methods.registry import get_method

    return {f.name: f.default for f in fields(get_method(str(options["name"])).config_cls)}


def fill_options(options: dict[str, Any], library: str, source_run: str = "") -> dict[str, Any]:
    """Replace ``{library}``/``{source_run}`` placeholders and fill an empty ``source_library``
    (``{target_stage1}`` is left for :meth:`Bench.run` to fill per cell)."""
    mapping = {"{library}": library, "{source_run}": source_run}
    filled = {k: _substitute(v, mapping) for k, v in options.items() if k not in SECTION_KEYS}
    names = _method_defaults(filled)
    if "source_library" in names and not filled.get("source_library"):
        filled["source_library"] = library
    if "source_run" in names and source_run and not filled.get("source_run"):
        filled["source_run"] = source_run
    return filled


def needs_library(options: dict[str, Any]) -> bool:
    """Whether a method section transfers from the source library (directly, through a multi-task source stage or
    through ``{target_stage1}``, which starts from the library's P_init)."""
    names = _method_defaults(options)
    return ("source_stage" in options or "source_library" in names
            or any(_mentions(options, p) for p in ("{library}", "{source_run}", TARGET_STAGE1)))


def _own_prompt_length(options: dict[str, Any], length: int) -> dict[str, Any]:
    """Give the shared prompt length to methods whose own default is a number (PT); the others take theirs from
    the library or their source run, which were built with the same length."""
    defaults = _method_defaults(options)
    if isinstance(defaults.get("prompt_length"), int) and "prompt_length" not in options:
        return {**options, "prompt_length": length}
    return options


# --- running ---------------------------------------------------------------------------------------------------
class Bench:
    """Runs the cells of one :class:`QualityConfig`, loading the backbone only when something must train."""

    def __init__(self, config: QualityConfig, backbone=None):
        self.config = config
        self._backbone = backbone
        self.log: list[dict[str, Any]] = []

    @property
    def backbone(self):
        if self._backbone is None:
            from mtpt.backbones import load_backbone

            self._backbone = load_backbone(self.config.backbone)
        return self._backbone

    def ensure_library(self) -> str:
        """Train missing source prompts (finished entries are skipped by ``train_sources``)."""
        cfg, lib = self.config, self.config.library
        path = library_path(cfg)
        if library_complete(path, lib):
            return str(path)
        with exclusive(lock_path_for(path)):  # another worker may be training it: wait, then reuse its work
            if not library_complete(path, lib):
                self._train_library(path)
        return str(path)

    def _train_library(self, path: Path) -> None:
        from mtpt.library.format import SourceLibrary
        from mtpt.library.source_stage import SourceStageConfig, train_sources

        cfg, lib = self.config, self.config.library
        stage = SourceStageConfig(
            backbone=cfg.backbone, sources=list(lib.sources), library=str(path), seeds=list(lib.seeds),
            prompt_length=cfg.prompt_length, mixture=lib.mixture,
            data=replace(cfg.data, kshot=None, max_train_examples=lib.max_train_examples),
            train=replace(cfg.train, steps=lib.steps, lr=lib.lr or cfg.train.lr, eval_every=_source_eval_every(cfg)),
            eval=replace(cfg.eval, final_splits=["validation"]),
        )
        train_sources(stage, self.backbone)
        SourceLibrary.open(path)  # fails loudly if the stage left no library

    def ensure_source_stage(self, label: str, options: dict[str, Any], library: str) -> str:
        """The multi-task source-stage run of a method section (trained once, on the library sources, and shared by
    every section with the same source-stage options)."""
        cfg = self.config
        method, run_dir = section_source_stage(cfg, options, library)
        run = RunConfig(backbone=cfg.backbone, tasks=list(cfg.library.sources), method=method,
                        data=replace(cfg.data, kshot=None, max_train_examples=cfg.library.max_train_examples),
                        train=replace(cfg.train, steps=cfg.library.steps, eval_every=_source_eval_every(cfg)),
                        eval=replace(cfg.eval, final_splits=["validation"]), output_dir=str(run_dir))
        from mtpt.runs import refuse_changed_run

        refuse_changed_run(run)
        if not (run_dir / "results.json").exists():
            with exclusive(lock_path_for(run_dir)):  # another worker may be training it: wait, then reuse it
                if not (run_dir / "results.json").exists():
                    self._run(run, count_params=False)
        return str(run_dir)

    def cell_config(self, method: dict[str, Any], target: str, seed: int, out: Path) -> RunConfig:
        cfg = self.config
        return RunConfig(
            backbone=cfg.backbone, tasks=[target], method=method,
            data=target_data(cfg, target, seed),
            train=replace(cfg.train, steps=cfg.steps, seed=seed, eval_every=min(cfg.train.eval_every, cfg.steps)),
            eval=replace(cfg.eval, final_splits=sorted(set(cfg.eval.final_splits) | {cfg.report_split})),
            output_dir=str(out),
        )

    def run(self, methods=None, targets=None, seeds=None) -> list[dict[str, Any]]:
        """Every selected cell: skipped when finished, else trained; returns one status row per cell."""
        cfg = self.config
        for label in methods or list(cfg.methods):
            options = cfg.methods[label]
            # zero-shot and PT from a vocabulary init need no source library: their cells run before it exists
            library = self.ensure_library() if needs_library(options) else ""
            source_run = self.ensure_source_stage(label, options, library) if "source_stage" in options else ""
            method = _own_prompt_length(fill_options(options, library, source_run), cfg.prompt_length)
            for target in section_targets(cfg, label, targets):
                for seed in seeds or cfg.seeds:
                    status = self._cell(label, method, target, seed)
                    self.log.append({"method": label, "target": target, "seed": seed, "status": status})
        return self.log

    def _cell(self, label: str, method: dict[str, Any], target: str, seed: int) -> str:
        """Run one cell unless it is finished (``skipped``) or another worker is running it (``busy``): several
        invocations of the same command share the cells between them."""
        out = cell_dir(self.config, label, target, seed)
        if (out / "results.json").exists():  # finished cells never change: no lock file for them
            self.check_unchanged(out, method, target, seed)
            return "skipped"
        with exclusive(lock_path_for(out), wait=False) as mine:
            if (out / "results.json").exists():  # another worker finished it since the check above
                self.check_unchanged(out, method, target, seed)
                return "skipped"
            if not mine:
                return "busy"
            return self._run(self.cell_config(self._cell_method(method, target, seed), target, seed, out))

    def check_unchanged(self, out: Path, method: dict[str, Any], target: str, seed: int) -> None:
        """Refuse to skip a finished cell whose recorded config differs from the one the config now gives."""
        from mtpt.runs import refuse_changed_run

        planned = _substitute(method, {TARGET_STAGE1: str(target_stage1_dir(self.config, target, seed))})
        refuse_changed_run(self.cell_config(planned, target, seed, out))

    def _cell_method(self, method: dict[str, Any], target: str, seed: int) -> dict[str, Any]:
        """The cell's method options, with ``{target_stage1}`` replaced by its (trained once) run folder."""
        if not _mentions(method, TARGET_STAGE1):
            return method
        return _substitute(method, {TARGET_STAGE1: self.ensure_target_stage1(target, seed)})

    def ensure_target_stage1(self, target: str, seed: int) -> str:
        """The short PT run on ``target`` (k-shot split and training seed ``seed``) from the library's P_init,
        trained unless it has finished: the same run SPoT's retrieval and DTVG's stage I would each train."""
        from mtpt.library.format import SourceLibrary
        from mtpt.library.target_run import ensure_target_run, target_run_config

        cfg = self.config
        folder = target_stage1_dir(cfg, target, seed)
        base = self.cell_config({"name": "pt"}, target, seed, folder)
        run = target_run_config(base, SourceLibrary.open(library_path(cfg)), cfg.target_stage1.steps,
                                cfg.target_stage1.lr or cfg.train.lr, base.output_dir)
        with exclusive(lock_path_for(folder)):  # SPoT's and DTVG's cells of other workers share this run
            return str(ensure_target_run(run, lambda: self.backbone))

    def _run(self, run: RunConfig, count_params: bool = True) -> str:
        """Train a run (or, for a method with nothing to train, only evaluate it) and record its parameters."""
        from mtpt.params import parameter_report
        from mtpt.runtime import build_run
        from mtpt.training.loop import Trainer

        parts = build_run(run, self.backbone)
        try:
            if count_params:
                Path(run.output_dir).mkdir(parents=True, exist_ok=True)
                (Path(run.output_dir) / "params.json").write_text(json.dumps(parameter_report(parts), indent=1))
            if any(p.requires_grad for p in parts.model.method.parameters()):
                Trainer(parts).fit()
                return "trained"
            _evaluate_only(parts)
            return "evaluated"
        finally:
            parts.model.detach_method()


def _source_eval_every(config: QualityConfig) -> int:
    lib = config.library
    return min(lib.eval_every or config.train.eval_every, lib.steps)


def library_complete(path: Path, lib: LibrarySection) -> bool:
    from mtpt.library.format import MIXTURE, SourceLibrary

    if not (path / "manifest.json").exists():
        return False
    library = SourceLibrary.open(path)
    tasks = list(lib.sources) + ([MIXTURE] if lib.mixture else [])
    return all(library.has(task, seed) for task in tasks for seed in lib.seeds)


def _evaluate_only(parts) -> None:
    """A method without parameters (zero-shot): evaluate the final splits and write the trainer's results.json."""
    from mtpt.precision import make_accelerator
    from mtpt.training.checkpoint import run_environment
    from mtpt.training.evaluate import evaluate_sets, load_eval_sets

    acc = make_accelerator(parts.config.train.precision)
    final = {split: evaluate_sets(parts.model, parts, load_eval_sets(parts, split), acc)
             for split in parts.config.eval.final_splits}
    out = Path(parts.config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"best_step": 0, "best_metric": None, "final": final, "environment": run_environment(acc.num_processes)}
    (out / "results.json").write_text(json.dumps(summary, indent=1))


def cmd_quality(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from mtpt.config import config_parser

        print(__doc__)
        print("Selectors: --methods LABEL ..., --targets TASK ..., --seeds N ... (a subset of the config's cells).")
        print("--status: list the selected cells as done / partial / to do, and run nothing.")
        print("--tables: rewrite results.{csv,json,md,png} from the finished cells, and run nothing.")
        config_parser(QualityConfig, "mtpt bench quality").print_help()
        return 0
    from mtpt.bench.quality_report import collect, status_table, write_results

    config, picked = parse_quality_args(argv)
    if picked.status:
        print(status_table(config, picked.methods, picked.targets, picked.seeds))
        return 0
    if not picked.tables:
        bench = Bench(config)
        for row in bench.run(picked.methods, picked.targets, picked.seeds):
            print(f"  {row['method']:<20} {row['target']:<20} seed {row['seed']:<5} {row['status']}")
    # The table covers every finished cell of the config (and of the selection), so that running a subset
    # does not drop earlier results from it.
    rows = collect(config, None, _union(config.targets, picked.targets), _union(config.seeds, picked.seeds))
    paths = write_results(config, rows)
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _union(base: list, extra: list | None) -> list:
    return list(dict.fromkeys(list(base) + list(extra or [])))
