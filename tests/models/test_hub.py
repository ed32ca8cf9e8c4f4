"""Hub IDs (`--model owner/name`) against a local stand-in for the Hugging Face hub: an HTTP
server on 127.0.0.1 (HF_ENDPOINT) serving tiny models this file writes with transformers.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and HF_TOKEN when it is imported, so
each scenario runs in a fresh interpreter with its own environment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import transformers as tf

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the one revision every repo has
TOKEN = "hf_test_token"  # owner/private answers only to it
IDS = [[5, 7, 11, 200, 3, 42, 8], [1, 2, 3, 4, 5, 6, 7]]


def write_tiny_llama(directory: Path) -> tf.LlamaForCausalLM:
    """A 2-layer Llama (untied, grouped-query) saved in shards, with a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(3)
    cfg = tf.LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         rope_theta=100000.0, max_position_embeddings=64, rms_norm_eps=1e-6,
                         tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(directory, max_shard_size="20KB")  # an index + several shards
    words = {f"w{i}": i for i in range(299)} | {"<|endoftext|>": 299}
    tok = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return model


class Hub(BaseHTTPRequestHandler):
    """GET/HEAD /{owner}/{name}/resolve/{revision}/{file}, with the headers huggingface_hub
    needs (X-Repo-Commit, ETag, Content-Length) and the hub's error codes."""

    repos: dict[str, Path] = {}
    log: list[str] = []

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
        self.answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        self.log.append(f"{self.command} {self.path}")
        parts = self.path.split("?")[0].strip("/").split("/")
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if len(parts) < 5 or parts[2] != "resolve":
            return self.fail(404, "")
        authorised = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        if repo == "owner/gated":  # exists, but its terms were not accepted
            return self.fail(403, "GatedRepo")
        if repo == "owner/forbidden":
            return self.fail(403, "")
        if repo == "owner/private" and not authorised:  # the hub hides private repos: 401
            return self.fail(401, "RepoNotFound")
        if repo not in self.repos:
            return self.fail(404, "RepoNotFound")
        path = self.repos[repo] / filename
        if not path.is_file():
            return self.fail(404, "EntryNotFound")
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def fail(self, status: int, code: str) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The server, its repos and the transformers models they hold."""
    root = tmp_path_factory.mktemp("hub")
    llama = write_tiny_llama(root / "tiny")
    torch.manual_seed(4)  # single file, no tokenizer.json: GPT-2's own tokenizer applies
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=64,
                                            vocab_size=50257)).eval()
    gpt2.save_pretrained(root / "private")
    Hub.repos = {"owner/tiny": root / "tiny", "owner/private": root / "private"}
    Hub.log = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"endpoint": f"http://127.0.0.1:{server.server_address[1]}", "root": root,
           "llama": llama, "gpt2": gpt2, "hf_home": tmp_path_factory.mktemp("hf_home")}
    server.shutdown()


def run_python(code: str, hub: dict, hf_home: Path, cwd: Path, **env: str
               ) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_")) and "proxy" not in k.lower()}
    full = {**base, "HF_ENDPOINT": hub["endpoint"], "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1", **env}
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


LOAD = """
import json, sys, torch
from gptcls.models.weights.pretrained import load_backbone, load_pretrained
out = {}
for name in ("owner/tiny", "owner/private"):
    p = load_pretrained(name)
    with torch.no_grad():
        logits = load_backbone(p.config, p.state_dict).eval()(torch.tensor(IDS))
    torch.save(logits, name.replace("/", "_") + ".pt")
    out[name] = {"source": p.source, "encode": p.tokenizer.encode("w5 w7 hello"),
                 "eot": p.tokenizer.eot_id}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def downloaded(hub: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both repos loaded once through the hub into the module's HF_HOME (the token set)."""
    cwd = tmp_path_factory.mktemp("load")
    proc = run_python(f"IDS = {IDS}\n" + LOAD, hub, hub["hf_home"], cwd, HF_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"info": json.loads(proc.stdout.strip().splitlines()[-1]), "cwd": cwd,
            "requests": list(Hub.log)}


def test_hub_id_loads_like_transformers(hub: dict, downloaded: dict) -> None:
    ids = torch.tensor(IDS)
    for name, hf in (("owner/tiny", hub["llama"]), ("owner/private", hub["gpt2"])):
        ours = torch.load(downloaded["cwd"] / (name.replace("/", "_") + ".pt"))
        with torch.no_grad():
            diff = (ours - hf(ids).logits).abs().max().item()
        assert diff < 1e-4, f"{name}: logits differ by {diff}"
        assert downloaded["info"][name]["source"] == f"{name} (hub commit {COMMIT[:12]})"
    tiny, private = downloaded["info"]["owner/tiny"], downloaded["info"]["owner/private"]
    assert tiny["encode"][:2] == [5, 7] and tiny["eot"] == 299  # the repo's tokenizer.json
    assert private["eot"] == 50256  # no tokenizer.json in the repo: GPT-2's
    shards = sorted(p.name for p in (hub["root"] / "tiny").glob("model-*.safetensors"))
    assert len(shards) > 1
    got = {r.split()[1].rsplit("/", 1)[1] for r in downloaded["requests"]
           if r.startswith("GET /owner/tiny/")}
    assert got == {"config.json", "model.safetensors.index.json", *shards, "tokenizer.json",
                   "tokenizer_config.json"}  # just the files a model needs


def test_train_offline_from_the_hub_cache(hub: dict, downloaded: dict, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    rows = [f"w{5 + i % 50} w{7 + i % 3} w9,{'spam' if i % 2 else 'ham'}" for i in range(40)]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    before = len(Hub.log)
    code = ("import sys\nfrom gptcls.cli.main import main\nsys.exit(main(['train', '--model', "
            f"'owner/tiny', '--weights', 'pretrained', '--data', {str(data)!r}, '--epochs', '1', "
            f"'--batch-size', '4', '--out', {str(tmp_path / 'run')!r}]))")
    proc = run_python(code, hub, hub["hf_home"], tmp_path, HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(Hub.log) == before  # nothing asked of the hub: HF_HUB_OFFLINE and the cache
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone"]["model"] == "owner/tiny"
    assert config["model"]["emb_dim"] == 16


ERRORS = """
import contextlib, io, json
from gptcls.cli.main import main
out = []
for name in NAMES:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["generate", "hello", "--model", name])
    out.append([code, err.getvalue()])
print(json.dumps(out))
"""


def test_bad_hub_ids_are_one_line_and_exit_2(hub: dict, tmp_path: Path) -> None:
    expected = {
        "owner/missing": ["no such model on the hub: owner/missing"],
        "owner/private": ["no such model on the hub: owner/private", "or it is private",
                          "hf auth login", "huggingface-cli login", "HF_TOKEN"],
        "owner/gated": ["owner/gated is gated", f"{hub['endpoint']}/owner/gated",
                        "huggingface-cli login", "HF_TOKEN"],
        "owner/forbidden": ["refused access to owner/forbidden (403)", "huggingface-cli login"],
    }
    code = f"NAMES = {list(expected)}\n" + ERRORS
    proc = run_python(code, hub, tmp_path / "hf_home", tmp_path)  # no token, empty cache
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (name, parts), (status, stderr) in zip(expected.items(), results, strict=True):
        assert status == 2, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert all(p in stderr for p in parts), (name, stderr)


def test_offline_with_nothing_cached_is_one_line(hub: dict, tmp_path: Path) -> None:
    code = "NAMES = ['owner/tiny']\n" + ERRORS
    proc = run_python(code, hub, tmp_path / "empty", tmp_path, HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [[status, stderr]] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "owner/tiny is not in the Hugging Face cache" in stderr
    assert "HF_HUB_OFFLINE is set" in stderr and "local path" in stderr


def test_hub_ids_pass_the_option_check_but_other_names_do_not() -> None:
    from gptcls.errors import GptclsError
    from gptcls.models.weights.hub import is_hub_id
    from gptcls.training.pipeline import check_model_name

    check_model_name("Qwen/Qwen3-0.6B")
    check_model_name("google/gemma-3-270m")
    for bad in ("gpt5", "a/b/c", "owner/", "/name", "o--x/y", "own er/x"):
        assert not is_hub_id(bad)
        with pytest.raises(GptclsError, match="unknown model preset"):
            check_model_name(bad)


def test_random_weights_from_a_hub_id_skip_the_weights(hub: dict, tmp_path: Path) -> None:
    code = ("from gptcls.models.weights.pretrained import load_pretrained\n"
            "p = load_pretrained('owner/tiny', 'random', seed=5)\n"
            "print(p.source, p.config.emb_dim, p.tokenizer.encode('w5 w7'))")
    before = len(Hub.log)
    proc = run_python(code, hub, tmp_path / "hf_home", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["owner/tiny", "random(5)", "16", "[5,", "7]"]
    files = {r.split()[1].rsplit("/", 1)[1] for r in Hub.log[before:]
             if r.startswith("GET /owner/tiny/resolve/")}
    assert files == {"config.json", "tokenizer.json", "tokenizer_config.json"}
