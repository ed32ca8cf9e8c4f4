"""build_model: one builder for `gptcls train` and the in-memory estimator."""

import dataclasses

import pytest
import torch

from gptcls.errors import GptclsError
from gptcls.models.weights.pretrained import load_pretrained
from gptcls.recipes import options_with_recipe
from gptcls.training.builder import build_model


def _opts(tmp_path, **given):
    return options_with_recipe(tmp_path / "run", model="gpt2-tiny", weights="random", seed=7,
                               **given)


def test_a_given_pretrained_builds_the_model_it_would_load(tmp_path):
    opts = _opts(tmp_path, trainable_blocks=2, pooling="last+mean")
    loaded = build_model(opts, 3)
    kept = load_pretrained(opts.model, opts.weights, cache=opts.data.cache, seed=opts.train.seed)
    given = build_model(opts, 3, dataclasses.replace(kept))
    assert loaded[3:] == given[3:] == ("last-N-blocks", 2)
    a, b = loaded[0].state_dict(), given[0].state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert given[2].state_dict == {}  # handed to the backbone, not copied
    trainable = {n for n, p in given[0].named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in loaded[0].named_parameters() if p.requires_grad}


def test_the_head_depends_on_the_seed_alone(tmp_path):
    opts = _opts(tmp_path)
    kept = load_pretrained(opts.model, opts.weights, cache=opts.data.cache, seed=opts.train.seed)
    torch.manual_seed(0)
    first = build_model(opts, 2, dataclasses.replace(kept))[0].head.weight
    torch.rand(1000)  # whatever was drawn before
    second = build_model(opts, 2, load_pretrained(opts.model, opts.weights, seed=7))[0].head.weight
    assert torch.equal(first, second)


def test_bad_policy_options_fail_before_loading(tmp_path, monkeypatch):
    import gptcls.models.weights.pretrained as pretrained

    monkeypatch.setattr(pretrained, "load_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(GptclsError, match="only with --trainable lora"):
        build_model(_opts(tmp_path, lora_rank=4), 2)
