"""Which runs Hugging Face transformers can load, and with which class: its own stock
`*ForSequenceClassification` (no remote code, so vLLM, TEI, optimum and Inference Endpoints
serve them) or gptcls' `modeling_gptcls.py` (trust_remote_code=True).

Shared by the transformers export, the model card and training's one-line note, so training
needs nothing from gptcls.serving. Torch-free.

Stock classes read the last real token (the rightmost non-pad token) through a linear `score`
layer without bias. GPT-2's final LayerNorm has a bias that can carry the head's (export_hf
folds it exactly); RMSNorm has none, so Llama-family heads must train without one
(`--no-head-bias`) to export stock.
"""

from __future__ import annotations

# gptcls family -> (transformers model_type, its stock sequence-classification class).
STOCK_CLASSES: dict[str, tuple[str, str]] = {
    "gpt2": ("gpt2", "GPT2ForSequenceClassification"),
    "llama": ("llama", "LlamaForSequenceClassification"),
    "mistral": ("mistral", "MistralForSequenceClassification"),
    "qwen2": ("qwen2", "Qwen2ForSequenceClassification"),
    "qwen3": ("qwen3", "Qwen3ForSequenceClassification"),
    "gemma3": ("gemma3_text", "Gemma3TextForSequenceClassification"),
}
# What modeling_gptcls.py adds to the stock classes besides a head bias (not for GPT-2).
REMOTE_POOLINGS = ("mean", "last+mean")
STOCK_OPTIONS = "--pooling last --no-head-bias"


def unsupported_reason(family: str, pooling: str, causal: bool = True) -> str | None:
    """Why a run has no transformers export at all (None: it has one)."""
    if family not in STOCK_CLASSES:
        return f"transformers export supports {', '.join(STOCK_CLASSES)} backbones, not {family}"
    if not causal:
        return ("a run trained without the causal mask has no transformers equivalent (its "
                "models are causal)")
    if pooling == "last" or (family != "gpt2" and pooling in REMOTE_POOLINGS):
        return None
    also = "" if family == "gpt2" else f" ({', '.join(REMOTE_POOLINGS)} with trust_remote_code)"
    return (f"pooling {pooling!r} has no transformers equivalent for {family}: its sequence "
            f"classifiers read the last real token (pooling 'last'){also}")


def remote_code_reasons(family: str, pooling: str, head_bias: bool) -> list[str]:
    """What makes a supported run's export need trust_remote_code ([]: it loads stock).
    `head_bias`: the head has a bias that differs between classes."""
    reasons = [f"--pooling {pooling}"] if pooling != "last" else []
    if head_bias and family != "gpt2":  # GPT-2 folds the bias into its final LayerNorm
        reasons.append("a head bias (RMSNorm has none to fold it into)")
    return reasons


def training_note(family: str, pooling: str, head_bias: bool, causal: bool = True
                  ) -> str | None:
    """The one line `gptcls train` prints when the run's transformers export will need
    trust_remote_code although the family has a stock class; None otherwise."""
    if unsupported_reason(family, pooling, causal) is not None:
        return None
    reasons = remote_code_reasons(family, pooling, head_bias)
    if not reasons:
        return None
    return (f"note: this run's transformers export (gptcls export --format hf) will need "
            f"trust_remote_code=True ({'; '.join(reasons)}); {STOCK_OPTIONS} exports to the "
            f"stock {STOCK_CLASSES[family][1]}")
