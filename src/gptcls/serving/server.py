"""Serve a run directory over HTTP: a JSON API with micro-batching, a web page, health and docs.

A request's texts are tokenized in a small thread pool, then their token ids are queued for the
model thread (serving/batching.py), which runs length-grouped batches back to back while the
event loop keeps accepting requests. Every bad request (too big, too many texts, too long or
empty text, malformed JSON) is a 4xx JSON error, never a 500. With an API key every endpoint
but /healthz, the page and its static files wants `Authorization: Bearer KEY` (401 otherwise).

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime
and the request/response models are built inside `_models()` (pydantic is imported lazily).
"""

import asyncio
import hmac
import ipaddress
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from gptcls.classifier.multilabel import run_thresholds
from gptcls.classifier.windows import reduce_windows
from gptcls.errors import GptclsError
from gptcls.progress import silenced
from gptcls.serving.batching import MicroBatcher

API_KEY_ENV = "GPTCLS_API_KEY"

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
        label: str | None = None  # single-label runs
        labels: list[str] | None = None  # multi-label runs: every label at its threshold
        probabilities: dict[str, float]

    class ClassifyResponse(BaseModel):
        results: list[Result]

    return ClassifyRequest, ClassifyResponse


def create_app(source: Any, max_batch: int = 64, max_wait_ms: float = 5.0, max_texts: int = 256,
               max_chars: int = 10000, max_body_bytes: int = 1_000_000,
               device: str = "auto", precision: str = "auto", max_batch_tokens: int = 4096,
               api_key: str | None = None) -> Any:
    """The FastAPI app for a run directory (path) or a loaded `Classifier`. `api_key`: every
    endpoint but /healthz and the page wants it as a bearer token."""
    try:
        from fastapi import FastAPI
    except ImportError:
        raise GptclsError("serving needs the serve extra: pip install 'gptcls[serve]'") from None

    from gptcls import __version__
    from gptcls.classifier.classifier import Classifier

    clf = source if isinstance(source, Classifier) else Classifier.load(source, device=device,
                                                                        precision=precision)
    run_dir = None if isinstance(source, Classifier) else Path(source)

    def predict_ids(ids: list) -> Any:  # one batch as picked: no further splitting
        return clf.predict_proba_ids(ids, batch_tokens=max_batch_tokens, max_batch=max_batch)

    batcher = MicroBatcher(predict_ids, max_batch, max_wait_ms, max_batch_tokens)
    # Tokenizing is quick but not free: off the event loop, and off the model thread.
    tokenizers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gptcls-tokenize")
    limits = {"max_texts": max_texts, "max_chars": max_chars, "max_body_bytes": max_body_bytes,
              "max_batch": max_batch, "max_wait_ms": max_wait_ms,
              "max_batch_tokens": max_batch_tokens}
    info = _model_info(clf, run_dir, limits)

    @asynccontextmanager
    async def lifespan(_app: Any):
        # Before the first request is accepted: it would otherwise wait for this.
        await asyncio.to_thread(in_own_thread, warm_up, clf)
        yield
        await asyncio.to_thread(batcher.close)

    app = FastAPI(title="gptcls", version=__version__, lifespan=lifespan,
                  description="Text classification with a fine-tuned GPT-style model.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.batcher, app.state.classifier = batcher, clf
    _add_routes(app, clf, batcher, tokenizers, info, (max_texts, max_chars), api_key or None)
    return app


def _bearer_check(api_key: str) -> Callable:
    """A FastAPI dependency: 401 unless `Authorization: Bearer <api_key>` (constant-time
    compare). Declared through HTTPBearer, so /docs offers an Authorize button."""
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    bearer = HTTPBearer(auto_error=False, description="the key given to `gptcls serve`")
    expected = api_key.encode()

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                           Depends(bearer)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            detail = ("wrong API key" if credentials is not None else
                      "this server needs an API key: send the header Authorization: Bearer KEY")
            raise HTTPException(status_code=401, detail=detail,
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def _add_routes(app: Any, clf: Any, batcher: MicroBatcher, tokenizers: ThreadPoolExecutor,
                info: dict[str, Any], limits: tuple[int, int], api_key: str | None) -> None:
    """The API (/v1/classify, /v1/model, /healthz) and the page at / with its /static files."""
    from fastapi import Depends
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    request_model, response_model = _models()
    static = Path(str(resources.files("gptcls.serving").joinpath("static")))
    app.mount("/static", StaticFiles(directory=static), name="static")
    guard = [Depends(_bearer_check(api_key))] if api_key else []

    @app.exception_handler(GptclsError)
    async def bad_input(_request: Any, exc: GptclsError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.post("/v1/classify", response_model=response_model, dependencies=guard,
              response_model_exclude_none=True,  # label or labels, as the run decides
              responses={401: {"description": "missing or wrong API key"},
                         413: {"description": "body too large"},
                         422: {"description": "malformed JSON, too many, empty or long texts"}})
    async def classify(request: request_model) -> Any:
        problem = _check_texts(request.texts, *limits)
        if problem:
            return JSONResponse(status_code=422, content={"detail": problem})
        loop = asyncio.get_running_loop()
        # Windows of long texts where the run trained on them (config.long_text "chunk").
        ids, owner = await loop.run_in_executor(tokenizers, clf.encode_long, request.texts)
        probs = await batcher.submit(ids)
        if len(ids) != len(request.texts):
            probs = reduce_windows(probs, owner, len(request.texts))
        labels = clf.labels_from_proba(probs)
        key = "labels" if clf.config.multi_label else "label"
        # A JSONResponse skips FastAPI's validation and re-encoding of the response model
        # (the shape is ours): event-loop time taken from the model's 2 cores per request.
        return JSONResponse({"results": [{key: lab, "probabilities": dict(zip(
            clf.labels, p.tolist(), strict=True))} for lab, p in zip(labels, probs, strict=True)]})

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model", dependencies=guard,
             responses={401: {"description": "missing or wrong API key"}})
    async def model() -> dict:
        return info

    @app.get("/v1/stats", dependencies=guard,
             responses={401: {"description": "missing or wrong API key"}})
    async def stats() -> dict:
        """The model calls so far: count, texts per call, model seconds, padding."""
        return batcher.stats()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html")


def warm_up(clf: Any) -> None:
    """Build what the first request would otherwise wait for: the int8 or bf16 twin (seconds
    on a 135M model) and torch's kernels for one short text."""
    if hasattr(clf, "twin_model"):
        clf.twin_model()
    clf.predict_proba_ids(clf.encode(["warm up"]))


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
    from gptcls.device import effective_precision

    c = clf.config
    info: dict[str, Any] = {
        "labels": clf.labels, "backbone": c.backbone, "device": str(clf.device),
        "precision": effective_precision(getattr(clf, "precision", "fp32"), clf.device),
        "architecture": {"family": c.model.family, "n_layers": c.model.n_layers,
                         "emb_dim": c.model.emb_dim},
        "max_length": c.max_length, "pooling": c.pooling, "truncate": c.truncate,
        "threshold": c.threshold, "limits": limits, "metrics": None,
        "multi_label": c.multi_label,
    }
    if c.multi_label:  # a label set per text: each label at its own threshold
        info["thresholds"] = dict(zip(clf.labels, run_thresholds(c.thresholds, len(clf.labels)),
                                      strict=True))
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
          precision: str = "auto", api_key: str | None = None, insecure: bool = False,
          **limits: Any) -> None:
    """`gptcls serve`: run the app with uvicorn until interrupted. Beyond loopback it needs an
    API key (`api_key`, else $GPTCLS_API_KEY) unless `insecure`."""
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    if not (api_key or insecure or is_loopback(host)):
        raise GptclsError(f"refusing to serve on {host} without an API key: pass --api-key KEY "
                          f"or set {API_KEY_ENV} (or --insecure to serve it open)")
    try:
        import uvicorn
    except ImportError:
        raise GptclsError("serving needs the serve extra: pip install 'gptcls[serve]'") from None
    # Loading and the precision check run torch: not on the main thread (see in_own_thread).
    app = in_own_thread(create_app, run_dir, device=device, precision=precision,
                        api_key=api_key, **limits)
    uvicorn.run(app, host=host, port=port, log_level="warning" if silenced() else "info")


def in_own_thread(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) run in a new thread that ends with it: its result, or its error.

    Why: torch's OpenMP (libgomp) gives each thread that starts a parallel region a pool of
    worker threads, which lives as long as that thread. Once the pools alive hold more threads
    than there are cores, libgomp's workers stop spinning between regions and sleep on a futex:
    measured on 2 cores, the model thread ran int8 batches at 58% of the speed it had as the
    only pool (35 vs 59 msg/s; CPU 1.3 of 2 cores). So torch work outside the model thread
    (loading, warm-up) happens in threads that end, never on the long-lived main thread.
    """
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=run, name="gptcls-setup")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve beyond this machine
        return False
