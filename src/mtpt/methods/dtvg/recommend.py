"""``mtpt recommend``: which sources DTVG would group for a target, and why.

The target vector is a stage-I prompt minus the library's ``P_init`` (from ``--target-prompt``, or a short PT
run on the target from ``P_init`` with the recipe the library's sources were trained with). Every scale is 1, as
at the start of stage II, so the answer is the group of DTVG's first training step (and ``fixed_group``'s).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from mtpt.errors import MtptError
from mtpt.library.format import SourceLibrary
from mtpt.methods.dtvg.grouping import GroupingRule, GroupResult

__all__ = ["cmd_recommend", "format_recommendation", "recommend_parser"]


def recommend_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpt recommend", description=cmd_recommend.__doc__)
    parser.add_argument("target", help="The target task (a registered task name or a YAML task spec).")
    parser.add_argument("--library", required=True, help="A source-prompt library (built by `mtpt train-source`).")
    parser.add_argument("--target-prompt", default=None,
                        help="The target's stage-I prompt trained from the library's P_init (prompt file, export "
                             "or run folder): skips the short PT run.")
    parser.add_argument("--steps", type=int, default=50, help="Steps of the short PT run on the target.")
    parser.add_argument("--lr", type=float, default=None, help="Its learning rate (default: the library's recipe).")
    parser.add_argument("--batch-size", type=int, default=None, help="Its batch size (default: the library's recipe).")
    parser.add_argument("--backbone", default=None, help="Backbone (default: the library's); must have its weights.")
    parser.add_argument("--kshot", type=int, default=None, help="Train the short run on k examples per class.")
    parser.add_argument("--kshot-seed", type=int, default=0, help="Which k-shot split.")
    parser.add_argument("--data-root", default=None, help="Benchmark data folder (default: $MTPT_DATA_ROOT).")
    parser.add_argument("--max-eval-examples", type=int, default=None, help="Cap the validation set of the run.")
    parser.add_argument("--out", default=None, help="Folder of the short run (default: runs/recommend/TARGET); "
                                                   "a finished run there is reused.")
    parser.add_argument("--sources", nargs="+", default=None, help="Candidate sources (default: every library "
                                                                  "task except the target).")
    parser.add_argument("--seed", type=int, default=None, help="Library seed (default: best per task).")
    parser.add_argument("--similarity", choices=["dot", "cosine"], default="dot")
    parser.add_argument("--objective", choices=["kc_prefix", "ts_plus_kc"], default="kc_prefix")
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--lam", type=float, default=1.0)
    return parser


def cmd_recommend(argv: list[str]) -> int:
    """Print the sources DTVG would group for a target: TS per source, the ranked list, KC per prefix, k*."""
    from mtpt.library.access import read_prompt, select_sources
    from mtpt.tasks import get_task

    args = recommend_parser().parse_args(argv)
    library = SourceLibrary.open(args.library)
    try:
        rule = GroupingRule(args.similarity, args.objective, args.threshold, args.lam)
        target_name = get_task(args.target).name
    except (ValueError, KeyError) as err:
        raise MtptError(str(err.args[0]) if err.args else str(err)) from None
    sources = select_sources(library, args.sources or [], [target_name])
    if args.target_prompt:
        prompt, origin = read_prompt(args.target_prompt), args.target_prompt
    else:
        prompt, origin = _short_run(args, library, target_name)
    if tuple(prompt.shape) != (library.prompt_length, library.hidden_size):
        raise MtptError(f"The target prompt has shape {tuple(prompt.shape)}; the library's prompts are "
                        f"({library.prompt_length}, {library.hidden_size}).")
    init = library.init_prompt()
    details = rule.details(prompt.float() - init, library.task_vectors(sources, args.seed))
    print(format_recommendation(details, sources, target_name, origin))
    return 0


def _short_run(args, library: SourceLibrary, target: str) -> tuple[Tensor, str]:
    """Train (or reuse) the short PT run on the target from the library's P_init; returns its kept prompt."""
    from mtpt.backbones import load_backbone
    from mtpt.library.access import finished_run_prompt
    from mtpt.library.target_run import target_run_config
    from mtpt.runner import ensure_run

    base = _library_recipe(library)
    data = replace(base.data, kshot=args.kshot, kshot_seed=args.kshot_seed,
                   data_root=args.data_root or base.data.data_root,
                   max_eval_examples=args.max_eval_examples or base.data.max_eval_examples)
    train = replace(base.train, batch_size=args.batch_size or base.train.batch_size, resume=True)
    base = replace(base, backbone=args.backbone or library.backbone, tasks=[target], data=data, train=train)
    out = Path(args.out or Path("runs") / "recommend" / target)
    run_config = target_run_config(base, library, args.steps, args.lr or base.train.lr, out)

    def checked_backbone():
        # called only when the stage-I run must train: a finished one is reused without loading a model
        backbone = load_backbone(base.backbone)
        library.check_compatible(backbone.name, backbone.weights_hash, None, backbone.hidden_size)
        print(f"stage-I run on {target}: {run_config.train.steps} steps, lr {run_config.train.lr:g}, batch "
              f"{run_config.train.batch_size}, from the library's P_init -> {out}")
        return backbone

    ensure_run(run_config, checked_backbone)
    return finished_run_prompt(out), str(out)


def _library_recipe(library: SourceLibrary):
    """The run config the library's first source was trained with (so the target vector is comparable), or the
    defaults on the library's backbone when the library records none."""
    from mtpt.config import RunConfig, run_config_from_dict

    for task in library.tasks:
        try:
            plain = library.entry_run_config(task)
        except (OSError, json.JSONDecodeError):
            continue
        if plain:
            return run_config_from_dict(plain)
    return RunConfig(backbone=library.backbone)


def format_recommendation(details: GroupResult, names: list[str], target: str, origin: str) -> str:
    """A plain-text account of one grouping: every source's TS and fate, KC per prefix, k* and the group."""
    rule = f"similarity {details.similarity}, objective {details.objective}, threshold {details.threshold:g}"
    if details.objective == "ts_plus_kc":
        rule += f", lam {details.lam:g}"
    lines = [f"DTVG grouping for target {target}",
             f"  target vector: {origin} minus the library's P_init; every scale 1 (the start of stage II)",
             f"  {rule}", "", f"{'rank':>4}  {'source':<28} {'TS':>12}  decision"]
    ranks = {source: k + 1 for k, source in enumerate(details.ranked)}
    dropped = [i for i in range(len(names)) if i not in ranks]
    for i in [*details.ranked, *dropped]:
        rank = ranks.get(i)
        if rank is None:
            decision = f"dropped: TS < {details.threshold:g}"
        elif rank <= details.k_star:
            decision = "in the group"
        else:
            decision = f"ranked, but after k* = {details.k_star}"
        lines.append(f"{rank or '-':>4}  {names[i]:<28} {float(details.ts[i]):>12.4e}  {decision}")
    lines += ["", "KC(k): mean similarity over the ordered pairs of the prefix R[:k] (KC(1) = 0):"]
    for k in range(1, len(details.ranked) + 1):
        score = f"  score {float(details.scores[k - 1]):.4e}" if details.objective == "ts_plus_kc" else ""
        mark = "  <- k*" if k == details.k_star else ""
        lines.append(f"  k={k:<3} KC {float(details.kc[k - 1]):>12.4e}{score}{mark}")
    chosen = "first maximum of KC" if details.objective == "kc_prefix" else "first maximum of mean TS + lam*KC"
    if details.k_star:
        lines += ["", f"k* = {details.k_star} ({chosen})",
                  f"group: {', '.join(names[i] for i in details.group)}"]
    else:
        lines += ["", f"group: none (no source has TS >= {details.threshold:g}): the target vector alone"]
    return "\n".join(lines)
