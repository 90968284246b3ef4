"""The configuration of ``mtpt bench quality`` and where its runs live: the config dataclasses, the command-line
parsing, the folder of every cell and shared stage, and the filling of a method section's placeholders.

:mod:`mtpt.bench.quality` runs the cells, :mod:`mtpt.bench.quality_report` tables them; both read this module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mtpt.config import DataConfig, EvalConfig, TrainConfig, parse_config
from mtpt.errors import MtptError

CELLS = "cells"
TARGET_STAGE1 = "{target_stage1}"
SECTION_KEYS = ("source_stage", "targets", "seeds")
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
    max_eval_examples: int | None = None
    """Cap on each source's validation set in the source runs (library and multi-task stages; a seeded sample);
    null = data.max_eval_examples."""
    mixture: bool = True
    """Also tune the mixture-of-sources prompt (generic SPoT, TA-LoRA's theta0 from library_mixture)."""
    eval_every: int | None = None
    """Validation interval of the source runs (library and source stages); null = train.eval_every."""
    patience: int | None = None
    """Stop a source run after this many validations without improvement (library and source stages; steps is
    then the cap); null trains every step."""
    learned_margin: float = 2.0
    """A library entry has `learned` when its validation score beats the best constant answer by this much."""
    drop_unlearned: bool = False
    """Sources whose entry did not learn (`learned: false`) are left out of the mixture prompt and of the multi-task
    source stages (give the library-reading methods `skip_unlearned: true` for the rest of the transfer rows)."""
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
class LrGridSection:
    """The learning-rate search run before any cell: per method section, one run per multiplier on one development
    target and seed, every learning rate of the method (``train.lr`` and each rate option its registry entry
    declares) multiplied at once, scored by the run's best validation score; the winner is used in every cell of
    that section. No multipliers: no search (every section runs at the rates it gives)."""

    target: str = ""
    """The development target (its validation set decides; its test set is never scored by the search)."""
    seed: int = 0
    """Its k-shot split and training seed (best one no cell uses, so the choice is not fitted to a cell's data)."""
    multipliers: list[float] = field(default_factory=list)
    """The factors tried, e.g. [0.3, 1, 3]; a tie goes to the factor closest to 1."""
    same_as: dict[str, str] = field(default_factory=dict)
    """Sections that take another section's chosen factor instead of a search of their own, e.g. an ablation
    ({dtvg_all_sources: dtvg}) or a row with its own targets ({pt_unseen_data: pt})."""


@dataclass
class ComparisonSection:
    """Paired comparisons over (target, seed) cells (:mod:`mtpt.bench.paired`), printed under the tables."""

    versus_baseline: bool = False
    """Compare every row of the main table with ``baseline``."""
    pairs: list[list[str]] = field(default_factory=list)
    """More [row, baseline] pairs, e.g. [[dtvg, spot], [ta_lora, mpt]]."""
    controls: list[str] = field(default_factory=list)
    """Targets unrelated to the sources (where negative transfer would show): compared apart from the others."""
    bootstrap_resamples: int = 10000
    """Resamples of the bootstrap interval of the mean difference."""
    bootstrap_seed: int = 0
    """Seed of the bootstrap's resampling (numpy's default_rng)."""


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
    lr_grid: LrGridSection = field(default_factory=LrGridSection)
    gates: bool = False
    """Check, before the tables, that transfer could show: each source's gate (validation score against its best
    constant answer), the zero-training matrix (each source prompt on each target's validation set, untrained, next
    to the bare backbone; cached under <out>/gates/) and the sources' overlap with the targets' test sets."""
    exclude_source_overlap: bool = False
    """Every run (cells, search, target stage I) removes the test inputs found in the library sources' training
    data (data.exclude_overlap_with), so that rows with and without sources are scored on the same examples."""
    comparisons: ComparisonSection = field(default_factory=ComparisonSection)
    reuse: str = ""
    """A benchmark folder (the recorded one, say) whose finished shared runs this benchmark reads instead of
    training its own: the source library (unless library.path names one), the multi-task source stages, the
    learning-rate search runs, the target stage-I runs and the gates' cached scores. What has not finished there is
    trained under ``out`` as without it; nothing is written into it. Regenerating recorded cells in a fresh folder:
    ``--out NEW_FOLDER --reuse RECORDED_FOLDER --phase cells --methods ... --seeds ...``."""
    data: DataConfig = field(default_factory=lambda: DataConfig(max_eval_examples=500))
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --- command line --------------------------------------------------------------------------------------------------
def parse_quality_args(argv: list[str]) -> tuple[QualityConfig, argparse.Namespace]:
    """``CONFIG [--methods ...] [--targets ...] [--seeds ...] [--field value ...]``: the three selectors pick
    a subset of the config's cells; every other flag overrides a config field."""
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--methods", nargs="+", default=None)
    selector.add_argument("--targets", nargs="+", default=None)
    selector.add_argument("--seeds", nargs="+", type=int, default=None)
    selector.add_argument("--status", action="store_true")
    selector.add_argument("--tables", action="store_true")
    selector.add_argument("--phase", nargs="+", choices=("sources", "gates", "grid", "cells"), default=None)
    picked, rest = selector.parse_known_args(argv)
    config = parse_config(QualityConfig, rest, "mtpt bench quality", "bench")
    unknown = sorted(set(picked.methods or []) - set(config.methods))
    if unknown:
        raise MtptError(f"--methods {' '.join(unknown)}: not in the config's methods ({', '.join(config.methods)}).")
    check_reuse(config)
    return config, picked


SHARED_FOLDERS = ("library", "source-stages", "lr-grid", "target-stage1", "gates")
"""What ``reuse`` reads from another benchmark folder (see :func:`shared_dir`)."""


def check_reuse(config: QualityConfig) -> None:
    """Refuse a ``reuse`` that names no benchmark folder (a typo would otherwise retrain every shared run)."""
    if config.reuse and not any((Path(config.reuse) / name).is_dir() for name in SHARED_FOLDERS):
        raise MtptError(f"reuse: {config.reuse} holds none of {', '.join(s + '/' for s in SHARED_FOLDERS)}: name the "
                        "output folder of a benchmark run (its `out`, e.g. benchmarks/results/quality-en-v2), or "
                        "leave reuse empty.")


def library_path(config: QualityConfig) -> Path:
    if config.library.path:
        return Path(config.library.path)
    return shared_dir(config, "library", lambda folder: library_complete(folder, config.library))


def shared_dir(config: QualityConfig, relative: str | Path, finished: Callable[[Path], bool] | None = None) -> Path:
    """The folder of a run the cells share (library, source stage, search run, target stage I): ``<reuse>/<relative>``
    when ``reuse`` names a benchmark where it has ``finished`` (default: the run's ``results.json`` exists), else
    ``<out>/<relative>``, where it is trained when missing."""
    if config.reuse:
        from mtpt.run_folder import is_finished

        reused = Path(config.reuse) / relative
        if (finished or is_finished)(reused):
            return reused
    return Path(config.out) / relative


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


def section_seeds(config: QualityConfig, label: str, selected: list[int] | None = None) -> list[int]:
    """The seeds of a method section: its own ``seeds`` (a row run on one seed for budget) or the config's; a
    ``--seeds`` selection filters a section's own list and replaces the config's."""
    own = config.methods[label].get("seeds")
    if own is None:
        return list(selected or config.seeds)
    if not isinstance(own, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in own):
        raise MtptError(f"methods.{label}.seeds: expected a list of integer seeds, got {own!r}.")
    return [s for s in own if selected is None or s in selected]


def target_data(config: QualityConfig, target: str, seed: int) -> DataConfig:
    """The data section of a target's cells: the shared one, k-shot split ``seed``, then the target's overrides
    (and, under ``exclude_source_overlap``, the library sources as leakage sources)."""
    overrides = config.target_data.get(target, {})
    known = {f.name for f in fields(DataConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise MtptError(f"target_data.{target}: unknown data field(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(sorted(known))}.")
    data = replace(config.data, **{"kshot": config.kshot, "kshot_seed": seed, **overrides})
    if config.exclude_source_overlap:
        data = replace(data, exclude_overlap_with=list(dict.fromkeys([*data.exclude_overlap_with,
                                                                       *config.library.sources])))
    return data


def source_stage_dir(config: QualityConfig, method: dict[str, Any]) -> Path:
    """``source-stages/<method>-<hash of its options>``: sections with the same source stage share one run (e.g.
    TA-LoRA's unseen-task and unseen-data rows)."""
    digest = hashlib.sha256(json.dumps(method, sort_keys=True).encode()).hexdigest()[:8]
    return shared_dir(config, Path("source-stages") / f"{method['name']}-{digest}")


def section_source_stage(config: QualityConfig, options: dict[str, Any], library: str) -> tuple[dict[str, Any], Path]:
    """The filled method options of a section's ``source_stage`` and the folder its run lives in."""
    method = own_prompt_length(fill_options(options["source_stage"], library), config.prompt_length)
    return method, source_stage_dir(config, method)


def target_stage1_dir(config: QualityConfig, target: str, seed: int) -> Path:
    """``target-stage1/<target>/seed-<s>-steps<n>-lr<lr>``: steps and lr in the name, so that changing them in the
    config trains a new run instead of reusing a stale one."""
    stage = config.target_stage1
    return shared_dir(config, Path("target-stage1") / target
                      / f"seed-{seed}-steps{stage.steps}-lr{stage.lr or config.train.lr:g}")


def substitute(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every placeholder of ``mapping`` replaced in its strings (nested lists and dicts too)."""
    if isinstance(value, str):
        for placeholder, replacement in mapping.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, list):
        return [substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, mapping) for k, v in value.items()}
    return value


def mentions(value: Any, placeholder: str) -> bool:
    if isinstance(value, str):
        return placeholder in value
    if isinstance(value, list):
        return any(mentions(v, placeholder) for v in value)
    if isinstance(value, dict):
        return any(mentions(v, placeholder) for v in value.values())
    return False


def method_roles(options: dict[str, Any]):
    """The option roles of the method a section names (:class:`mtpt.registry.OptionRoles`)."""
    from mtpt.registry import get_method

    return get_method(str(options["name"])).roles


def fill_options(options: dict[str, Any], library: str, source_run: str = "") -> dict[str, Any]:
    """Replace ``{library}``/``{source_run}`` placeholders and fill the method's empty library and source-run
    options (its :class:`~mtpt.registry.OptionRoles`); ``{target_stage1}`` is left for :meth:`Bench.run` to fill
    per cell."""
    mapping = {"{library}": library, "{source_run}": source_run}
    filled = {k: substitute(v, mapping) for k, v in options.items() if k not in SECTION_KEYS}
    roles = method_roles(filled)
    if roles.library and not filled.get(roles.library):
        filled[roles.library] = library
    if roles.source_run and source_run and not filled.get(roles.source_run):
        filled[roles.source_run] = source_run
    return filled


def needs_library(options: dict[str, Any]) -> bool:
    """Whether a method section transfers from the source library (directly, through a multi-task source stage or
    through ``{target_stage1}``, which starts from the library's P_init)."""
    return ("source_stage" in options or method_roles(options).library is not None
            or any(mentions(options, p) for p in ("{library}", "{source_run}", TARGET_STAGE1)))


def own_prompt_length(options: dict[str, Any], length: int) -> dict[str, Any]:
    """Give the shared prompt length to methods with a prompt-length option of their own (PT); the others take
    theirs from the library or their source run, which were built with the same length."""
    option = method_roles(options).prompt_length
    if option and option not in options:
        return {**options, option: length}
    return options


def source_data(config: QualityConfig) -> DataConfig:
    """The data section of the source runs (library, multi-task source stages): full data, the library's caps."""
    lib = config.library
    return replace(config.data, kshot=None, max_train_examples=lib.max_train_examples,
                   max_eval_examples=lib.max_eval_examples or config.data.max_eval_examples)


def source_eval_every(config: QualityConfig) -> int:
    lib = config.library
    return min(lib.eval_every or config.train.eval_every, lib.steps)


def entry_name(source: str) -> str:
    """The library entry name of a source: its task name (a YAML task spec is named by its ``name``)."""
    from mtpt.tasks import get_task

    try:
        return get_task(source).name
    except KeyError as err:
        raise MtptError(f"library.sources: {err.args[0] if err.args else source}") from None


def library_complete(path: Path, lib: LibrarySection) -> bool:
    from mtpt.library.format import MIXTURE, SourceLibrary

    if not (path / "manifest.json").exists():
        return False
    library = SourceLibrary.open(path)
    tasks = [entry_name(s) for s in lib.sources] + ([MIXTURE] if lib.mixture else [])
    return all(library.has(task, seed) for task in tasks for seed in lib.seeds)
