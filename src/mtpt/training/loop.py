"""The training loop, on Accelerate (CPU, one or many processes, or GPUs through the same code).

One optimizer step = ``batch_size`` examples drawn by the mixture sampler (identical on every process), split
across processes and gradient-accumulation micro-batches, run by :class:`~mtpt.training.step.TrainingStep`.
Evaluation runs every ``eval_every`` steps on the validation splits; the best checkpoint by ``metric_for_best`` is
kept, the last one carries optimizer, scheduler, RNG and sampler state for resuming. Runs are started by
:mod:`mtpt.runner`, which builds them (prerequisite runs first).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from transformers import get_linear_schedule_with_warmup

from mtpt import faults
from mtpt.atomic import atomic_write_text
from mtpt.backbones import embedding_rms
from mtpt.batching import pad_batch
from mtpt.config import validate
from mtpt.errors import MtptError
from mtpt.contract import ParamGroups
from mtpt.model import SoftPromptModel
from mtpt.precision import make_accelerator
from mtpt.progress import progress_bar
from mtpt.run_folder import write_run_config
from mtpt.runtime import RunParts
from mtpt.training.checkpoint import (environment_versions, load_method_state, load_trainer_state, run_environment,
                                     save_checkpoint)
from mtpt.training.evaluate import evaluate_sets, leakage_report, load_eval_sets, mean_metric
from mtpt.training.guards import LossGuard
from mtpt.training.prompt_scale import prompt_scales
from mtpt.training.opening import claim, cut_logs, open_for_training, shared
from mtpt.training.sampling import LengthGroupedSampler, MixtureSampler, mixing_weights
from mtpt.training.step import MicroBatch, TrainingStep


@dataclass
class TrainResult:
    run_dir: Path
    best_step: int
    best_metric: float | None
    final: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """split -> task -> metrics of the best checkpoint."""
    final_last: dict[str, dict[str, dict[str, float]]] | None = None
    """The same for the model after the last step (``eval.score_last``); None otherwise."""


def optimizer_groups(method: torch.nn.Module, lr: float, weight_decay: float,
                     unit: float = 1.0) -> list[dict[str, Any]]:
    """The method's parameter groups (or one group), checked to cover each trainable parameter exactly once.

    ``unit``: the backbone's embedding RMS under ``train.lr_units: embedding_rms`` (1 otherwise); each group's rate
    is multiplied by ``unit ** embedding_power`` (see :class:`~mtpt.contract.ParamGroups`)."""
    trainable = [p for p in method.parameters() if p.requires_grad]
    if not trainable:
        raise MtptError("The method has no trainable parameters.")
    groups = method.param_groups(lr) if isinstance(method, ParamGroups) else [{"name": "prompt", "params": trainable}]
    seen: set[int] = set()
    for group in groups:
        group["params"] = [p for p in group["params"] if p.requires_grad]
        group.setdefault("lr", lr)
        group["lr"] = group["lr"] * unit ** float(group.pop("embedding_power", 1.0))
        group.setdefault("weight_decay", weight_decay)
        ids = {id(p) for p in group["params"]}
        if ids & seen:
            raise MtptError(f"Parameter group {group.get('name')!r} repeats parameters of another group.")
        seen |= ids
    if seen != {id(p) for p in trainable}:
        raise MtptError("The method's parameter groups leave some trainable parameters out.")
    return [g for g in groups if g["params"]]


class Trainer:
    """Runs one training job described by a :class:`~mtpt.config.RunConfig`, from its built parts."""

    def __init__(self, parts: RunParts, accelerator: Accelerator | None = None):
        self.parts = parts
        self.cfg = parts.config
        self.run_dir = Path(self.cfg.output_dir)
        self.acc = accelerator or make_accelerator(self.cfg.train.precision)
        self._check_batch_split()
        self.train_sets = self._load_train_sets()
        self.eval_sets = load_eval_sets(parts, "validation")
        sizes = [len(examples) for examples in self.train_sets]
        self.sampler = MixtureSampler(sizes, mixing_weights(sizes, self.cfg.data.mixing, self.cfg.data.mixing_temperature),
                                      self.cfg.train.seed)
        if self.cfg.data.length_grouping > 1:
            self.sampler = LengthGroupedSampler(self.sampler, self._example_length, self.cfg.data.length_grouping)
        if self.cfg.train.compile:
            parts.model.compile_backbone()
        method = parts.model.method
        unit = embedding_rms(parts.backbone) if self.cfg.train.lr_units == "embedding_rms" else 1.0
        self.optimizer = torch.optim.AdamW(optimizer_groups(method, self.cfg.train.lr, self.cfg.train.weight_decay, unit))
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, self.cfg.train.warmup_steps, self.cfg.train.steps)
        # The scheduler is deliberately not prepared: Accelerate would step it once per process, but our
        # batch_size is already the global batch, so one optimizer step is one schedule step everywhere.
        self.model, self.optimizer = self.acc.prepare(parts.model, self.optimizer)
        self.guard = LossGuard(self.cfg.train.divergence_factor, self.run_dir / "checkpoints", self.cfg.train.lr)
        self.stepper = TrainingStep(self.model, self.optimizer, self.acc, scheduler=self.scheduler,
                                    max_grad_norm=self.cfg.train.max_grad_norm, check_terms=self.guard.check_terms)
        self.step = 0
        self.best_metric: float | None = None
        self.best_step = 0
        self.evals_without_gain = 0
        self.tb = None

    # --- set-up -------------------------------------------------------------------------------------------------
    def _check_batch_split(self) -> None:
        per_step = self.cfg.train.grad_accum * self.acc.num_processes
        if self.cfg.train.batch_size % per_step:
            raise MtptError(
                f"train.batch_size ({self.cfg.train.batch_size}) must be divisible by grad_accum × processes ({per_step})."
            )

    def _load_train_sets(self) -> list[list]:
        data, root = self.cfg.data, self.cfg.data_root()
        sets = []
        for task in self.parts.tasks:
            examples = task.examples("train", root, kshot=data.kshot, seed=data.kshot_seed, max_examples=data.max_train_examples)
            if not examples:
                raise MtptError(f"Task {task.name!r} has no training examples: check its data files.")
            # Tokenise once: the same token lists serve every step.
            sets.append([(self.parts.tokenizer.input_ids(ex.text), self.parts.tokenizer.target_ids(ex.target)) for ex in examples])
        return sets

    def _example_length(self, task: int, index: int) -> int:
        inputs, target = self.train_sets[task][index]
        return len(inputs) + len(target)

    @property
    def unwrapped(self) -> SoftPromptModel:
        return self.acc.unwrap_model(self.model)

    # --- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train into the run folder, holding it for this launch (a second launch on it fails at once)."""
        validate(self.cfg)
        with claim(self.run_dir, self.acc.state):
            self.opening = shared(self.acc.state, lambda: open_for_training(self.cfg))
            return self._fit()

    def _fit(self) -> TrainResult:
        self._maybe_resume()  # first: a damaged checkpoint fails before anything is written
        self._prepare_run_dir()
        cfg = self.cfg.train
        if self.step == 0 and cfg.eval_at_start and self._evaluate_start():
            return self._finish()
        progress = progress_bar(self.acc.is_main_process, total=cfg.steps, initial=self.step, desc="train")
        started = time.perf_counter()
        while self.step < cfg.steps:
            logs = self._train_step()
            self.guard.observe(self.step + 1, logs["loss"])
            self.step += 1
            faults.point("train.step")
            progress.update(1)
            progress.set_postfix(loss=f"{logs['loss']:.4f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self._log({"step": self.step, **logs, "elapsed_s": round(time.perf_counter() - started, 2)})
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                if self._evaluate_and_checkpoint():
                    break
        progress.close()
        return self._finish()

    def _train_step(self) -> dict[str, float]:
        cfg = self.cfg.train
        draws = self.sampler.draw(self.step, cfg.batch_size)
        world = self.acc.num_processes
        per_process = cfg.batch_size // world
        mine = draws[self.acc.process_index * per_process:(self.acc.process_index + 1) * per_process]
        micro = per_process // cfg.grad_accum
        # Every process knows the whole step's examples, so each micro-batch's summed token loss can be divided
        # by the step's token count; × world undoes DDP's gradient averaging. The result is exactly the
        # gradient of one batch of batch_size examples, however it is split.
        step_tokens = sum(len(self.train_sets[task][index][1]) for task, index in draws)
        parts = [MicroBatch(self._batch(mine[i * micro:(i + 1) * micro]), step_tokens / world, micro / per_process)
                 for i in range(cfg.grad_accum)]
        result = self.stepper.run(parts, self.step)
        if result.record and self.acc.is_main_process:
            with open(self.run_dir / "method_log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": self.step + 1, **result.record}, default=float) + "\n")
        summed = {k: float(self.acc.reduce(v, "sum")) if world > 1 else float(v) for k, v in result.terms.items()}
        logs = {"loss": sum(summed.values()), **{f"loss/{k}": v for k, v in summed.items()}}
        logs.update({f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)})
        return logs

    def _batch(self, part: list[tuple[int, int]]):
        items = [self.train_sets[task][index] for task, index in part]
        return pad_batch([x for x, _ in items], [y for _, y in items], [task for task, _ in part],
                         self.parts.tokenizer.pad_id)

    # --- evaluation and checkpoints ----------------------------------------------------------------------------
    def _evaluate_and_checkpoint(self, **extra_log: Any) -> bool:
        """Evaluate, save best/last; returns True when early stopping says stop."""
        metrics = evaluate_sets(self.unwrapped, self.parts, self.eval_sets, self.acc)
        value = mean_metric(metrics, self.cfg.train.metric_for_best)
        # Without validation data the metric is NaN: then the latest checkpoint is the best one.
        improved = self.best_metric is None or math.isnan(value) or value > self.best_metric
        if improved:
            self.best_metric, self.best_step, self.evals_without_gain = value, self.step, 0
        else:
            self.evals_without_gain += 1
        self._log({"step": self.step, "split": "validation", self.cfg.train.metric_for_best: value,
                   "tasks": metrics, "best": self.best_metric, **extra_log})
        if self.acc.is_main_process:
            if improved:  # the metrics travel with the checkpoint: the final validation pass reuses them
                save_checkpoint(self.run_dir / "checkpoints" / "best", self.unwrapped.method,
                                {**self._meta(), "validation": metrics})
            save_checkpoint(self.run_dir / "checkpoints" / "last", self.unwrapped.method, self._meta(),
                            trainer_state=self._trainer_state())
        self.guard.saved_step = self.step
        self.acc.wait_for_everyone()
        patience = self.cfg.train.early_stopping_patience
        return patience is not None and self.evals_without_gain >= patience

    def _evaluate_start(self) -> bool:
        """Step 0: the initial prompt's validation score and the scale of its parts, logged; a candidate for the
        best checkpoint only under ``train.step0_candidate``. Returns True when early stopping says stop."""
        scales = prompt_scales(self.unwrapped, self._scale_inputs(), embedding_rms(self.parts.backbone))
        if self.cfg.train.step0_candidate:
            return self._evaluate_and_checkpoint(prompt_scale=scales)
        metrics = evaluate_sets(self.unwrapped, self.parts, self.eval_sets, self.acc)
        self._log({"step": 0, "split": "validation", self.cfg.train.metric_for_best:
                   mean_metric(metrics, self.cfg.train.metric_for_best), "tasks": metrics, "prompt_scale": scales})
        return False

    def _scale_inputs(self) -> dict[str, tuple[int, list[int]]]:
        """One training input per task (its first), on which the method's initial prompt is measured."""
        return {task.name: (index, self.train_sets[index][0][0]) for index, task in enumerate(self.parts.tasks)}

    def _meta(self) -> dict[str, Any]:
        parts = self.parts
        return {
            "format": 1,
            "method": parts.spec.name,
            "backbone": parts.backbone.name,
            "weights_hash": parts.backbone.weights_hash,
            "tasks": parts.task_names,
            # what the test inputs left out as leaked are checked against, should the run be rebuilt from this
            # checkpoint alone (MethodSpec.restore) once its library is gone
            "source_tasks": parts.source_tasks,
            "seed": self.cfg.train.seed,
            "step": self.step,
            "best_step": self.best_step,
            "best_metric": self.best_metric,
            "metric_for_best": self.cfg.train.metric_for_best,
            "versions": environment_versions(),
        }

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "sampler": self.sampler.state_dict(),
            "best_metric": -math.inf if self.best_metric is None else self.best_metric,
            "best_step": self.best_step,
            "evals_without_gain": self.evals_without_gain,
            "guard": self.guard.state_dict(),
        }

    def _maybe_resume(self) -> None:
        last = self.run_dir / "checkpoints" / "last"
        if not self.opening.resume:  # a fresh start (open_for_training removed the earlier attempt's files)
            return
        meta = load_method_state(last, self.unwrapped.method)
        state = load_trainer_state(last)  # missing or damaged: an error naming the file, never a restart
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise MtptError(f"{last / 'trainer.pt'} does not hold this run's trainer state ({type(err).__name__}: "
                            f"{str(err)[:200]}): the checkpoint is damaged.") from None
        if meta.get("step") != self.step:
            raise MtptError(f"{last}: meta.json is of step {meta.get('step')}, trainer.pt of step {self.step}; the "
                            "checkpoint's files come from different saves: restore it or start over.")
        if self.acc.is_main_process:
            cut_logs(self.run_dir, self.step)
        repaired = {"repaired": self.opening.repaired} if self.opening.repaired else {}
        self._log({"event": "resumed", "step": self.step, **repaired})
        if self.opening.config_changes:
            self._log({"event": "config_changed", "step": self.step, "changes": self.opening.config_changes})

    def _restore(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        self.best_metric = None if state["best_metric"] == -math.inf else float(state["best_metric"])
        self.best_step = int(state["best_step"])
        self.evals_without_gain = int(state["evals_without_gain"])
        self.guard.load_state_dict(state.get("guard"), self.step)

    def _finish(self) -> TrainResult:
        last = self._score_last() if self.cfg.eval.score_last else None  # before the best checkpoint replaces it
        best = self.run_dir / "checkpoints" / "best"
        best_meta = load_method_state(best, self.unwrapped.method) if best.exists() else {}
        result = TrainResult(self.run_dir, self.best_step, self.best_metric, final_last=last)
        for split in self.cfg.eval.final_splits:
            if split == "validation" and "validation" in best_meta:
                # The best checkpoint was chosen on exactly these examples: scoring them again (minutes on a
                # multi-task source stage) would only reproduce the numbers it was saved with.
                result.final[split] = best_meta["validation"]
                continue
            if last is not None and best.exists() and self.best_step == self.step:
                # The best checkpoint is the model after the last step, which score_last has just scored.
                result.final[split] = last[split]
                continue
            sets = self.eval_sets if split == "validation" else load_eval_sets(self.parts, split)
            result.final[split] = evaluate_sets(self.unwrapped, self.parts, sets, self.acc)
        leakage = leakage_report(self.parts)  # None unless the run has sources
        if self.acc.is_main_process:
            summary = {"best_step": result.best_step, "best_metric": result.best_metric, "final": result.final,
                       **({"final_last": last} if last is not None else {}),
                       "environment": run_environment(self.acc.num_processes, self.acc.mixed_precision)}
            if leakage is not None:
                summary["leakage"] = leakage
                self._log({"event": "leakage", "step": self.step, "leakage": leakage})
            atomic_write_text(self.run_dir / "results.json", json.dumps(summary, indent=1))
        if self.tb is not None:
            self.tb.close()
        return result

    def _score_last(self) -> dict[str, dict[str, dict[str, float]]]:
        """The final splits' metrics of the model as it is after the last step (or the step early stopping ended)."""
        return {split: evaluate_sets(self.unwrapped, self.parts,
                                     self.eval_sets if split == "validation" else load_eval_sets(self.parts, split),
                                     self.acc)
                for split in self.cfg.eval.final_splits}

    # --- logging -----------------------------------------------------------------------------------------------
    def _prepare_run_dir(self) -> None:
        if self.acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(self.run_dir, self.cfg, self.parts.spec.name, self.parts.method_config)
            groups = [{"name": g.get("name"), "lr": g.get("initial_lr", g["lr"]), "weight_decay": g["weight_decay"],
                       "parameters": sum(p.numel() for p in g["params"])} for g in self.optimizer.param_groups]
            atomic_write_text(self.run_dir / "param_groups.json", json.dumps(groups, indent=1))
            if self.cfg.train.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        self.acc.wait_for_everyone()

    def _log(self, record: dict[str, Any]) -> None:
        if not self.acc.is_main_process:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        faults.point("train.logged")
        if self.tb is not None and "step" in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])


def evaluate_untrained(parts: RunParts) -> TrainResult:
    """A run whose method has nothing to train (zero-shot): its folder gets the config and the final splits'
    results, in the same files a trained run has (no checkpoints: there is nothing to save)."""
    acc = make_accelerator(parts.config.train.precision)
    parts.model.to(acc.device)
    run_dir = Path(parts.config.output_dir)
    final = {split: evaluate_sets(parts.model, parts, load_eval_sets(parts, split), acc)
             for split in parts.config.eval.final_splits}
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, parts.config, parts.spec.name, parts.method_config)
        summary = {"best_step": 0, "best_metric": None, "final": final,
                   **({"final_last": final} if parts.config.eval.score_last else {}),  # one model: last = best
                   "environment": run_environment(acc.num_processes, acc.mixed_precision)}
        leakage = leakage_report(parts)  # None unless the run has sources
        if leakage is not None:
            summary["leakage"] = leakage
        atomic_write_text(run_dir / "results.json", json.dumps(summary, indent=1))
    acc.wait_for_everyone()
    return TrainResult(run_dir, 0, None, final)
