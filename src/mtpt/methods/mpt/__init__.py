"""MPT: multitask prompt tuning with prompt distillation (METHODS.md §4)."""

from mtpt.methods.mpt.config import MptConfig
from mtpt.methods.mpt.module import MultitaskPrompt, build, restore
from mtpt.methods.mpt.peft_export import cmd_export_mpt, export_peft_multitask
from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method

register_method(
    MethodSpec(
        name="mpt",
        config_cls=MptConfig,
        build=build,
        restore=restore,
        summary="MPT: shared prompt x per-task rank-r factors; the source stage distils library prompts, "
        "the target stage adapts.",
        cli_commands={"export-mpt": ("Export an MPT run in PEFT's multitask prompt-tuning format.", cmd_export_mpt)},
        roles=OptionRoles(library="source_library", source_run="source_run", learning_rates=("factor_lr",)),
        # Measured in the source stage (multi-task, every row's task cycling): the target stage computes the same
        # prompts with fewer trainable tensors. mpt_distill is the distillation stage: its teacher pass (a no-grad
        # forward with the frozen teacher prompts, one per benchmark task) is reported apart from the step.
        speed=(SpeedVariant("mpt", {"stage": "source", "source_library": "{library}", "distill": False},
                            multi_task=True, peft="mpt", bare_target=1.15),
               SpeedVariant("mpt_distill", {"stage": "source", "source_library": "{teachers}", "distill": True},
                            multi_task=True, peft="mpt", bare_target=1.15, mixed_inference=False)),
    )
)

__all__ = ["MptConfig", "MultitaskPrompt", "build", "export_peft_multitask"]
