"""Cross-process locks (mtpt.locking) and the benchmark workers that share cells through them."""

from __future__ import annotations

import threading
import time

import yaml

from mtpt.locking import exclusive, held_elsewhere, lock_path_for


def test_lock_file_is_a_hidden_sibling_of_the_folder(tmp_path):
    assert lock_path_for(tmp_path / "cells" / "seed-13") == tmp_path / "cells" / ".seed-13.lock"


def test_a_held_lock_refuses_a_non_waiting_claim_and_blocks_a_waiting_one(tmp_path):
    path = tmp_path / "a.lock"
    order = []

    def waiter():
        with exclusive(path) as got:
            order.append(("waiter", got))

    with exclusive(path) as held:
        assert held
        with exclusive(path, wait=False) as other:
            assert other is False  # another open file: refused at once
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)
        order.append(("holder done", True))
    thread.join()
    assert order == [("holder done", True), ("waiter", True)]
    with exclusive(path, wait=False) as free:
        assert free
    assert not held_elsewhere(path) and not held_elsewhere(tmp_path / "never-created.lock")


def test_a_cell_another_worker_runs_is_left_to_it(tmp_path, capsys):
    """Two invocations of one benchmark share its cells: a cell whose lock is held elsewhere is reported busy and
    nothing is written into it; once free (and unfinished) it runs."""
    from helpers import toy_task

    from mtpt.bench.commands import COMMANDS

    toy_task("lock-target", n_train=8, n_eval=4)
    config = {"backbone": "tiny-llama", "out": str(tmp_path / "q"), "targets": ["lock-target"], "kshot": 2,
              "seeds": [1], "steps": 1, "prompt_length": 4, "methods": {"pt": {"name": "pt"}},
              "data": {"max_eval_examples": 4}, "train": {"batch_size": 2}, "eval": {"final_splits": ["test"]}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    cell = tmp_path / "q" / "cells" / "pt" / "lock-target" / "seed-1"
    with exclusive(lock_path_for(cell)):
        assert COMMANDS["bench"][1](["quality", str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[0].split()[-1] == "busy"
        assert not cell.exists()
        assert COMMANDS["bench"][1](["quality", str(path), "--status"]) == 0
        assert "0 done, 0 partial, 1 to do (1 of them running in a worker now)" in capsys.readouterr().out
    assert COMMANDS["bench"][1](["quality", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "trained"
    assert (cell / "results.json").exists()
    # a finished cell is skipped without touching its lock: no lock file is created, a held lock does not matter
    lock_path_for(cell).unlink()
    assert COMMANDS["bench"][1](["quality", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "skipped"
    assert not lock_path_for(cell).exists()


def test_tables_are_written_under_the_tables_lock(tmp_path, monkeypatch):
    """Two workers finishing together each rewrite results.{csv,json,md,png}: each collects and writes holding one
    lock, so the four files always come from one collection of finished cells."""
    from mtpt.bench import quality
    from mtpt.bench.commands import COMMANDS

    config = {"backbone": "tiny-llama", "out": str(tmp_path / "q"), "targets": ["glue-rte"], "seeds": [1],
              "methods": {"pt": {"name": "pt"}}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    tables_lock = lock_path_for(tmp_path / "q" / "results")
    held = []

    def write_results(*args):
        held.append(held_elsewhere(tables_lock))  # a second open of the lock is refused while the writer holds it
        return real_write(*args)

    real_write = quality.write_results
    monkeypatch.setattr(quality, "write_results", write_results)
    assert COMMANDS["bench"][1](["quality", str(path), "--tables"]) == 0
    assert held == [True] and (tmp_path / "q" / "results.md").exists()
    assert not held_elsewhere(tables_lock)
