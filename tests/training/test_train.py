"""Training mechanics on tiny models: trunk cache exactness, padding invariance, seeding."""

import pytest
import torch
from helpers import CPU, synthetic, tiny_classifier

from gptcls.classifier.encoding import make_batches, pad_batch
from gptcls.classifier.model import ClassifierModel
from gptcls.models import build_backbone, preset_config
from gptcls.options import TrainConfig
from gptcls.training.loop import evaluate, train
from gptcls.training.trunk_cache import Store, build_store, full_batches


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("pooling", ["last", "mean", "last+mean", "first"])
def test_text_logits_do_not_depend_on_the_batch(name, pooling):
    model = tiny_classifier(name, pooling).eval()
    short = torch.randint(0, 300, (5,))
    long = torch.randint(0, 300, (60,))
    alone = model(*pad_batch([short]))
    x, lengths = pad_batch([short, long])
    together = model(x, lengths)[:1]
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_cached_and_uncached_training_give_the_same_losses(name, blocks):
    ids, labels = synthetic()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, eval_freq=3, eval_iter=2, seed=5)
    hists = []
    for cache in (True, False):
        model = tiny_classifier(name, blocks=blocks, seed=1)
        tr = build_store(model, ids[:48], labels[:48], cache, CPU)
        va = build_store(model, ids[48:], labels[48:], cache, CPU)
        hists.append(train(model, tr, va, cfg, CPU, log=lambda m: None))
    for key in ("train_losses", "val_losses", "train_accs", "val_accs"):
        torch.testing.assert_close(torch.tensor(hists[0][key]), torch.tensor(hists[1][key]),
                                   atol=1e-5, rtol=0)
    assert len(hists[0]["train_losses"]) == 4  # steps 0, 3, 6, 9 of 2 x 6 steps


def test_same_seed_same_losses_and_training_learns():
    ids, labels = synthetic(160)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=3e-3, eval_freq=5, eval_iter=4, seed=3)
    runs = []
    for _ in range(2):
        model = tiny_classifier(blocks=2, seed=2)
        tr = build_store(model, ids[:128], labels[:128], True, CPU)
        va = build_store(model, ids[128:], labels[128:], True, CPU)
        runs.append(train(model, tr, va, cfg, CPU, log=lambda m: None))
    assert runs[0]["train_losses"] == runs[1]["train_losses"]
    assert runs[0]["val_losses"] == runs[1]["val_losses"]
    assert runs[0]["examples_seen"] == [4 * 128]
    assert runs[0]["train_losses"][-1] < runs[0]["train_losses"][0]


def test_cache_stores_only_real_tokens():
    ids, labels = synthetic(10)
    model = tiny_classifier(blocks=1)
    store = build_store(model, ids, labels, True, CPU)
    assert store.cached
    assert [tuple(x.shape) for x in store.items] == [(len(s), 16) for s in ids]


def test_make_batches_buckets_by_length_and_keeps_every_example():
    lengths = [int(x) for x in torch.randint(1, 100, (203,))]
    gen = torch.Generator().manual_seed(0)
    batches = make_batches(lengths, 8, shuffle=True, generator=gen, drop_last=True)
    flat = [i for b in batches for i in b]
    assert len(flat) == 200 and len(set(flat)) == 200 and all(len(b) == 8 for b in batches)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread / len(batches) < 15  # unbucketed batches of 8 would span ~75 tokens
    everything = make_batches(lengths, 8)
    assert sorted(i for b in everything for i in b) == list(range(203))


def test_full_evaluation_covers_each_example_once():
    ids, labels = synthetic(37)
    model = tiny_classifier()
    store = build_store(model, ids, labels, True, CPU)
    res = evaluate(model, store, full_batches(store, batch_tokens=64), CPU)
    assert not torch.isnan(res["probs"]).any()
    torch.testing.assert_close(res["probs"].sum(-1), torch.ones(37))
    assert 0.0 <= res["accuracy"] <= 1.0


def test_trunk_not_cacheable_when_lower_layers_train_or_dropout():
    model = tiny_classifier(blocks=2)  # all blocks trainable, embeddings frozen
    assert model.trunk_is_cacheable()
    model.backbone.tok_emb.requires_grad_(True)
    assert not model.trunk_is_cacheable()
    cfg = preset_config("gpt2-tiny")
    cfg.drop_rate = 0.1
    dropout_model = ClassifierModel(build_backbone(cfg), 2)
    dropout_model.set_trainable(1)
    assert not dropout_model.trunk_is_cacheable()


def test_store_batch_pads_right():
    store = Store([torch.tensor([1, 2, 3]), torch.tensor([4])], torch.tensor([0, 1]), False)
    x, lengths, y = store.batch([0, 1], CPU)
    assert x.tolist() == [[1, 2, 3], [4, 0, 0]] and lengths.tolist() == [3, 1]
    assert y.tolist() == [0, 1]


def test_duplicate_texts_run_the_trunk_once_and_get_the_same_activations():
    ids, labels = synthetic(12)
    dup_ids = ids + [ids[3], ids[0], ids[3]]
    model = tiny_classifier(blocks=1)
    rows = []
    trunk = model.trunk
    model.trunk = lambda x, lengths=None: (rows.append(x.shape[0]), trunk(x, lengths))[1]
    store = build_store(model, dup_ids, labels + [labels[3], labels[0], labels[3]], True, CPU)
    assert sum(rows) == len({tuple(s) for s in dup_ids}) == 12
    torch.testing.assert_close(store.items[12], store.items[3], atol=0, rtol=0)
    torch.testing.assert_close(store.items[13], store.items[0], atol=0, rtol=0)
    ref = build_store(tiny_classifier(blocks=1), ids, labels, True, CPU)
    for a, b in zip(store.items[:12], ref.items, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_trunk_cache_dir_reads_back_and_is_keyed_by_weights_texts_and_precision(tmp_path):
    ids, labels = synthetic(16)
    model = tiny_classifier(blocks=1)
    first = build_store(model, ids, labels, True, CPU, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("trunk-*.safetensors"))) == 1
    model.trunk = lambda *a: pytest.fail("the trunk ran although its output is on disk")
    again = build_store(model, ids + [ids[0]], labels + [labels[0]], True, CPU,
                        cache_dir=tmp_path)
    for a, b in zip(first.items + [first.items[0]], again.items, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    other = tiny_classifier(blocks=1, seed=9)  # other weights: another file
    build_store(other, ids, labels, True, CPU, cache_dir=tmp_path)
    build_store(tiny_classifier(blocks=1), ids[:8], labels[:8], True, CPU, cache_dir=tmp_path)
    build_store(tiny_classifier(blocks=1), ids, labels, True, CPU, precision="bf16",
                cache_dir=tmp_path)
    build_store(tiny_classifier(blocks=2), ids, labels, True, CPU, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("trunk-*.safetensors"))) == 5
    assert not list(tmp_path.glob("*.tmp"))


def test_last_plus_mean_pooling_feeds_both_features_to_the_head():
    model = tiny_classifier("llama-tiny", "last+mean", blocks=1).eval()
    assert model.head.in_features == 2 * 16
    ids = torch.randint(0, 300, (7,))
    h = model.backbone.hidden_states(ids[None])[0]  # (T, C)
    expected = model.head(torch.cat([h[-1], h.mean(0)]))
    torch.testing.assert_close(model(*pad_batch([ids]))[0], expected, atol=1e-5, rtol=0)


def test_label_smoothing_keeps_predictions_off_certainty():
    """--label-smoothing S: the targets become (1 - S) + S/K for the true class, so training
    longer pushes the true-class probability towards that, never to 1 (without: towards 1)."""
    ids, labels = synthetic()
    top = {}
    for smoothing in (0.0, 0.4):
        cfg = TrainConfig(epochs=30, batch_size=16, lr=3e-3, eval_freq=1000, eval_iter=1,
                          seed=5, label_smoothing=smoothing)
        model = tiny_classifier("gpt2-tiny", blocks=2, seed=1)
        tr = build_store(model, ids, labels, True, CPU)
        train(model, tr, tr, cfg, CPU, log=lambda m: None)
        probs = evaluate(model, tr, full_batches(tr), CPU)["probs"]
        top[smoothing] = float(probs.max(dim=1).values.mean())
    assert top[0.4] < 0.8 + 0.02  # the smoothed target for the true class: 0.6 + 0.4 / 2
    assert top[0.0] > top[0.4] + 0.05
