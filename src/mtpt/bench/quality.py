"""``mtpt bench quality CONFIG``: every method on every target task and seed, under one shared protocol.

Layout of the output folder::

    <out>/library/                              the source library (one prompt per source, run once, reused)
    <out>/source-stages/<method>-<hash>/        a multi-task source-stage run a method's target stage needs
                                                (MPT, TA-LoRA), run once on the library sources, reused
    <out>/gates/                                the gates' files (``gates: true``; :mod:`.quality_gates`)
    <out>/lr-grid/<method>/x<m>/                the learning-rate search runs (``lr_grid``; :mod:`.quality_grid`)
    <out>/cells/<method>/<target>/seed-<s>/     one ordinary training run folder per cell
    <out>/results.{csv,json,md,png}             the table: per task x method, mean ± std over seeds

With ``reuse: FOLDER`` (``--reuse``) a shared run (library, source stage, search run, target stage-I run, cached gate
score) that has finished under FOLDER is read there instead (:func:`~.quality_config.shared_dir`) and FOLDER is never
written: ``--out NEW --reuse RECORDED --phase cells`` regenerates recorded cells in a fresh folder.

Phases, in order (``--phase`` runs a subset): ``sources`` (the library and the selected sections' source stages),
``gates``, ``grid`` (the search: a section's cells need its finished search and use its chosen learning-rate
multiplier), ``cells``. A cell whose ``results.json`` exists is finished and skipped, so an interrupted benchmark
is resumed by running the same command again (an unfinished cell resumes from its last checkpoint through the
trainer). Several workers running the same command share the work: each claims a cell, a library source, a source
stage, a search run or a gate prompt with a lock file beside its folder (``.seed-<s>.lock``) and leaves one
another worker holds (a cell: status ``busy``; the shared work of a phase: waited for at the phase's end, except
that a worker with later phases to run leaves the ``sources`` phase at once and runs first the sections that do not
need what another worker is training, :meth:`Bench.free_first`, and runs the gates of a library another worker is
still training just before its first section that needs the library); the result tables are rewritten by one worker at a time (``.results.lock``). Every method shares steps, prompt length
(where the method has one of its own), data, k-shot split and evaluation caps. A run folder (cell, source stage,
search run, target stage I, library) holds a ``.gitignore`` of ``*`` until its run finishes, so ``git add <out>``
while workers run (or after one was interrupted) commits finished runs only.

Method sections may use ``{library}``, ``{source_run}`` and ``{target_stage1}`` in string options;
``source_library`` is filled in when left empty. ``{target_stage1}`` is the cell's short PT run on the target from
the library's ``P_init`` (:mod:`mtpt.library.target_run`), trained once per target and seed under
``<out>/target-stage1/`` and shared by every section that names it (SPoT's retrieval prompt, DTVG's stage I).
A section's ``source_stage`` (method options) is trained once into ``source-stages/`` and becomes its
``source_run``. A section's ``targets`` replaces the config's target list for that row (TA-LoRA's unseen-data
protocol runs on source tasks), its ``seeds`` the config's seeds (a row run on one seed). The config and the folder
layout are :mod:`mtpt.bench.quality_config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ContextManager

from mtpt.atomic import atomic_write_text
from mtpt.bench.quality_config import (TARGET_STAGE1, QualityConfig, cell_dir, entry_name, fill_options,
                                       library_complete, library_path, mentions, needs_library, own_prompt_length,
                                       parse_quality_args, section_seeds, section_source_stage, section_targets,
                                       source_data, source_eval_every, substitute, target_data, target_stage1_dir)
from mtpt.bench.quality_grid import (grid_choice, grid_run_dir, scale_learning_rates, searched_labels,
                                     write_grid_summary)
from mtpt.bench.quality_report import collect, write_results
from mtpt.bench.quality_status import status_table
from mtpt.bench.sharing import Job, share_work
from mtpt.config import RunConfig
from mtpt.errors import MtptError
from mtpt.locking import exclusive, held_elsewhere, lock_path_for

PHASES = ("sources", "gates", "grid", "cells")
"""The benchmark's phases, in the order a run without ``--phase`` goes through them."""

class Bench:
    """Runs the phases of one :class:`QualityConfig`, loading the backbone only when something must train."""

    def __init__(self, config: QualityConfig, backbone=None):
        self.config = config
        self._backbone = backbone
        self.log: list[dict[str, Any]] = []
        self._gates_due = False  # set by run() when its phases include the gates and they have not run yet

    @property
    def backbone(self):
        if self._backbone is None:
            from mtpt.backbones import load_backbone

            self._backbone = load_backbone(self.config.backbone)
        return self._backbone

    # --- phase 1: the source library and the multi-task source stages --------------------------------------------
    def ensure_library(self) -> str:
        """Train the missing source prompts: each (source, seed) is claimed by one worker, so several workers train
        different sources side by side; the mixture prompt (if any) follows once every source is there."""
        from mtpt.library.format import SourceLibrary

        path = library_path(self.config)
        if not library_complete(path, self.config.library):
            with self._library_hidden_until_complete():
                self._note("library", share_work([job for jobs in self.library_jobs() for job in jobs]))
        SourceLibrary.open(path)  # fails loudly if the stage left no library
        return str(path)

    @contextmanager
    def _library_hidden_until_complete(self) -> Iterator[None]:
        """The library folder, created (by one worker: the others wait, then open it) and hidden from git until
        every entry is there."""
        from mtpt.library import source_stage

        path = library_path(self.config)
        with hidden_from_git_until(path, lambda: library_complete(path, self.config.library)):
            with exclusive(lock_path_for(path)):
                if not (path / "manifest.json").exists():
                    source_stage.open_or_create_library(self._library_stage(path), self.backbone)
            yield

    def library_jobs(self) -> tuple[list[Job], list[Job]]:
        """One job per library entry: the single sources, and the mixture (ready once every single source is
        there, since it trains on those that learned)."""
        from mtpt.library import source_stage
        from mtpt.library.format import MIXTURE, SourceLibrary, entry_folder

        lib, path = self.config.library, library_path(self.config)
        stage = self._library_stage(path)

        def has(task: str, seed: int) -> bool:
            return (path / "manifest.json").exists() and SourceLibrary.open(path).has(task, seed)

        def job(task: str, seed: int, sources: Callable[[], list[str]], mixture: bool, ready=lambda: True) -> Job:
            # train_sources skips the entries that exist: with one source (or the mixture) asked, it trains that one
            work = lambda: source_stage.train_sources(replace(stage, sources=sources(), seeds=[seed],  # noqa: E731
                                                              mixture=mixture), self.backbone)
            return Job(path / "_runs" / entry_folder(task, seed), work, lambda: has(task, seed), ready)

        singles = [job(entry_name(source), seed, lambda t=source: [t], False)
                   for seed in lib.seeds for source in lib.sources]
        every_single = lambda: all(j.done() for j in singles)  # noqa: E731
        mixtures = [job(MIXTURE, seed, self.stage_sources, True, every_single) for seed in lib.seeds] if lib.mixture \
            else []
        return singles, mixtures

    def _library_stage(self, path: Path):
        from mtpt.library.source_stage import SourceStageConfig

        cfg, lib = self.config, self.config.library
        return SourceStageConfig(
            backbone=cfg.backbone, sources=list(lib.sources), library=str(path), seeds=list(lib.seeds),
            prompt_length=cfg.prompt_length, mixture=lib.mixture,
            data=source_data(cfg),
            train=replace(cfg.train, steps=lib.steps, lr=lib.lr or cfg.train.lr, eval_every=source_eval_every(cfg),
                          early_stopping_patience=lib.patience),
            eval=replace(cfg.eval, final_splits=["validation"], score_last=False), learned_margin=lib.learned_margin,
        )

    def stage_sources(self) -> list[str]:
        """The sources the mixture prompt and the multi-task source stages train on: every library source, or under
        ``library.drop_unlearned`` those whose entry learned (read once every single-source entry exists)."""
        from mtpt.library.format import SourceLibrary

        lib = self.config.library
        if not lib.drop_unlearned:
            return list(lib.sources)
        library = SourceLibrary.open(library_path(self.config))
        learned = [t for t in lib.sources
                   if all(library.entry(entry_name(t), s).learned is not False for s in lib.seeds)]
        if not learned:
            raise MtptError(f"No source of {library.root} learned its task (`mtpt library {library.root}` shows each "
                            "gate): there is nothing to transfer. Retrain the sources (more steps, another lr) or "
                            "set library.drop_unlearned: false.")
        return learned

    def left_out(self, label: str, target: str) -> bool:
        """Whether a cell of a section with its own targets that continues a multi-task source stage is on a source
        task the stage left out (``library.drop_unlearned``: TA-LoRA's unseen-data protocol on a source that did
        not learn)."""
        cfg, options = self.config, self.config.methods[label]
        return ("source_stage" in options and options.get("targets") is not None and cfg.library.drop_unlearned
                and target in cfg.library.sources and target not in self.stage_sources())

    def source_stage_run(self, options: dict[str, Any], library: str) -> RunConfig:
        """The multi-task source-stage run of a method section (shared by every section with the same options)."""
        cfg = self.config
        method, run_dir = section_source_stage(cfg, options, library)
        return RunConfig(backbone=cfg.backbone, tasks=self.stage_sources(), method=method,
                         data=source_data(cfg),
                         train=replace(cfg.train, steps=cfg.library.steps, eval_every=source_eval_every(cfg),
                                       early_stopping_patience=cfg.library.patience),
                         eval=replace(cfg.eval, final_splits=["validation"], score_last=False),
                         output_dir=str(run_dir))

    def ensure_source_stage(self, label: str, options: dict[str, Any], library: str) -> str:
        """The multi-task source-stage run of a method section (trained once, on the library sources, and shared by
        every section with the same source-stage options)."""
        from mtpt.runner import ensure_run

        run = self.source_stage_run(options, library)
        # another worker may be training it: the runner waits for it, then reuses its work
        return str(ensure_run(run, lambda: self.backbone, hidden_from_git_until_done).folder)

    def prepare_sources(self, labels: list[str], wait: bool = True) -> None:
        """Phase ``sources``: the library (when a selected section needs it) and the selected sections' multi-task
        source stages, shared out between workers. A stage is ready once every single-source prompt is there (MPT
        distils from them), or, when its options name ``{library}`` itself (TA-LoRA's theta0 from the mixture),
        once the whole library is: so one worker can train a stage while another trains the mixture. With
        ``wait=False`` the phase ends when what is left is held by other workers (the later phases then run the
        sections that do not need it first, :meth:`free_first`)."""
        from mtpt.run_folder import is_finished

        if not any(needs_library(self.config.methods[label]) for label in labels):
            return
        path = library_path(self.config)
        singles, mixtures = self.library_jobs()
        stages: dict[str, Job] = {}
        for label in labels:
            options = self.config.methods[label]
            if "source_stage" not in options:
                continue
            if mentions(options["source_stage"], "{library}"):
                ready = lambda: library_complete(path, self.config.library)  # noqa: E731
            else:
                ready = lambda: all(j.done() for j in singles)  # noqa: E731
            # the run config is made when the job runs: its tasks are the sources that learned
            run = lambda o=options: self.source_stage_run(o, str(path))  # noqa: E731
            folder = section_source_stage(self.config, options, str(path))[1]
            stages.setdefault(str(folder), Job(folder, lambda r=run: self._train_run(r()),
                                               lambda f=folder: is_finished(f), ready))
        jobs = singles + mixtures + list(stages.values())
        if all(job.done() for job in jobs):  # a finished benchmark: nothing is touched
            return
        with self._library_hidden_until_complete():
            self._note("sources", share_work(jobs, wait=wait))

    # --- phase 2: the gates ---------------------------------------------------------------------------------------
    def gates(self) -> None:
        """Phase ``gates``: the overlap report and the zero-training matrix (cached; see :mod:`.quality_gates`)."""
        from mtpt.bench.quality_gates import gate_jobs, write_overlap

        if not self.config.gates:
            return
        self.ensure_library()
        write_overlap(self.config)
        self._note("gates", share_work(gate_jobs(self.config, lambda: self.backbone)))

    # --- phase 3: the learning-rate search ------------------------------------------------------------------------
    def section_method(self, label: str) -> dict[str, Any]:
        """A section's method options with its library and source run filled in (trained first if missing)."""
        cfg = self.config
        options = cfg.methods[label]
        # zero-shot and PT from a vocabulary init need no source library: their cells run before it exists
        library = self.ensure_library() if needs_library(options) else ""
        if library:  # gates deferred while another worker trained the library run before the sections that use it
            self.run_due_gates()
        source_run = self.ensure_source_stage(label, options, library) if "source_stage" in options else ""
        return own_prompt_length(fill_options(options, library, source_run), cfg.prompt_length)

    def grid(self, labels: list[str]) -> None:
        """Phase ``grid``: the search runs of the selected sections (those with a search of their own), shared out
        between workers; then ``<out>/lr-grid/lr-grid.json``."""
        from mtpt.run_folder import is_finished

        jobs = []
        for label in self.free_first(searched_labels(self.config, labels)):
            method = self.section_method(label)
            for m in self.config.lr_grid.multipliers:
                folder = grid_run_dir(self.config, label, m)
                jobs.append(Job(folder, lambda lb=label, mt=method, x=m: self._train_run(self.grid_run(lb, mt, x)),
                                lambda f=folder: is_finished(f)))
        if jobs:
            self._note("lr-grid", share_work(jobs))
            write_grid_summary(self.config)

    def grid_run(self, label: str, method: dict[str, Any], multiplier: float) -> RunConfig:
        """The search run of ``label`` at ``multiplier``: its cell on the development target and seed, every
        learning rate multiplied, validated only."""
        grid = self.config.lr_grid
        scaled = self._cell_method(scale_learning_rates(method, multiplier), grid.target, grid.seed)
        run = self.cell_config(scaled, grid.target, grid.seed, grid_run_dir(self.config, label, multiplier),
                               multiplier)
        return replace(run, eval=replace(run.eval, final_splits=["validation"], score_last=False))

    def multiplier(self, label: str) -> float:
        """The section's chosen learning-rate multiplier (1 without a search), searching first if unfinished."""
        choice = grid_choice(self.config, label)
        if choice.chosen is None:
            self.grid([choice.source])
            choice = grid_choice(self.config, label)
        return choice.chosen

    # --- phase 4: the cells ---------------------------------------------------------------------------------------
    def cell_config(self, method: dict[str, Any], target: str, seed: int, out: Path,
                    multiplier: float = 1.0) -> RunConfig:
        cfg = self.config
        lr = cfg.train.lr if multiplier == 1 else cfg.train.lr * multiplier
        return RunConfig(
            backbone=cfg.backbone, tasks=[target], method=method,
            data=target_data(cfg, target, seed),
            train=replace(cfg.train, steps=cfg.steps, seed=seed, eval_every=min(cfg.train.eval_every, cfg.steps),
                          lr=lr),
            eval=replace(cfg.eval, final_splits=sorted(set(cfg.eval.final_splits) | {cfg.report_split})),
            output_dir=str(out),
        )

    def run(self, methods=None, targets=None, seeds=None, phases=PHASES) -> list[dict[str, Any]]:
        """The selected phases for the selected sections; every cell skipped when finished, else trained. Returns
        one status row per cell (and per shared stage, with ``kind``)."""
        cfg = self.config
        labels = list(methods or cfg.methods)
        if "sources" in phases:
            # with later phases to run, a worker does not wait here for a stage another worker trains: it runs
            # the work that does not need that stage first
            self.prepare_sources(labels, wait=not {"grid", "cells"} & set(phases))
        # without an explicit --phase, the gates wait for a selection that needs the library
        self._gates_due = "gates" in phases and (tuple(phases) != PHASES or
                                                  any(needs_library(cfg.methods[lb]) for lb in labels))
        # with later phases to run, a worker does not wait for the library another worker is still training: the
        # gates come just before the first section that needs the library (section_method), or at the end
        if self._gates_due and not ({"grid", "cells"} & set(phases) and self.library_held_elsewhere()):
            self.run_due_gates()
        if "grid" in phases:
            self.grid(labels)
        if "cells" in phases:
            self.cells(labels, targets, seeds)
        self.run_due_gates()
        return self.log

    def run_due_gates(self) -> None:
        """The gates phase, if this run has it and has not run it yet."""
        if self._gates_due:
            self._gates_due = False
            self.gates()

    def cells(self, labels: list[str], targets=None, seeds=None) -> None:
        """Phase ``cells``: every selected cell, skipped when finished or held by another worker."""
        cfg = self.config
        for label in self.free_first(labels):
            method = self.section_method(label)
            multiplier = self.multiplier(label)
            method = scale_learning_rates(method, multiplier)
            for target in section_targets(cfg, label, targets):
                for seed in section_seeds(cfg, label, seeds):
                    status = ("left-out" if self.left_out(label, target)  # its source did not learn
                              else self._cell(label, method, target, seed, multiplier))
                    self.log.append({"method": label, "target": target, "seed": seed, "status": status})

    def free_first(self, labels: list[str]) -> Iterator[str]:
        """``labels`` in order, except that a section whose library or source stage another worker is training now
        comes after the sections that can run at once (looked at again before each): a worker never waits for
        another's stage while it has other work. When only such sections are left, the first is taken (and its
        stage waited for)."""
        left = list(labels)
        while left:
            label = next((lb for lb in left if not self.held_elsewhere(lb)), left[0])
            left.remove(label)
            yield label

    def held_elsewhere(self, label: str) -> bool:
        """Whether a prerequisite of the section (a library entry, its source stage) is unfinished and being
        trained by another worker now."""
        from mtpt.run_folder import is_finished

        options = self.config.methods[label]
        if not needs_library(options):
            return False
        folders = self.unfinished_library_entries()
        if not folders and "source_stage" in options:
            stage = section_source_stage(self.config, options, str(library_path(self.config)))[1]
            folders = [] if is_finished(stage) else [stage]
        return any(held_elsewhere(lock_path_for(folder)) for folder in folders)

    def unfinished_library_entries(self) -> list[Path]:
        """The folders of the library entries (single sources, the mixture) not trained yet."""
        return [job.folder for jobs in self.library_jobs() for job in jobs if not job.done()]

    def library_held_elsewhere(self) -> bool:
        """Whether an unfinished library entry (a single source, the mixture) is being trained by another worker."""
        return any(held_elsewhere(lock_path_for(folder)) for folder in self.unfinished_library_entries())

    def _note(self, kind: str, statuses: list[tuple[Path, str]]) -> None:
        for folder, status in statuses:
            self.log.append({"kind": kind, "folder": str(folder), "status": status})

    def _cell(self, label: str, method: dict[str, Any], target: str, seed: int, multiplier: float = 1.0) -> str:
        """Run one cell unless it is finished (``skipped``) or another worker is running it (``busy``): several
        invocations of the same command share the cells between them."""
        out = cell_dir(self.config, label, target, seed)
        if self._finished(out, method, target, seed, multiplier):  # finished cells never change: no lock file
            return "skipped"
        with exclusive(lock_path_for(out), wait=False) as mine:
            if self._finished(out, method, target, seed, multiplier):  # another worker finished it since
                return "skipped"
            if not mine:
                return "busy"
            return self._run(self.cell_config(self._cell_method(method, target, seed), target, seed, out,
                                              multiplier))

    def _finished(self, out: Path, method: dict[str, Any], target: str, seed: int, multiplier: float = 1.0) -> bool:
        """Whether the cell has its results (checked against the config it was run with)."""
        if not (out / "results.json").exists():
            return False
        self.check_unchanged(out, method, target, seed, multiplier)
        return True

    def check_unchanged(self, out: Path, method: dict[str, Any], target: str, seed: int,
                        multiplier: float = 1.0) -> None:
        """Refuse to skip a finished cell whose recorded config differs from the one the config now gives (a
        changed learning-rate choice included: its rates are in the cell's config)."""
        from mtpt.run_folder import refuse_changed_run

        planned = substitute(method, {TARGET_STAGE1: str(target_stage1_dir(self.config, target, seed))})
        refuse_changed_run(self.cell_config(planned, target, seed, out, multiplier))

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
        base = replace(base, eval=replace(base.eval, score_last=False))
        run = target_run_config(base, SourceLibrary.open(library_path(cfg)), cfg.target_stage1.steps,
                                cfg.target_stage1.lr or cfg.train.lr, base.output_dir)
        # shared by other workers' cells: the runner trains it once and the others wait for it
        return str(ensure_run(run, lambda: self.backbone, hidden_from_git_until_done).folder)

    def _train_run(self, run: RunConfig) -> None:
        """Train a shared run (a source stage, a search run) whose lock this worker holds
        (:func:`~mtpt.bench.sharing.share_work`)."""
        from mtpt.run_folder import refuse_changed_run
        from mtpt.runner import train

        refuse_changed_run(run)
        with hidden_from_git_until_done(Path(run.output_dir)):
            train(run, self.backbone)

    def _run(self, run: RunConfig) -> str:
        """Train a cell's run (or, for a method with nothing to train, only evaluate it) and record its
        parameter counts."""
        from mtpt.params import parameter_report
        from mtpt.runner import train

        out = Path(run.output_dir)
        trains: list[bool] = []

        def record_parameters(parts) -> None:
            atomic_write_text(out / "params.json", json.dumps(parameter_report(parts), indent=1))
            trains.append(any(p.requires_grad for p in parts.model.method.parameters()))

        with hidden_from_git_until_done(out):
            train(run, self.backbone, on_built=record_parameters)
        return "trained" if trains[0] else "evaluated"


@contextmanager
def hidden_from_git_until(folder: Path, done: Callable[[], bool]) -> Iterator[None]:
    """Keep ``folder`` out of git (a ``.gitignore`` of ``*`` in it) until a block ends without an error and
    ``done()`` says the folder is complete (workers sharing a folder: the last one to finish unhides it), so
    ``git add <results folder>`` while workers run, or after one was interrupted, commits finished runs only, never
    checkpoints or half-written logs."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".gitignore"
    marker.write_text("# written by mtpt bench quality: this run has not finished (removed when it does)\n*\n")
    yield
    if done():
        marker.unlink(missing_ok=True)


def hidden_from_git_until_done(folder: Path) -> ContextManager[None]:
    """:func:`hidden_from_git_until` for a folder one worker writes: unhidden when its block finishes."""
    return hidden_from_git_until(folder, lambda: True)


def cmd_quality(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        from mtpt.config import config_parser

        print(__doc__)
        print("Selectors: --methods LABEL ..., --targets TASK ..., --seeds N ... (a subset of the config's cells).")
        print("--phase sources|gates|grid|cells ...: only these phases (default: all four, in this order): the source "
              "library and multi-task source stages; the gates (overlap, zero-training matrix); the learning-rate "
              "search; the cells. Workers running the same phase share its runs.")
        print("--status: list the selected cells as done / partial / to do, and run nothing.")
        print("--tables: rewrite results.{csv,json,md,png} from the finished cells, and run nothing.")
        print("--reuse FOLDER: read the finished shared runs of another benchmark folder (library, source stages, "
              "search runs, target stage-I runs, cached gate scores) instead of training them under --out, and "
              "write nothing there: --out NEW --reuse RECORDED --phase cells with the selectors regenerates "
              "recorded cells in a fresh folder.")
        config_parser(QualityConfig, "mtpt bench quality").print_help()
        return 0
    config, picked = parse_quality_args(argv)
    if picked.status:
        print(status_table(config, picked.methods, picked.targets, picked.seeds))
        return 0
    if not picked.tables:
        bench = Bench(config)
        phases = tuple(p for p in PHASES if p in (picked.phase or PHASES))
        for row in bench.run(picked.methods, picked.targets, picked.seeds, phases):
            if "kind" in row:
                print(f"  [{row['kind']}] {row['folder']}: {row['status']}")
            else:
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
