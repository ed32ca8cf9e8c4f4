"""The server's micro-batching: length-grouped batches, every request its own answer under
concurrency, tokenization before the model thread, and a loop that stays responsive."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import build_parser
from gptcls.device import effective_precision
from gptcls.serving.batching import MicroBatcher, pick_batch
from gptcls.serving.server import create_app, serve


def _padded(lengths: list[int]) -> int:
    return len(lengths) * max(lengths)


def _banded(lengths: list[int]) -> bool:
    """No text padded by more than max(8, a quarter of the longest) tokens (the defaults)."""
    return max(lengths) - min(lengths) <= max(8, 0.25 * max(lengths))


def test_pick_batch_takes_the_oldest_and_its_neighbours_in_length():
    lengths = [20, 90, 21, 5, 19, 100, 22, 95]
    picked = pick_batch(lengths, max_tokens=4096, max_batch=64, max_padding=0.25)
    assert picked == [0, 2, 4, 6]  # the ~20-token texts; the long and the tiny ones wait
    picked = pick_batch(lengths[1:], max_tokens=4096, max_batch=64, max_padding=0.25)
    assert sorted(lengths[1:][i] for i in picked) == [90, 95, 100]


def test_pick_batch_respects_token_budget_and_max_batch():
    lengths = [50] * 30
    assert pick_batch(lengths, max_tokens=500, max_batch=64) == list(range(10))
    assert pick_batch(lengths, max_tokens=10_000, max_batch=8) == list(range(8))
    assert pick_batch([300, 10], max_tokens=100, max_batch=8) == [0]  # too long: alone
    assert pick_batch([7], max_tokens=100, max_batch=8) == [0]


def test_pick_batch_never_starves_and_keeps_padding_small():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, size=200).tolist()
    waiting = list(range(len(lengths)))  # arrival order
    while waiting:
        picked = pick_batch([lengths[i] for i in waiting], 2048, 64, 0.25)
        assert 0 in picked  # the oldest always goes
        batch = [lengths[waiting[i]] for i in picked]
        assert len(batch) == 1 or (_padded(batch) <= 2048 and _banded(batch))
        waiting = [w for i, w in enumerate(waiting) if i not in set(picked)]


@pytest.mark.parametrize("max_padding", [0.25, None])  # None: the server's default, 1.0
def test_batcher_groups_waiting_texts_by_length_and_answers_each_in_order(max_padding):
    seen: list[list[int]] = []
    gate = threading.Event()

    def predict(seqs: list) -> np.ndarray:
        gate.wait(5)  # the first call holds the model while the rest queue up
        seen.append([len(s) for s in seqs])
        return np.array([[float(s[0]), float(len(s))] for s in seqs])

    async def run() -> list[np.ndarray]:
        banding = {} if max_padding is None else {"max_padding": max_padding}
        batcher = MicroBatcher(predict, max_batch=64, max_wait_ms=1, max_tokens=4096, **banding)
        first = asyncio.ensure_future(batcher.submit([[0] * 8]))
        await asyncio.sleep(0.05)
        # 40 requests of 2 texts each, short and long mixed within a request.
        jobs = [batcher.submit([[i] * (5 + i % 3), [i] * (80 + i % 5)]) for i in range(40)]
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, *jobs)
        batcher.close()
        return out

    out = asyncio.run(run())
    for i, probs in enumerate(out[1:]):
        assert probs.tolist() == [[i, 5 + i % 3], [i, 80 + i % 5]]
    later = seen[1:]
    assert len(later) == 2 and sum(map(len, later)) == 80  # not 40 calls
    if max_padding:  # one call for the short texts, one for the long ones
        assert sorted(max(b) for b in later) == [7, 84] and all(_banded(b) for b in later)
    else:  # short and long texts together, as many as 4,096 padded tokens hold
        assert all(_padded(b) <= 4096 for b in later) and len(later[0]) > 40
        assert min(later[0]) <= 7 and max(later[0]) >= 80


@pytest.fixture
def texts(tiny_test_texts) -> list[str]:
    return tiny_test_texts[:120]


def test_many_concurrent_single_text_requests_get_their_own_labels(tiny_clf, texts,
                                                                   monkeypatch):
    lengths: list[list[int]] = []
    run_ids = tiny_clf.predict_proba_ids

    def recording(ids, **kw):
        lengths.append([len(s) for s in ids])
        return run_ids(ids, **kw)

    monkeypatch.setattr(tiny_clf, "predict_proba_ids", recording)
    app = create_app(tiny_clf, max_batch=32, max_wait_ms=20)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            return await asyncio.gather(*(ac.post("/v1/classify", json={"texts": [t]})
                                          for t in texts))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    got = [r.json()["results"][0]["label"] for r in responses]
    assert got == tiny_clf.predict(texts)
    assert sum(map(len, lengths)) == len(texts) and len(lengths) < len(texts) // 2
    assert all(len(b) <= 32 and _padded(b) <= 4096 for b in lengths)  # the server's bounds


def test_tokenizing_and_the_model_leave_the_event_loop_free(tiny_clf, monkeypatch):
    threads: dict[str, str] = {}
    model_running, model_done = threading.Event(), threading.Event()
    encode, run_ids = tiny_clf.encode, tiny_clf.predict_proba_ids

    def slow_encode(texts):
        threads["encode"] = threading.current_thread().name
        time.sleep(0.3)
        return encode(texts)

    def slow_model(ids, **kw):
        threads["model"] = threading.current_thread().name
        assert all(isinstance(t, int) for s in ids for t in s)  # the queue carries token ids
        model_running.set()
        time.sleep(1.0)
        model_done.set()
        return run_ids(ids, **kw)

    monkeypatch.setattr(tiny_clf, "encode", slow_encode)
    monkeypatch.setattr(tiny_clf, "predict_proba_ids", slow_model)
    app = create_app(tiny_clf, max_wait_ms=1)

    async def run() -> tuple[list[float], httpx.Response]:
        threads["loop"] = threading.current_thread().name
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            job = asyncio.ensure_future(ac.post("/v1/classify", json={"texts": ["hi there"]}))
            waits = []
            await asyncio.sleep(0.1)  # tokenizing now
            for _ in range(2):
                t0 = time.perf_counter()
                assert (await ac.get("/healthz")).status_code == 200
                waits.append(time.perf_counter() - t0)
                await asyncio.to_thread(model_running.wait, 5)  # then the model is running
            assert not model_done.is_set()
            return waits, await job

    waits, response = asyncio.run(run())
    assert response.status_code == 200
    assert max(waits) < 0.25, waits  # answered during tokenizing and during the model call
    assert len({threads["loop"], threads["encode"], threads["model"]}) == 3, threads


def test_precision_auto_is_the_default(tiny_run, tiny_clf):
    parser = build_parser()
    for argv in (["classify", "r", "x"], ["evaluate", "r", "--data", "d"],
                 ["predict", "r", "in.csv", "out.csv"], ["serve", "r"]):
        assert parser.parse_args(argv).precision == "auto", argv
    assert inspect.signature(Classifier.load).parameters["precision"].default == "auto"
    assert inspect.signature(serve).parameters["precision"].default == "auto"
    clf = Classifier.load(tiny_run, device="cpu")
    assert clf.precision == "auto"
    with TestClient(create_app(tiny_run, device="cpu")) as client:
        info = client.get("/v1/model").json()
    assert info["precision"] == effective_precision("auto", clf.device)  # as resolved here
    assert info["precision"] in ("fp32", "bf16") and info["device"] == "cpu"
