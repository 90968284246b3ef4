"""The HTTP JSON API of ``mtpt serve`` (FastAPI on uvicorn; the ``serve`` extra).

``POST /predict`` takes ``{"rows": [{<input fields>, "task": <name, for models with several tasks>}, ...],
"task": <optional default task>}`` and answers ``{"predictions": [<record per row>]}`` (the records of
``mtpt predict``, see :mod:`mtpt.inference.records`). ``GET /tasks`` lists the tasks with their input fields,
templates and label words; ``GET /health`` says the model is up and how many batches it has scored.

Batching: one background worker owns the model. Requests wait in an asyncio queue; the worker takes the first,
lets others join it until the batch holds ``batch_size`` rows or ``max_wait_s`` has passed, and scores them all
in one call (rows of different tasks in the same batches), off the event loop so that requests keep arriving.

Bad requests get a JSON error ``{"error": <what is wrong>, "field": <where, e.g. "rows[2].text">}`` and a 4xx
status: 400 malformed JSON, 413 too large a body or too many rows, 422 anything else about the rows. The
server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mtpt.errors import MtptError
from mtpt.inference.inputs import InputError, PreparedRow
from mtpt.inference.predictor import Predictor


@dataclass
class ServeLimits:
    max_wait_s: float = 0.01
    """How long the first request of a batch waits for others to join it."""
    max_rows: int = 256
    """Most rows in one request."""
    max_body_bytes: int = 1 << 20
    """Largest request body."""


@dataclass
class ServeStats:
    """What the worker has scored (``GET /health``): batching shows as fewer batches than requests."""

    batches: int = 0
    rows: int = 0
    largest_batch: int = 0
    tasks_in_largest_batch: list[str] = field(default_factory=list)


def error(status: int, message: str, where: str | None = None) -> JSONResponse:
    """The JSON error answer: what is wrong and which field (``rows[2].text``, ``body``...)."""
    return JSONResponse({"error": message, "field": where}, status_code=status)


class BatchingWorker:
    """The one owner of the model: scores queued requests together, a batch at a time."""

    def __init__(self, predictor: Predictor, max_wait_s: float):
        self.predictor = predictor
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[tuple[list[PreparedRow], asyncio.Future]] = asyncio.Queue()
        self.stats = ServeStats()

    async def submit(self, rows: list[PreparedRow]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def run(self) -> None:
        while True:
            waiting = await self._next_batch()
            rows = [row for request, _ in waiting for row in request]
            try:
                records = await asyncio.to_thread(self.predictor.predict_prepared, rows)
            except Exception as err:  # a failed batch fails its requests, not the server
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(err)
                continue
            self._count(rows)
            start = 0
            for request, future in waiting:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(records[start:start + len(request)])
                start += len(request)

    async def _next_batch(self) -> list[tuple[list[PreparedRow], asyncio.Future]]:
        loop = asyncio.get_running_loop()
        waiting = [await self.queue.get()]
        size = len(waiting[0][0])
        deadline = loop.time() + self.max_wait_s
        while size < self.predictor.batch_size and (left := deadline - loop.time()) > 0:
            try:
                waiting.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
            size += len(waiting[-1][0])
        return waiting

    def _count(self, rows: list[PreparedRow]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.rows += len(rows)
        if len(rows) > stats.largest_batch:
            stats.largest_batch = len(rows)
            names = self.predictor.parts.task_names
            stats.tasks_in_largest_batch = sorted({names[row.task_index] for row in rows})


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app reads it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = error(413, f"the request body is larger than {self.max_bytes} bytes", "body")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:  # read the body up to the limit, then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def create_app(predictor: Predictor, limits: ServeLimits | None = None) -> FastAPI:
    """The API around ``predictor``; its batching worker starts and stops with the app."""
    limits = limits or ServeLimits()
    worker = BatchingWorker(predictor, limits.max_wait_s)

    @asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(worker.run())
        yield
        task.cancel()

    app = FastAPI(title="mtpt", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = worker.stats
        return {"status": "ok", "backbone": predictor.parts.backbone.name, "method": predictor.parts.spec.name,
                "tasks": predictor.parts.task_names, "batch_size": predictor.batch_size,
                "served": {"batches": stats.batches, "rows": stats.rows, "largest_batch": stats.largest_batch,
                           "tasks_in_largest_batch": stats.tasks_in_largest_batch}}

    @app.get("/tasks")
    async def tasks() -> dict[str, Any]:
        return {"tasks": predictor.describe_tasks()}

    @app.post("/predict")
    async def predict(request: Request):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            return error(400, f"malformed JSON: {err}", "body")
        prepared = _checked_rows(predictor, body, limits)
        if isinstance(prepared, JSONResponse):
            return prepared
        return {"predictions": await worker.submit(prepared)}

    return app


def _checked_rows(predictor: Predictor, body: Any, limits: ServeLimits) -> list[PreparedRow] | JSONResponse:
    """The request's rows, checked and rendered, or the 4xx answer naming what is wrong."""
    if not isinstance(body, dict):
        return error(422, 'the body must be a JSON object: {"rows": [...]}', "body")
    unknown = sorted(set(body) - {"rows", "task"})
    if unknown:
        return error(422, f"unknown field(s) {unknown}; a request has 'rows' and an optional 'task'", unknown[0])
    rows, task = body.get("rows"), body.get("task")
    if not isinstance(rows, list) or not rows:
        return error(422, "'rows' must be a non-empty list of objects", "rows")
    if len(rows) > limits.max_rows:
        return error(413, f"too many rows: {len(rows)} > {limits.max_rows}; split the request", "rows")
    if task is not None and not isinstance(task, str):
        return error(422, "'task' must be a task name", "task")
    try:
        return predictor.prepare(rows, task)
    except InputError as err:
        return error(422, err.problem, f"rows[{err.index}]" + (f".{err.field}" if err.field else ""))
    except MtptError as err:  # an unknown default task
        return error(422, str(err), "task")
