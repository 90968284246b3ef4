"""TA-LoRA: task-adaptive low-rank prompt representation (METHODS.md §7; docs/methods/ta_lora.md).

``mtpt params`` reports its shared and per-task parameter counts through ``TaLora.parameter_counts``.
"""

from mtpt.registry import MethodSpec, OptionRoles, SpeedVariant, register_method
from mtpt.methods.ta_lora.config import TaLoraConfig
from mtpt.methods.ta_lora.module import TaLora, TaLoraOptions
from mtpt.methods.ta_lora.stages import build, load_source_run, restore

register_method(
    MethodSpec(
        name="ta_lora",
        config_cls=TaLoraConfig,
        build=build,
        restore=restore,
        summary="TA-LoRA: shared prompt + s*B(u_i v_i^T) per task, fast/slow learning rates, zero-initialised "
        "gated attention, orthogonality regulariser; source and target stages.",
        roles=OptionRoles(source_run="source_run", learning_rates=("lr_slow", "lr_fast", "lr_gate")),
        speed=tuple(SpeedVariant(label, {"stage": "source", "injection": injection, "theta0_init": "sample_vocab",
                                         "prompt_length": "{prompt_length}"},
                                 multi_task=True, peft="pt", bare_target=1.15)
                    for label, injection in (("ta_lora", "gated_attention"), ("ta_lora_additive", "additive"))),
    )
)

__all__ = ["TaLora", "TaLoraConfig", "TaLoraOptions", "build", "load_source_run"]
