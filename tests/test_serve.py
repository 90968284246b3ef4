"""`mtpt serve` as a user runs it: a real server process on a free port, a real HTTP client, concurrent clients,
mixed-task batches of a multi-task run, and bad requests that get 4xx answers while the server keeps serving."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from mtpt.cli import main as cli_main  # noqa: E402
from predict_helpers import REPO, grammar_task, labels, log_likelihoods, review_rows, review_task  # noqa: E402


@contextmanager
def server(*args: str, timeout: float = 180):
    """Start `mtpt serve ARGS --port 0` and yield its base URL (read from uvicorn's start-up line)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "mtpt.cli", "serve", *args, "--port", "0"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    seen = []
    try:
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the server did not start: {''.join(seen)}") from None
            seen.append(line)
            if found := re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line):
                yield found.group(1)
                return
            if process.poll() is not None:
                raise AssertionError(f"the server exited: {''.join(seen)}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def assert_same(a: list[dict], b: list[dict], tol: float) -> None:
    assert labels(a) == labels(b)
    for x, y in zip(log_likelihoods(a), log_likelihoods(b)):
        assert x == pytest.approx(y, abs=tol)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("serve-tasks")
    return review_task(folder), grammar_task(folder)


def trained(folder: Path, specs: list[Path], method: list[str]) -> Path:
    run = folder / "run"
    assert cli_main(["train", str(REPO / "configs" / "pt-demo.yaml"), "--backbone", "tiny-llama",
                     "--tasks", "[" + ", ".join(map(str, specs)) + "]", *method, "--train.steps", "6",
                     "--train.eval_every", "6", "--train.lr", "0.1", "--train.precision", "no",
                     "--eval.batch_size", "4", "--output_dir", str(run)]) == 0
    return run


def test_a_served_run_answers_concurrent_clients_like_predict_and_evaluate(tasks, tmp_path):
    spec = tasks[0]
    run = trained(tmp_path, [spec], ["--method.prompt_length", "4"])
    test_csv = spec.parent / "reviews" / "test.csv"
    assert cli_main(["predict", str(run), "--input", str(test_csv), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert cli_main(["evaluate", str(run), "--predictions", str(tmp_path / "e.jsonl")]) == 0
    rows = [{"text": r["text"]} for r in review_rows(spec)]
    with server(str(run), "--max-wait-ms", "300") as url:
        assert url.startswith("http://127.0.0.1:")  # the default bind: this machine only
        chunks = [rows[i:i + 2] for i in range(0, len(rows), 2)]
        with ThreadPoolExecutor(len(chunks)) as pool:
            answers = list(pool.map(lambda chunk: httpx.post(f"{url}/predict", json={"rows": chunk}, timeout=120),
                                    chunks))
        health = httpx.get(f"{url}/health").json()
        described = httpx.get(f"{url}/tasks").json()["tasks"]
    assert all(a.status_code == 200 for a in answers)
    served = [record for a in answers for record in a.json()["predictions"]]
    assert_same(served, read_jsonl(tmp_path / "p.jsonl"), tol=1e-4)
    assert_same(served, read_jsonl(tmp_path / "e.jsonl"), tol=1e-4)
    assert health["served"]["rows"] == len(rows) and health["served"]["largest_batch"] > 2  # requests shared batches
    assert described == [{"name": "my-reviews", "kind": "classification", "language": "en", "input_fields": ["text"],
                          "template": "Review: {text}\nSentiment:", "label_words": ["negative", "positive"]}]


def test_a_multi_task_run_serves_one_batch_mixing_its_tasks(tasks, tmp_path):
    reviews, grammar = tasks
    run = trained(tmp_path, [reviews, grammar],
                  ["--method", '{"name": "mpt", "stage": "source", "distill": false, "shared_init": "sample_vocab", '
                               '"prompt_length": 4}'])
    review_rows_ = [{"text": r["text"], "task": "my-reviews"} for r in review_rows(reviews)[:4]]
    grammar_rows = [{"sentence": f"the cast {verb} here.", "task": "my-cola"} for verb in ("is", "are is", "was")]
    mixed_rows = [row for pair in zip(review_rows_, grammar_rows) for row in pair] + review_rows_[3:]
    with server(str(run), "--batch-size", "16") as url:
        mixed = httpx.post(f"{url}/predict", json={"rows": mixed_rows}, timeout=120).json()["predictions"]
        health = httpx.get(f"{url}/health").json()
        alone = {task: httpx.post(f"{url}/predict", json={"rows": [{k: v for k, v in r.items() if k != "task"}
                                                                    for r in mixed_rows if r["task"] == task],
                                                           "task": task}, timeout=120).json()["predictions"]
                 for task in ("my-reviews", "my-cola")}
    assert health["served"]["tasks_in_largest_batch"] == ["my-cola", "my-reviews"]  # one batch held both tasks
    order = {task: iter(records) for task, records in alone.items()}
    single = [next(order[row["task"]]) for row in mixed_rows]
    assert [r["task"] for r in mixed] == [r["task"] for r in mixed_rows]
    assert_same(mixed, single, tol=1e-4)
    assert [s["label"] for s in mixed[1]["scores"]] == ["No", "Yes"]


def test_bad_requests_get_4xx_errors_naming_the_field_and_the_server_keeps_serving(tasks, tmp_path):
    spec = tasks[0]
    with server("--backbone", "tiny-llama", "--task", str(spec), "--max-rows", "4", "--max-body-bytes", "4000") as url:
        def post(body) -> httpx.Response:
            return httpx.post(f"{url}/predict", json=body, timeout=60)

        cases = [
            (httpx.post(f"{url}/predict", content=b'{"rows": [{"text": "x"}', timeout=60), 400, "body"),
            (post({"rows": [{"text": "x"}, {"text": "y", "task": "nope"}]}), 422, "rows[1].task"),
            (post({"rows": [{"txt": "x"}]}), 422, "rows[0].text"),
            (post({"rows": [{"text": {"nested": 1}}]}), 422, "rows[0].text"),
            (post({"rows": "text"}), 422, "rows"),
            (post({"rows": []}), 422, "rows"),
            (post([{"text": "x"}]), 422, "body"),
            (post({"rows": [{"text": "x"}], "extra": 1}), 422, "extra"),
            (post({"rows": [{"text": "x"}], "task": 3}), 422, "task"),
            (post({"rows": [{"text": "x"}], "task": "nope"}), 422, "task"),
            (post({"rows": [{"text": "x"}] * 5}), 413, "rows"),
            (post({"rows": [{"text": "x" * 5000}]}), 413, "body"),
        ]
        for response, status, field in cases:
            assert (response.status_code, response.json()["field"]) == (status, field), response.text
            assert response.json()["error"]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        good = httpx.post(f"{url}/predict", json={"rows": [{"text": "fine", "label": "ignored"}]}, timeout=60)
    assert good.status_code == 200 and good.json()["predictions"][0]["task"] == "my-reviews"
    missing = next(r for r, _, f in cases if f == "rows[0].text" and "missing" in r.json()["error"])
    assert missing.json()["error"] == "field 'text' is missing (task 'my-reviews' needs text)"
