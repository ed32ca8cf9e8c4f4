"""Every family against transformers: a tiny random model saved with `save_pretrained` loads
through gptcls' normal loader with the same logits (fp32, 1e-4) and the same 20 greedy tokens.

The tiny configs exercise each family's features: Qwen2's q/k/v biases and untied head, Qwen3's
q/k norms and head_dim != emb_dim / heads, Gemma 3's sliding and global layers (window shorter
than the sequence, each kind with its own RoPE base, linear scaling on the global ones), Llama
3's llama3 RoPE scaling with a short original context, Mistral's sliding window.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import transformers as tf
from helpers import hf_greedy, ours, write_tokenizer_json
from torch import nn

from gptcls.classifier.encoding import pad_batch
from gptcls.classifier.model import ClassifierModel
from gptcls.errors import GptclsError
from gptcls.models import build_backbone
from gptcls.models.base import ModelConfig
from gptcls.models.generate import generate
from gptcls.models.weights.hf_config import config_from_hf
from gptcls.models.weights.pretrained import load_pretrained

VOCAB, WINDOW = 300, 8
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)


def hf_model(family: str) -> nn.Module:
    if family == "qwen2":
        cfg = tf.Qwen2Config(**COMMON, num_hidden_layers=2, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 1e6})
        return tf.Qwen2ForCausalLM(cfg)
    if family == "qwen3":
        cfg = tf.Qwen3Config(**COMMON, num_hidden_layers=2, head_dim=32,
                             tie_word_embeddings=True)
        return tf.Qwen3ForCausalLM(cfg)
    if family == "gemma3":
        cfg = tf.Gemma3TextConfig(
            **{**COMMON, "num_key_value_heads": 1}, num_hidden_layers=3, head_dim=32,
            sliding_window=WINDOW, query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                                "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
        return tf.Gemma3ForCausalLM(cfg)
    if family == "llama3":
        cfg = tf.LlamaConfig(**COMMON, num_hidden_layers=2, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "llama3", "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 64,
                                              "rope_theta": 10000.0})
        return tf.LlamaForCausalLM(cfg)
    assert family == "mistral"
    cfg = tf.MistralConfig(**COMMON, num_hidden_layers=2, sliding_window=WINDOW,
                           tie_word_embeddings=False)
    return tf.MistralForCausalLM(cfg)


@pytest.fixture(scope="module", params=["qwen2", "qwen3", "gemma3", "llama3", "mistral"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[str, Path, nn.Module]:
    torch.manual_seed(0)
    hf = hf_model(request.param).eval()
    with torch.no_grad():  # off the init (zero biases, unit or zero norms): every weight counts
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    write_tokenizer_json(path, VOCAB)
    return request.param, path, hf


def test_config_maps_the_family_features(saved: tuple[str, Path, nn.Module]) -> None:
    family, path, _ = saved
    c = load_pretrained(str(path)).config
    expected = {
        "qwen2": dict(family="qwen2", qkv_bias=True, tie_embeddings=False, rope_theta=1e6),
        "qwen3": dict(family="qwen3", qk_norm=True, head_dim=32, qkv_bias=False),
        "gemma3": dict(family="gemma3", qk_norm=True, head_dim=32, sliding_window=WINDOW,
                       rope_theta=1e6, rope_local_theta=1e4, embed_scale=8.0,
                       attn_scale=24 ** -0.5, mlp_act="gelu_tanh", n_kv_heads=1,
                       rope_scaling={"rope_type": "linear", "factor": 2.0},
                       layer_types=["sliding_attention", "full_attention",
                                    "sliding_attention"]),
        "llama3": dict(family="llama", rope_theta=10000.0, head_dim=16,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 64}),
        "mistral": dict(family="mistral", sliding_window=WINDOW, layer_types=None),
    }[family]
    assert {k: getattr(c, k) for k in expected} == expected


def test_logits_and_greedy_tokens_match_transformers(saved: tuple[str, Path, nn.Module]) -> None:
    family, path, hf = saved
    model = ours(load_pretrained(str(path)))
    # 24 tokens: three times the sliding window, so windowed layers differ from global ones.
    ids = torch.randint(0, VOCAB, (3, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff < 1e-4, f"{family}: logits differ by {diff}"
    prompt = ids[:1, :6]
    ours_tokens, theirs = generate(model, prompt, 20), hf_greedy(hf, prompt, 20)
    assert torch.equal(ours_tokens, theirs), f"{family}: {ours_tokens} != {theirs}"


def test_sliding_window_matters_in_these_tests(saved: tuple[str, Path, nn.Module]) -> None:
    # Guard against a vacuous pass: where there is a window, dropping it moves the logits.
    family, path, _ = saved
    loaded = load_pretrained(str(path))
    model = ours(loaded)
    windows = [block.attn.window for block in model.blocks]
    if family not in ("gemma3", "mistral"):
        assert loaded.config.sliding_window == 0 and set(windows) == {0}
        return
    assert windows == ([WINDOW, 0, WINDOW] if family == "gemma3" else [WINDOW, WINDOW])
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        windowed = model(ids)
        for block in model.blocks:
            block.attn.window = 0
        assert (model(ids) - windowed).abs().max() > 1e-3


def test_rope_scaling_matters_in_these_tests(saved: tuple[str, Path, nn.Module]) -> None:
    family, path, _ = saved
    loaded = load_pretrained(str(path))
    if family not in ("gemma3", "llama3"):
        assert loaded.config.rope_scaling is None
        return
    unscaled = build_backbone(dataclasses.replace(loaded.config, rope_scaling=None)).eval()
    unscaled.load_state_dict(loaded.state_dict)
    ids = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (ours(loaded)(ids) - unscaled(ids)).abs().max() > 1e-3


# ---- config.json layouts and errors ------------------------------------------------------------


def test_transformers4_layout_maps_like_transformers5() -> None:
    llama5 = {"model_type": "llama", **COMMON, "num_hidden_layers": 2,
              "rope_parameters": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192,
                                  "rope_theta": 500000.0}}
    llama4 = {**{k: v for k, v in llama5.items() if k != "rope_parameters"},
              "rope_theta": 500000.0,
              "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
    assert config_from_hf(llama4) == config_from_hf(llama5)
    gemma5 = {"model_type": "gemma3_text", "num_hidden_layers": 12, "sliding_window": 512,
              "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                     "rope_theta": 1e6},
                                  "sliding_attention": {"rope_type": "default",
                                                        "rope_theta": 1e4}}}
    gemma4 = {"model_type": "gemma3_text", "num_hidden_layers": 12, "sliding_window": 512,
              "rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window_pattern": 6,
              "rope_scaling": {"type": "linear", "factor": 8.0}}
    c = config_from_hf(gemma4)
    assert c == config_from_hf(gemma5)
    assert c.layer_types == (["sliding_attention"] * 5 + ["full_attention"]) * 2


def test_multimodal_gemma3_reads_its_text_config() -> None:
    # Gemma 3 4B's config.json spells out a few text fields; the rest are transformers' defaults.
    c = config_from_hf({"model_type": "gemma3", "text_config": {
        "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024}})
    assert (c.family, c.emb_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size) == (
        "gemma3", 2560, 8, 4, 256, 262208)
    assert (c.rope_theta, c.rope_local_theta, c.rope_scaling) == (
        1e6, 1e4, {"rope_type": "linear", "factor": 8.0})


def test_qwen_slides_only_with_use_sliding_window() -> None:
    qwen = {"model_type": "qwen2", **COMMON, "num_hidden_layers": 4, "sliding_window": 32768,
            "use_sliding_window": False, "max_window_layers": 2}
    assert config_from_hf(qwen).sliding_window == 0
    c = config_from_hf({**qwen, "use_sliding_window": True})
    assert (c.sliding_window, c.layer_types) == (32768, ["full_attention"] * 2 + [
        "sliding_attention"] * 2)


@pytest.mark.parametrize("config, message", [
    ({"model_type": "phi3"}, r"model_type 'phi3' is not supported \(supported: gpt2, llama, "
                             r"mistral, qwen2, qwen3, gemma3_text, gemma3\)"),
    ({"model_type": "llama", **COMMON, "num_hidden_layers": 1,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
     r"RoPE type 'yarn' is not supported \(supported: default, linear, llama3\)"),
    ({"model_type": "gemma3_text", "final_logit_softcapping": 30.0},
     "final_logit_softcapping=30.0 is not supported"),
])
def test_unsupported_configs_are_one_line(config: dict, message: str) -> None:
    with pytest.raises(GptclsError, match=message) as info:
        config_from_hf(config)
    assert "\n" not in str(info.value)


# ---- the classifier on a sliding-window family -------------------------------------------------


def tiny_windowed(family: str, causal: bool) -> ModelConfig:
    c = ModelConfig(family=family, vocab_size=VOCAB, context_length=128, emb_dim=16, n_layers=2,
                    n_heads=4, n_kv_heads=2, hidden_dim=32, qkv_bias=False, rope_theta=1e4,
                    tie_embeddings=True, causal=causal, sliding_window=4)
    if family == "gemma3":
        c = dataclasses.replace(c, qk_norm=True, head_dim=8, rope_local_theta=1e3,
                                layer_types=["sliding_attention", "full_attention"],
                                embed_scale=4.0, attn_scale=0.25, mlp_act="gelu_tanh")
    return c


@pytest.mark.parametrize("family", ["gemma3", "mistral"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pooling", ["last", "mean", "first"])
def test_classifier_logits_do_not_depend_on_the_batch(family: str, causal: bool,
                                                      pooling: str) -> None:
    torch.manual_seed(0)
    model = ClassifierModel(build_backbone(tiny_windowed(family, causal)), 2, pooling).eval()
    model.set_trainable(1)  # the top block queries only the pooled position (last, first)
    short, long = torch.randint(0, VOCAB, (5,)), torch.randint(0, VOCAB, (60,))
    with torch.no_grad():
        alone = model(*pad_batch([short]))
        x, lengths = pad_batch([short, long])
        together = model(x, lengths)
        long_alone = model(*pad_batch([long]))
    torch.testing.assert_close(alone, together[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(long_alone, together[1:], atol=1e-5, rtol=0)


def windowed_run(directory: Path) -> tuple[Path, ClassifierModel]:
    """A saved run on a tiny Gemma 3 whose window (8) exceeds ONNX's traced length (5)."""
    from gptcls.classifier.config import ClassifierConfig
    from gptcls.classifier.run_dir import save_run
    from gptcls.models.tokenizers.hf import tokenizer_from_json

    config = dataclasses.replace(tiny_windowed("gemma3", True), sliding_window=8)
    torch.manual_seed(0)
    model = ClassifierModel(build_backbone(config), 2, "last").eval()
    model.set_trainable(1)
    write_tokenizer_json(directory, VOCAB)
    tok = tokenizer_from_json(directory / "tokenizer.json")
    save_run(directory / "run", ClassifierConfig(model=config, labels=["a", "b"], max_length=64,
                                                 tokenizer=tok.spec()), model, tok)
    return directory / "run", model


def test_onnx_export_keeps_the_window_beyond_the_traced_length(tmp_path: Path) -> None:
    import onnxruntime as ort

    from gptcls.serving.export_onnx import export_onnx

    run, model = windowed_run(tmp_path)
    session = ort.InferenceSession(str(export_onnx(run, tmp_path / "w.onnx")),
                                   providers=["CPUExecutionProvider"])
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    (logits,) = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        expected = model(ids, mask.sum(1))
    torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=0)


def test_transformers_export_of_a_new_family(tmp_path: Path) -> None:
    """Gemma 3 runs export to transformers (tests/serving/test_export_hf.py checks every
    family's logits); this one's head has a bias, so through modeling_gptcls.py."""
    from gptcls.serving.export_hf import export_hf

    run, _ = windowed_run(tmp_path)
    config = (export_hf(run, tmp_path / "hf") / "config.json").read_text()
    assert '"model_type": "gemma3_text"' in config
    assert '"GptclsGemma3TextForSequenceClassification"' in config
