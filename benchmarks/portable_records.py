"""Rewrite the configs of run folders recorded with absolute paths so that they name what lies in the project
relative to themselves, as ``mtpt train`` now records them (:func:`mtpt.run_folder.write_run_config`).

    python benchmarks/portable_records.py FOLDER [FOLDER ...]

Run it from the project root (the repository), in the place where the runs were trained: every run folder under
FOLDER (a folder with a ``config.yaml``) gets its ``config.yaml`` and ``method_config.yaml`` rewritten, paths inside
the working folder relative to the run folder, others unchanged. Nothing else changes (the same files are named, so
a comparison with :func:`mtpt.run_folder.recorded_changes` gives the same answer before and after). Runs recorded
between 2026-12-04 and 2026-12-05 (quality-en-v2's first runs) named them absolutely, which tied the recorded
benchmark to the folder it ran in. Do not run it while a worker trains in FOLDER.
"""

from __future__ import annotations

import sys
from pathlib import Path


def portable(run_dir: Path) -> list[str]:
    """Rewrite ``run_dir``'s two config files where a path changes; the names of the files rewritten."""
    from mtpt.config import dump_yaml, load_yaml, resolved_paths
    from mtpt.run_folder import portable_paths, read_recorded_method, read_run_config, write_recorded_method

    changed = []
    plain = read_run_config(run_dir)
    written = portable_paths(resolved_paths(plain), run_dir)
    if written != load_yaml(run_dir / "config.yaml"):
        dump_yaml(written, run_dir / "config.yaml")
        changed.append("config.yaml")
    options_file = run_dir / "method_config.yaml"
    if options_file.exists():
        saved = load_yaml(options_file)
        write_recorded_method(run_dir, resolved_paths({"method": read_recorded_method(run_dir)})["method"])
        if load_yaml(options_file) != saved:
            changed.append("method_config.yaml")
    return changed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    folders = sorted({config.parent for root in argv for config in Path(root).rglob("config.yaml")})
    rewritten = 0
    for folder in folders:
        changed = portable(folder)
        rewritten += bool(changed)
        if changed:
            print(f"{folder}: {', '.join(changed)}")
    print(f"{rewritten} of {len(folders)} run folders rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
