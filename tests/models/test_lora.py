"""Trainable policies and LoRA on tiny models: what trains, exactness of adapters and merging,
run directories with merged and unmerged adapters, trunk caching, and the CLI."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.encoding import pad_batch
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import load_run, read_run_config, save_run
from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.models import build_backbone, preset_config
from gptcls.models.lora import LoRALinear, apply_lora, has_lora, merge_lora, resolve_targets
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.options import TrainConfig
from gptcls.training.loop import train
from gptcls.training.pipeline import _use_cache
from gptcls.training.trunk_cache import build_store

CPU = torch.device("cpu")
MODELS = ["gpt2-tiny", "llama-tiny"]


def tiny(name: str = "gpt2-tiny", n_layers: int | None = None, pooling: str = "last",
         seed: int = 0) -> ClassifierModel:
    torch.manual_seed(seed)
    cfg = preset_config(name)
    if n_layers is not None:
        cfg.n_layers = n_layers
    return ClassifierModel(build_backbone(cfg), 2, pooling)


def trainable_names(model: ClassifierModel) -> set[str]:
    return {k for k, p in model.named_parameters() if p.requires_grad}


def synthetic(n: int = 48, seed: int = 0) -> tuple[list[list[int]], list[int]]:
    """Texts of 3..30 tokens labelled by whether token 7 occurs."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(n):
        seq = torch.randint(10, 300, (int(torch.randint(3, 30, (1,), generator=g)),), generator=g)
        label = int(torch.rand(1, generator=g) < 0.5)
        if label:
            seq[int(torch.randint(0, len(seq), (1,), generator=g))] = 7
        ids.append(seq.tolist())
        labels.append(label)
    return ids, labels


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return pad_batch([torch.randint(0, 300, (n,), generator=g) for n in (9, 4, 15)])


def trained_lora(name: str, blocks: int | None = None, targets: str = "all") -> ClassifierModel:
    """A tiny model whose LoRA adapters took a few optimizer steps (uncached, so all run)."""
    model = tiny(name)
    model.set_policy("lora", blocks, lora={"rank": 4, "alpha": 8.0, "targets": targets})
    ids, labels = synthetic()
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-2, eval_freq=100, eval_iter=1, seed=3)
    store = build_store(model, ids, labels, False, CPU)
    train(model, store, store, cfg, CPU, log=lambda m: None)
    return model.eval()


# --------------------------------------------------------------------------- policies


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("policy, n_blocks, embeddings, blocks, first", [
    ("last-layer", None, False, set(), 2),
    ("last-block", None, False, {1}, 1),
    ("last-N-blocks", 2, False, {0, 1}, 0),
    ("all", None, False, {0, 1}, 0),
    ("all", None, True, {0, 1}, 0),
])
def test_policy_decides_which_parameters_train(name, policy, n_blocks, embeddings, blocks,
                                               first):
    model = tiny(name)
    assert model.set_policy(policy, n_blocks, embeddings=embeddings) == len(blocks)
    names = trainable_names(model)
    trained_blocks = {int(k.split(".")[2]) for k in names if k.startswith("backbone.blocks.")}
    assert trained_blocks == blocks
    assert {"head.weight", "head.bias", "backbone.final_norm.weight"} <= names
    emb = {k for k in names if "_emb." in k}
    expected_emb = {"backbone.tok_emb.weight"} | (
        {"backbone.pos_emb.weight"} if name == "gpt2-tiny" else set())
    assert emb == (expected_emb if embeddings else set())
    assert model.first_trainable == first
    assert model.trunk_is_cacheable() is not embeddings
    for block in blocks:  # whole blocks train: every weight of the block
        assert all(p.requires_grad for p in model.backbone.blocks[block].parameters())


@pytest.mark.parametrize("name", MODELS)
def test_lora_trains_only_adapters_head_and_final_norm(name):
    model = tiny(name, n_layers=3)
    assert model.set_policy("lora", 2, lora={"rank": 2, "targets": "attn,mlp.proj"
                                             if name == "gpt2-tiny" else "attn,down"}) == 2
    names = trainable_names(model)
    backbone = {k for k in names if k.startswith("backbone.blocks.")}
    assert backbone and all(k.endswith((".lora_A", ".lora_B")) for k in backbone)
    assert {int(k.split(".")[2]) for k in backbone} == {1, 2}
    assert names - backbone == {k for k, _ in model.named_parameters()
                                if k.startswith(("head.", "backbone.final_norm."))}
    adapted = {k.rsplit(".", 1)[0].split(".", 3)[3] for k in backbone}
    mlp = "mlp.proj" if name == "gpt2-tiny" else "mlp.down"
    assert adapted == {"attn.q", "attn.k", "attn.v", "attn.proj", mlp}
    assert model.first_trainable == 1 and model.trunk_is_cacheable()
    assert model.lora == {"rank": 2, "alpha": 16.0, "targets": sorted(adapted, key=[
        "attn.q", "attn.k", "attn.v", "attn.proj", mlp].index), "blocks": 2, "merged": False}


def test_target_names_resolve_per_family_and_bad_ones_are_refused():
    gpt2, llama = (build_backbone(preset_config(n)).blocks[0] for n in MODELS)
    assert resolve_targets("mlp", gpt2) == ["mlp.fc", "mlp.proj"]
    assert resolve_targets("mlp", llama) == ["mlp.gate", "mlp.up", "mlp.down"]
    assert resolve_targets("v,q", llama) == ["attn.q", "attn.v"]
    assert resolve_targets(["attn.proj", "fc"], gpt2) == ["attn.proj", "mlp.fc"]
    with pytest.raises(GptclsError, match="unknown LoRA target 'wq'; choose from: attn, mlp"):
        resolve_targets("wq", gpt2)
    with pytest.raises(GptclsError, match="'gate' is not in this model's blocks"):
        resolve_targets("gate", gpt2)
    with pytest.raises(GptclsError, match="ambiguous"):
        resolve_targets("proj", gpt2)
    with pytest.raises(GptclsError, match="positive"):
        tiny().set_policy("lora", lora={"rank": 0})
    with pytest.raises(GptclsError, match="need --trainable lora"):
        tiny().set_policy("last-block", lora={"rank": 4})
    with pytest.raises(GptclsError, match="unknown trainable policy 'some'"):
        tiny().set_policy("some")
    with pytest.raises(GptclsError, match="between 1 and 2"):
        tiny().set_policy("lora", 3)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_lora_at_init_computes_what_the_base_model_does(name, pooling):
    base = tiny(name, pooling=pooling, seed=4).eval()
    base.set_trainable(2)  # the same trunk/top split as adapters on every block
    adapted = tiny(name, pooling=pooling, seed=4).eval()
    adapted.set_policy("lora", lora={"rank": 4, "targets": "all"})
    assert sum(isinstance(m, LoRALinear) for m in adapted.modules()) > 0
    x, lengths = batch()
    torch.testing.assert_close(adapted(x, lengths), base(x, lengths), atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_merged_and_unmerged_logits_agree_after_training(name):
    model = trained_lora(name)
    frozen_before = tiny(name).state_dict()
    deltas = [m.lora_B.abs().max().item() for m in model.modules() if isinstance(m, LoRALinear)]
    assert min(deltas) > 0  # every adapter learned something
    for k, v in model.state_dict().items():  # the base weights did not move
        if "lora_" not in k and not k.startswith(("head.", "backbone.final_norm.")):
            torch.testing.assert_close(v, frozen_before[k], atol=0, rtol=0)
    x, lengths = batch()
    with torch.no_grad():
        unmerged = model(x, lengths)
        model.merge_lora()
        merged = model(x, lengths)
    assert not has_lora(model) and model.lora["merged"] is True
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=0)
    assert (unmerged - tiny(name)(x, lengths)).abs().max() > 1e-3  # training changed logits


def test_apply_and_merge_work_on_a_bare_backbone():
    backbone = build_backbone(preset_config("llama-tiny")).eval()
    idx = torch.randint(0, 300, (2, 6))
    before = backbone(idx)
    assert apply_lora(backbone, 2, 4.0, "q,v", blocks=1) == ["attn.q", "attn.v"]
    with torch.no_grad():
        backbone.blocks[1].attn.q.lora_B.normal_()
    adapted = backbone(idx)
    assert merge_lora(backbone) == 2
    torch.testing.assert_close(backbone(idx), adapted, atol=1e-4, rtol=0)
    assert (adapted - before).abs().max() > 1e-3


# --------------------------------------------------------------------------- run directories


def _config(model: ClassifierModel) -> ClassifierConfig:
    return ClassifierConfig(model=model.backbone.config, labels=["ham", "spam"], max_length=32,
                            tokenizer={}, trainable_blocks=model.lora["blocks"],
                            trainable="lora", lora=model.lora)


@pytest.mark.parametrize("name", MODELS)
def test_unmerged_run_round_trips_and_merges_on_load(name, tmp_path):
    model = trained_lora(name, blocks=1, targets="attn")
    x, lengths = batch()
    with torch.no_grad():
        expected = model(x, lengths)
    save_run(tmp_path, _config(model), model, gpt2_tokenizer())
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert sum(k.endswith(".lora_A") for k in keys) == 4  # q, k, v, proj of the last block
    assert read_run_config(tmp_path).lora["merged"] is False

    config, unmerged, _ = load_run(tmp_path, merge_lora=False)
    assert has_lora(unmerged) and config.lora["merged"] is False
    torch.testing.assert_close(unmerged(x, lengths), expected, atol=1e-6, rtol=0)
    config, merged, _ = load_run(tmp_path)  # inference: adapters folded in
    assert not has_lora(merged) and config.lora["merged"] is True
    torch.testing.assert_close(merged(x, lengths), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_merged_run_is_a_plain_model_with_the_same_logits(name, tmp_path):
    model = trained_lora(name)
    x, lengths = batch()
    with torch.no_grad():
        expected = model(x, lengths)
    model.merge_lora()
    save_run(tmp_path, _config(model), model, gpt2_tokenizer())
    assert not any("lora" in k for k in load_file(str(tmp_path / "model.safetensors")))
    config, loaded, _ = load_run(tmp_path)
    assert config.trainable == "lora" and config.lora["merged"] is True
    assert not has_lora(loaded)
    torch.testing.assert_close(loaded(x, lengths), expected, atol=1e-4, rtol=0)


def test_runs_written_before_trainable_policies_still_load(tmp_path):
    model = tiny()
    model.set_trainable(2)
    cfg = ClassifierConfig(model=model.backbone.config, labels=["a", "b"], max_length=8,
                           tokenizer={}, trainable_blocks=2)
    save_run(tmp_path, cfg, model, gpt2_tokenizer())
    raw = json.loads((tmp_path / "config.json").read_text())
    for key in ("trainable", "train_embeddings", "lora"):
        del raw[key]
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config, loaded, _ = load_run(tmp_path)
    assert (config.trainable, config.train_embeddings, config.lora) == ("last-N-blocks", False,
                                                                          None)
    assert loaded.first_trainable == 0
    x, lengths = batch()
    torch.testing.assert_close(loaded(x, lengths), model.eval()(x, lengths), atol=0, rtol=0)


# --------------------------------------------------------------------------- trunk cache


@pytest.mark.parametrize("name", MODELS)
def test_lora_on_the_top_two_blocks_caches_the_trunk_exactly(name):
    ids, labels = synthetic(64)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, eval_freq=3, eval_iter=2, seed=5)
    hists = []
    for cache in (True, False):
        model = tiny(name, n_layers=4, seed=1)
        model.set_policy("lora", 2, lora={"rank": 4, "targets": "all"})
        assert model.first_trainable == 2 and model.trunk_is_cacheable()
        tr = build_store(model, ids[:48], labels[:48], cache, CPU)
        va = build_store(model, ids[48:], labels[48:], cache, CPU)
        assert tr.cached is cache
        hists.append(train(model, tr, va, cfg, CPU, log=lambda m: None))
    for key in ("train_losses", "val_losses", "train_accs", "val_accs"):
        torch.testing.assert_close(torch.tensor(hists[0][key]), torch.tensor(hists[1][key]),
                                   atol=1e-5, rtol=0)
    assert hists[0]["train_losses"][-1] != hists[0]["train_losses"][0]  # it trained


@pytest.mark.parametrize("policy, n_blocks, embeddings, cached, message", [
    ("lora", 2, False, True, None),
    ("last-block", None, False, True, None),
    ("lora", None, False, False, "every block trains or has LoRA adapters"),
    ("all", None, False, False, "every block trains or has LoRA adapters"),
    ("last-block", None, True, False, "the embeddings train (--train-embeddings)"),
    ("lora", 1, True, False, "the embeddings train (--train-embeddings)"),
])
def test_trunk_cache_is_used_where_the_policy_allows_it(policy, n_blocks, embeddings, cached,
                                                       message, caplog):
    caplog.set_level(logging.INFO, logger="gptcls")  # the library logs what it decided
    model = tiny(n_layers=3)
    model.set_policy(policy, n_blocks, embeddings=embeddings,
                     lora={"rank": 2} if policy == "lora" else None)
    ids, _ = synthetic(8)
    assert _use_cache(model, {"train": ids}, TrainConfig()) is cached
    err = "\n".join(r.getMessage() for r in caplog.records)
    if message is None:
        assert err == ""
    else:
        assert err.startswith("trunk caching off: ") and message in err and "\n" not in err


# --------------------------------------------------------------------------- command line


def test_cli_trains_unmerged_lora_then_merges(sms_path, tmp_path, capsys):
    out = tmp_path / "lora"
    assert main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
                 "--trainable", "lora", "--lora-rank", "4", "--epochs", "1", "--out", str(out),
                 "--classify", "--no-merge-lora"]) == 0
    assert "trunk caching off: every block" in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trainable"] == "lora" and cfg["trainable_blocks"] == 2
    assert cfg["lora"] == {"rank": 4, "alpha": 16.0, "blocks": 2, "merged": False,
                           "targets": ["attn.q", "attn.k", "attn.v", "attn.proj"]}
    assert json.loads((out / "metrics.json").read_text())["trunk_cached"] is False
    texts = ["WINNER!! Claim your prize now", "See you at 6?", "ok"]
    before = Classifier.load(out, device="cpu").predict_proba(texts)

    merged = tmp_path / "merged"
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    assert {"metrics.json", "test.csv"} <= {p.name for p in merged.iterdir()}
    assert main(["merge", str(out)]) == 0  # in place
    for run in (merged, out):
        assert read_run_config(run).lora["merged"] is True
        assert not any("lora" in k for k in load_file(str(run / "model.safetensors")))
        after = Classifier.load(run, device="cpu").predict_proba(texts)
        assert abs(after - before).max() < 1e-4
    capsys.readouterr()
    assert main(["merge", str(out)]) == 2
    assert "is already merged: nothing to merge" in capsys.readouterr().err


def test_cli_merges_at_save_by_default_and_caches_below_the_adapters(sms_path, tmp_path,
                                                                    capsys):
    data = tmp_path / "SMSSpamCollection"  # a slice of the real file keeps this quick
    data.write_text("".join(sms_path.read_text().splitlines(keepends=True)[:400]))
    out = tmp_path / "run"
    assert main(["train", "--model", "llama-tiny", "--weights", "random", "--data", str(data),
                 "--trainable", "lora", "--trainable-blocks", "1", "--lora-targets", "q,v,down",
                 "--lora-alpha", "4", "--epochs", "1", "--out", str(out), "--classify"]) == 0
    assert "trunk caching off" not in capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lora"] == {"rank": 8, "alpha": 4.0, "blocks": 1, "merged": True,
                           "targets": ["attn.q", "attn.v", "mlp.down"]}
    assert json.loads((out / "metrics.json").read_text())["trunk_cached"] is True
    assert main(["merge", str(out)]) == 2


@pytest.mark.parametrize("extra, message", [
    (["--lora-rank", "4"], "--lora-rank: only with --trainable lora (got last-block)"),
    (["--trainable", "all", "--lora-targets", "attn"], "only with --trainable lora (got all)"),
    (["--trainable", "lora", "--lora-rank", "0"], "--lora-rank must be a positive integer"),
    (["--trainable", "lora", "--lora-alpha", "-1"], "--lora-alpha must be positive"),
    (["--trainable", "lora", "--lora-targets", "wq"], "unknown LoRA target 'wq'"),
    (["--trainable", "lora", "--lora-targets", "proj"], "ambiguous"),
    (["--trainable", "last-block", "--trainable-blocks", "2"], "goes with --trainable"),
    (["--no-merge-lora"], "--no-merge-lora needs --trainable lora"),
])
def test_bad_trainable_flags_exit_2_before_writing(extra, message, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "gpt2-tiny", "--weights", "random", "--data",
            str(tmp_path / "unread.tsv"), "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptcls: error:") and message in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--lora-targets", "gate"], "LoRA target 'gate' is not in this model's blocks"),
    (["--trainable-blocks", "3"], "LoRA blocks must be between 1 and 2"),
])
def test_lora_flags_that_do_not_fit_the_model_exit_2(extra, message, sms_path, tmp_path, capsys):
    argv = ["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
            "--out", str(tmp_path / "run"), "--trainable", "lora", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gptcls: error:") and message in err


def test_merge_refuses_runs_without_adapters(tmp_path, capsys):
    model = tiny()
    model.set_trainable(1)
    cfg = ClassifierConfig(model=model.backbone.config, labels=["a", "b"], max_length=8,
                           tokenizer={})
    save_run(tmp_path / "plain", cfg, model, gpt2_tokenizer())
    assert main(["merge", str(tmp_path / "plain")]) == 2
    assert "has no LoRA adapters: nothing to merge" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
