"""Task prompt vectors: arithmetic over library task vectors (METHODS.md §5)."""

from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method
from mtpt.methods.tpv.config import TpvConfig
from mtpt.methods.tpv.grid import cmd_tpv_grid
from mtpt.methods.tpv.module import PromptCombination, build, prerequisites, restore

register_method(
    MethodSpec(
        name="tpv",
        config_cls=TpvConfig,
        build=build,
        restore=restore,
        summary="Task prompt vectors: P_init + sum of lambda-weighted library task vectors (init for PT, or combine).",
        cli_commands={"tpv-grid": ("Choose TPV's lambda on validation over a grid (method tpv, mode: combine).",
                                   cmd_tpv_grid)},
        prerequisites=prerequisites,
        roles=OptionRoles(library="source_library", learning_rates=("target_lr",)),
        speed=(SpeedVariant("tpv", {"source_library": "{library}", "mode": "init", "target_prompt": "{target_prompt}"},
                            peft="pt"),),
    )
)

__all__ = ["PromptCombination", "TpvConfig", "build"]
