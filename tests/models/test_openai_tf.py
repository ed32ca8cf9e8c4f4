"""Tests for gptcls.models.weights.openai_tf and tf_bundle against a tiny GPT-2 checkpoint
written by real TensorFlow.

The fixture (tests/fixtures/openai_gpt2_tiny/, made by make_openai_gpt2_tiny.py) has OpenAI's
file layout and variable names; expected.npz holds what TensorFlow itself reads back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES

from gptcls.errors import GptclsError
from gptcls.models import build_backbone
from gptcls.models.weights.openai_tf import gpt2_state_dict, load_openai_gpt2
from gptcls.models.weights.tf_bundle import TensorBundle, crc32c, read_tf_bundle, unmask_crc

FIXTURE = FIXTURES / "openai_gpt2_tiny"
N_PREFIXED = 40  # see make_openai_gpt2_tiny.dtype_arrays


@pytest.fixture
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as npz:
        return dict(npz)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture, for breaking it."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "ckpt"))


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert unmask_crc(0xA282EAD8) == 0  # mask(0) == kMaskDelta


def test_reader_returns_exactly_what_tensorflow_wrote(expected: dict[str, np.ndarray]) -> None:
    arrays = read_tf_bundle(FIXTURE / "model.ckpt", verify_crc=True)
    assert sorted(arrays) == sorted(expected)
    assert len(arrays) == 4 + 12 * 2
    for name, want in expected.items():
        got = arrays[name]
        assert got.dtype == want.dtype == np.float32, name
        assert got.shape == want.shape, name
        assert np.array_equal(got, want), name
    assert arrays["model/h1/attn/c_attn/w"].shape == (1, 16, 48)
    assert arrays["model/h0/attn/c_attn/w"].flags.writeable


def test_reader_dtypes_scalars_and_prefix_compressed_names() -> None:
    bundle = TensorBundle(FIXTURE / "dtypes.ckpt")
    assert bundle.num_shards == 1 and not bundle.big_endian
    arrays = bundle.read_all(verify_crc=True)
    with np.load(FIXTURE / "dtypes_expected.npz") as npz:
        for name in ("half", "double", "int", "scalar"):
            assert arrays[name].dtype == npz[name].dtype, name
            assert arrays[name].shape == npz[name].shape, name
            assert np.array_equal(arrays[name], npz[name]), name
    assert arrays["half"].dtype == np.float16 and arrays["scalar"].shape == ()
    prefixed = [n for n in bundle.names if n.startswith("a/rather/long/")]
    assert len(prefixed) == N_PREFIXED
    for i, name in enumerate(prefixed):
        assert name.endswith(f"var_{i:03d}")
        assert np.array_equal(arrays[name], np.full((2,), i, np.float32))


def reference_gpt2(p: dict[str, np.ndarray], hp: dict[str, int], ids: np.ndarray) -> np.ndarray:
    """GPT-2's forward written straight from OpenAI's model.py, in float64 numpy: (T,) -> (T, V)."""
    p = {k: v.astype(np.float64) for k, v in p.items()}
    H, C = hp["n_head"], hp["n_embd"]
    T, D = len(ids), C // H

    def norm(x: np.ndarray, scope: str) -> np.ndarray:
        u = x.mean(-1, keepdims=True)
        s = ((x - u) ** 2).mean(-1, keepdims=True)
        return (x - u) / np.sqrt(s + 1e-5) * p[f"{scope}/g"] + p[f"{scope}/b"]

    def conv1d(x: np.ndarray, scope: str) -> np.ndarray:
        return x @ p[f"{scope}/w"][0] + p[f"{scope}/b"]

    def gelu(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    x = p["model/wte"][ids] + p["model/wpe"][:T]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(hp["n_layer"]):
        h = f"model/h{i}"
        q, k, v = (a.reshape(T, H, D).transpose(1, 0, 2)
                   for a in np.split(conv1d(norm(x, f"{h}/ln_1"), f"{h}/attn/c_attn"), 3, -1))
        w = np.where(causal, q @ k.transpose(0, 2, 1) / np.sqrt(D), -1e10)
        w = np.exp(w - w.max(-1, keepdims=True))
        a = ((w / w.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + conv1d(a, f"{h}/attn/c_proj")
        x = x + conv1d(gelu(conv1d(norm(x, f"{h}/ln_2"), f"{h}/mlp/c_fc")), f"{h}/mlp/c_proj")
    return norm(x, "model/ln_f") @ p["model/wte"].T


def test_load_openai_gpt2_matches_reference_forward(expected: dict[str, np.ndarray]) -> None:
    hp = json.loads((FIXTURE / "hparams.json").read_text())
    config, sd = load_openai_gpt2(FIXTURE)
    assert (config.family, config.vocab_size, config.context_length, config.emb_dim,
            config.n_layers, config.n_heads, config.hidden_dim) == ("gpt2", 64, 32, 16, 2, 2, 64)
    assert sd["out_head.weight"] is sd["tok_emb.weight"]
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in sd.values())
    model = build_backbone(config).eval()
    model.load_state_dict(sd, strict=True)
    assert model.out_head.weight is model.tok_emb.weight  # still tied after loading
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, config.context_length))
    with torch.no_grad():
        logits = model(torch.from_numpy(ids)).double().numpy()
    for row, seq in zip(logits, ids, strict=True):
        ref = reference_gpt2(expected, hp, seq)
        assert np.abs(ref).max() > 0.5  # a meaningful comparison, not one of near-zeros
        np.testing.assert_allclose(row, ref, atol=1e-5, rtol=0)


def test_qkv_split_follows_the_books_mapping(expected: dict[str, np.ndarray]) -> None:
    # The book: q_w, k_w, v_w = np.split(c_attn_w, 3, axis=-1); W_query.weight = q_w.T
    config, sd = load_openai_gpt2(FIXTURE)
    from_dict = gpt2_state_dict(expected, config)  # the same mapping from in-memory arrays
    assert sd.keys() == from_dict.keys()
    assert all(torch.equal(sd[k], from_dict[k]) for k in sd)
    q_w, k_w, v_w = np.split(np.squeeze(expected["model/h1/attn/c_attn/w"]), 3, axis=-1)
    for name, want in (("q", q_w), ("k", k_w), ("v", v_w)):
        assert np.array_equal(sd[f"blocks.1.attn.{name}.weight"].numpy(), want.T)
    assert np.array_equal(sd["blocks.1.mlp.fc.weight"].numpy(),
                          expected["model/h1/mlp/c_fc/w"][0].T)


def test_half_precision_output() -> None:
    _, sd = load_openai_gpt2(FIXTURE, dtype=torch.float16)
    assert sd["blocks.0.attn.q.weight"].dtype == torch.float16


@pytest.mark.parametrize("missing", ["hparams.json", "model.ckpt.index",
                                     "model.ckpt.data-00000-of-00001"])
def test_missing_file_is_named(copy: Path, missing: str) -> None:
    (copy / missing).unlink()
    with pytest.raises(GptclsError, match=f"missing {missing}") as info:
        load_openai_gpt2(copy)
    assert "\n" not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="directory not found"):
        load_openai_gpt2(tmp_path / "nope")


def test_checkpoint_state_file_with_foreign_absolute_path(copy: Path) -> None:
    # TF used to record absolute paths; a directory moved from another machine must still load.
    (copy / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/run1/model.ckpt"\n')
    config, _ = load_openai_gpt2(copy)
    assert config.n_layers == 2


def test_hparams_that_do_not_match_the_checkpoint(copy: Path) -> None:
    hp = json.loads((copy / "hparams.json").read_text())
    (copy / "hparams.json").write_text(json.dumps({**hp, "n_layer": 3}))
    with pytest.raises(GptclsError, match="model/h2/"):
        load_openai_gpt2(copy)
    (copy / "hparams.json").write_text(json.dumps({**hp, "n_layer": 1}))
    with pytest.raises(GptclsError, match="does not account for: model/h1/"):
        load_openai_gpt2(copy)
    (copy / "hparams.json").write_text(json.dumps({**hp, "n_ctx": 1024}))
    with pytest.raises(GptclsError, match="model/wpe"):
        load_openai_gpt2(copy)


def test_corrupt_index_is_reported(copy: Path) -> None:
    index = copy / "model.ckpt.index"
    data = bytearray(index.read_bytes())
    data[20] ^= 0xFF  # inside the first data block: its CRC no longer matches
    index.write_bytes(bytes(data))
    with pytest.raises(GptclsError, match="checksum mismatch"):
        TensorBundle(copy / "model.ckpt")
    index.write_bytes(bytes(data[:-1]) + b"\x00")
    with pytest.raises(GptclsError, match="bad magic"):
        TensorBundle(copy / "model.ckpt")


def test_compressed_block_is_refused(copy: Path) -> None:
    index = copy / "model.ckpt.index"
    data = bytearray(index.read_bytes())
    # TF writes the index block last, so its 5-byte trailer (type byte, CRC) precedes the
    # 48-byte footer. Type 1 is snappy, which TF's bundle writer never uses.
    data[-48 - 5] = 1
    index.write_bytes(bytes(data))
    with pytest.raises(GptclsError, match="compressed block"):
        TensorBundle(copy / "model.ckpt")


def test_corrupt_tensor_data(copy: Path, expected: dict[str, np.ndarray]) -> None:
    bundle = TensorBundle(copy / "model.ckpt")
    entry = bundle.entries["model/wte"]
    shard = copy / "model.ckpt.data-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[entry.offset] ^= 0x01
    shard.write_bytes(bytes(data))
    assert not np.array_equal(bundle.read("model/wte"), expected["model/wte"])  # unchecked
    with pytest.raises(GptclsError, match="checksum mismatch in 'model/wte'"):
        bundle.read("model/wte", verify_crc=True)
    shard.write_bytes(bytes(data[:entry.offset + 3]))
    with pytest.raises(GptclsError, match="truncated"):
        bundle.read("model/wte")
    with pytest.raises(GptclsError, match="no variable 'nope'"):
        bundle.read("nope")

