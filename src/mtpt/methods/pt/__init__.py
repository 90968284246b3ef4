"""Vanilla prompt tuning (METHODS.md §1)."""

from mtpt.methods.pt.config import PromptTuningConfig
from mtpt.methods.pt.module import PromptTuning, build, restore
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method

register_method(
    MethodSpec(
        name="pt",
        config_cls=PromptTuningConfig,
        build=build,
        restore=restore,
        summary="Vanilla prompt tuning: one trainable soft prompt (Lester et al. 2021).",
        roles=OptionRoles(prompt_length="prompt_length"),
        speed=(SpeedVariant("pt", {"prompt_length": "{prompt_length}"}, peft="pt"),),
    )
)

__all__ = ["PromptTuning", "PromptTuningConfig", "build"]
