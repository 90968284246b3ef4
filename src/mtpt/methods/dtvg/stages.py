"""DTVG stage I (the target's task vector) and the builder of the stage-II module.

Stage I for the sources is the source-prompt library (``mtpt train-source``: one shared ``P_init``, the best
validation checkpoint per source). For the target it is ``method.target_prompt`` when given, otherwise a PT run
on the target from the library's ``P_init``, declared as the prerequisite run ``stage1``: the runner trains it into
``<output_dir>/stage1/`` through the ordinary trainer before the build, keeps its best validation checkpoint, and
reuses a finished one when the run resumes or is rebuilt (``mtpt evaluate``/``export``). Delete that folder to
redo it.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from mtpt.contract import BuildContext, CheckpointContents, Prerequisite
from mtpt.errors import MtptError
from mtpt.library.access import learned_sources, open_for_run, select_sources
from mtpt.library.target_run import target_prompt, target_run_prerequisite
from mtpt.methods.dtvg.config import DtvgConfig
from mtpt.methods.dtvg.grouping import Ablation, GroupingRule, choose_sources, similarity_matrix
from mtpt.methods.dtvg.module import DynamicGrouping

STAGE1_DIR = "stage1"
"""The stage-I run's key: its sub-folder of the run folder."""

__all__ = ["STAGE1_DIR", "build", "grouping_rule", "prerequisites", "restore", "spot_choice"]


def prerequisites(config: DtvgConfig, run) -> list[Prerequisite]:
    """Without target_prompt: stage I, a PT run on the target from the library's P_init (``stage1_steps`` at
    ``stage1_lr``, each defaulting to the run's own)."""
    if config.target_prompt:
        return []
    _check_numbers(config)
    return target_run_prerequisite(STAGE1_DIR, config.source_library, run, config.stage1_steps or run.train.steps,
                                   config.stage1_lr, "stage1_steps")


def build(config: DtvgConfig, ctx: BuildContext) -> DynamicGrouping:
    """Stage II for the run's single target task, from the library and the target's stage-I prompt."""
    if len(ctx.task_names) != 1:
        raise MtptError(f"DTVG trains one target task; this run has {len(ctx.task_names)}: {ctx.task_names}.")
    rule = grouping_rule(config)
    _check_numbers(config)
    library = open_for_run(config.source_library, ctx)
    sources = learned_sources(library, select_sources(library, config.sources, ctx.task_names), config.source_seed,
                              config.skip_unlearned)
    p_init = library.init_prompt()
    vectors = library.task_vectors(sources, config.source_seed)
    target, origin = target_prompt(config.target_prompt, ctx, STAGE1_DIR, library)
    record: dict[str, Any] = {
        "library": str(library.root), "stage1": origin,
        "source_entries": {task: library.entry(task, config.source_seed).seed for task in sources},
    }
    ablation, fixed = Ablation(config.ablation), None
    if ablation is Ablation.SPOT:
        record["spot"] = spot_choice(target, library.prompts(sources, config.source_seed), sources)
        target = library.prompt(record["spot"]["source"], config.source_seed)
    elif ablation is Ablation.FIXED_GROUP:
        # "At the start": the stage-I target vector with every scale at its initial value 1.
        fixed = rule.details(target - p_init, vectors).group
    return DynamicGrouping(p_init, target, vectors, sources, rule=rule, ablation=ablation, fixed_group=fixed,
                           eval_group=config.eval_group, lrs=_learning_rates(config), record=record)


def _learning_rates(config: DtvgConfig) -> dict[str, float | None]:
    return {"target_prompt": config.lr_target_prompt, "target_scale": config.lr_target_scale,
            "source_scales": config.lr_source_scales}


def restore(config: DtvgConfig, ctx: BuildContext, checkpoint: CheckpointContents) -> DynamicGrouping:
    """The trained stage-II module from its checkpoint, without the library or stage I (``MethodSpec.restore``):
    P_init, the source vectors and the merged evaluation prompt are saved with it, the groups with its state."""
    tensors, state = checkpoint.tensors, checkpoint.extra_state
    sources = list(state.get("sources", []))
    ablation = Ablation(config.ablation)
    fixed = [sources.index(name) for name in state.get("fixed_group") or []] \
        if ablation is Ablation.FIXED_GROUP else None
    return DynamicGrouping(tensors["p_init"], tensors["target_prompt"], tensors["source_vectors"], sources,
                           rule=grouping_rule(config), ablation=ablation, fixed_group=fixed,
                           eval_group=config.eval_group, lrs=_learning_rates(config), record=state.get("record"))


def grouping_rule(config: DtvgConfig) -> GroupingRule:
    try:
        return GroupingRule(config.similarity, config.objective, float(config.threshold), float(config.lam))
    except ValueError as err:
        raise MtptError(f"Invalid DTVG grouping options: {err}.") from None


def _check_numbers(config: DtvgConfig) -> None:
    if config.stage1_steps is not None and config.stage1_steps < 1:
        raise MtptError(f"stage1_steps must be at least 1 (or null), got {config.stage1_steps}.")
    for name in ("stage1_lr", "lr_target_prompt", "lr_target_scale", "lr_source_scales"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise MtptError(f"{name} must be positive (or null for the run's train.lr), got {value}.")


def spot_choice(target: Tensor, source_prompts: Tensor, names: Sequence[str]) -> dict[str, Any]:
    """The authors' SPoT ablation: the source whose **prompt** is most cosine-similar (token-averaged) to the
    stage-I target prompt; ties to the first source."""
    index = choose_sources(Ablation.SPOT, target, source_prompts)[0]
    cosine = similarity_matrix(target.unsqueeze(0), source_prompts, kind="cosine")[0]
    return {"source": names[index], "similarity": "cosine", "compare": "prompts",
            "similarities": dict(zip(names, cosine.tolist()))}
