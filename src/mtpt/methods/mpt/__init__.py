"""MPT: multitask prompt tuning with prompt distillation (METHODS.md §4)."""

from mtpt.methods.mpt.config import MptConfig
from mtpt.methods.mpt.module import MultitaskPrompt, build
from mtpt.methods.mpt.peft_export import cmd_export_mpt, export_peft_multitask
from mtpt.registry import MethodSpec, register_method

register_method(
    MethodSpec(
        name="mpt",
        config_cls=MptConfig,
        build=build,
        summary="MPT: shared prompt x per-task rank-r factors; the source stage distils library prompts, "
        "the target stage adapts.",
        cli_commands={"export-mpt": ("Export an MPT run in PEFT's multitask prompt-tuning format.", cmd_export_mpt)},
    )
)

__all__ = ["MptConfig", "MultitaskPrompt", "build", "export_peft_multitask"]
