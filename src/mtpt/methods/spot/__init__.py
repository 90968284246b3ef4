"""SPoT: soft prompt transfer from the most similar source prompt (METHODS.md §2)."""

from mtpt.registry import MethodSpec, register_method
from mtpt.methods.spot.config import SpotConfig
from mtpt.methods.spot.module import build

register_method(
    MethodSpec(
        name="spot",
        config_cls=SpotConfig,
        build=build,
        summary="SPoT: initialise from the most similar library prompt (or the mixture prompt), then prompt-tune.",
    )
)

__all__ = ["SpotConfig", "build"]
