"""SPoT: soft prompt transfer from the most similar source prompt (METHODS.md §2)."""

from mtpt.methods.spot.config import SpotConfig
from mtpt.methods.spot.module import build, prerequisites, restore
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method

register_method(
    MethodSpec(
        name="spot",
        config_cls=SpotConfig,
        build=build,
        restore=restore,
        summary="SPoT: initialise from the most similar library prompt (or the mixture prompt), then prompt-tune.",
        prerequisites=prerequisites,
        roles=OptionRoles(library="source_library", learning_rates=("retrieval_lr",)),
        speed=(SpeedVariant("spot", {"source_library": "{library}", "mode": "fixed", "source": "src-0"}, peft="pt"),),
    )
)

__all__ = ["SpotConfig", "build"]
