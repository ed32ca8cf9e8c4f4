"""Tests for the SMS file (parse, download) and balancing/splitting/split CSVs on it."""

from __future__ import annotations

import io
import socket
import threading
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from helpers import SMS_PATH

from gptcls.data.examples import Example, label_mapping
from gptcls.data.partition import balance_undersample, random_split
from gptcls.data.sms import SMS_MEMBER, SMS_SHA256, SMS_SUBDIR, fetch_sms_spam, read_sms_file
from gptcls.data.splits import prepare_sms_splits, read_split_csv, write_split_csv
from gptcls.errors import GptclsError
from gptcls.files import sha256_bytes, sha256_file

REAL_SMS = SMS_PATH

# A line that pandas' default quoting mangles: it starts with a quote that closes mid-text.
QUOTED_LINE = (
    '"Happy valentines day" I know its early but i have hundreds of handsomes and '
    "beauties to wish. So i thought to finish off aunties and uncles 1st..."
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def sms_path() -> Path:
    if not REAL_SMS.is_file():
        pytest.fail(
            f"the real SMS Spam Collection is missing at {REAL_SMS}; "
            "these tests need the shared data checkout (do not copy it into the repo)"
        )
    return REAL_SMS


@pytest.fixture(scope="session")
def sms_examples(sms_path: Path) -> list[Example]:
    return read_sms_file(sms_path)


class _Server:
    """A tiny HTTP server on 127.0.0.1 serving `routes` (path -> body); other paths 404."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                hits.append(self.path)
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval keeps shutdown() (and so each test) fast.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    # A proxy from the environment must not intercept requests to the local server.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = _Server()
    yield srv
    srv.stop()


def _zip(member_bytes: bytes, name: str = SMS_MEMBER) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, member_bytes)
        zf.writestr("readme", b"not the data\n")
    return buf.getvalue()


FAKE_SMS = b'ham\tHello there\nspam\tWIN "cash" now, call 0800\nham\tok\n'
FAKE_SHA = sha256_bytes(FAKE_SMS)


def _cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------- real file


def test_real_file_counts(sms_examples: list[Example]) -> None:
    assert len(sms_examples) == 5574
    assert Counter(ex.label for ex in sms_examples) == {"ham": 4827, "spam": 747}


def test_real_file_checksum_matches_constant(sms_path: Path) -> None:
    assert sha256_file(sms_path) == SMS_SHA256


def test_real_file_keeps_quotes_intact(sms_path: Path, sms_examples: list[Example]) -> None:
    assert Example(text=QUOTED_LINE, label="ham") in sms_examples
    # Every raw line with a quote reappears verbatim as one message.
    raw = sms_path.read_text(encoding="utf-8").split("\n")
    quoted = [line for line in raw if '"' in line]
    assert len(quoted) == 145
    parsed = {f"{ex.label}\t{ex.text}" for ex in sms_examples}
    assert all(line in parsed for line in quoted)


def test_real_file_text_is_exact(sms_examples: list[Example]) -> None:
    # Trailing spaces, HTML entities and stray C1 characters are data, not noise to clean.
    assert any(ex.text.endswith(" ") for ex in sms_examples)
    assert any("&lt;#&gt;" in ex.text for ex in sms_examples)
    assert any("\x92" in ex.text for ex in sms_examples)
    assert not any("\n" in ex.text or "\r" in ex.text for ex in sms_examples)


def test_real_labels_ham_0_spam_1(sms_examples: list[Example]) -> None:
    assert label_mapping(sms_examples) == ["ham", "spam"]
    assert label_mapping(sms_examples, order=["ham", "spam"]).index("spam") == 1


def test_real_balanced_split_sizes(sms_examples: list[Example]) -> None:
    balanced = balance_undersample(sms_examples, seed=123)
    assert Counter(ex.label for ex in balanced) == {"ham": 747, "spam": 747}
    train, val, test = random_split(balanced, (0.7, 0.1, 0.2), seed=123)
    assert (len(train), len(val), len(test)) == (1045, 149, 300)
    assert Counter(train + val + test) == Counter(balanced)


def test_real_determinism_under_seed(sms_examples: list[Example]) -> None:
    def run(seed: int) -> tuple[list[Example], ...]:
        return random_split(balance_undersample(sms_examples, seed=seed), seed=seed)

    assert run(123) == run(123)
    assert run(123) != run(124)


def test_prepare_sms_splits_writes_csvs(sms_path: Path, tmp_path: Path) -> None:
    out = prepare_sms_splits(sms_path, tmp_path / "splits", seed=123)
    assert out["labels"] == ["ham", "spam"]
    assert out["source"] == sms_path
    sizes = {name: len(out[name]) for name in ("train", "validation", "test")}
    assert sizes == {"train": 1045, "validation": 149, "test": 300}
    for name in ("train", "validation", "test"):
        assert read_split_csv(tmp_path / "splits" / f"{name}.csv") == out[name]


def test_prepare_sms_splits_unbalanced(sms_path: Path, tmp_path: Path) -> None:
    out = prepare_sms_splits(sms_path, tmp_path, balance=False)
    assert len(out["train"]) + len(out["validation"]) + len(out["test"]) == 5574
    assert len(out["train"]) == int(5574 * 0.7)


# --------------------------------------------------------------------------- parsing


def test_read_sms_file_edge_cases(tmp_path: Path) -> None:
    p = tmp_path / "sms.tsv"
    p.write_bytes(b'ham\ta\tb  \r\n\nspam\t"q" x\r\nham\tno newline at end')
    assert read_sms_file(p) == [
        Example("a\tb  ", "ham"),  # split on the first tab only; trailing spaces kept
        Example('"q" x', "spam"),
        Example("no newline at end", "ham"),
    ]


def test_read_sms_file_does_not_split_on_unicode_line_breaks(tmp_path: Path) -> None:
    p = tmp_path / "sms.tsv"
    p.write_text("ham\tone\x85two\u2028three\x0cfour\n", encoding="utf-8")
    assert read_sms_file(p) == [Example("one\x85two\u2028three\x0cfour", "ham")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no examples"),
        (b"\n \n", "no examples"),
        (b"ham\tok\nno tab here\n", ":2: expected 'label<TAB>text'"),
        (b"\tmissing label\n", ":1: expected"),
        (b"ham\tcaf\xe9\n", "not UTF-8"),
    ],
)
def test_read_sms_file_errors(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "sms.tsv"
    p.write_bytes(content)
    with pytest.raises(GptclsError, match=message):
        read_sms_file(p)


def test_read_sms_file_missing(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="data file not found: .*nope"):
        read_sms_file(tmp_path / "nope")


# --------------------------------------------------------------------------- balance / split


def _toy(n_a: int, n_b: int) -> list[Example]:
    return [Example(f"a{i}", "a") for i in range(n_a)] + [Example(f"b{i}", "b") for i in range(n_b)]


def test_balance_undersample_draws_like_pandas_and_is_seeded() -> None:
    data = _toy(50, 7)
    out = balance_undersample(data, seed=1)
    assert Counter(ex.label for ex in out) == {"a": 7, "b": 7}
    # pandas' df.sample(7, random_state=1) is RandomState(1).choice(50, 7, replace=False).
    drawn = np.random.RandomState(1).choice(50, 7, replace=False)
    assert out == [data[i] for i in drawn] + data[50:]
    assert out == balance_undersample(data, seed=1)
    assert out != balance_undersample(data, seed=2)
    assert balance_undersample([]) == []


def test_random_split_book_arithmetic() -> None:
    train, val, test = random_split(_toy(10, 0), (0.7, 0.1, 0.2), seed=0)
    assert (len(train), len(val), len(test)) == (7, 1, 2)
    assert Counter(train + val + test) == Counter(_toy(10, 0))


@pytest.mark.parametrize(
    "fractions",
    [(0.7, 0.3, 0.0), (0.8, 0.3, -0.1), (0.5, 0.2, 0.2), (0.5, 0.5), (1.0, float("nan"), 0)],
)
def test_random_split_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(GptclsError, match="fractions"):
        random_split(_toy(10, 0), fractions)


def test_label_mapping_order_checks() -> None:
    data = _toy(2, 2)
    assert label_mapping(data) == ["a", "b"]
    assert label_mapping(data, order=["b", "a", "c"]) == ["b", "a", "c"]
    with pytest.raises(GptclsError, match=r"\['b'\] are not in the label order"):
        label_mapping(data, order=["a"])
    with pytest.raises(GptclsError, match="duplicate"):
        label_mapping(data, order=["a", "b", "a"])


# --------------------------------------------------------------------------- CSV


TRICKY = [
    'He said "hi", then left',
    "comma, comma,, and ;semicolons;",
    "line one\nline two",
    "windows\r\nbreak and lone\rcarriage",
    "",
    "  leading and trailing spaces  ",
    "\ttabs\t",
    '"""',
    "£ü… \x92 \u2028 emoji 🎉",
    "label,text",
]


def test_csv_round_trip_tricky_texts(tmp_path: Path) -> None:
    examples = [Example(t, "spam" if i % 2 else "ham") for i, t in enumerate(TRICKY)]
    path = tmp_path / "sub" / "train.csv"
    write_split_csv(path, examples, ["ham", "spam"])
    assert path.read_text(encoding="utf-8").startswith('"text","label"\n')
    assert read_split_csv(path) == examples
    assert [p.name for p in path.parent.iterdir()] == ["train.csv"]  # no temp files left


def test_write_split_csv_rejects_unknown_label(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="'eggs' is not one of the classes"):
        write_split_csv(tmp_path / "x.csv", [Example("t", "eggs")], ["ham", "spam"])
    assert not (tmp_path / "x.csv").exists()


def test_read_split_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="data file not found"):
        read_split_csv(tmp_path / "missing.csv")
    p = tmp_path / "bad.csv"
    p.write_text("message,label\nhi,ham\n", encoding="utf-8")
    with pytest.raises(GptclsError, match=r"missing column\(s\) \['text'\]"):
        read_split_csv(p)
    p.write_text("text,label\nhi,ham\nlonely\n", encoding="utf-8")
    with pytest.raises(GptclsError, match=":3: row has too few fields"):
        read_split_csv(p)


# --------------------------------------------------------------------------- download


def _forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used although the cache is valid")

    monkeypatch.setattr(urllib.request, "urlopen", boom)


def test_fetch_primary_404_falls_back_then_reuses_cache(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/backup.zip"] = _zip(FAKE_SMS)
    urls = (server.url("/primary.zip"), server.url("/backup.zip"))

    path = fetch_sms_spam(cache=tmp_path, urls=urls, sha256=FAKE_SHA, timeout=5)
    assert path == tmp_path / SMS_SUBDIR / SMS_MEMBER
    assert path.read_bytes() == FAKE_SMS
    assert server.hits == ["/primary.zip", "/backup.zip"]
    assert "HTTP 404" in caplog.text  # a warning on the "gptcls.data.sms" logger
    assert _cache_files(tmp_path) == [path]

    server.stop()
    _forbid_network(monkeypatch)
    assert fetch_sms_spam(cache=tmp_path, urls=urls, sha256=FAKE_SHA, timeout=5) == path


def test_fetch_redownloads_corrupt_cache(server: _Server, tmp_path: Path) -> None:
    server.routes["/d.zip"] = _zip(FAKE_SMS, name="some folder/" + SMS_MEMBER)
    target = tmp_path / SMS_SUBDIR / SMS_MEMBER
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert fetch_sms_spam(cache=tmp_path, urls=[server.url("/d.zip")], sha256=FAKE_SHA) == target
    assert target.read_bytes() == FAKE_SMS


def test_fetch_wrong_checksum_writes_nothing(server: _Server, tmp_path: Path) -> None:
    server.routes["/d.zip"] = _zip(FAKE_SMS + b"ham\ttampered\n")
    with pytest.raises(GptclsError) as err:
        fetch_sms_spam(cache=tmp_path, urls=[server.url("/d.zip")], sha256=FAKE_SHA, timeout=5)
    msg = str(err.value)
    assert "checksum mismatch" in msg and FAKE_SHA in msg
    assert sha256_bytes(FAKE_SMS + b"ham\ttampered\n") in msg
    assert _cache_files(tmp_path) == []


def test_fetch_wrong_checksum_on_primary_uses_backup(server: _Server, tmp_path: Path) -> None:
    server.routes["/bad.zip"] = _zip(b"ham\tother\n")
    server.routes["/good.zip"] = _zip(FAKE_SMS)
    urls = [server.url("/bad.zip"), server.url("/good.zip")]
    assert fetch_sms_spam(cache=tmp_path, urls=urls, sha256=FAKE_SHA).read_bytes() == FAKE_SMS


@pytest.mark.parametrize("kind", ["404", "unreachable", "not a zip", "no member"])
def test_fetch_all_urls_failing(server: _Server, tmp_path: Path, kind: str) -> None:
    server.routes["/junk"] = b"<html>not a zip</html>"
    server.routes["/empty.zip"] = _zip(FAKE_SMS, name="other.txt")
    urls: dict[str, Callable[[], list[str]]] = {
        "404": lambda: [server.url("/a.zip"), server.url("/b.zip")],
        "unreachable": lambda: [server.url("/a.zip"), _dead_url()],
        "not a zip": lambda: [server.url("/junk")],
        "no member": lambda: [server.url("/empty.zip")],
    }
    with pytest.raises(GptclsError) as err:
        fetch_sms_spam(cache=tmp_path, urls=urls[kind](), sha256=FAKE_SHA, timeout=5)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("could not download the SMS Spam Collection (no network?)")
    assert "--data PATH" in msg and "last error:" in msg
    assert _cache_files(tmp_path) == []


def _dead_url() -> str:
    """A URL on a port where nothing listens (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.zip"


def test_fetch_real_bytes_match_real_checksum(
    server: _Server, sms_path: Path, tmp_path: Path
) -> None:
    server.routes["/sms.zip"] = _zip(sms_path.read_bytes())
    path = fetch_sms_spam(cache=tmp_path, urls=[server.url("/sms.zip")], timeout=5)
    assert sha256_file(path) == SMS_SHA256
    assert len(read_sms_file(path)) == 5574
