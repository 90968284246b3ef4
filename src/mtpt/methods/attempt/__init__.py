"""ATTEMPT: attentional mixtures of soft prompts (METHODS.md §3)."""

from mtpt.methods.attempt.config import AttemptConfig
from mtpt.methods.attempt.module import Attempt, build
from mtpt.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="attempt",
        config_cls=AttemptConfig,
        build=build,
        summary="ATTEMPT: per-input attention over frozen library source prompts plus a trainable target prompt.",
    )
)

__all__ = ["Attempt", "AttemptConfig", "build"]
