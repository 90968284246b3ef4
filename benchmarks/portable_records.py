"""Rewrite the configs of run folders, and the entries of source libraries, recorded with absolute paths so that
they name what lies in the project relative to themselves, as mtpt now records them
(:func:`mtpt.run_folder.write_run_config`, :func:`mtpt.library.format.portable_meta`).

    python benchmarks/portable_records.py FOLDER [FOLDER ...]

Run it from the project root (the repository), in the place where the runs were trained: every run folder under
FOLDER (a folder with a ``config.yaml``) gets its ``config.yaml`` and ``method_config.yaml`` rewritten, paths inside
the working folder relative to the run folder, others unchanged; every library under FOLDER (a folder with a
``manifest.json``) gets its entries' ``meta.json`` rewritten the same way (the training run's folder and config).
Nothing else changes (the same files are named, so a comparison with :func:`mtpt.run_folder.recorded_changes` gives
the same answer before and after). Runs recorded between 2026-12-04 and 2026-12-05 (quality-en-v2's first runs)
named them absolutely, which tied the recorded benchmark to the folder it ran in; library entries did until
2026-12-06. Do not run it while a worker trains in FOLDER.
"""

from __future__ import annotations

import json
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


def portable_library(root: Path) -> list[str]:
    """Rewrite the ``meta.json`` of every entry of the library at ``root`` where a path changes; the entries'
    paths (``task/seed-n``) rewritten."""
    from mtpt.atomic import atomic_write_text
    from mtpt.library.format import ENTRY_META, SourceLibrary, located_meta, portable_meta

    library, changed = SourceLibrary.open(root), []
    for entry in library.entries:
        folder = library.entry_dir(entry)
        saved = library.entry_meta(entry.task, entry.seed)
        located = located_meta(saved, folder)  # portable_meta resolves the rest and writes them as add_entry does
        written = portable_meta(located, folder, library.root)
        if written != saved:
            atomic_write_text(folder / ENTRY_META, json.dumps(written, indent=1, default=str))
            changed.append(entry.path)
    return changed


def main(argv: list[str]) -> int:
    from mtpt.errors import MtptError

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
    libraries = sorted({manifest.parent for root in argv for manifest in Path(root).rglob("manifest.json")})
    for library in libraries:
        try:
            entries = portable_library(library)
        except MtptError as err:  # a manifest.json that is not a library's
            print(f"{library}: skipped ({err})")
            continue
        print(f"{library}: {len(entries)} entries rewritten" + (f" ({', '.join(entries)})" if entries else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
