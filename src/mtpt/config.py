"""Run configuration: typed dataclasses whose field docstrings are the CLI's help text.

A run config is YAML (read with ``yaml.safe_load``) with the sections below; any field can be overridden on
the command line with a dotted flag (``--train.lr 0.01``). The ``method`` section is a mapping with a
``name`` key; the rest of it is validated against that method's own config dataclass from the registry.

Every value is checked when a config object is made (``__post_init__``: at parse time, and for configs built in
code), so a bad value fails before a run creates anything, with a message naming the field and what is allowed.
Paths (task specs, a local backbone folder, ``data.data_root`` and the method options declared with
:func:`path_option`) are made absolute when a config object is made, so a run started from any working folder
reads the files its config named from where it was given; :func:`resolved_paths` does the same to a recorded config
before two configs are compared. A run folder records them relative to itself where it can
(:func:`mtpt.run_folder.write_run_config`), so that a project moved or cloned whole keeps its runs usable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from jsonargparse import ArgumentParser, set_parsing_settings

from mtpt.checks import check_choice, check_lr, check_range, check_sequence, suggest
from mtpt.errors import MtptError
from mtpt.registry import MethodSpec, get_method

SPLIT_NAMES = ("train", "validation", "test")
PATH_OPTION = "mtpt_path"
"""Field-metadata key of a method option that names a file or folder (see :func:`path_option`)."""


def path_option(default: str = "") -> Any:
    """A method-config field naming a file or folder: stored absolute in the run's config.yaml, so the run reads
    the same file from any working folder (and two configs naming one file by different relative paths agree)."""
    return field(default=default, metadata={PATH_OPTION: True})


@dataclass
class DataConfig:
    """Which examples a run sees."""

    data_root: str | None = None
    """Folder of benchmark files; defaults to $MTPT_DATA_ROOT. Bundled demo tasks need none."""
    kshot: int | None = None
    """Train on k examples per class (the task's published k-shot split where k matches), or full data when null."""
    kshot_seed: int = 0
    """Which k-shot split / sampling seed."""
    kshot_validation: Literal["kshot", "full"] = "kshot"
    """With kshot: validate on a k-shot validation set (the published one, or k per class sampled from the
    validation pool), or on the full validation split (capped by max_eval_examples)."""
    max_train_examples: int | None = None
    """Cap each task's training set (a seeded sample)."""
    max_eval_examples: int | None = None
    """Cap each evaluation set at a seeded sample of this size."""
    max_input_tokens: int = 256
    """Longer inputs lose their beginning (the answer cue is at the end); targets are never truncated."""
    target_eos: bool = True
    """Append EOS to training targets so that generation stops after the answer."""
    mixing: Literal["proportional", "temperature", "uniform"] = "proportional"
    """How a multi-task batch draws its tasks."""
    mixing_temperature: float = 2.0
    """T for temperature mixing: task probability proportional to size^(1/T)."""
    length_grouping: int = 0
    """Opt-in (0 = off): draw the examples of this many consecutive steps together, sort them by length and
    split them into that many batches (run in a seeded random order), so each batch pads to about its own length.
    The same examples per window of steps, in another order: training changes."""
    exclude_overlap_with: list[str] = field(default_factory=list)
    """Tasks whose training data counts as this run's sources for cross-task leakage, in addition to the method's own
    (a library's, a source run's): test inputs found in it are removed, so that runs with and without sources (a
    benchmark's PT and zero-shot rows) are scored on the same test examples."""

    def __post_init__(self) -> None:
        check_range("data.kshot", self.kshot, at_least=1, optional=True)
        check_range("data.kshot_seed", self.kshot_seed, at_least=0)
        check_choice("data.kshot_validation", self.kshot_validation, ("kshot", "full"))
        check_range("data.max_train_examples", self.max_train_examples, at_least=1, optional=True)
        check_range("data.max_eval_examples", self.max_eval_examples, at_least=1, optional=True)
        check_range("data.max_input_tokens", self.max_input_tokens, at_least=1)
        check_choice("data.mixing", self.mixing, ("proportional", "temperature", "uniform"))
        check_range("data.mixing_temperature", self.mixing_temperature, above=0)
        check_range("data.length_grouping", self.length_grouping, at_least=0)


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int = 100
    """Optimizer steps."""
    batch_size: int = 8
    """Examples per optimizer step (split across processes and accumulation steps)."""
    grad_accum: int = 1
    """Gradient accumulation steps per optimizer step."""
    lr: float = 0.03
    """Learning rate of parameter groups that do not set their own."""
    lr_units: Literal["absolute", "embedding_rms"] = "absolute"
    """absolute: the learning rates as given. embedding_rms: each learning rate of a tensor in embedding units
    (prompts) is multiplied by the backbone's embedding RMS (a power of it for factors of a product, none for
    dimensionless parameters such as gates and scales: each method's parameter groups say which), so one rate
    moves prompts by a comparable relative amount on backbones whose embedding scales differ (Gemma 3's are
    about 8x SmolLM2's). Under AdamW this is prompt tuning in units of the embedding RMS: every rate is a relative
    step, and a dimensionless parameter (unit 1) takes it as it is, so give such groups their own rate where the
    method has one (SmolLM2's RMS is 0.136: lr 0.22 moves its prompts as an absolute 0.03 does)."""
    weight_decay: float = 0.0
    """AdamW weight decay of groups that do not set their own."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps (then linear decay to 0)."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm; null disables clipping."""
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Mixed precision (autocast); prompt parameters always stay fp32. auto: bf16 where the hardware has it
    natively (AVX512-BF16/AMX CPUs, bf16 GPUs), else fp32 (no); on other CPUs bf16 is emulated and very slow."""
    eval_every: int = 50
    """Evaluate on validation every N steps (and at the end)."""
    metric_for_best: str = "score"
    """Validation metric (averaged over tasks) that picks the best checkpoint; 'score' is the per-task mean."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without improvement; null never stops early."""
    eval_at_start: bool = True
    """Score the initial prompt on validation before the first step, logged as step 0 in metrics.jsonl with the
    scale of each prompt part against the backbone's embeddings (a transfer that collapses at initialisation shows
    there); false skips it."""
    step0_candidate: bool = False
    """Let the step-0 score compete for the best checkpoint (the untrained prompt is kept when no step beats it);
    off by default: step 0 is logged only."""
    log_every: int = 10
    """Write a metrics.jsonl line every N steps."""
    tensorboard: bool = False
    """Also log to TensorBoard under the run folder (needs the tensorboard extra)."""
    seed: int = 42
    """Seeds method initialisation and batch sampling."""
    resume: bool = True
    """Continue from the run folder's last checkpoint when there is one (refused when the run folder was trained
    with another config, unless allow_config_change is set)."""
    allow_config_change: bool = False
    """Resume even though the config differs from the run folder's own in fields that change what is trained (the
    change is logged to metrics.jsonl); otherwise such a resume is refused."""
    divergence_factor: float | None = 3.0
    """Stop with an error when the mean loss of the last 10 steps exceeds this multiple of the first step's loss
    (at least 1 nat: a start that already fits its batch is not a yardstick for noise; a diverging run: lower
    lr); null never stops. A non-finite loss always stops the run."""
    compile: bool = False
    """Opt-in: run the training forward's backbone call through torch.compile (the first step compiles, minutes
    on a CPU; kernels are fused, so the numbers change in the last digits). Evaluation stays eager."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "log_every"):
            check_range(f"train.{name}", getattr(self, name), at_least=1)
        check_lr("train.lr", self.lr)
        check_range("train.weight_decay", self.weight_decay, at_least=0)
        check_range("train.warmup_steps", self.warmup_steps, at_least=0)
        if self.warmup_steps >= self.steps:  # a schedule that never reaches its peak rate is almost always a typo
            raise MtptError(f"train.warmup_steps ({self.warmup_steps}) must be below train.steps ({self.steps}): "
                            "lower it too (--train.warmup_steps N) when shortening a run with --train.steps.")
        check_range("train.max_grad_norm", self.max_grad_norm, above=0, optional=True)
        check_choice("train.precision", self.precision, ("auto", "no", "bf16", "fp16"))
        check_range("train.early_stopping_patience", self.early_stopping_patience, at_least=1, optional=True)
        check_range("train.seed", self.seed, at_least=0, below=2**63)
        check_range("train.divergence_factor", self.divergence_factor, above=1, optional=True)
        if self.batch_size % self.grad_accum:
            raise MtptError(f"train.batch_size ({self.batch_size}) must be a multiple of train.grad_accum "
                            f"({self.grad_accum}): each accumulation step takes an equal share of the batch.")


@dataclass
class EvalConfig:
    """How predictions are scored."""

    scorer: Literal["rank", "generate"] = "rank"
    """rank: most likely label word; generate: greedy decoding + normalised exact match."""
    rank_normalization: Literal["sum", "mean"] = "sum"
    """rank: sum of the label's token log-probabilities, or their mean per token."""
    batch_size: int = 16
    """Evaluation batch size."""
    max_new_tokens: int = 8
    """generate: tokens to decode."""
    final_splits: list[str] = field(default_factory=lambda: ["validation", "test"])
    """Splits evaluated with the best checkpoint when training ends (train, validation, test)."""
    score_last: bool = False
    """Also score the model after the last step on the final splits (results.json's `final_last`), besides the best
    checkpoint on validation (`final`)."""

    def __post_init__(self) -> None:
        check_choice("eval.scorer", self.scorer, ("rank", "generate"))
        check_choice("eval.rank_normalization", self.rank_normalization, ("sum", "mean"))
        check_range("eval.batch_size", self.batch_size, at_least=1)
        check_range("eval.max_new_tokens", self.max_new_tokens, at_least=1)
        check_sequence("eval.final_splits", self.final_splits, allowed=SPLIT_NAMES, non_empty=False)


@dataclass
class RunConfig:
    """A training run: backbone, tasks, method and loop settings."""

    backbone: str = "smollm2-135m"
    """Built-in alias (smollm2-135m, gemma3-270m), local model folder, or hub id."""
    tasks: list[str] = field(default_factory=lambda: ["demo-sst2"])
    """Registered task names or paths to YAML task specs."""
    method: dict[str, Any] = field(default_factory=lambda: {"name": "pt"})
    """The method: {name: <registered method>, ...its options}."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/latest"
    """Run folder: resolved config, logs, checkpoints, results."""

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise MtptError(f"backbone must name a model (alias, folder or hub id), got {self.backbone!r}.")
        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            raise MtptError(f"output_dir must name a folder, got {self.output_dir!r}.")
        check_sequence("tasks", self.tasks)
        metrics = [known_task(name).metrics for name in self.tasks]
        check_method(self.method)
        method_config(self.method)  # the method's own options, checked now rather than when the run starts
        shared = [m for m in metrics[0] if all(m in other for other in metrics)]
        check_choice("train.metric_for_best", self.train.metric_for_best, ["score", *shared])
        plain = resolved_paths({"backbone": self.backbone, "tasks": self.tasks, "method": self.method,
                                "data": {"data_root": self.data.data_root}})
        self.backbone, self.tasks, self.method = plain["backbone"], plain["tasks"], plain["method"]
        self.data.data_root = plain["data"]["data_root"]

    def data_root(self) -> Path | None:
        """The benchmark data folder: ``data.data_root``, else ``$MTPT_DATA_ROOT``, else none."""
        from mtpt.tasks.types import resolve_data_root

        return resolve_data_root(self.data.data_root)


# --help shows each field's docstring (the text under it in the dataclass) and each section's class docstring
set_parsing_settings(docstring_parse_attribute_docstrings=True)


def config_parser(cls: type, prog: str) -> ArgumentParser:
    """A parser for a config dataclass: one flag per field (``--train.lr``), help from the field docstrings."""
    parser = ArgumentParser(prog=prog, exit_on_error=False, description=cls.__doc__)
    parser.add_argument("config", nargs="?", help="YAML config file (fields not given keep their defaults).")
    parser.add_class_arguments(cls)  # no nested key: the fields are top-level flags, as users type them
    return parser


def parse_config(cls: type, argv: list[str], prog: str, what: str = "run"):
    """Parse ``[CONFIG.yaml] [--field value ...]`` into ``cls``: YAML first, then dotted command-line overrides."""
    parser = config_parser(cls, prog)
    ns = _parsed(what, "command line", lambda: parser.parse_args(argv))
    merged = parser.get_defaults()
    if ns.config and (base := load_yaml(ns.config)):
        merged = _parsed(what, ns.config, lambda: parser.parse_object(base))
    return _parsed(what, "command line", lambda: _instantiate(parser, cls, parser.parse_args(argv, namespace=merged)))


def _parsed(what: str, source: str, parse):
    """``parse()``, with jsonargparse's error (it names the bad key or value) turned into one that also names
    ``source``, the YAML file or the command line, so the user knows which to fix."""
    try:
        return parse()
    except MtptError:
        raise
    except Exception as err:
        raise MtptError(f"Invalid {what} configuration ({source}): {err}") from None


def _instantiate(parser: ArgumentParser, cls: type, ns):
    built = parser.instantiate(ns)  # nested sections become their dataclasses; the top level stays a namespace
    return cls(**{f.name: built[f.name] for f in fields(cls)})


def run_parser(prog: str = "mtpt train") -> ArgumentParser:
    """The parser of a run config."""
    return config_parser(RunConfig, prog)


def parse_run_config(argv: list[str]) -> RunConfig:
    """Parse ``[CONFIG.yaml] [--field value ...]`` into a :class:`RunConfig`."""
    return parse_config(RunConfig, argv, "mtpt train", "run")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise MtptError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise MtptError(f"{path} is not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise MtptError(f"{path} is not UTF-8 text ({err}): is it a config file?") from None
    except OSError as err:
        raise MtptError(f"Config file {path} cannot be read ({err}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MtptError(f"{path} must hold a mapping of config sections, got {type(data).__name__}.")
    return data


def known_task(name: Any):
    """The task ``name`` names (registered name or spec path); an unknown name lists the closest ones."""
    from mtpt.tasks import get_task, list_tasks

    if not isinstance(name, str) or not name.strip():
        raise MtptError(f"tasks: every entry must be a task name or spec path, got {name!r}.")
    try:
        return get_task(name)
    except KeyError:
        known = [task.name for task in list_tasks()]
        raise MtptError(f"tasks: unknown task {name!r}.{suggest(name, known)} `mtpt tasks` lists the registered "
                        f"tasks; a path to a YAML task spec also works.") from None


def check_method(method: Any) -> None:
    """The ``method`` section names a registered method (the closest names are suggested for a misspelt one)."""
    from mtpt.registry import list_methods

    if not isinstance(method, dict) or "name" not in method:
        raise MtptError("The 'method' section needs a 'name' (e.g. method: {name: pt}).")
    names = [spec.name for spec in list_methods()]
    if method["name"] not in names:
        raise MtptError(f"Unknown method {method['name']!r} (method.name); registered: {', '.join(names)}."
                        f"{suggest(str(method['name']), names)}")


def resolve_path(value: Any) -> Any:
    """An absolute, normalised form of a non-empty path string (other values unchanged)."""
    if not isinstance(value, str) or not value:
        return value
    return str(Path(value).expanduser().resolve())


def _is_path_like(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def resolved_paths(plain: dict[str, Any]) -> dict[str, Any]:
    """A run config in plain form (a config.yaml) with every path-like value made absolute against the current
    folder: task specs, a local backbone folder, data.data_root and the method's :func:`path_option` options.
    Registered task names, backbone aliases and hub ids stay as they are."""
    return map_paths(plain, resolve_path)


def map_paths(plain: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """``plain`` (a run config in plain form, or a part of one) with ``change`` applied to every path value: task
    specs, a local backbone folder (one that exists, or is named ``./...`` or ``../...``), ``data.data_root`` and
    the method's :func:`path_option` options. Registered task names, backbone aliases and hub ids are not paths."""
    from mtpt.registry import list_methods
    from mtpt.tasks import list_tasks

    out = dict(plain)
    registered = {task.name for task in list_tasks()}
    if isinstance(out.get("tasks"), list):
        out["tasks"] = [change(t) if isinstance(t, str) and t not in registered
                        and (_is_path_like(t) or Path(t).is_file()) else t for t in out["tasks"]]
    backbone = out.get("backbone")
    if isinstance(backbone, str) and backbone and (backbone.startswith(("./", "../"))
                                                   or Path(backbone).expanduser().exists()):
        from mtpt.backbones import ALIASES  # only now: it imports transformers

        if backbone not in ALIASES:  # an alias wins over a folder of the same name, as load_backbone decides
            out["backbone"] = change(backbone)
    if isinstance(out.get("data"), dict) and out["data"].get("data_root"):
        out["data"] = {**out["data"], "data_root": change(out["data"]["data_root"])}
    method = out.get("method")
    specs = {spec.name: spec for spec in list_methods()}
    if isinstance(method, dict) and method.get("name") in specs:
        paths = {f.name for f in fields(specs[method["name"]].config_cls) if f.metadata.get(PATH_OPTION)}
        out["method"] = {k: change(v) if k in paths and isinstance(v, str) and v else v for k, v in method.items()}
    return out


def method_config(method: dict[str, Any]) -> tuple[MethodSpec, Any]:
    """Validate the ``method`` section against the registered method's config dataclass."""
    if not isinstance(method, dict) or "name" not in method:
        raise MtptError("The 'method' section needs a 'name' (e.g. method: {name: pt}).")
    spec = get_method(str(method["name"]))
    options = {k: v for k, v in method.items() if k != "name"}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(spec.config_cls, "method")
    try:
        return spec, parser.instantiate(parser.parse_object({"method": options})).method
    except Exception as err:
        raise MtptError(f"Invalid options for method {spec.name!r}: {err}") from None


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain YAML-able data (enums as their values)."""
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return getattr(obj, "value", obj) if hasattr(obj, "value") and not isinstance(obj, (int, float, str)) else obj


def dump_yaml(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as YAML, atomically (a reader never sees half a config)."""
    from mtpt.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def validate(config: RunConfig) -> None:
    """Check a run config again (its sections' and its own ``__post_init__``): a config changed in code after it was
    made (``config.train.lr = ...``) is checked before training starts."""
    for section in (config.data, config.train, config.eval):
        section.__post_init__()
    config.__post_init__()


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from its plain form (e.g. a run folder's config.yaml)."""
    parser = run_parser()
    try:
        return _instantiate(parser, RunConfig, parser.parse_object(data))
    except Exception as err:
        raise MtptError(f"Invalid run configuration: {err}") from None


__all__ = [
    "DataConfig", "EvalConfig", "RunConfig", "TrainConfig", "asdict", "config_parser", "dump_yaml", "load_yaml",
    "map_paths", "method_config", "parse_config", "parse_run_config", "path_option", "resolved_paths",
    "run_config_from_dict", "to_plain", "validate",
]
