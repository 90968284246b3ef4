"""Fault injection: kill -9 a tiny `mtpt train` run at random points (between the steps of a checkpoint write and
swap included) and damage its files, rerun the same command, and check the outcome.

    python scripts/fault_injection.py --trials 20 [--seed 0] [--workdir DIR]

Each trial starts a fresh run folder and stops the run once: at a named point (``MTPT_FAULT``, see
:mod:`mtpt.faults`: after a checkpoint file, after all of them, before/while/after the link swap, after an
optimizer step or a log line) or after a random delay. Some trials then damage the folder. The same command is run
again, and the trial survives when

* after a stop alone, or harmless damage (a stray temporary folder or link, a half-written last log line, an
  earlier layout's ``.last-old``): the rerun exits 0 with final prompts (``last`` and ``best``), final results and
  per-step losses identical to an uninterrupted run's, and no leftovers beside the checkpoints;
* after damage to the checkpoint being resumed (a truncated or deleted file, NaN values, a garbled config.yaml):
  the rerun exits 1 with an error naming the damaged file, and leaves the folder as it was (no silent restart).

It prints one line per trial and ``survived S/N``. Everything runs on the CPU on a tiny random Llama and the bundled
demo-sst2 data (no download, no data folder).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS, EVAL_EVERY = 12, 3
EVALS = STEPS // EVAL_EVERY
POINTS = {  # fault point -> how many times an uninterrupted run surely passes it
    "checkpoint.file": 3 * EVALS, "checkpoint.files_written": EVALS, "publish.before_link": EVALS,
    "publish.link_made": EVALS, "publish.after_link": EVALS, "train.step": STEPS, "train.logged": STEPS,
    "run.locked": 1,
}
HARMLESS = ("stray_version", "stray_link", "half_log_line", "old_layout_leftover")
HARMFUL = ("truncate_trainer_state", "delete_trainer_state", "nan_prompt", "truncate_weights", "garble_config",
           "truncate_meta")


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "mtpt.cli", "train", "--backbone", "tiny-llama", "--tasks", "[demo-sst2]",
            "--method", "{name: pt, prompt_length: 4}", "--train.steps", str(STEPS), "--train.batch_size", "4",
            "--train.eval_every", str(EVAL_EVERY), "--train.log_every", "1", "--train.precision", "no",
            "--train.lr", "0.3", "--data.max_train_examples", "32", "--data.max_eval_examples", "8",
            "--eval.batch_size", "8", "--eval.final_splits", "[validation]", "--output_dir", str(out)]


def environment(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "JSONARGPARSE_DEPRECATION_WARNINGS": "off", "TQDM_DISABLE": "1"}
    env.pop("MTPT_FAULT", None)
    if fault:
        env["MTPT_FAULT"] = fault
    return env


def run(out: Path, fault: str | None = None, kill_after: float | None = None) -> subprocess.CompletedProcess:
    """Run the command; with ``kill_after``, SIGKILL it after that many seconds if it still runs."""
    proc = subprocess.Popen(command(out), env=environment(fault), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


# --- what a finished run left ------------------------------------------------------------------------------------
def outcome(out: Path) -> dict:
    """The final prompts, results and per-step losses of a finished run."""
    from safetensors.torch import load_file

    prompts = {which: load_file(str(out / "checkpoints" / which / "method.safetensors"))["prompt"]
               for which in ("best", "last")}
    results = json.loads((out / "results.json").read_text())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    return {"prompts": prompts, "final": results["final"], "best_step": results["best_step"], "losses": losses}


def differences(reference: dict, got: dict) -> list[str]:
    import torch

    found = [f"{which} prompt differs" for which in ("best", "last")
             if not torch.equal(reference["prompts"][which], got["prompts"][which])]
    if reference["final"] != got["final"] or reference["best_step"] != got["best_step"]:
        found.append("final results differ")
    if reference["losses"] != got["losses"]:
        steps = [step for step, _ in got["losses"]]
        found.append(f"per-step losses differ (steps logged: {steps})")
    return found


def leftovers(out: Path) -> list[str]:
    """Entries beside the checkpoints other than the versions ``best`` and ``last`` point at."""
    folder = out / "checkpoints"
    keep = {"best", "last"} | {os.readlink(folder / n) for n in ("best", "last") if (folder / n).is_symlink()}
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --- damage ------------------------------------------------------------------------------------------------------
def damage(out: Path, kind: str, rng: random.Random) -> str | None:
    """Apply one kind of damage; returns the file a clear error must name (None for harmless damage), or raises
    LookupError when the folder has nothing of that kind to damage."""
    last = out / "checkpoints" / "last"
    if kind in HARMFUL and not last.exists():
        raise LookupError("no checkpoint yet")
    if kind == "stray_version":
        stray = out / "checkpoints" / ".last-vkilled"
        stray.mkdir(parents=True, exist_ok=True)
        (stray / "method.safetensors").write_bytes(b"half a file")
        return None
    if kind == "stray_link":
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        os.symlink(".last-vnowhere", out / "checkpoints" / ".last-link-99999")
        return None
    if kind == "half_log_line":
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write('{"step": 99, "loss": 1.2')
        return None
    if kind == "old_layout_leftover":
        old = out / "checkpoints" / ".last-old"
        old.mkdir(parents=True, exist_ok=True)
        (old / "meta.json").write_text("{}")
        return None
    if kind == "truncate_trainer_state":
        path = last / "trainer.pt"
        path.write_bytes(path.read_bytes()[: rng.randint(1, path.stat().st_size - 1)])
        return str(path)
    if kind == "delete_trainer_state":
        (last / "trainer.pt").unlink()
        return str(last / "trainer.pt")
    if kind == "nan_prompt":
        from safetensors.torch import load_file, save_file

        path = last / "method.safetensors"
        tensors = load_file(str(path))
        tensors["prompt"][0, 0] = float("nan")
        save_file(tensors, str(path))
        return str(path)
    if kind == "truncate_weights":
        path = last / "method.safetensors"
        path.write_bytes(path.read_bytes()[: rng.randint(1, 7)])  # shorter than the 8-byte header length
        return str(path)
    if kind == "truncate_meta":
        path = last / "meta.json"
        path.write_bytes(path.read_bytes()[: rng.randint(1, 20)])
        return str(path)
    if kind == "garble_config":
        path = out / "config.yaml"
        path.write_bytes(b"\xff\xfe\x00garbage: [")
        return str(path)
    raise ValueError(kind)


def snapshot(out: Path) -> dict[str, bytes]:
    """The run's own files (through the checkpoint links; leftovers of a killed write are not the run's)."""
    files = [p for p in out.iterdir() if p.is_file()]
    for which in ("best", "last"):
        folder = out / "checkpoints" / which
        files += sorted(folder.iterdir()) if folder.is_dir() else []
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


# --- a trial -----------------------------------------------------------------------------------------------------
def trial(index: int, rng: random.Random, workdir: Path, reference: dict, duration: float) -> tuple[bool, str]:
    out = workdir / f"trial-{index}"
    if rng.random() < 0.25:
        delay = rng.uniform(0.5, 0.85 * duration)  # within the run (a rerun is no faster than the reference)
        how, first = f"kill -9 after {delay:.1f}s", run(out, kill_after=delay)
    else:
        point = rng.choice(sorted(POINTS))
        hit = rng.randint(1, POINTS[point])
        how, first = f"kill -9 at {point}:{hit}", run(out, fault=f"{point}:{hit}")
    if first.returncode == 0:
        how += " (finished before it)"
    elif first.returncode != -signal.SIGKILL:
        return False, f"{how}: the interrupted run failed otherwise (exit {first.returncode}): {first.stderr[-400:]}"
    expected_file = None
    if rng.random() < 0.4 and out.exists():
        kinds = list(HARMLESS + HARMFUL)
        rng.shuffle(kinds)
        for kind in kinds:
            try:
                expected_file = damage(out, kind, rng)
            except LookupError:
                continue
            how += f", then {kind}"
            break
    before = snapshot(out) if expected_file else None
    second = run(out)
    if expected_file:
        named = expected_file in second.stderr
        untouched = snapshot(out) == before
        ok = second.returncode == 1 and named and untouched
        error = second.stderr.strip().splitlines()[-1] if second.stderr.strip() else ""
        verdict = "clear error naming the file, folder untouched" if ok else (
            f"exit {second.returncode}, file named: {named}, folder untouched: {untouched}: {error[:300]}")
        return ok, f"{how}: {verdict}"
    if second.returncode != 0:
        return False, f"{how}: rerun failed (exit {second.returncode}): {second.stderr.strip()[-400:]}"
    problems = differences(reference, outcome(out)) + [f"leftover {name}" for name in leftovers(out)]
    return not problems, f"{how}: " + ("resumed, identical to the uninterrupted run" if not problems
                                       else "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="Where the runs go (default: a temporary folder, removed).")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mtpt-faults-"))
    try:
        started = time.perf_counter()
        first = run(workdir / "reference")
        if first.returncode != 0:
            print(f"the uninterrupted reference run failed:\n{first.stderr[-2000:]}")
            return 2
        duration = time.perf_counter() - started
        reference = outcome(workdir / "reference")
        survived, lines = 0, []
        for index in range(args.trials):
            ok, line = trial(index, random.Random(f"{args.seed}-{index}"), workdir, reference, duration)
            survived += ok
            lines.append(line)
            print(f"trial {index + 1:>3}: {'ok  ' if ok else 'FAIL'} {line}", flush=True)
        kills = sum("finished before it" not in line for line in lines)
        in_writes = sum(any(f"at {p}:" in line for p in POINTS if p.startswith(("checkpoint.", "publish.")))
                        for line in lines)
        damaged = sum(", then " in line for line in lines)
        print(f"{kills} of {args.trials} trials killed the run ({in_writes} during a checkpoint write or swap), "
              f"{damaged} also damaged its folder")
        print(f"survived {survived}/{args.trials}")
        return 0 if survived == args.trials else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
