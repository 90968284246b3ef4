"""``mtpt bench quality CONFIG --status``: what is done, partial, to do and running, read from the output folder only
(no backbone, no data): the cells per method and target, and, where the config has them, the source stages, the
gates and the learning-rate search."""

from __future__ import annotations

from pathlib import Path

from mtpt.bench.quality_config import (QualityConfig, cell_dir, library_complete, library_path, section_seeds,
                                       section_source_stage, section_targets)
from mtpt.locking import held_elsewhere, lock_path_for


def cell_state(folder: Path) -> str:
    """``done`` (results.json), ``partial`` (a checkpoint to resume from) or ``todo``."""
    if (folder / "results.json").exists():
        return "done"
    return "partial" if (folder / "checkpoints" / "last").exists() else "todo"


def status_table(config: QualityConfig, methods=None, targets=None, seeds=None) -> str:
    """Markdown grid of the selected cells: per method and target, the seeds done / partial / to do, and how many
    unfinished cells a worker holds now; then the shared stages' state."""
    labels = list(methods or config.methods)
    columns = list(dict.fromkeys(t for label in labels for t in section_targets(config, label, targets)))
    shown = list(seeds or config.seeds)
    lines = [f"cells of {config.out} (seeds {', '.join(map(str, shown))}: done/partial/todo)", "",
             "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    totals, running = {"done": 0, "partial": 0, "todo": 0}, 0
    for label in labels:
        own = section_targets(config, label, targets)
        cells = []
        for target in columns:
            if target not in own:
                cells.append("")
                continue
            folders = [cell_dir(config, label, target, seed) for seed in section_seeds(config, label, seeds)]
            states = [cell_state(folder) for folder in folders]
            for state in states:
                totals[state] += 1
            running += sum(state != "done" and held_elsewhere(lock_path_for(f)) for state, f in zip(states, folders))
            cells.append("/".join(str(states.count(s)) for s in ("done", "partial", "todo")))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"{totals['done']} done, {totals['partial']} partial, {totals['todo']} to do "
              f"({running} of them running in a worker now); library: "
              f"{'complete' if library_complete(library_path(config), config.library) else 'incomplete'}."]
    return "\n".join(lines + stage_lines(config, labels))


def stage_lines(config: QualityConfig, labels: list[str]) -> list[str]:
    """The source stages, gates and learning-rate search (only what the config has)."""
    from mtpt.bench.quality_gates import cached_score, gate_prompts
    from mtpt.bench.quality_grid import grid_choice, grid_run_dir, searched_labels

    lines = []
    if config.gates:  # v2-style configs: each library entry
        lines.append("library entries: " + ", ".join(f"{name} {state}" for name, state in library_states(config)))
    stages = {section_source_stage(config, config.methods[label], str(library_path(config)))[1]
              for label in labels if "source_stage" in config.methods[label]}
    if stages and config.gates:  # v2-style configs report the stages; the recorded v1 lines stay as they were
        lines.append("source stages: " + ", ".join(f"{folder.name} {_state(folder)}" for folder in sorted(stages)))
    if config.gates:
        if (library_path(config) / "manifest.json").exists():
            pairs = [(p, t) for p in gate_prompts(config) for t in config.targets]
            done = sum(cached_score(config, p, t) is not None for p, t in pairs)
            lines.append(f"gates: zero-training matrix {done} of {len(pairs)} (prompt, target) scores cached.")
        else:
            lines.append("gates: waiting for the library.")
    searched = searched_labels(config, labels)
    if searched:
        runs = [(label, m) for label in searched for m in config.lr_grid.multipliers]
        states = [_state(grid_run_dir(config, label, m)) for label, m in runs]
        chosen = {label: grid_choice(config, label).chosen for label in searched}
        lines.append(f"learning-rate search on {config.lr_grid.target} seed {config.lr_grid.seed}: "
                     f"{states.count('done')} of {len(runs)} runs done ({states.count('running')} running); chosen: "
                     + ", ".join(f"{label} {'pending' if m is None else f'x{m:g}'}" for label, m in chosen.items()))
    return ([""] + lines) if lines else []


def _state(folder: Path) -> str:
    state = cell_state(folder)
    return "running" if state != "done" and held_elsewhere(lock_path_for(folder)) else state


def library_states(config: QualityConfig) -> list[tuple[str, str]]:
    """(entry, done / running / todo) for every source and seed (and mixture) the config's library holds."""
    from mtpt.library.format import MIXTURE, SourceLibrary, entry_folder

    from mtpt.bench.quality_config import entry_name

    path, lib = library_path(config), config.library
    library = SourceLibrary.open(path) if (path / "manifest.json").exists() else None
    names = [entry_name(s) for s in lib.sources] + ([MIXTURE] if lib.mixture else [])
    states = []
    for seed in lib.seeds:
        for name in names:
            folder = path / "_runs" / entry_folder(name, seed)
            done = library is not None and library.has(name, seed)
            running = not done and held_elsewhere(lock_path_for(folder))
            states.append((f"{name} (seed {seed})", "done" if done else "running" if running else "todo"))
    return states
