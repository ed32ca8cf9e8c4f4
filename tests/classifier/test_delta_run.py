"""Delta run directories: only what training changed is stored, the base is found again by path
and sha256, and the rebuilt model is the trained one (against full runs of the same training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import byte_alphabet, write_tokenizer_json
from safetensors import safe_open

from gptcls.classifier.base_ref import HASH_CACHE_FILE, file_sha256
from gptcls.classifier.config import FORMAT_VERSION
from gptcls.classifier.run_dir import WEIGHTS_FILE, load_run
from gptcls.cli.main import main

VOCAB, LAYERS = 300, 4
PAD = VOCAB - 1  # the tokenizer's <|endoftext|>, its pad id
IDS = torch.tensor([[5, 17, 99, 3, 250, 8, 1], [42, 7, 7, 120, PAD, PAD, PAD]])  # (2, 7)
LENGTHS = torch.tensor([7, 4])


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """The download cache (where hashes are remembered) is the test's own."""
    monkeypatch.setenv("GPTCLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_base(directory: Path, seed: int = 0, tie: bool = True) -> Path:
    """A tiny Hugging Face Llama directory with a word-level tokenizer (w0 ... w298)."""
    import transformers as tf

    torch.manual_seed(seed)
    cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=tie)
    tf.LlamaForCausalLM(cfg).save_pretrained(directory)
    write_tokenizer_json(directory, VOCAB)
    return directory


def write_data(path: Path, n: int = 48) -> Path:
    rows = ["text,label"]
    for i in range(n):
        rows.append(f"w{i % 40} w7 w{i % 13} w9,spam" if i % 2 else f"w{i % 50} w3 w1,ham")
    path.write_text("\n".join(rows) + "\n")
    return path


def train(base: Path, data: Path, out: Path, *extra: str) -> Path:
    rc = main(["train", "--model", str(base), "--data", str(data), "--out", str(out),
               "--epochs", "1", "--lr", "1e-3", "--precision", "fp32", *extra])
    assert rc == 0
    return out


def logits(run: Path) -> torch.Tensor:
    _, model, _ = load_run(run)
    with torch.no_grad():
        return model(IDS, LENGTHS)


def saved_keys(run: Path) -> set[str]:
    with safe_open(str(run / WEIGHTS_FILE), "pt") as f:
        return set(f.keys())


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """The same training saved delta (the default) and full, from a tiny base on disk."""
    root = tmp_path_factory.mktemp("delta")
    base, data = write_base(root / "tinybase"), write_data(root / "data.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPTCLS_CACHE", str(root / "cache"))
        return {"base": base, "data": data, "delta": train(base, data, root / "delta"),
                "full": train(base, data, root / "full", "--save", "full")}


def test_a_delta_run_stores_what_trained_and_gives_the_full_runs_logits(pair):
    delta, full = pair["delta"], pair["full"]
    cfg = json.loads((delta / "config.json").read_text())
    assert cfg["save"] == "delta" and cfg["format_version"] == FORMAT_VERSION == 2
    assert cfg["backbone"]["path"] == str(pair["base"].resolve())
    assert cfg["backbone"]["sha256"] == file_sha256(pair["base"] / "model.safetensors")
    assert json.loads((full / "config.json").read_text())["save"] == "full"
    top = LAYERS - 1  # the recipe of a non-preset model trains the last block
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in saved_keys(delta)} == {
        "head.weight", "head.bias", "backbone.final_norm", "backbone.blocks"}
    assert {k.split(".")[2] for k in saved_keys(delta) if ".blocks." in k} == {str(top)}
    assert saved_keys(delta) < saved_keys(full)
    size = {r: (pair[r] / WEIGHTS_FILE).stat().st_size for r in ("delta", "full")}
    assert size["delta"] < size["full"] / 4, size
    torch.testing.assert_close(logits(delta), logits(full), atol=1e-6, rtol=0)


def test_an_old_format_full_run_still_loads(pair, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(pair["full"], old)
    cfg = json.loads((old / "config.json").read_text())
    del cfg["save"]
    cfg["format_version"] = 1
    cfg["backbone"] = {k: cfg["backbone"][k] for k in ("model", "weights", "source")}
    (old / "config.json").write_text(json.dumps(cfg))
    shutil.move(pair["base"], tmp_path / "elsewhere")  # a full run needs no base
    try:
        torch.testing.assert_close(logits(old), logits(pair["full"]), atol=0, rtol=0)
    finally:
        shutil.move(tmp_path / "elsewhere", pair["base"])


def test_a_missing_base_is_one_line_and_exit_2(pair, tmp_path, capsys):
    shutil.move(pair["base"], tmp_path / "moved")
    before = sorted(p.name for p in pair["delta"].iterdir())
    try:
        capsys.readouterr()
        assert main(["classify", str(pair["delta"]), "w1 w2"]) == 2
        assert main(["export", str(pair["delta"]), str(tmp_path / "hf"), "--format", "hf"]) == 2
    finally:
        shutil.move(tmp_path / "moved", pair["base"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 2 and lines[0] == lines[1]
    assert f"not at {pair['base'].resolve()}" in lines[0]
    assert f"put the weights with that sha256 back at {pair['base'].resolve()}" in lines[0]
    assert "--save full" in lines[0]
    assert sorted(p.name for p in pair["delta"].iterdir()) == before  # nothing written
    assert not (tmp_path / "hf").exists()


def test_a_different_base_is_one_line_and_exit_2(pair, tmp_path, capsys):
    shutil.copytree(pair["base"], tmp_path / "saved")
    write_base(pair["base"], seed=1)  # same shapes, other weights
    try:
        capsys.readouterr()
        assert main(["classify", str(pair["delta"]), "w1 w2"]) == 2
    finally:
        shutil.rmtree(pair["base"])
        shutil.copytree(tmp_path / "saved", pair["base"])
    want = json.loads((pair["delta"] / "config.json").read_text())["backbone"]["sha256"]
    got = file_sha256(tmp_path / "saved" / "model.safetensors")
    assert got == want  # the restored base is the right one again
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"sha256 {want[:16]}" in err and "but " in err and "has sha256" in err
    torch.testing.assert_close(logits(pair["delta"]), logits(pair["full"]), atol=1e-6, rtol=0)


def test_export_from_a_delta_run_is_self_contained(pair, tmp_path):
    from transformers import AutoModelForSequenceClassification

    # The export folds the calibration temperature into its head (export_hf.py).
    temperature = json.loads((pair["delta"] / "config.json").read_text())["temperature"]
    expected = logits(pair["delta"]) / temperature
    assert main(["export", str(pair["delta"]), str(tmp_path / "hf"), "--format", "hf"]) == 0
    shutil.move(pair["base"], tmp_path / "moved")
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "hf", trust_remote_code=True, output_loading_info=True)
    finally:
        shutil.move(tmp_path / "moved", pair["base"])
    assert not any(info.values()), info  # every weight is in the export, none missing
    mask = (torch.arange(IDS.shape[1])[None] < LENGTHS[:, None]).long()
    with torch.no_grad():
        got = model(input_ids=IDS, attention_mask=mask).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_lora_unmerged_delta_and_gptcls_merge(pair, tmp_path):
    lora = ("--trainable", "lora", "--lora-rank", "2", "--trainable-blocks", "2")
    run = train(pair["base"], pair["data"], tmp_path / "lora", *lora, "--no-merge-lora")
    full = train(pair["base"], pair["data"], tmp_path / "lora-full", *lora, "--save", "full")
    backbone = {k for k in saved_keys(run) if k.startswith("backbone.blocks.")}
    assert backbone and all(".lora_" in k for k in backbone)
    assert {k.split(".")[2] for k in backbone} == {str(LAYERS - 2), str(LAYERS - 1)}
    assert main(["merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    merged = {k for k in saved_keys(tmp_path / "merged") if k.startswith("backbone.blocks.")}
    cfg = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert cfg["save"] == "delta" and cfg["lora"]["merged"]
    assert merged == {f"backbone.blocks.{i}.{t}.weight" for i in (LAYERS - 2, LAYERS - 1)
                      for t in cfg["lora"]["targets"]}
    for other in (tmp_path / "merged", full):
        torch.testing.assert_close(logits(other), logits(run), atol=1e-5, rtol=0)


def test_trained_tied_embeddings_are_stored_once_and_rebuilt(pair, tmp_path):
    run = train(pair["base"], pair["data"], tmp_path / "emb", "--train-embeddings")
    full = train(pair["base"], pair["data"], tmp_path / "emb-full", "--train-embeddings",
                 "--save", "full")
    assert "backbone.tok_emb.weight" in saved_keys(run)
    assert "backbone.out_head.weight" not in saved_keys(run)  # tied: the embedding's copy
    _, model, _ = load_run(run)
    assert model.backbone.out_head.weight is model.backbone.tok_emb.weight
    torch.testing.assert_close(logits(run), logits(full), atol=1e-6, rtol=0)


def test_random_weights_are_saved_full(pair, tmp_path):
    run = train(pair["base"], pair["data"], tmp_path / "random", "--weights", "random")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["save"] == "full" and "sha256" not in cfg["backbone"]
    assert "backbone.blocks.0.attn.q.weight" in saved_keys(run)


def test_hashes_are_computed_once_per_path_size_and_mtime(tmp_path, own_cache, monkeypatch):
    import gptcls.classifier.base_ref as base_ref

    calls: list[Path] = []
    real = base_ref.sha256_file
    monkeypatch.setattr(base_ref, "sha256_file", lambda p: calls.append(p) or real(p))
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    first = file_sha256(f)
    assert file_sha256(f) == first and len(calls) == 1  # the second time from the cache
    assert str(f.resolve()) in json.loads((own_cache / HASH_CACHE_FILE).read_text())
    f.write_bytes(b"y" * 1001)
    assert file_sha256(f) != first and len(calls) == 2  # changed size and mtime: hashed again


def write_quantized_gguf(path: Path, layers: int = 3, dim: int = 32, ff: int = 64) -> Path:
    """A tiny Llama GGUF whose projections are Q4_1 (as SmolLM2's), norms and embedding F32."""
    import gguf
    import numpy as np
    from gguf.quants import quantize

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(64)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(dim // 4)
    tokens = [*byte_alphabet(), "he", "<|endoftext|>"]
    tokens += [f"<extra{i}>" for i in range(VOCAB - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if len(t) > 1 and t.startswith("<") else 1 for t in tokens])
    w.add_token_merges(["h e"])
    w.add_eos_token_id(257)
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    w.add_tensor("token_embd.weight", normal(VOCAB, dim))
    w.add_tensor("output_norm.weight", 1 + normal(dim))
    kv = dim // 2  # 2 of 4 heads
    shapes = {"attn_q": (dim, dim), "attn_k": (kv, dim), "attn_v": (kv, dim),
              "attn_output": (dim, dim), "ffn_gate": (ff, dim), "ffn_up": (ff, dim),
              "ffn_down": (dim, ff)}
    for i in range(layers):
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", 1 + normal(dim))
        for name, shape in shapes.items():
            q = gguf.GGMLQuantizationType.Q4_1
            w.add_tensor(f"blk.{i}.{name}.weight", quantize(normal(*shape), q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_quantized_gguf_base_rebuilds_its_frozen_blocks_bit_identically(pair, tmp_path):
    gguf_base = write_quantized_gguf(tmp_path / "tiny-q4.gguf")
    delta = train(gguf_base, pair["data"], tmp_path / "delta")
    full = train(gguf_base, pair["data"], tmp_path / "full", "--save", "full")
    cfg = json.loads((delta / "config.json").read_text())["backbone"]
    assert cfg["path"] == str(gguf_base.resolve()) and cfg["sha256"] == file_sha256(gguf_base)
    assert {k.split(".")[2] for k in saved_keys(delta) if ".blocks." in k} == {"2"}
    _, from_delta, _ = load_run(delta)
    _, from_full, _ = load_run(full)
    want, got = from_full.state_dict(), from_delta.state_dict()
    assert want.keys() == got.keys()
    assert [k for k in want if not torch.equal(want[k], got[k])] == []  # bit-identical
    torch.testing.assert_close(logits(delta), logits(full), atol=1e-6, rtol=0)
