"""What the server reports of its model calls (GET /v1/stats, the batcher's stats), the
warm-up it does at startup, before the first request is accepted, and its torch work kept off
the long-lived main thread (in_own_thread)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gptcls.classifier import twin as twin_module
from gptcls.classifier.classifier import Classifier
from gptcls.errors import GptclsError
from gptcls.serving import server
from gptcls.serving.batching import MicroBatcher
from gptcls.serving.server import create_app, in_own_thread

KEY = "k3y"


def test_batcher_stats_count_calls_texts_padding_and_model_time():
    def predict(seqs: list) -> np.ndarray:
        return np.zeros((len(seqs), 2))

    async def run() -> dict:
        batcher = MicroBatcher(predict, max_batch=64, max_wait_ms=20, max_tokens=4096)
        await asyncio.gather(batcher.submit([[1] * 10, [1] * 12]), batcher.submit([[1] * 40]))
        batcher.close()
        return batcher.stats()

    stats = asyncio.run(run())
    assert stats["texts"] == 3 and stats["batches"] >= 1
    assert sum(int(k) * v for k, v in stats["batch_sizes"].items()) == 3
    assert sum(stats["batch_sizes"].values()) == stats["batches"]
    assert stats["real_tokens"] == 62
    assert stats["padded_tokens"] >= 62 and stats["busy_s"] >= 0.0


def test_stats_endpoint_reports_requests_not_the_warm_up(tiny_clf):
    auth = {"Authorization": f"Bearer {KEY}"}
    with TestClient(create_app(tiny_clf, api_key=KEY)) as client:
        assert client.get("/v1/stats").status_code == 401
        assert client.get("/v1/stats", headers=auth).json()["texts"] == 0  # warm-up not counted
        for text in ("hello there", "WIN a prize now", "see you"):
            r = client.post("/v1/classify", json={"texts": [text]}, headers=auth)
            assert r.status_code == 200
        stats = client.get("/v1/stats", headers=auth).json()
    assert stats["texts"] == 3 and stats["batches"] == 3  # one at a time: a call each
    assert stats["batch_sizes"] == {"1": 3}
    assert stats["real_tokens"] == stats["padded_tokens"] > 0 and stats["busy_s"] > 0


def test_int8_twin_and_kernels_are_ready_before_the_first_request(tiny_clf, monkeypatch):
    built: list[int] = []
    twin_copy = twin_module.twin_copy

    def counting(model, *args):
        built.append(1)
        return twin_copy(model, *args)

    monkeypatch.setattr(twin_module, "twin_copy", counting)
    clf = Classifier(tiny_clf.config, tiny_clf.model, tiny_clf.tokenizer, "cpu", "int8")
    app = create_app(clf)
    assert built == []  # built by the startup, not by create_app
    with TestClient(app) as client:
        assert built == [1]  # startup done: no request yet
        r = client.post("/v1/classify", json={"texts": ["WIN a prize now"]})
        assert r.status_code == 200
        assert r.json()["results"][0]["label"] == clf.predict("WIN a prize now")
    assert built == [1]


def test_in_own_thread_runs_in_a_thread_that_ends_and_hands_back_result_or_error():
    seen: list[threading.Thread] = []

    def where(x: int) -> int:
        seen.append(threading.current_thread())
        return x * 2

    assert in_own_thread(where, 21) == 42
    assert seen[0] is not threading.current_thread() and not seen[0].is_alive()

    def bad() -> None:
        raise GptclsError("no such run")

    with pytest.raises(GptclsError, match="no such run"):
        in_own_thread(bad)


def test_serve_builds_the_app_off_the_main_thread(tiny_run, monkeypatch):
    import uvicorn

    built_in: list[str] = []
    real_create = server.create_app

    def create(*args, **kwargs):
        built_in.append(threading.current_thread().name)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(server, "create_app", create)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: built_in.append(type(app).__name__))
    server.serve(tiny_run, device="cpu", precision="fp32")
    assert built_in == ["gptcls-setup", "FastAPI"]
