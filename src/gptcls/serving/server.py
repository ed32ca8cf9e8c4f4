"""Serve a run directory over HTTP: a JSON API with micro-batching, a web page, health and docs.

Concurrent requests are queued and a single worker gathers up to `max_batch` texts (waiting at
most `max_wait_ms` for company) into one model call, run in a one-thread executor so the event
loop keeps accepting requests while the model works. Every bad request (too big, too many texts,
too long or empty text, malformed JSON) is a 4xx JSON error, never a 500.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime
and the request/response models are built inside `_models()` (pydantic is imported lazily).
"""

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gptcls.errors import GptclsError

Item = tuple[list[str], asyncio.Future]


class MicroBatcher:
    """Gathers concurrent requests into model calls of at most `max_batch` texts.

    A request larger than max_batch runs alone. The model runs one call at a time in its own
    thread, so requests that arrive meanwhile form the next batch without waiting longer.
    """

    def __init__(self, predict: Callable[[list[str]], np.ndarray], max_batch: int = 64,
                 max_wait_ms: float = 5.0):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Item] | None = None
        self._worker: asyncio.Task | None = None
        self._carry: Item | None = None
        self.batches = 0  # model calls so far (tests check that batching happens)

    def _ensure_started(self) -> asyncio.Queue:
        # The worker belongs to the loop that serves requests; a new loop (a test client
        # without lifespan) gets a fresh queue and worker.
        loop = asyncio.get_running_loop()
        if self._executor is None:  # one thread: the model runs one batch at a time
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptcls-model")
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue, self._carry = loop, asyncio.Queue(), None
            self._worker = loop.create_task(self._work())
        return self._queue

    async def submit(self, texts: list[str]) -> np.ndarray:
        queue = self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        await queue.put((texts, future))
        return await future

    async def _next_batch(self) -> list[Item]:
        queue, loop = self._queue, asyncio.get_running_loop()
        first = self._carry or await queue.get()
        self._carry, batch, n = None, [first], len(first[0])
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = queue.get_nowait() if queue.qsize() else await asyncio.wait_for(
                    queue.get(), max(0.0, deadline - loop.time()))
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if n + len(item[0]) > self.max_batch:
                self._carry = item  # starts the next batch, keeping arrival order
                break
            batch.append(item)
            n += len(item[0])
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [(t, f) for t, f in batch if not f.done()]  # skip disconnected clients
            if not live:
                continue
            texts = [t for ts, _ in live for t in ts]
            try:
                probs = await loop.run_in_executor(self._executor, self.predict, texts)
                self.batches += 1
            except Exception:  # noqa: BLE001 - isolate the request that broke the batch
                await self._run_one_by_one(live)
                continue
            start = 0
            for ts, future in live:
                if not future.done():
                    future.set_result(probs[start:start + len(ts)])
                start += len(ts)

    async def _run_one_by_one(self, items: Sequence[Item]) -> None:
        loop = asyncio.get_running_loop()
        for texts, future in items:
            try:
                result = await loop.run_in_executor(self._executor, self.predict, texts)
            except Exception as exc:  # noqa: BLE001 - handed to that request's handler
                result = exc
            if not future.done():
                (future.set_exception if isinstance(result, Exception)
                 else future.set_result)(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class BodyLimit:
    """ASGI middleware: 413 when the declared Content-Length or the bytes actually sent exceed
    `max_bytes`. The body is read up front (it is small by definition) and replayed."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            return await _send_error(send, 400, "invalid Content-Length header")
        if length is not None and int(length) > self.max_bytes:
            return await _send_error(send, 413, self._message())
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_error(send, 413, self._message())
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes"


async def _send_error(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _models() -> tuple[type, type]:
    from pydantic import BaseModel, ConfigDict, Field

    class ClassifyRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[str] = Field(description="messages to classify, one per item",
                                 examples=[["WINNER!! Claim your prize now", "See you at 6?"]])

    class Result(BaseModel):
        label: str
        probabilities: dict[str, float]

    class ClassifyResponse(BaseModel):
        results: list[Result]

    return ClassifyRequest, ClassifyResponse


def create_app(source: Any, max_batch: int = 64, max_wait_ms: float = 5.0, max_texts: int = 256,
               max_chars: int = 10000, max_body_bytes: int = 1_000_000,
               device: str = "auto", precision: str = "fp32") -> Any:
    """The FastAPI app for a run directory (path) or a loaded `Classifier`."""
    try:
        from fastapi import FastAPI
    except ImportError:
        raise GptclsError("serving needs the serve extra: pip install 'gptcls[serve]'") from None

    from gptcls import __version__
    from gptcls.classifier.classifier import Classifier

    clf = source if isinstance(source, Classifier) else Classifier.load(source, device=device,
                                                                        precision=precision)
    run_dir = None if isinstance(source, Classifier) else Path(source)
    batcher = MicroBatcher(clf.predict_proba, max_batch, max_wait_ms)
    limits = {"max_texts": max_texts, "max_chars": max_chars, "max_body_bytes": max_body_bytes,
              "max_batch": max_batch, "max_wait_ms": max_wait_ms}
    info = _model_info(clf, run_dir, limits)

    @asynccontextmanager
    async def lifespan(_app: Any):
        yield
        await batcher.close()

    app = FastAPI(title="gptcls", version=__version__, lifespan=lifespan,
                  description="Text classification with a fine-tuned GPT-style model.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.batcher, app.state.classifier = batcher, clf
    _add_routes(app, clf, batcher, info, max_texts, max_chars)
    return app


def _add_routes(app: Any, clf: Any, batcher: MicroBatcher, info: dict[str, Any],
                max_texts: int, max_chars: int) -> None:
    """The API (/v1/classify, /v1/model, /healthz) and the page at / with its /static files."""
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    request_model, response_model = _models()
    static = Path(str(resources.files("gptcls.serving").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(GptclsError)
    async def bad_input(_request: Any, exc: GptclsError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.post("/v1/classify", response_model=response_model,
              responses={413: {"description": "body too large"},
                         422: {"description": "malformed JSON, too many, empty or long texts"}})
    async def classify(request: request_model) -> Any:
        problem = _check_texts(request.texts, max_texts, max_chars)
        if problem:
            return JSONResponse(status_code=422, content={"detail": problem})
        probs = await batcher.submit(request.texts)
        labels = clf.labels_from_proba(probs)
        return {"results": [{"label": lab, "probabilities": dict(zip(clf.labels, map(float, p),
                                                                     strict=True))}
                            for lab, p in zip(labels, probs, strict=True)]}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict:
        return info

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html")


def _check_texts(texts: list[str], max_texts: int, max_chars: int) -> str | None:
    if not texts:
        return "texts is empty: send at least one text"
    if len(texts) > max_texts:
        return f"too many texts: {len(texts):,} > {max_texts:,} per request"
    for i, text in enumerate(texts):
        if not text.strip():
            return f"text {i + 1} is empty; nothing to classify"
        if len(text) > max_chars:
            return f"text {i + 1} has {len(text):,} characters; the limit is {max_chars:,}"
    return None


def _model_info(clf: Any, run_dir: Path | None, limits: dict[str, Any]) -> dict[str, Any]:
    """What /v1/model reports: labels, backbone, preprocessing and the run's metrics."""
    c = clf.config
    info: dict[str, Any] = {
        "labels": clf.labels, "backbone": c.backbone,
        "architecture": {"family": c.model.family, "n_layers": c.model.n_layers,
                         "emb_dim": c.model.emb_dim},
        "max_length": c.max_length, "pooling": c.pooling, "truncate": c.truncate,
        "threshold": c.threshold, "limits": limits, "metrics": None,
    }
    metrics_path = run_dir / "metrics.json" if run_dir is not None else None
    if metrics_path is not None and metrics_path.is_file():
        try:
            m = json.loads(metrics_path.read_text())
        except (OSError, json.JSONDecodeError):
            return info  # metrics are a nicety: a broken file must not stop the server
        keys = ("train_accuracy", "validation_accuracy", "test_accuracy", "examples")
        info["metrics"] = {k: m[k] for k in keys if k in m}
        info["metrics"]["test"] = m.get("reports", {}).get("test")
    return info


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          precision: str = "fp32", **limits: Any) -> None:
    """`gptcls serve`: run the app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise GptclsError("serving needs the serve extra: pip install 'gptcls[serve]'") from None
    app = create_app(run_dir, device=device, precision=precision, **limits)
    uvicorn.run(app, host=host, port=port, log_level="info")
