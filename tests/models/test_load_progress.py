"""Loading a backbone (safetensors shards, GGUF dequantisation) reports progress when it is
slow, and stays silent when it is quick."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gptcls import progress
from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.weights import gguf
from gptcls.models.weights.hf import load_safetensors


def shards(tmp_path: Path) -> list[Path]:
    paths = []
    for s in range(2):
        path = tmp_path / f"model-{s}.safetensors"
        save_file({f"layer{s}.{i}.weight": torch.full((2, 3), float(i)) for i in range(5)},
                  str(path))
        paths.append(path)
    return paths


def test_safetensors_shards_load_with_progress_lines(tmp_path, capsys, monkeypatch):
    paths = shards(tmp_path)
    assert load_safetensors(paths).keys() == {f"layer{s}.{i}.weight" for s in range(2)
                                              for i in range(5)}
    assert capsys.readouterr().err == ""  # a quick load says nothing
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)  # as if it were slow
    sd = load_safetensors(paths)
    assert torch.equal(sd["layer1.3.weight"], torch.full((2, 3), 3.0))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("loading backbone: 10% (1/10 tensors)")
    assert lines[-1].startswith("loading backbone: 100% (10/10 tensors)")
    assert len(lines) == 10  # a line every 10%


def test_a_bad_shard_is_still_one_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(GptclsError, match="cannot read .* as safetensors"):
        load_safetensors([bad])


@dataclass
class _Tensor:
    name: str


def test_gguf_dequantisation_reports_progress(capsys, monkeypatch):
    names = ["token_embd.weight", "output_norm.weight",
             *(f"blk.{b}.{n}" for b in range(2) for n in ("attn_norm.weight",
                                                          "ffn_norm.weight", "ffn_up.weight"))]
    reader = type("Reader", (), {"tensors": [_Tensor(n) for n in names]})()
    monkeypatch.setattr(gguf, "check_tensor_types", lambda tensors: None)
    monkeypatch.setattr(gguf, "dequantize_tensor", lambda t: torch.zeros(2))
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    config = ModelConfig(family="qwen3", tie_embeddings=True)
    sd = gguf.state_dict_from_gguf(reader, config)
    assert "blocks.1.mlp.up.weight" in sd and sd["out_head.weight"] is sd["tok_emb.weight"]
    err = capsys.readouterr().err
    assert "loading backbone: 100% (8/8 tensors)" in err
