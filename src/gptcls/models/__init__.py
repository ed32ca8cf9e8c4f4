"""Model families and their presets. `build_backbone(config)` picks the family."""

from __future__ import annotations

from gptcls.errors import GptclsError
from gptcls.models import gpt2, llama
from gptcls.models.base import Backbone, ModelConfig

FAMILIES: dict[str, type[Backbone]] = {"gpt2": gpt2.GPT2, "llama": llama.Llama}
PRESETS: dict[str, tuple[ModelConfig, str]] = {**gpt2.PRESETS, **llama.PRESETS}


def build_backbone(config: ModelConfig) -> Backbone:
    if config.family not in FAMILIES:
        raise GptclsError(f"unknown model family {config.family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[config.family](config)


def preset_config(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise GptclsError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig.from_dict(PRESETS[name][0].to_dict())  # a copy: presets stay untouched


__all__ = ["Backbone", "ModelConfig", "PRESETS", "FAMILIES", "build_backbone", "preset_config"]
