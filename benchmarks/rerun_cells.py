"""Rerun recorded quality-benchmark cells from their own ``config.yaml`` and compare the report-split scores.

    python benchmarks/rerun_cells.py OUT CELL [CELL ...]

Each CELL is a finished cell folder (``benchmarks/results/<bench>/cells/<method>/<target>/seed-<s>``); it is
trained again with ``mtpt train`` on the cell's ``config.yaml`` and the method options of its ``method_config.yaml``,
into ``OUT/<method>-<target>-seed-<s>``. Run it from the repository root: paths the cell recorded relative to
itself (``../../../../library``) are read against the cell folder, older ones (``benchmarks/results/...``) against
the working folder. The method options are the resolved ones the cell recorded, so a default changed since (a
target initialisation, say) does not change the rerun. Its final scores are printed next
to the recorded ones. Exit status 1 when a score differs. Use one torch
thread (``OMP_NUM_THREADS=1``) to match cells recorded with one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def final_scores(run_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    return json.loads((run_dir / "results.json").read_text())["final"]


def recorded_method(cell: Path) -> dict:
    """The cell's method section with every option resolved as it ran (``method_config.yaml``), its paths absolute."""
    from mtpt.run_folder import read_recorded_method

    return read_recorded_method(cell)


def recorded_config(cell: Path, into: Path) -> Path:
    """The cell's ``config.yaml`` with its paths absolute, written to ``into`` (for ``mtpt train``)."""
    from mtpt.config import dump_yaml
    from mtpt.run_folder import read_run_config

    into.parent.mkdir(parents=True, exist_ok=True)
    dump_yaml(read_run_config(cell), into)
    return into


def rerun(cell: Path, out: Path) -> bool:
    seed, target, method = cell.parts[-1], cell.parts[-2], cell.parts[-3]
    run_dir = out / f"{method}-{target}-{seed}"
    if not (run_dir / "results.json").exists():
        config = recorded_config(cell, out / f"{method}-{target}-{seed}.config.yaml")
        subprocess.run([sys.executable, "-m", "mtpt.cli", "train", str(config),
                        "--method", json.dumps(recorded_method(cell)), "--output_dir", str(run_dir)], check=True)
    recorded, again = final_scores(cell), final_scores(run_dir)
    same = True
    for split, tasks in recorded.items():
        for task, metrics in tasks.items():
            for name, value in metrics.items():
                new = again.get(split, {}).get(task, {}).get(name)
                ok = new is not None and abs(new - value) < 1e-9
                same &= ok
                print(f"{method:<18} {task:<16} {split:<5} {name:<9} recorded {value:8.4f}  rerun "
                      f"{'-' if new is None else f'{new:8.4f}'}  {'same' if ok else 'DIFFERENT'}")
    return same


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[0])
    results = [rerun(Path(cell), out) for cell in argv[1:]]
    print(f"{sum(results)}/{len(results)} cells reproduce their recorded scores")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
