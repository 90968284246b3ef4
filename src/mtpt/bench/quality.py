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
the others; the result tables are rewritten by one worker at a time (``.results.lock``). Every method shares
steps, prompt length (where the method has one of its own), data, k-shot split and evaluation caps. A run
folder (cell, source stage, target stage I, library) holds a ``.gitignore`` of ``*`` until its run finishes, so
``git add <out>`` while workers run (or after one was interrupted) commits finished runs only.

Method sections may use ``{library}``, ``{source_run}`` and ``{target_stage1}`` in string options;
``source_library`` is filled in when left empty. ``{target_stage1}`` is the cell's short PT run on the target from
the library's ``P_init`` (:mod:`mtpt.library.target_run`), trained once per target and seed under
``<out>/target-stage1/`` and shared by every section that names it (SPoT's retrieval prompt, DTVG's stage I).
A section's ``source_stage`` (method options) is trained once into ``source-stages/`` and becomes its
``source_run``. A section's ``targets`` replaces the config's target list for that row (TA-LoRA's unseen-data
protocol runs on source tasks). The config and the folder layout are :mod:`mtpt.bench.quality_config`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtpt.bench.quality_config import (TARGET_STAGE1, QualityConfig, cell_dir, fill_options, library_complete,
                                       library_path, mentions, needs_library, own_prompt_length, parse_quality_args,
                                       section_source_stage, section_targets, source_eval_every, substitute,
                                       target_data, target_stage1_dir)
from mtpt.bench.quality_report import collect, status_table, write_results
from mtpt.config import RunConfig
from mtpt.locking import exclusive, lock_path_for


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
                with hidden_from_git_until_done(path):
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
            train=replace(cfg.train, steps=lib.steps, lr=lib.lr or cfg.train.lr, eval_every=source_eval_every(cfg),
                          early_stopping_patience=lib.patience),
            eval=replace(cfg.eval, final_splits=["validation"]), learned_margin=lib.learned_margin,
        )
        train_sources(stage, self.backbone)
        SourceLibrary.open(path)  # fails loudly if the stage left no library

    def ensure_source_stage(self, label: str, options: dict[str, Any], library: str) -> str:
        """The multi-task source-stage run of a method section (trained once, on the library sources, and shared by
    every section with the same source-stage options)."""
        from mtpt.runner import ensure_run

        cfg = self.config
        method, run_dir = section_source_stage(cfg, options, library)
        run = RunConfig(backbone=cfg.backbone, tasks=list(cfg.library.sources), method=method,
                        data=replace(cfg.data, kshot=None, max_train_examples=cfg.library.max_train_examples),
                        train=replace(cfg.train, steps=cfg.library.steps, eval_every=source_eval_every(cfg),
                                      early_stopping_patience=cfg.library.patience),
                        eval=replace(cfg.eval, final_splits=["validation"]), output_dir=str(run_dir))
        # another worker may be training it: the runner waits for it, then reuses its work
        return str(ensure_run(run, lambda: self.backbone, hidden_from_git_until_done).folder)

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
            method = own_prompt_length(fill_options(options, library, source_run), cfg.prompt_length)
            for target in section_targets(cfg, label, targets):
                for seed in seeds or cfg.seeds:
                    status = self._cell(label, method, target, seed)
                    self.log.append({"method": label, "target": target, "seed": seed, "status": status})
        return self.log

    def _cell(self, label: str, method: dict[str, Any], target: str, seed: int) -> str:
        """Run one cell unless it is finished (``skipped``) or another worker is running it (``busy``): several
        invocations of the same command share the cells between them."""
        out = cell_dir(self.config, label, target, seed)
        if self._finished(out, method, target, seed):  # finished cells never change: no lock file for them
            return "skipped"
        with exclusive(lock_path_for(out), wait=False) as mine:
            if self._finished(out, method, target, seed):  # another worker finished it since the check above
                return "skipped"
            if not mine:
                return "busy"
            return self._run(self.cell_config(self._cell_method(method, target, seed), target, seed, out))

    def _finished(self, out: Path, method: dict[str, Any], target: str, seed: int) -> bool:
        """Whether the cell has its results (checked against the config it was run with)."""
        if not (out / "results.json").exists():
            return False
        self.check_unchanged(out, method, target, seed)
        return True

    def check_unchanged(self, out: Path, method: dict[str, Any], target: str, seed: int) -> None:
        """Refuse to skip a finished cell whose recorded config differs from the one the config now gives."""
        from mtpt.run_folder import refuse_changed_run

        planned = substitute(method, {TARGET_STAGE1: str(target_stage1_dir(self.config, target, seed))})
        refuse_changed_run(self.cell_config(planned, target, seed, out))

    def _cell_method(self, method: dict[str, Any], target: str, seed: int) -> dict[str, Any]:
        """The cell's method options, with ``{target_stage1}`` replaced by its (trained once) run folder."""
        if not mentions(method, TARGET_STAGE1):
            return method
        return substitute(method, {TARGET_STAGE1: self.ensure_target_stage1(target, seed)})

    def ensure_target_stage1(self, target: str, seed: int) -> str:
        """The short PT run on ``target`` (k-shot split and training seed ``seed``) from the library's P_init,
        trained unless it has finished: the same run SPoT's retrieval and DTVG's stage I would each train."""
        from mtpt.library.format import SourceLibrary
        from mtpt.library.target_run import target_run_config
        from mtpt.runner import ensure_run

        cfg = self.config
        folder = target_stage1_dir(cfg, target, seed)
        base = self.cell_config({"name": "pt"}, target, seed, folder)
        run = target_run_config(base, SourceLibrary.open(library_path(cfg)), cfg.target_stage1.steps,
                                cfg.target_stage1.lr or cfg.train.lr, base.output_dir)
        # shared by other workers' cells: the runner trains it once and the others wait for it
        return str(ensure_run(run, lambda: self.backbone, hidden_from_git_until_done).folder)

    def _run(self, run: RunConfig) -> str:
        """Train a cell's run (or, for a method with nothing to train, only evaluate it) and record its
        parameter counts."""
        from mtpt.params import parameter_report
        from mtpt.runner import train

        out = Path(run.output_dir)
        trains: list[bool] = []

        def record_parameters(parts) -> None:
            (out / "params.json").write_text(json.dumps(parameter_report(parts), indent=1))
            trains.append(any(p.requires_grad for p in parts.model.method.parameters()))

        with hidden_from_git_until_done(out):
            train(run, self.backbone, on_built=record_parameters)
        return "trained" if trains[0] else "evaluated"


@contextmanager
def hidden_from_git_until_done(folder: Path) -> Iterator[None]:
    """Keep ``folder`` out of git (a ``.gitignore`` of ``*`` in it) until the block finishes without an error, so
    ``git add <results folder>`` while workers run, or after one was interrupted, commits finished runs only, never
    checkpoints or half-written logs."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".gitignore"
    marker.write_text("# written by mtpt bench quality: this run has not finished (removed when it does)\n*\n")
    yield
    marker.unlink()


def cmd_quality(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from mtpt.config import config_parser

        print(__doc__)
        print("Selectors: --methods LABEL ..., --targets TASK ..., --seeds N ... (a subset of the config's cells).")
        print("--status: list the selected cells as done / partial / to do, and run nothing.")
        print("--tables: rewrite results.{csv,json,md,png} from the finished cells, and run nothing.")
        config_parser(QualityConfig, "mtpt bench quality").print_help()
        return 0
    config, picked = parse_quality_args(argv)
    if picked.status:
        print(status_table(config, picked.methods, picked.targets, picked.seeds))
        return 0
    if not picked.tables:
        bench = Bench(config)
        for row in bench.run(picked.methods, picked.targets, picked.seeds):
            print(f"  {row['method']:<20} {row['target']:<20} seed {row['seed']:<5} {row['status']}")
    # The table covers every finished cell of the config (and of the selection), so that running a subset
    # does not drop earlier results from it. One worker at a time collects and writes, so the four table files
    # always come from the same set of finished cells.
    with exclusive(lock_path_for(Path(config.out) / "results")):
        rows = collect(config, None, _union(config.targets, picked.targets), _union(config.seeds, picked.seeds))
        paths = write_results(config, rows)
        table = paths["md"].read_text()  # inside the lock: this worker's table, not one written just after
    print(table)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _union(base: list, extra: list | None) -> list:
    return list(dict.fromkeys(list(base) + list(extra or [])))
