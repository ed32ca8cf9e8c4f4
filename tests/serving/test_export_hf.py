"""transformers export of every family: stock classes (no remote code) for last-token pooling
and a head without bias, modeling_gptcls.py otherwise; logits within 1e-4 (fp32) of gptcls;
config.json in the installed transformers' field names; model cards that parse back.

Tiny random models of each family are built with transformers (`save_pretrained`), loaded
into gptcls through its normal loader, given a classification head and saved as runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from helpers import write_tokenizer_json
from huggingface_hub import ModelCard

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.encoding import pad_batch
from gptcls.classifier.hf_compat import STOCK_CLASSES, training_note
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.model_card import base_license, base_model
from gptcls.classifier.run_dir import load_run, save_run
from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.models import build_backbone, preset_config
from gptcls.models.weights.pretrained import load_pretrained
from gptcls.serving.export_hf import MODELING_FILE, export_hf

TOL = 1e-4
VOCAB, WINDOW = 300, 8
LABELS = ["ham", "spam", "other"]
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6)
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma3"]
# config.json keys that are about tokens or caching, not the network.
NOT_ARCHITECTURE = {"architectures", "use_cache", "bos_token_id", "eos_token_id", "pad_token_id",
                    "transformers_version", "dtype"}
# What an export adds to the family's config fields.
EXPORT_KEYS = {"architectures", "auto_map", "id2label", "label2id", "problem_type", "dtype",
               "gptcls", "gptcls_pooling"}


def hf_causal_lm(family: str) -> torch.nn.Module:
    """A tiny transformers model with the family's features: Llama 3 RoPE scaling, Mistral's and
    Qwen2's sliding windows (shorter than the texts), Qwen2's q/k/v biases and untied head,
    Qwen3's q/k norms and wide heads, Gemma 3's local/global layers with their own RoPE."""
    if family == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(
            **COMMON, num_hidden_layers=2, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                             "rope_theta": 10000.0}))
    if family == "mistral":
        return tf.MistralForCausalLM(tf.MistralConfig(**COMMON, num_hidden_layers=2,
                                                      sliding_window=WINDOW))
    if family == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(
            **COMMON, num_hidden_layers=2, tie_word_embeddings=False, use_sliding_window=True,
            sliding_window=WINDOW, max_window_layers=1,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    if family == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(**COMMON, num_hidden_layers=2, head_dim=32,
                                                  tie_word_embeddings=True))
    assert family == "gemma3"
    return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
        **{**COMMON, "num_key_value_heads": 1}, num_hidden_layers=3, head_dim=32,
        sliding_window=WINDOW, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0,
                                            "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}))


def save_hf_model(family: str, path: Path) -> Path:
    """The tiny model, off its init (zero biases, unit norms): every weight counts."""
    torch.manual_seed(0)
    model = hf_causal_lm(family).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(path)
    write_tokenizer_json(path, VOCAB)
    return path


@pytest.fixture(scope="module", params=FAMILIES)
def hf_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[str, Path]:
    return request.param, save_hf_model(request.param, tmp_path_factory.mktemp(request.param))


def make_run(source: Path, out: Path, pooling: str = "last", head_bias: bool = False,
             temperature: float = 1.0) -> Path:
    """A run on `source`'s backbone with a random head (a non-zero bias when head_bias)."""
    loaded = load_pretrained(str(source), "pretrained")
    model = ClassifierModel(build_backbone(loaded.config), len(LABELS), pooling, head_bias)
    model.backbone.load_state_dict(loaded.state_dict, strict=False)
    model.backbone.tie_weights()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen) * 0.5)
        if head_bias:
            model.head.bias.copy_(torch.tensor([0.7, -0.4, 0.1]))
    model.set_trainable(1)
    config = ClassifierConfig(model=loaded.config, labels=LABELS, max_length=40,
                              tokenizer=loaded.tokenizer.spec(), pooling=pooling,
                              head_bias=head_bias, temperature=temperature,
                              backbone={"model": str(source), "weights": "pretrained"})
    save_run(out, config, model, loaded.tokenizer)
    return out


def texts(n: int = 24, seed: int = 0) -> list[str]:
    """Word texts of 2..50 words: longer than the windows, some cut at max_length 40."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 50, (n,), generator=gen).tolist()
    return [" ".join(f"w{int(i)}" for i in torch.randint(1, VOCAB - 1, (k,), generator=gen))
            for k in lengths]


def compare_logits(run: Path, out: Path, remote: bool) -> float:
    """Largest |logit difference| between transformers (padded batches) and gptcls (its
    logits / temperature: gptcls' probabilities are their softmax)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(
        out, trust_remote_code=remote, output_loading_info=True)
    assert not any(info.values()), info  # every weight used, none missing
    if model.config.model_type == "qwen2":
        # transformers 5 rebuilds Qwen2Tokenizer from any qwen2 tokenizer.json's vocab and
        # merges with Qwen's own pre-tokenizer, which a word-level tokenizer has no use for;
        # the file itself, as written, is what gptcls tokenizes with.
        from transformers import TokenizersBackend as AutoTokenizer  # noqa: N814
    tok = AutoTokenizer.from_pretrained(out)
    config, ours, ours_tok = load_run(run)
    batch = texts()
    enc = tok(batch, padding=True, truncation=True, max_length=config.max_length,
              return_tensors="pt")
    assert int((enc["attention_mask"] == 0).sum()) > 0  # the batch really holds padding
    ids = [row[mask.bool()].tolist() for row, mask in zip(enc["input_ids"],
                                                          enc["attention_mask"], strict=True)]
    assert ids == [s[:config.max_length] for s in ours_tok.encode_batch(batch)]
    with torch.no_grad():
        theirs = model(**enc).logits
        mine = ours(*pad_batch([torch.tensor(s) for s in ids])) / config.temperature
    assert model.config.id2label == dict(enumerate(LABELS))
    return float((theirs - mine).abs().max())


def test_stock_export_loads_without_remote_code(hf_dir, tmp_path):
    family, source = hf_dir
    run = make_run(source, tmp_path / "run", "last", head_bias=False, temperature=1.7)
    out = export_hf(run, tmp_path / "hf")
    assert not (out / MODELING_FILE).exists()
    doc = json.loads((out / "config.json").read_text())
    assert doc["architectures"] == [STOCK_CLASSES[family][1]] and "auto_map" not in doc
    diff = compare_logits(run, out, remote=False)
    print(f"\n{family} stock export: max |logit diff| {diff:.2e}")
    assert diff < TOL


@pytest.mark.parametrize("pooling", ["last", "last+mean"])
def test_head_bias_or_mean_pooling_export_with_remote_code(hf_dir, tmp_path, pooling):
    family, source = hf_dir
    run = make_run(source, tmp_path / "run", pooling, head_bias=pooling == "last")
    out = export_hf(run, tmp_path / "hf")
    doc = json.loads((out / "config.json").read_text())
    assert doc["architectures"] == [f"Gptcls{STOCK_CLASSES[family][1]}"]
    assert doc["gptcls_pooling"] == pooling and (out / MODELING_FILE).is_file()
    diff = compare_logits(run, out, remote=True)
    print(f"\n{family} remote-code export ({pooling}): max |logit diff| {diff:.2e}")
    assert diff < TOL


def test_config_json_has_the_installed_transformers_fields(hf_dir, tmp_path):
    """Every key is one the installed transformers writes for the model type (dtype, not
    torch_dtype; rope_parameters, not rope_theta/rope_scaling), each value reads back as
    written, and the network's fields equal those of the checkpoint the run started from."""
    family, source = hf_dir
    out = export_hf(make_run(source, tmp_path / "run"), tmp_path / "hf")
    ours = json.loads((out / "config.json").read_text())
    written = tf.AutoConfig.for_model(ours["model_type"]).to_dict()
    assert set(ours) - set(written) - EXPORT_KEYS == set()
    assert not {"torch_dtype", "rope_theta", "rope_scaling", "n_ctx"} & set(ours)
    back = tf.AutoConfig.from_pretrained(out).to_dict()
    for key, value in ours.items():
        if key not in ("id2label", "label2id"):
            assert back[key] == value, key
    assert back["label2id"] == {lab: i for i, lab in enumerate(LABELS)}
    assert ours["problem_type"] == "single_label_classification"
    assert ours["pad_token_id"] == VOCAB - 1  # the tokenizer's pad (= eos) token
    original = json.loads((source / "config.json").read_text())
    if not original.get("use_sliding_window", True):
        original.pop("max_window_layers")  # meaningless without a window
    for key in set(original) & set(ours) - NOT_ARCHITECTURE:
        assert ours[key] == original[key], key


def test_gpt2_exports_stock_with_its_bias_folded(tiny_run, tiny_clf, tiny_test_texts, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = export_hf(tiny_run, tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(out)  # no remote code
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    tok = AutoTokenizer.from_pretrained(out)
    batch = tiny_test_texts[:32]
    enc = tok(batch, padding=True, truncation=True, max_length=tiny_clf.config.max_length,
              return_tensors="pt")
    with torch.no_grad():
        theirs = model(**enc).logits
        mine = tiny_clf.model.cpu()(*pad_batch([torch.tensor(s) for s in
                                                 tiny_clf.encode(batch)]))
    mine = mine / tiny_clf.config.temperature  # folded into the exported head
    diff = float((theirs - mine).abs().max())
    print(f"\ngpt2 stock export (folded head bias): max |logit diff| {diff:.2e}")
    assert diff < TOL
    assert not {"torch_dtype", "n_ctx"} & set(json.loads((out / "config.json").read_text()))


def test_export_and_run_model_cards_parse_back(tiny_run, tmp_path):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    run_card = ModelCard.load(tiny_run / "README.md")  # written by training
    assert run_card.data.library_name == "gptcls"
    out = export_hf(tiny_run, tmp_path / "hf")
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.labels == metrics["labels"] == run_card.data.labels
    assert data.base_model is None and data.license is None  # random weights: no base model
    results = {(r.dataset_split, r.metric_type): r for r in data.eval_results}
    test_acc = results[("test", "accuracy")]
    assert test_acc.metric_value == pytest.approx(metrics["reports"]["test"]["accuracy"])
    assert (test_acc.dataset_type, test_acc.dataset_name) == ("ucirvine/sms_spam",
                                                              "SMS Spam Collection")
    assert data.datasets == ["ucirvine/sms_spam"]
    assert results[("validation", "f1")].metric_value == pytest.approx(
        metrics["reports"]["validation"]["macro_f1"])
    assert "trust_remote_code" not in card.text.split("## Use with transformers")[1][:200]


@pytest.mark.parametrize(("model", "base", "license"), [
    ("smollm2-135m-instruct-q4", "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    ("qwen2.5-coder-1.5b-instruct-q4", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "apache-2.0"),
    ("gemma3-270m-q4", "google/gemma-3-270m", "gemma"),
    ("gpt2-medium", "openai-community/gpt2-medium", "mit"),
    ("llama-tiny", None, None),
    ("someone/some-model", "someone/some-model", None),
])
def test_base_model_and_its_license(model, base, license):
    config = ClassifierConfig(model=preset_config("gpt2-tiny"), labels=["a", "b"], max_length=8,
                              tokenizer={}, backbone={"model": model, "weights": "pretrained"})
    assert base_model(config) == base and base_license(base) == license


def test_training_note_names_the_options_that_avoid_remote_code():
    note = training_note("qwen3", "last+mean", True)
    assert note is not None and "\n" not in note
    assert "trust_remote_code" in note and "--pooling last --no-head-bias" in note
    assert "Qwen3ForSequenceClassification" in note
    assert training_note("qwen3", "last", False) is None
    assert training_note("gpt2", "last", True) is None  # GPT-2 folds its head bias
    assert training_note("gemma3", "first", False) is None  # no HF export at all


def write_csv(path: Path, n: int = 40) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i, text in enumerate(texts(n, seed=5)):
            writer.writerow([text, "a" if i % 2 else "b"])
    return path


def test_train_says_once_when_the_export_needs_remote_code(tmp_path, capsys):
    source = save_hf_model("qwen3", tmp_path / "qwen3")
    data = write_csv(tmp_path / "d.csv")
    common = ["train", "--model", str(source), "--data", str(data), "--epochs", "1",
              "--lr", "1e-2", "--pooling", "last"]  # Qwen's recipe pools last+mean
    assert main([*common, "--out", str(tmp_path / "biased")]) == 0
    err = capsys.readouterr().err
    assert err.count("trust_remote_code") == 1 and "--no-head-bias" in err
    assert main([*common, "--out", str(tmp_path / "stock"), "--no-head-bias"]) == 0
    assert "trust_remote_code" not in capsys.readouterr().err
    config, model, _ = load_run(tmp_path / "stock")
    assert config.head_bias is False and not model.head.bias.any()  # trained, still zero
    assert not torch.equal(model.head.weight, torch.zeros_like(model.head.weight))
    card = ModelCard.load(tmp_path / "stock" / "README.md")
    assert card.data.library_name == "gptcls" and card.data.labels == ["a", "b"]
    out = export_hf(tmp_path / "stock", tmp_path / "hf")
    assert not (out / MODELING_FILE).exists()
    assert ModelCard.load(out / "README.md").data.library_name == "transformers"


def test_new_families_that_transformers_cannot_express_are_refused(hf_dir, tmp_path):
    family, source = hf_dir
    run = make_run(source, tmp_path / "run")
    doc = json.loads((run / "config.json").read_text())
    doc["model"]["causal"] = False
    (run / "config.json").write_text(json.dumps(doc))
    with pytest.raises(GptclsError, match="causal mask.*ONNX instead"):
        export_hf(run, tmp_path / "hf")
    doc["model"].update(causal=True, embed_scale=3.0)  # no transformers field for it
    (run / "config.json").write_text(json.dumps(doc))
    with pytest.raises(GptclsError, match="embedding scale.*ONNX instead"):
        export_hf(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # nothing written


def test_head_without_bias_stays_zero_and_frozen():
    model = ClassifierModel(build_backbone(preset_config("llama-tiny")), 2, head_bias=False)
    model.set_policy("last-block")
    assert not model.head.bias.requires_grad and model.head.weight.requires_grad
    assert np.all(model.head.bias.detach().numpy() == 0)
