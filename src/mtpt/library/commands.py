"""``mtpt`` subcommands of the source-prompt library: ``train-source``, ``library``, ``similarity``."""

from __future__ import annotations

import argparse
from typing import Callable


def cmd_train_source(argv: list[str]) -> int:
    """Prompt-tune each source task from one shared initial prompt into a library folder."""
    from mtpt.library.source_stage import parse_source_config, source_parser, train_sources

    if any(a in ("-h", "--help") for a in argv):
        source_parser().print_help()
        return 0
    config = parse_source_config(argv)
    outcomes = train_sources(config)
    for outcome in outcomes:
        metric = "-" if outcome.best_metric is None else f"{outcome.best_metric:.2f}"
        print(f"  {outcome.task:<24} seed {outcome.seed:<6} {outcome.status:<14} best {metric}")
    if any(o.status == "skipped-stale" for o in outcomes):
        print("note: a mixture entry was tuned on other sources; pass --overwrite true to retrain it.")
    print(f"library: {config.library}")
    return 0


def cmd_library(argv: list[str]) -> int:
    """List a library's backbone, prompt shape and entries."""
    parser = argparse.ArgumentParser(prog="mtpt library", description=cmd_library.__doc__)
    parser.add_argument("library", help="A folder written by `mtpt train-source`.")
    args = parser.parse_args(argv)
    from mtpt.library.format import SourceLibrary

    library = SourceLibrary.open(args.library)
    print(f"backbone {library.backbone} (weights {library.weights_hash}), L={library.prompt_length}, "
          f"d={library.hidden_size}, init {library.init_info}")
    for e in library.entries:
        metric = "-" if e.best_metric is None else f"{e.best_metric:.2f}"
        constant = "-" if e.constant_score is None else f"{e.constant_score:.2f}"
        learned = {True: "yes", False: "NO", None: "?"}[e.learned]
        extra = f"  sources: {', '.join(e.sources)}" if e.sources else ""
        print(f"  {e.task:<24} seed {e.seed:<6} steps {e.steps:<6} best {e.metric_for_best}={metric}  "
              f"constant answer {constant}  learned {learned:<3}  {e.path}{extra}")
    return 0


def cmd_similarity(argv: list[str]) -> int:
    """Write a library's similarity matrices (cosine and DTVG dot) as CSV files and heatmap PNGs."""
    parser = argparse.ArgumentParser(prog="mtpt similarity", description=cmd_similarity.__doc__)
    parser.add_argument("library", help="A folder written by `mtpt train-source`.")
    parser.add_argument("--target", default=None,
                        help="Target prompt: a prompt file, export/PEFT folder, checkpoint or run folder.")
    parser.add_argument("--target-name", default="target", help="Row label of the target.")
    parser.add_argument("--tasks", nargs="+", default=None, help="Library tasks to include (default: all).")
    parser.add_argument("--seed", type=int, default=None, help="Library seed (default: best per task).")
    parser.add_argument("--of", choices=["task_vectors", "prompts"], default="task_vectors",
                        help="Compare task vectors (prompt - P_init, DTVG) or the prompts (SPoT).")
    parser.add_argument("--out", required=True, help="Output folder.")
    args = parser.parse_args(argv)
    from mtpt.library.access import read_prompt
    from mtpt.library.format import SourceLibrary
    from mtpt.library.similarity import similarity_report

    library = SourceLibrary.open(args.library)
    target = read_prompt(args.target) if args.target else None
    written = similarity_report(library, args.out, target=target, target_name=args.target_name, tasks=args.tasks,
                                seed=args.seed, of=args.of)
    for path in written.values():
        print(f"wrote {path}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "train-source": ("Prompt-tune each source task from one shared initial prompt into a source-prompt library.",
                     cmd_train_source),
    "library": ("List a source-prompt library's backbone, prompt shape and entries.", cmd_library),
    "similarity": ("Similarity matrices of a library (cosine and DTVG dot) as CSV + heatmap PNG.", cmd_similarity),
}
