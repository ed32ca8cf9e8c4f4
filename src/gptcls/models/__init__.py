"""Model families and their presets. `build_backbone(config)` picks the family."""

from __future__ import annotations

from gptcls.errors import GptclsError
from gptcls.models import gemma3, gpt2, llama, qwen
from gptcls.models.base import Backbone, ModelConfig

# Llama 3.x is "llama" with rope_scaling; Mistral is Llama with a sliding window.
FAMILIES: dict[str, type[Backbone]] = {"gpt2": gpt2.GPT2, "llama": llama.Llama,
                                       "mistral": llama.Llama, "qwen2": qwen.Qwen2,
                                       "qwen3": qwen.Qwen3, "gemma3": gemma3.Gemma3}
PRESETS: dict[str, tuple[ModelConfig, str]] = {**gpt2.PRESETS, **llama.PRESETS,
                                               **qwen.PRESETS, **gemma3.PRESETS}


def build_backbone(config: ModelConfig) -> Backbone:
    if config.family not in FAMILIES:
        raise GptclsError(f"unknown model family {config.family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[config.family](config)


def preset_config(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise GptclsError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig.from_dict(PRESETS[name][0].to_dict())  # a copy: presets stay untouched


__all__ = ["Backbone", "ModelConfig", "PRESETS", "FAMILIES", "build_backbone", "preset_config"]
