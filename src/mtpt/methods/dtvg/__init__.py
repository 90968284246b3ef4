"""DTVG: dynamic task vector grouping (METHODS.md §6; docs/methods/dtvg.md).

:mod:`~mtpt.methods.dtvg.grouping` holds the tensor maths, :mod:`~mtpt.methods.dtvg.module` the stage-II module,
:mod:`~mtpt.methods.dtvg.stages` stage I and the builder; the ``plot-groups`` and ``recommend`` commands live in
:mod:`~mtpt.methods.dtvg.commands`.
"""

from mtpt.methods.dtvg.commands import COMMANDS
from mtpt.methods.dtvg.config import DtvgConfig
from mtpt.methods.dtvg.module import DynamicGrouping
from mtpt.methods.dtvg.speed import grouping_cost
from mtpt.methods.dtvg.stages import build, prerequisites, restore
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method

register_method(
    MethodSpec(
        name="dtvg",
        config_cls=DtvgConfig,
        build=build,
        restore=restore,
        summary="DTVG: target prompt + per-token scaled source task vectors, regrouped by target similarity and "
        "knowledge consistency on every training step; fixed merged prompt for evaluation.",
        cli_commands=dict(COMMANDS),
        prerequisites=prerequisites,
        roles=OptionRoles(library="source_library", learning_rates=(
            "stage1_lr", "lr_target_prompt", "lr_target_scale", "lr_source_scales")),
        speed=(SpeedVariant("dtvg", {"source_library": "{library}", "target_prompt": "{target_prompt}"}, peft="pt",
                            extra=grouping_cost),),
    )
)

__all__ = ["DtvgConfig", "DynamicGrouping", "build"]
