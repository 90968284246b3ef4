"""The ``mtpt bench`` command: ``mtpt bench speed ...`` and ``mtpt bench quality CONFIG ...``."""

from __future__ import annotations

HELP = ("Benchmarks: `bench speed` (step time and memory vs bare backbone and PEFT), `bench quality CONFIG`, "
        "`bench docs PAGE` (refresh the tables pasted into a page).")
USAGE = """usage: mtpt bench {speed,quality,docs} [options]

  speed    training-step time and autograd memory of each method vs the bare backbone and PEFT,
           DTVG grouping cost, mixed-task inference (mtpt bench speed --help)
  quality  resumable method x target x seed cells from a bench config (mtpt bench quality --help)
  docs     refill the generated tables of a Markdown page from the files the benchmarks wrote; --check
           only reports stale ones (mtpt bench docs docs/results.md)
"""


def cmd_bench(argv: list[str]) -> int:
    """Dispatch to a bench subcommand (imported lazily: each pulls in torch and the models)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    if sub == "speed":
        from mtpt.bench.speed import cmd_speed

        return cmd_speed(rest)
    if sub == "quality":
        from mtpt.bench.quality import cmd_quality

        return cmd_quality(rest)
    if sub == "docs":
        from mtpt.bench.docs import cmd_docs

        return cmd_docs(rest)
    print(f"unknown bench subcommand {sub!r}\n{USAGE}")
    return 2


COMMANDS = {"bench": (HELP, cmd_bench)}
