"""The option schema (gptcls.options): every option reaches the CLI, the grid, the run directory
and --resume from its one declaration, and a flag given always beats the model's recipe."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from gptcls.cli.main import build_parser
from gptcls.cli.train import train_options
from gptcls.errors import GptclsError
from gptcls.options import OPTIONS, RunOptions, from_dict, to_dict, value
from gptcls.recipes import RECIPES, options_with_recipe, recipe_for
from gptcls.training import grid


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def sample(name: str):
    """A valid value of option `name` that is not its default."""
    o = OPTIONS[name]
    if name == "trainable":
        return "last-N-blocks"  # the policy that goes with trainable_blocks
    if o.choices:
        return next(c for c in o.choices if c != o.default)
    if o.type is bool:
        return not o.default
    if o.type is tuple:
        return (0.6, 0.2, 0.2)
    if o.type is int:
        return {"trainable_blocks": 2}.get(name, (o.default or 0) + 3)
    if o.type is float:
        return 0.25
    if o.metavar in ("FILE", "DIR"):
        return str(Path(f"/abs/{name}").resolve())
    other = {"context": "64", "model": "gpt2-tiny", "lora_targets": "attn,mlp"}
    return other.get(name, "x-" + name)


def test_every_option_is_in_train_help_with_a_help_text():
    parser = _subparser("train")
    text = parser.format_help()
    actions = {flag: a for a in parser._actions for flag in a.option_strings}
    for o in OPTIONS.values():
        assert o.help.strip(), o.name
        for flag in o.flags or (o.via,):
            assert flag in text and actions[flag].help, (o.name, flag)
        if o.flags:
            assert actions[o.flags[0]].dest == o.name
        if o.shortcut:
            assert actions[o.shortcut.flag].help


def test_every_option_is_a_grid_and_yaml_key(tmp_path):
    assert set(OPTIONS) <= grid.valid_keys()
    for name in OPTIONS:
        v = sample(name)
        assert value(grid.options_for({name: v}, tmp_path), name) == v, name
    cfg = tmp_path / "grid.yaml"  # dashed keys, as flags are spelled
    cfg.write_text("base:\n" + "".join(f"  {n.replace('_', '-')}: {json.dumps(sample(n))}\n"
                                       for n in OPTIONS if OPTIONS[n].type is not tuple))
    spec = grid.build_spec(cfg)
    grid.check_keys(spec.base)
    assert spec.base == {n: sample(n) for n in OPTIONS if OPTIONS[n].type is not tuple}


def _every_option_set() -> RunOptions:
    given = {n: sample(n) for n in OPTIONS}
    return options_with_recipe("out", **given)


def test_options_round_trip_through_dict_and_resume_file(tmp_path):
    from gptcls.training.pipeline import CHECKPOINT_DIR, resume_options, save_options

    opts = _every_option_set()
    assert all(value(opts, n) == sample(n) for n in OPTIONS)
    assert from_dict(json.loads(json.dumps(to_dict(opts))), "out") == opts
    run = tmp_path / "run"
    save_options(opts, run / CHECKPOINT_DIR / "options.json")
    resumed, started = resume_options(run)
    assert resumed == dataclasses.replace(opts, out=Path("out").resolve()) and started is False


def test_options_round_trip_through_a_run_directory(sms_path, tmp_path):
    """A real tiny run: config.json and metrics.json's train_config hold the options given."""
    from gptcls.options import config_fields
    from gptcls.training.pipeline import run_training

    data = tmp_path / "sms.tsv"
    data.write_bytes(b"".join(sms_path.open("rb").readlines()[:600]))
    opts = options_with_recipe(tmp_path / "run", "gpt2-tiny", weights="random", data=str(data),
                               epochs=1, batch_size=16, pooling="mean", truncate="tail",
                               train_embeddings=True, trainable_blocks=2, eval_freq=1000,
                               split=(0.6, 0.2, 0.2), lr=2e-3, context="48")
    before = dataclasses.replace(opts)
    run_training(opts)
    assert opts == before  # nothing mutates the resolved options
    metrics = json.loads((opts.out / "metrics.json").read_text())
    assert from_dict(metrics["train_config"], opts.out) == opts
    config = json.loads((opts.out / "config.json").read_text())
    assert config_fields(opts) == {k: config[k] for k in config_fields(opts)}
    assert (config["trainable"], config["trainable_blocks"]) == ("last-N-blocks", 2)


def _cli(*argv: str) -> RunOptions:
    return train_options(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("family", [p for p in RECIPES if p])
def test_a_flag_given_beats_the_recipe(family):
    model = {"gpt2": "gpt2-small", "smollm2": "smollm2-135m-instruct-q4",
             "gemma3": "gemma3-270m-q4", "gemma-3": "google/gemma-3-270m",
             "qwen": "qwen2.5-coder-0.5b-instruct-q4"}[family]
    recipe = recipe_for(model)
    for name, v in recipe.items():  # no flag: the recipe's value
        assert value(_cli("--model", model), name) == v
    smollm = _cli("--model", "smollm2-135m-instruct-q4", "--lr", "0.003", "--pool", "first",
                  "--trainable-blocks", "1", "--head-lr", "5e-5")
    assert (smollm.train.lr, smollm.pooling, smollm.trainable_blocks, smollm.train.head_lr) == (
        0.003, "first", 1, 5e-5)
    for name in recipe:  # every recipe option, given on the command line, wins
        o = OPTIONS[name]
        v = sample(name) if recipe[name] != sample(name) else o.default
        flag = o.flags[0]
        argv = [flag] if o.type is bool else [flag, str(v)]
        assert value(_cli("--model", model, *argv), name) == v, name


def test_recipes_are_data_over_recipe_options():
    for prefix, r in RECIPES.items():
        assert r.source and all(OPTIONS[k].recipe for k in r.options), prefix
    assert recipe_for("runs/SmolLM2-custom.gguf")["pooling"] == "last+mean"  # by file name
    assert recipe_for("google/gemma-3-270m") == recipe_for("gemma3-270m-q4")
    assert recipe_for("Qwen/Qwen3-0.6B")["pooling"] == "last+mean"  # hub IDs by their name


def test_resolved_options_are_frozen():
    opts = _cli("--model", "gpt2-tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.trainable_blocks = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.train.class_weights = [1.0, 2.0]


@pytest.mark.parametrize("given, message", [
    ({"bogus": 1}, "unknown option(s) bogus"),
    ({"epochs": "many"}, "epochs must be an integer, got 'many'"),
    ({"trainable_blocks": 2.5}, "trainable_blocks must be an integer"),
    ({"split": "0.5,0.5"}, "need 3 split fractions"),
    ({"trainable": "all", "trainable_blocks": 2}, "--trainable-blocks goes with"),
])
def test_bad_values_are_one_line_errors(given, message):
    with pytest.raises(GptclsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options_with_recipe("out", "gpt2-tiny", **given)


def test_messages_name_real_flags(tmp_path):
    from gptcls.training.pipeline import check_options

    flags = {f for a in _subparser("train")._actions for f in a.option_strings}
    opts = options_with_recipe(tmp_path, "gpt2-tiny", lora_blocks=2)
    with pytest.raises(GptclsError, match="--trainable-blocks: only with --trainable lora"):
        check_options(opts)
    assert "--lora-blocks" not in flags
    with pytest.raises(GptclsError, match="--no-merge-lora needs --trainable lora"):
        check_options(_cli("--model", "gpt2-tiny", "--no-merge-lora"))
    lora = _cli("--model", "gpt2-tiny", "--trainable", "lora", "--trainable-blocks", "2")
    assert (lora.lora_blocks, lora.trainable_blocks) == (2, 1)  # 1: gpt2's recipe, untouched


def test_trainable_blocks_with_lora_means_adapter_blocks_everywhere(tmp_path):
    """--trainable-blocks N with --trainable lora puts adapters in the last N blocks, whether
    the options come from the CLI, gptcls.train or a grid (one rule, in options_with_recipe)."""
    opts = options_with_recipe(tmp_path, "gpt2-tiny", trainable="lora", trainable_blocks=1)
    assert opts.lora_blocks == 1 and opts.trainable_blocks == 1  # 1: gpt2's recipe, untouched
    opts = options_with_recipe(tmp_path, "gpt2-tiny", trainable="lora", trainable_blocks=2)
    assert (opts.lora_blocks, opts.trainable_blocks) == (2, 1)
