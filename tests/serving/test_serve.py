"""The HTTP server: API answers, micro-batching under concurrency, every limit, the page."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gptcls.classifier.classifier import Classifier
from gptcls.serving.batching import MicroBatcher
from gptcls.serving.server import create_app


@pytest.fixture(scope="module")
def clf(tiny_clf) -> Classifier:
    return tiny_clf


@pytest.fixture(scope="module")
def texts(tiny_test_texts) -> list[str]:
    return tiny_test_texts[:96]


@pytest.fixture(scope="module")
def client(tiny_run):
    app = create_app(tiny_run, device="cpu", max_texts=8, max_chars=200, max_body_bytes=4000)
    with TestClient(app) as c:
        yield c


def test_classify_matches_predict_proba(client, clf, texts):
    r = client.post("/v1/classify", json={"texts": texts[:5]})
    assert r.status_code == 200
    results = r.json()["results"]
    probs = clf.predict_proba(texts[:5])
    assert [x["label"] for x in results] == clf.labels_from_proba(probs)
    for x, p in zip(results, probs, strict=True):
        assert list(x["probabilities"]) == clf.labels
        assert list(x["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-6)


def test_health_model_info_and_docs(client, clf):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["labels"] == clf.labels
    assert info["backbone"]["model"] == "gpt2-tiny"
    assert 0.0 <= info["metrics"]["test_accuracy"] <= 1.0
    assert info["metrics"]["test"]["per_class"].keys() == set(clf.labels)
    assert info["limits"]["max_texts"] == 8
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/healthz", "/v1/model"} <= set(spec["paths"])
    assert "requestBody" in spec["paths"]["/v1/classify"]["post"]
    assert client.get("/docs").status_code == 200



def test_model_info_says_single_label(client, clf):
    info = client.get("/v1/model").json()
    assert info["multi_label"] is False and "thresholds" not in info
    assert info["threshold"] == clf.config.threshold

def test_concurrent_requests_are_batched_and_answer_like_predict_proba(tiny_run, clf, texts):
    app = create_app(clf, max_batch=32, max_wait_ms=20)
    expected = clf.predict_proba(texts)

    async def run() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            calls = [ac.post("/v1/classify", json={"texts": texts[i:i + 2]})
                     for i in range(0, len(texts), 2)]
            responses = await asyncio.gather(*calls)
        assert all(r.status_code == 200 for r in responses)
        return [x for r in responses for x in r.json()["results"]]

    results = asyncio.run(run())
    got = np.array([[x["probabilities"][lab] for lab in clf.labels] for x in results])
    # Batches pad differently from predict_proba's; pooling by length makes that harmless.
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [x["label"] for x in results] == clf.labels_from_proba(expected)
    assert app.state.batcher.batches < len(texts) // 2  # 48 requests shared model calls


def test_batcher_respects_max_batch_and_isolates_failures():
    # Every text is an entry of its own: a request bigger than max_batch is split over several
    # model calls and still answered in its order.
    sizes: list[int] = []

    def predict(seqs: list) -> np.ndarray:
        if "boom" in seqs:
            raise ValueError("bad text")
        sizes.append(len(seqs))
        return np.array([[len(t), float(t[-1] == "!")] for t in seqs])

    async def run() -> list:
        batcher = MicroBatcher(predict, max_batch=25, max_wait_ms=50)
        jobs = [batcher.submit([f"t{i}{j}" for j in range(10)]) for i in range(6)]
        jobs += [batcher.submit(["x" * 40 + "!" * (k % 2) for k in range(40)]),
                 batcher.submit(["ok", "boom"]), batcher.submit(["fine"])]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        batcher.close()
        return out

    out = asyncio.run(run())
    assert sizes and all(s <= 25 for s in sizes)
    assert isinstance(out[7], ValueError)  # only the request with the bad text fails
    assert out[8][0, 0] == 4 and out[6].shape == (40, 2)
    assert out[6][:, 1].tolist() == [k % 2 for k in range(40)]  # its own order, across calls
    assert all(o.shape == (10, 2) for o in out[:6])


@pytest.mark.parametrize("body,status,message", [
    ({"texts": []}, 422, "empty"),
    ({"texts": ["a"] * 9}, 422, "too many texts"),
    ({"texts": ["a" * 201]}, 422, "201 characters"),
    ({"texts": ["ok", "   "]}, 422, "text 2 is empty"),
    ({"texts": "not a list"}, 422, "valid list"),
    ({"texts": [1, 2]}, 422, "valid string"),
    ({"text": ["typo"]}, 422, "Field required"),
    (["just", "a", "list"], 422, "valid dictionary"),
])
def test_bad_requests_are_4xx_json(client, body, status, message):
    r = client.post("/v1/classify", json=body)
    assert r.status_code == status
    assert message in r.text
    assert "detail" in r.json()


def test_malformed_json_and_body_limits(client):
    r = client.post("/v1/classify", content=b'{"texts": ["unterminated',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    big = b'{"texts": ["' + b"a" * 5000 + b'"]}'
    r = client.post("/v1/classify", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "4,000 bytes" in r.json()["detail"]

    def chunked():  # no Content-Length: the bytes actually sent are counted
        yield b'{"texts": ["'
        for _ in range(50):
            yield b"b" * 100
        yield b'"]}'

    r = client.post("/v1/classify", content=chunked(),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/classify", content=b"{}", headers={"content-length": "nonsense",
                                                            "content-type": "application/json"})
    assert r.status_code == 400 and "Content-Length" in r.json()["detail"]


def test_web_page_is_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="classify"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200
        # No CDN: nothing is loaded from another host.
        assert not re.search(r"https?://", r.text), asset
    assert not re.search(r"""(src|href)=["']https?://""", page.text)
