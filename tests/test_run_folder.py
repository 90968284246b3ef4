"""Run folders that cannot be silently wrong (issue 32): one launch at a time, resumed only under their own config,
checkpoints complete or absent after a stop at any point, finite everywhere, logs without repeated steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import folder_held_by_another_process
from mtpt.errors import MtptError
from mtpt.runner import train
from mtpt.training.loop import Trainer
from test_training import read_jsonl, toy_config

REPO = Path(__file__).resolve().parents[1]


def crash_after(monkeypatch, steps: int):
    """Make the trainer stop (as a kill would, but catchable) once it has done ``steps`` steps."""
    original = Trainer._train_step

    def step(self):
        if self.step == steps:
            raise KeyboardInterrupt("simulated stop")
        return original(self)

    monkeypatch.setattr(Trainer, "_train_step", step)
    return lambda: monkeypatch.setattr(Trainer, "_train_step", original)


def loss_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


# --- resume checks ------------------------------------------------------------------------------------------------
def test_resuming_under_a_changed_config_is_refused_and_bookkeeping_may_change(tmp_path, monkeypatch):
    restore = crash_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, steps=6))
    restore()
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    for change, field in (({"lr": 0.2}, "train.lr: 0.1 -> 0.2"), ({"seed": 7}, "train.seed: 42 -> 7"),
                          ({"steps": 9}, "train.steps: 6 -> 9")):
        with pytest.raises(MtptError, match="allow_config_change") as err:
            train(toy_config(tmp_path, **{"steps": 6, **change}))
        assert field in str(err.value) and "another output_dir" in str(err.value)
    other_method = toy_config(tmp_path, steps=6)
    other_method.method = {"name": "pt", "prompt_length": 4, "init": "uniform"}
    with pytest.raises(MtptError, match="method.init: 'sample_vocab' -> 'uniform'"):
        train(other_method)
    assert (tmp_path / "run" / "config.yaml").read_text() == recorded  # nothing rewritten
    # evaluation batch size and logging interval do not change what is trained
    config = toy_config(tmp_path, steps=6, log_every=2)
    config.eval.batch_size = 4
    train(config)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["best_step"] > 0


def test_allow_config_change_resumes_and_logs_the_change(tmp_path, monkeypatch):
    restore = crash_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, steps=6))
    restore()
    train(toy_config(tmp_path, steps=6, lr=0.05, allow_config_change=True))
    events = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "config_changed"]
    assert events and events[0]["step"] == 3 and "train.lr: 0.1 -> 0.05" in events[0]["changes"]


def test_a_finished_run_is_not_retrained_under_another_config(tmp_path):
    train(toy_config(tmp_path, steps=3))
    with pytest.raises(MtptError, match="train.steps: 3 -> 6"):
        train(toy_config(tmp_path, steps=6))


def test_a_missing_trainer_state_is_an_error_never_a_restart(tmp_path, monkeypatch):
    restore = crash_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, steps=6))
    restore()
    run = tmp_path / "run"
    (run / "checkpoints" / "last" / "trainer.pt").unlink()
    log = (run / "metrics.jsonl").read_text()
    with pytest.raises(MtptError, match=f"{run / 'checkpoints' / 'last' / 'trainer.pt'} is missing"):
        train(toy_config(tmp_path, steps=6))
    assert (run / "metrics.jsonl").read_text() == log  # no second series of steps


def test_a_finished_run_without_its_last_checkpoint_is_not_silently_retrained(tmp_path):
    import shutil

    train(toy_config(tmp_path, steps=3))
    last = tmp_path / "run" / "checkpoints" / "last"
    last.unlink() if last.is_symlink() else shutil.rmtree(last)
    with pytest.raises(MtptError, match="no checkpoints/last to resume from"):
        train(toy_config(tmp_path, steps=3))


@pytest.mark.parametrize("damage, message", [
    (lambda last: (last / "method.safetensors").write_bytes(b"\x05"), "is not a readable safetensors file"),
    (lambda last: (last / "meta.json").write_text('{"step": 3, "meth'), "meta.json is not valid JSON"),
    (lambda last: (last / "trainer.pt").write_bytes(b"PK\x03\x04garbage"), "trainer.pt is not a readable trainer"),
    (lambda last: save_file({"prompt": torch.full((4, 32), float("nan"))}, str(last / "method.safetensors")),
     "method.safetensors: tensor 'prompt' holds 128 non-finite"),
])
def test_a_damaged_last_checkpoint_names_its_file(tmp_path, monkeypatch, damage, message):
    restore = crash_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, steps=6))
    restore()
    damage(tmp_path / "run" / "checkpoints" / "last")
    with pytest.raises(MtptError, match=message):
        train(toy_config(tmp_path, steps=6))


def test_a_nan_best_checkpoint_is_never_evaluated_or_exported(tmp_path):
    from mtpt.runs import evaluate_run, export_run

    train(toy_config(tmp_path, steps=3))
    best = tmp_path / "run" / "checkpoints" / "best" / "method.safetensors"
    save_file({"prompt": torch.full((4, 32), float("nan"))}, str(best))
    with pytest.raises(MtptError, match=f"{best}: tensor 'prompt'"):
        evaluate_run(tmp_path / "run")
    with pytest.raises(MtptError, match=f"{best}: tensor 'prompt'"):
        export_run(tmp_path / "run", tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


# --- logs and checkpoints after a stop ----------------------------------------------------------------------------
def test_a_resumed_run_logs_every_step_once(tmp_path, monkeypatch):
    restore = crash_after(monkeypatch, 5)  # steps 4 and 5 are logged, the checkpoint is at step 3
    with pytest.raises(KeyboardInterrupt):
        train(toy_config(tmp_path, steps=6))
    restore()
    with open(tmp_path / "run" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "loss": 1.')  # a line cut off by a kill
    train(toy_config(tmp_path, steps=6))
    assert loss_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    validations = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r.get("split")]
    assert validations == [0, 3, 6]  # step 0: the initial prompt's score, logged once


def test_resume_false_starts_over_and_leaves_nothing_of_the_earlier_attempt(tmp_path):
    train(toy_config(tmp_path, steps=3))
    train(toy_config(tmp_path, steps=6, resume=False, seed=5))
    assert loss_steps(tmp_path / "run") == [1, 2, 3, 4, 5, 6]
    assert json.loads((tmp_path / "run" / "checkpoints" / "last" / "meta.json").read_text())["seed"] == 5


def versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}-"))


def test_a_checkpoint_is_published_in_one_step_and_old_versions_go(tmp_path):
    from helpers import pt_model
    from mtpt.training.checkpoint import save_checkpoint

    model, _ = pt_model()
    folder = tmp_path / "checkpoints" / "last"
    save_checkpoint(folder, model.method, {"n": 1})
    first = os.readlink(folder)
    save_checkpoint(folder, model.method, {"n": 2})
    assert folder.is_symlink() and os.readlink(folder) != first
    assert versions(folder) == [os.readlink(folder)]  # the previous version is gone
    assert json.loads((folder / "meta.json").read_text()) == {"n": 2}


@pytest.mark.parametrize("point", ["checkpoint.file", "checkpoint.files_written", "publish.before_link",
                                   "publish.link_made", "publish.after_link"])
def test_a_stop_at_any_point_of_a_save_leaves_a_complete_checkpoint(tmp_path, monkeypatch, point):
    """Stop (no clean-up, as after kill -9) at each step of a save: `last` is the old or the new checkpoint, and
    recovery removes what the stopped save left."""
    import mtpt.atomic as atomic
    import mtpt.training.checkpoint as checkpoint
    from helpers import pt_model
    from mtpt.training.checkpoint import is_complete, read_meta, recover_checkpoints, save_checkpoint

    class Killed(BaseException):
        pass

    model, _ = pt_model()
    folder = tmp_path / "checkpoints" / "last"
    save_checkpoint(folder, model.method, {"n": 1})

    def stop(name):
        if name == point:
            raise Killed

    monkeypatch.setattr(atomic.faults, "point", stop)
    monkeypatch.setattr(checkpoint.faults, "point", stop)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda *a, **k: None)  # a killed process cleans nothing up
    with pytest.raises(Killed):
        save_checkpoint(folder, model.method, {"n": 2})
    monkeypatch.undo()
    assert is_complete(folder) and read_meta(folder) in ({"n": 1}, {"n": 2})
    recover_checkpoints(tmp_path / "checkpoints")
    assert versions(folder) == [os.readlink(folder)]
    assert read_meta(folder) in ({"n": 1}, {"n": 2})


def test_an_earlier_layout_folder_stays_readable_and_a_stop_between_its_renames_is_repaired(tmp_path, monkeypatch):
    import mtpt.atomic as atomic
    from helpers import pt_model
    from mtpt.training.checkpoint import read_meta, recover_checkpoints, save_checkpoint

    model, _ = pt_model()
    folder = tmp_path / "checkpoints" / "last"
    folder.mkdir(parents=True)  # the layout before issue 32: a plain folder
    save_file({"prompt": model.method.prompt.detach().clone()}, str(folder / "method.safetensors"))
    (folder / "method_state.json").write_text("{}")
    (folder / "meta.json").write_text('{"n": 0}')
    assert read_meta(folder) == {"n": 0}

    def stop(name):
        if name == "publish.between_renames":
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic.faults, "point", stop)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, model.method, {"n": 1})
    monkeypatch.undo()
    assert not folder.exists()  # the one crash point of a plain-folder swap ...
    assert recover_checkpoints(tmp_path / "checkpoints")  # ... is repaired from .last-old
    assert read_meta(folder) == {"n": 0}
    save_checkpoint(folder, model.method, {"n": 2})
    assert read_meta(folder) == {"n": 2} and versions(folder) == [os.readlink(folder)]


def test_recorded_benchmark_run_folders_stay_readable():
    """The recorded runs (plain checkpoints/best folders) are read by the source_run readers and kept_checkpoint."""
    from mtpt.library.access import kept_checkpoint, read_prompt
    from mtpt.training.checkpoint import read_meta

    stages = sorted((REPO / "benchmarks" / "results" / "quality-en" / "source-stages").glob("*/checkpoints"))
    if not stages:
        pytest.skip("no recorded source stages in this checkout")
    for checkpoints in stages:
        folder = kept_checkpoint(checkpoints.parent)
        assert read_meta(folder)["method"] in ("mpt", "ta_lora", "pt")
    stage1 = sorted((REPO / "benchmarks" / "results" / "quality-en" / "target-stage1").glob("*/*"))
    assert read_prompt(stage1[0]).isfinite().all()


# --- paths a run folder records ---------------------------------------------------------------------------------
def test_a_run_folder_records_project_paths_relative_to_itself_and_others_absolute(tmp_path, monkeypatch):
    """A project (a repository with its recorded runs) moved or cloned elsewhere keeps its runs comparable."""
    import yaml

    from mtpt.config import DataConfig, RunConfig, method_config
    from mtpt.run_folder import read_run_config, recorded_changes, refuse_changed_run, write_run_config
    from helpers import toy_task

    project, data = tmp_path / "project", tmp_path / "data"
    for folder in (project / "lib", project / "runs" / "cell", data):
        folder.mkdir(parents=True)
    monkeypatch.chdir(project)
    toy_task()

    def planned(library: str = "lib") -> RunConfig:
        return RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"],
                         method={"name": "attempt", "source_library": library},
                         data=DataConfig(data_root=str(data)), output_dir="runs/cell")

    config = planned()
    write_run_config(project / "runs" / "cell", config, "attempt", method_config(config.method)[1])
    written = yaml.safe_load((project / "runs" / "cell" / "config.yaml").read_text())
    assert written["method"]["source_library"] == "../../lib"
    assert written["data"]["data_root"] == str(data)  # outside the project: absolute
    assert yaml.safe_load((project / "runs" / "cell" / "method_config.yaml").read_text())["source_library"] == \
        "../../lib"
    (project / "runs" / "cell" / "results.json").write_text("{}")

    moved = tmp_path / "moved"
    project.rename(moved)
    monkeypatch.chdir(tmp_path)  # read from another working folder
    assert read_run_config(moved / "runs" / "cell")["method"]["source_library"] == str(moved / "lib")
    monkeypatch.chdir(moved)  # re-planned in the moved project, as a benchmark in a fresh clone is
    assert recorded_changes(planned()) == []
    refuse_changed_run(planned())
    with pytest.raises(MtptError, match="method.source_library"):
        refuse_changed_run(planned("other"))


def train_from_an_exported_prompt(init_file: str) -> None:
    """Train run ``a/run``, export its prompt to ``init_file``, then train ``b/run`` from it (in the working folder)."""
    from mtpt.runs import export_run

    train(toy_config(Path("a"), steps=3))
    export_run("a/run", init_file, fmt="prompt")
    second = toy_config(Path("b"), steps=3)
    second.method = {"name": "pt", "prompt_length": 4, "init": "from_file", "init_path": init_file}
    train(second)


def test_a_trained_run_whose_init_lies_in_its_project_loads_after_the_project_moved(tmp_path, monkeypatch):
    from mtpt.runs import load_run

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    train_from_an_exported_prompt("prompts/a.safetensors")
    assert "init_path: ../../prompts/a.safetensors" in (project / "b" / "run" / "config.yaml").read_text()

    moved = tmp_path / "moved"
    project.rename(moved)
    monkeypatch.chdir(tmp_path)
    parts = load_run(moved / "b" / "run")  # builds the method, which reads its init from the moved first run
    assert parts.config.method["init_path"] == str(moved / "prompts" / "a.safetensors")
    trained = load_file(str(moved / "b" / "run" / "checkpoints" / "best" / "method.safetensors"))["prompt"]
    assert torch.equal(parts.model.method.prompt.detach(), trained)


def test_a_trained_run_whose_init_file_is_gone_is_rebuilt_from_its_checkpoint(tmp_path, monkeypatch):
    from mtpt.runs import RestoredFromCheckpointWarning, evaluate_run

    monkeypatch.chdir(tmp_path)
    train_from_an_exported_prompt("scratch/a.safetensors")
    before = evaluate_run("b/run", splits=("validation", "test"), predictions="before.jsonl")
    (tmp_path / "scratch" / "a.safetensors").unlink()
    with pytest.warns(RestoredFromCheckpointWarning, match=r"b/run: rebuilt from its checkpoint .*best alone, as "
                                                           r"rebuilding .*scratch/a.safetensors does not exist"):
        after = evaluate_run("b/run", splits=("validation", "test"), predictions="after.jsonl")
    assert after == before
    assert (tmp_path / "after.jsonl").read_text() == (tmp_path / "before.jsonl").read_text()


def test_portable_records_rewrites_absolute_project_paths_and_nothing_else(tmp_path, monkeypatch):
    """benchmarks/portable_records.py: a run recorded with absolute paths (as mtpt wrote them on 2026-12-04/05)."""
    import importlib.util

    import yaml

    from mtpt.config import RunConfig, method_config, to_plain
    from mtpt.run_folder import recorded_changes
    from helpers import toy_task

    spec = importlib.util.spec_from_file_location("portable_records", REPO / "benchmarks" / "portable_records.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(tmp_path)
    toy_task()
    (tmp_path / "lib").mkdir()
    run = tmp_path / "runs" / "cell"
    run.mkdir(parents=True)
    planned = RunConfig(backbone="tiny-llama", tasks=["toy-sentiment"],
                        method={"name": "attempt", "source_library": "lib"}, output_dir="runs/cell")
    (run / "config.yaml").write_text(yaml.safe_dump(to_plain(planned)))  # paths absolute, as written then
    options = {"method": "attempt", **to_plain(method_config(planned.method)[1])}
    (run / "method_config.yaml").write_text(yaml.safe_dump(options))
    (run / "results.json").write_text("{}")
    assert recorded_changes(planned) == []

    assert script.portable(run) == ["config.yaml", "method_config.yaml"]
    config, written = yaml.safe_load((run / "config.yaml").read_text()), yaml.safe_load(
        (run / "method_config.yaml").read_text())
    assert config["method"]["source_library"] == written["source_library"] == "../../lib"
    assert {k: v for k, v in written.items() if k != "source_library"} == \
        {k: v for k, v in options.items() if k != "source_library"}
    assert recorded_changes(planned) == []
    assert script.portable(run) == []  # once is enough


# --- guards -------------------------------------------------------------------------------------------------------
def test_the_loss_guard_stops_divergence_and_keeps_quiet_on_noise(tmp_path):
    from mtpt.training.guards import LossGuard

    guard = LossGuard(3.0, tmp_path / "checkpoints", lr=0.1)
    for step, loss in enumerate([4.7, 4.0, 6.0, 3.5, 9.0, 3.0, 2.5, 5.0, 2.0, 2.2, 2.1, 8.0], start=1):
        guard.observe(step, loss)  # noisy but falling: no stop
    guard = LossGuard(3.0, tmp_path / "checkpoints", lr=1e6)
    guard.saved_step = 10
    with pytest.raises(MtptError, match=r"diverged.*steps 1-10 is 15.43, 3\.3x the first step's 4\.7.*holds step 10"):
        for step, loss in enumerate([4.7, 12.0] + [17.2] * 10, start=1):
            guard.observe(step, loss)
    # a transferred start that already fits its batch (issue 29's TPV on CR): noise is not divergence
    guard = LossGuard(3.0, tmp_path / "checkpoints", lr=0.22)
    for step, loss in enumerate([0.0717, 0.1765, 0.4978, 0.6897, 0.5822, 0.1353, 0.2114, 0.1978, 0.116, 0.3], 1):
        guard.observe(step, loss)
    with pytest.raises(MtptError, match=r"steps 2-11 is 3\.291, 3\.3x 1 \(the first step's 0\.0717, raised to the floor\)"):
        guard.observe(11, 30.0)
    with pytest.raises(MtptError, match="loss became inf at step 2.*No checkpoint"):
        guard = LossGuard(None, tmp_path, lr=0.1)
        guard.observe(1, 1.0)
        guard.observe(2, float("inf"))


def test_a_diverging_run_stops_with_a_clear_error(tmp_path, monkeypatch):
    import mtpt.training.step as loop  # the training step computes the task loss

    calls = []

    def growing(out, normalizer):
        calls.append(1)
        return real(out, normalizer) * (1.0 + len(calls))  # finite, but ever larger

    real = loop.task_loss
    monkeypatch.setattr(loop, "task_loss", growing)
    with pytest.raises(MtptError, match="Training diverged.*train.divergence_factor 3"):
        train(toy_config(tmp_path, steps=20, eval_every=5))
    monkeypatch.undo()
    calls.clear()
    train(toy_config(tmp_path / "off", steps=12, eval_every=6, divergence_factor=None))


# --- one launch per folder ----------------------------------------------------------------------------------------
def test_a_folder_held_by_another_process_is_refused_naming_it(tmp_path):
    from mtpt.locking import lock_path_for, run_folder_lock

    folder = tmp_path / "run"
    with folder_held_by_another_process(folder) as pid:
        with pytest.raises(MtptError, match=f"in use by pid {pid} on host .* since "):
            with run_folder_lock(folder):
                pass
        assert lock_path_for(folder).name == ".run.lock"
    with run_folder_lock(folder):  # free again: the lock died with its holder
        with run_folder_lock(folder):  # and a claim nests within one process
            pass


def mtpt_train(out: Path, *extra: str, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env.pop("MTPT_FAULT", None)
    if fault:
        env["MTPT_FAULT"] = fault
    argv = [sys.executable, "-m", "mtpt.cli", "train", "--backbone", "tiny-llama", "--tasks", "[demo-sst2]",
            "--method", "{name: pt, prompt_length: 4}", "--train.steps", "6", "--train.batch_size", "4",
            "--train.eval_every", "3", "--train.log_every", "1", "--train.precision", "no",
            "--data.max_train_examples", "16", "--data.max_eval_examples", "8", "--eval.final_splits", "[validation]",
            "--output_dir", str(out), *extra]
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_concurrent_trains_on_one_folder(tmp_path):
    """The second `mtpt train` fails at once naming the first; the first finishes untouched, identical to a run that
    had the folder to itself."""
    go = tmp_path / "go"
    first = mtpt_train(tmp_path / "run", fault=f"train.step:2:wait={go}")  # holds the folder, paused at step 2
    alone = mtpt_train(tmp_path / "alone")
    deadline = time.monotonic() + 300
    while not Path(f"{go}.waiting").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    started = time.monotonic()
    second = mtpt_train(tmp_path / "run", "--train.seed", "7")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 1 and f"in use by pid {first.pid}" in err, err
    go.touch()
    assert first.wait(timeout=300) == 0, first.communicate()[1][-2000:]
    assert alone.wait(timeout=300) == 0
    assert time.monotonic() - started < 120
    assert not re.search(r"train: +\d+%", alone.communicate()[1])  # the bar honours TQDM_DISABLE (mtpt_train)
    run, solo = tmp_path / "run", tmp_path / "alone"
    assert "seed: 42" in (run / "config.yaml").read_text()
    assert loss_steps(run) == loss_steps(solo) == [1, 2, 3, 4, 5, 6]
    for which in ("best", "last"):
        assert torch.equal(load_file(str(run / "checkpoints" / which / "method.safetensors"))["prompt"],
                           load_file(str(solo / "checkpoints" / which / "method.safetensors"))["prompt"])


@pytest.mark.slow
def test_fault_injection_script_survives_kills_and_damage(tmp_path):
    """A few trials of scripts/fault_injection.py (the full check runs 20): kill -9 at random points, damage, rerun."""
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "fault_injection.py"), "--trials", "3",
                          "--seed", "1", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert out.stdout.strip().splitlines()[-1] == "survived 3/3", out.stdout + out.stderr[-2000:]


def test_a_finished_run_is_judged_by_its_stated_options_a_resume_by_every_resolved_one(tmp_path):
    """A default changed since a run finished (MPT's target_init, irrelevant to a source stage) does not make the
    finished run unusable; resuming it under the changed default is refused."""
    import yaml
    from helpers import toy_task

    from mtpt.config import RunConfig, to_plain
    from mtpt.run_folder import recorded_changes, refuse_changed_run

    toy_task("judged-toy")
    out = tmp_path / "run"
    out.mkdir()
    config = RunConfig(backbone="tiny-llama", tasks=["judged-toy"], method={"name": "mpt", "stage": "source",
                                                                            "distill": False, "prompt_length": 4,
                                                                            "shared_init": "uniform"},
                       output_dir=str(out))
    (out / "config.yaml").write_text(yaml.safe_dump(to_plain(config)))
    (out / "method_config.yaml").write_text(yaml.safe_dump({"method": "mpt", "stage": "source", "distill": False,
                                                            "prompt_length": 4, "shared_init": "uniform",
                                                            "target_init": "mean"}))  # recorded under the old default
    (out / "results.json").write_text("{}")
    refuse_changed_run(config)  # the stated options agree: reused
    assert recorded_changes(config) == ["method.target_init: 'mean' -> 'shared'"]  # what a resume refuses
    # the config now names the option: the value the run resolved then is compared with it
    named = replace(config, method={**config.method, "target_init": "shared"})
    with pytest.raises(MtptError, match=r"another configuration .*method\.target_init: 'mean' -> 'shared'"):
        refuse_changed_run(named)
    refuse_changed_run(replace(config, method={**config.method, "target_init": "mean"}))  # named as it ran: reused
