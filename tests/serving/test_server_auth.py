"""The server's API key: bearer tokens on every endpoint but /healthz and the page, and
`serve` refusing to listen beyond loopback without a key unless told --insecure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.serving import server
from gptcls.serving.server import create_app, is_loopback, serve

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def client(tiny_clf):
    with TestClient(create_app(tiny_clf, api_key=KEY)) as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": f"Bearer {KEY}x"}])
def test_api_wants_the_key(client, headers):
    for r in (client.post("/v1/classify", json={"texts": ["hi"]}, headers=headers),
              client.get("/v1/model", headers=headers)):
        assert r.status_code == 401
        assert "API key" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"


def test_the_key_opens_the_api(client, tiny_clf):
    auth = {"Authorization": f"Bearer {KEY}"}
    r = client.post("/v1/classify", json={"texts": ["WIN a prize now!"]}, headers=auth)
    assert r.status_code == 200
    assert r.json()["results"][0]["label"] == tiny_clf.predict("WIN a prize now!")
    assert client.get("/v1/model", headers=auth).json()["labels"] == tiny_clf.labels


def test_health_and_page_stay_open(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and 'id="api-key"' in page.text
    assert client.get("/static/app.js").status_code == 200
    spec = client.get("/openapi.json").json()  # /docs can send the key (Authorize button)
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_no_key_no_guard(tiny_clf):
    with TestClient(create_app(tiny_clf)) as c:
        assert c.post("/v1/classify", json={"texts": ["hi"]}).status_code == 200


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_open_non_loopback_host(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GPTCLS_API_KEY", raising=False)
    missing = tmp_path / "no-run"  # refused before anything is loaded
    assert main(["serve", str(missing), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--api-key" in err and "--insecure" in err
    with pytest.raises(GptclsError, match="without an API key"):
        serve(missing, host="192.168.1.5")


@pytest.fixture
def started(monkeypatch) -> list:
    """uvicorn.run replaced: the app and where it would listen, nothing bound."""
    import uvicorn

    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_insecure_or_keyed_listens_beyond_loopback(tiny_run, monkeypatch, started):
    monkeypatch.delenv("GPTCLS_API_KEY", raising=False)
    assert main(["serve", str(tiny_run), "--host", "0.0.0.0", "--insecure",
                 "--device", "cpu"]) == 0
    with TestClient(started[-1][0]) as c:  # open: no key asked
        assert c.post("/v1/classify", json={"texts": ["hi"]}).status_code == 200
    assert main(["serve", str(tiny_run), "--host", "0.0.0.0", "--api-key", KEY,
                 "--device", "cpu"]) == 0
    monkeypatch.setenv("GPTCLS_API_KEY", "from-env")
    assert main(["serve", str(tiny_run), "--host", "0.0.0.0", "--device", "cpu"]) == 0
    assert [kw["host"] for _, kw in started] == ["0.0.0.0"] * 3
    for app, key in ((started[1][0], KEY), (started[2][0], "from-env")):
        with TestClient(app) as c:
            assert c.get("/v1/model").status_code == 401
            assert c.get("/v1/model", headers={"Authorization": f"Bearer {key}"}
                         ).status_code == 200


def test_loopback_needs_no_key(tiny_run, monkeypatch, started):
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    assert main(["serve", str(tiny_run), "--device", "cpu"]) == 0
    assert started[0][1]["host"] == "127.0.0.1"
