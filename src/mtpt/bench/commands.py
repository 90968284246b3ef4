"""The ``mtpt bench`` command: ``mtpt bench speed ...`` and ``mtpt bench quality CONFIG ...``."""

from __future__ import annotations

HELP = ("Benchmarks: `bench speed` (step time and memory vs bare backbone and PEFT), `bench e2e` (time to a result "
        "vs a PEFT user's script), `bench levers` (each speed lever on and off), `bench quality CONFIG`, "
        "`bench docs PAGE` (refresh the tables pasted into a page).")
USAGE = """usage: mtpt bench {speed,e2e,levers,quality,docs} [options]

  speed    training-step time and autograd memory of each method vs the bare backbone and PEFT (with
           mtpt's logits_to_keep, and as PEFT documents it), DTVG grouping cost, mixed-task inference;
           --profile: what a step's time is made of (mtpt bench speed --help)
  e2e      time to a result: one k-shot task trained, validated and test-scored by mtpt and by a PEFT
           user's script (benchmarks/peft_reference.py), alternating (mtpt bench e2e --help)
  levers   each speed lever measured with and without it on real data (mtpt bench levers --help)
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
    if sub == "e2e":
        from mtpt.bench.e2e import cmd_e2e

        return cmd_e2e(rest)
    if sub == "levers":
        from mtpt.bench.levers import cmd_levers

        return cmd_levers(rest)
    if sub == "quality":
        from mtpt.bench.quality import cmd_quality

        return cmd_quality(rest)
    if sub == "docs":
        from mtpt.bench.docs import cmd_docs

        return cmd_docs(rest)
    print(f"unknown bench subcommand {sub!r}\n{USAGE}")
    return 2


COMMANDS = {"bench": (HELP, cmd_bench)}
