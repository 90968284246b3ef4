"""The ``mtpt`` command line. Run configs are parsed by :mod:`mtpt.config` (typed dataclasses)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from typing import Callable

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

from mtpt.errors import MtptError  # noqa: E402

COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def command(name: str, help_text: str):
    def register(fn: Callable[[list[str]], int]):
        COMMANDS[name] = (help_text, fn)
        return fn
    return register


@command("train", "Train a method from a YAML run config; any field can be overridden (--train.lr 0.01).")
def cmd_train(argv: list[str]) -> int:
    from mtpt.config import parse_run_config, run_parser

    if any(a in ("-h", "--help") for a in argv):
        run_parser().print_help()
        return 0
    from mtpt.runner import train

    result = train(parse_run_config(argv))
    _print_results(result.final)
    print(f"run folder: {result.run_dir}  (best step {result.best_step})")
    return 0


@command("evaluate", "Evaluate a run folder's best (or another) checkpoint, or a backbone zero-shot, on chosen splits.")
def cmd_evaluate(argv: list[str]) -> int:
    """Evaluate a run folder's checkpoint, or a bare backbone on tasks (zero-shot: --backbone NAME --tasks T ...);
    --predictions writes one record per example (the prediction, every label's score and the gold answer)."""
    parser = argparse.ArgumentParser(prog="mtpt evaluate", description=cmd_evaluate.__doc__)
    parser.add_argument("run_dir", nargs="?", default=None, help="A folder written by `mtpt train`.")
    parser.add_argument("--backbone", default=None, help="Instead of a run: a backbone evaluated zero-shot.")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="With --backbone: registered task names or YAML task specs.")
    parser.add_argument("--data-root", default=None, help="With --backbone: the benchmark data folder "
                                                          "(default: $MTPT_DATA_ROOT).")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint folder.")
    parser.add_argument("--splits", nargs="+", default=["test"], choices=["train", "validation", "test"],
                        help="Splits to evaluate.")
    parser.add_argument("--max-eval-examples", type=int, default=None, help="Cap each split (seeded sample).")
    parser.add_argument("--scorer", choices=["rank", "generate"], default=None, help="Override the run's scorer.")
    parser.add_argument("--predictions", default=None, help="Write per-example prediction records to this JSONL file.")
    parser.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"], default=None,
                        help="Override the run's autocast precision (zero-shot default: auto).")
    args = parser.parse_args(argv)
    from mtpt.runs import evaluate_run, evaluate_zero_shot

    if (args.run_dir is None) == (args.backbone is None):
        parser.error("give a run folder, or --backbone NAME with --tasks")
    if args.backbone is not None:
        if not args.tasks:
            parser.error("--backbone needs --tasks")
        results = evaluate_zero_shot(args.backbone, args.tasks, args.splits, args.max_eval_examples, args.scorer,
                                     args.data_root, args.predictions, args.precision)
    else:
        if args.tasks is not None:
            parser.error("--tasks is for --backbone; a run evaluates its own tasks")
        results = evaluate_run(args.run_dir, args.checkpoint, args.splits, args.max_eval_examples, args.scorer,
                               predictions=args.predictions, precision=args.precision)
    _print_results(results)
    if args.predictions:
        print(f"predictions: {args.predictions}")
    return 0


@command("export", "Export a trained prompt in PEFT prompt-tuning format (or as a plain prompt file).")
def cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mtpt export")
    parser.add_argument("run_dir", help="A folder written by `mtpt train`.")
    parser.add_argument("--out", required=True, help="Output folder (PEFT) or .safetensors file (prompt).")
    parser.add_argument("--format", choices=["peft", "prompt"], default="peft")
    parser.add_argument("--task", default=None, help="Which task's prompt, for methods with one prompt per task.")
    parser.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint folder.")
    args = parser.parse_args(argv)
    from mtpt.runs import export_run

    out = export_run(args.run_dir, args.out, args.format, args.task, args.checkpoint)
    print(f"wrote {out}")
    return 0


@command("demo", "Prompt-tune the bundled SmolLM2-135M on bundled real SST-2 data; prints test accuracy before and after.")
def cmd_demo(argv: list[str]) -> int:
    from mtpt.demo import main as demo_main

    return demo_main(argv)


@command("tasks", "List registered tasks with their sizes, or validate a user task spec (--spec FILE).")
def cmd_tasks(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mtpt tasks")
    parser.add_argument("--language", choices=["en", "zh"], default=None)
    parser.add_argument("--spec", default=None, help="Validate this YAML task spec and print its sizes.")
    parser.add_argument("--data-root", default=None, help="Benchmark data folder (default: $MTPT_DATA_ROOT).")
    parser.add_argument("--verbose", action="store_true",
                        help="Also print each task's template, label words, split notes and removed duplicates.")
    parser.add_argument("--overlap", nargs="+", metavar="TASK", default=None,
                        help="Print which evaluation inputs of these tasks (names or spec paths) occur in the "
                             "others' training data (normalised; inputs under four words ignored).")
    args = parser.parse_args(argv)
    from mtpt import tasks

    root = tasks.resolve_data_root(args.data_root)
    try:
        if args.overlap:
            from mtpt.tasks.overlap import render_overlap_matrix

            selected = [_task_or_error(name) for name in args.overlap]
            names = [t.name for t in selected]
            if len(set(names)) < len(names):
                raise MtptError(f"--overlap: each task must appear once (and specs need distinct names); got {names}")
            print(render_overlap_matrix(selected, root))
            return 0
        selected = [tasks.validate_spec(args.spec)] if args.spec else tasks.list_tasks(args.language)
        print(tasks.render_task_table(selected, root, verbose=args.verbose))
    except tasks.TaskDataError as err:
        raise MtptError(str(err)) from None
    return 0


def _task_or_error(name: str):
    from mtpt.tasks import get_task

    try:
        return get_task(name)
    except KeyError as err:
        raise MtptError(err.args[0]) from None


@command("params", "Count a run config's trainable parameters: shared by all tasks and per task (any method, any backbone).")
def cmd_params(argv: list[str]) -> int:
    from mtpt.params import cmd_params as run

    return run(argv)


@command("methods", "List the registered methods and their options.")
def cmd_methods(argv: list[str]) -> int:
    import dataclasses

    from mtpt.registry import list_methods

    for spec in list_methods():
        print(f"{spec.name}: {spec.summary}")
        for f in dataclasses.fields(spec.config_cls):
            default = f.default if f.default is not dataclasses.MISSING else "(factory)"
            print(f"    {f.name} = {default!r}")
    return 0


def _print_results(results: dict) -> None:
    for split, per_task in results.items():
        for task, metrics in per_task.items():
            shown = ", ".join(f"{k}={v:.2f}" for k, v in metrics.items())
            print(f"{split:>10}  {task:<20} {shown}")


COMMAND_MODULES = ("mtpt.inference.commands", "mtpt.library.commands", "mtpt.bench.commands")
"""Modules beyond the methods that contribute commands: each exposes ``COMMANDS = {name: (help, fn)}``."""


def _plugin_commands() -> dict[str, tuple[str, Callable[[list[str]], int]]]:
    """Commands contributed by :data:`COMMAND_MODULES` and by registered methods (``MethodSpec.cli_commands``)."""
    import importlib

    from mtpt.registry import list_methods

    sources: list[tuple[str, dict]] = []
    for module_name in COMMAND_MODULES:
        try:
            sources.append((module_name, importlib.import_module(module_name).COMMANDS))
        except ModuleNotFoundError as err:
            if err.name is None or not module_name.startswith(err.name):
                raise
    sources += [(f"method {spec.name}", spec.cli_commands) for spec in list_methods()]
    found: dict[str, tuple[str, Callable[[list[str]], int]]] = {}
    for origin, commands in sources:
        for name, (help_text, fn) in commands.items():
            if name in COMMANDS or name in found:
                raise MtptError(f"{origin} registers a command {name!r} that already exists.")
            found[name] = (help_text, fn)
    return found


@contextlib.contextmanager
def _warnings_shown_as(command_name: str):
    """While a command runs, print mtpt's own warnings as ``mtpt CMD: warning: ...`` lines on stderr (others as
    Python prints them)."""
    from mtpt.errors import MtptWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, MtptWarning):
            print(f"mtpt {command_name}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = default


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {**COMMANDS, **_plugin_commands()}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mtpt COMMAND [ARGS]   (mtpt COMMAND --help for a command's options)\n")
        print("Multi-task prompt transfer: soft prompts on a frozen language model.\n\ncommands:")
        for name, (help_text, _) in commands.items():
            print(f"  {name:<14} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"mtpt: unknown command {name!r}; run `mtpt --help` for the list.", file=sys.stderr)
        return 2
    try:
        with _warnings_shown_as(name):
            code = commands[name][1](rest)
    except MtptError as err:
        print(f"mtpt {name}: error: {err}", file=sys.stderr)
        return 1
    if "torch" in sys.modules:  # only a command that loaded torch can have started a process group
        from mtpt.precision import release_process_group

        release_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())

