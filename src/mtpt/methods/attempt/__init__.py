"""ATTEMPT: attentional mixtures of soft prompts (METHODS.md §3)."""

from mtpt.methods.attempt.config import AttemptConfig
from mtpt.methods.attempt.module import Attempt, build, restore
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method

register_method(
    MethodSpec(
        name="attempt",
        config_cls=AttemptConfig,
        build=build,
        restore=restore,
        summary="ATTEMPT: per-input attention over frozen library source prompts plus a trainable target prompt.",
        roles=OptionRoles(library="source_library", learning_rates=("attention_lr",)),
        # PEFT has no ATTEMPT; its per-example prompt computation gets the looser step-time target
        speed=(SpeedVariant("attempt", {"source_library": "{library}"}, bare_target=1.15),),
    )
)

__all__ = ["Attempt", "AttemptConfig", "build"]
