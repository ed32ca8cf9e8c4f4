"""Recipes: each backbone family's defaults over the options of options.py, with the checkpoint
they were tuned on, and the RunOptions a model's recipe gives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcls.data.multilabel import multi_label_values
from gptcls.errors import GptclsError
from gptcls.options import (
    DEFAULT_MODEL,
    OPTIONS,
    RunOptions,
    build_options,
    check_names,
    coerce,
    value,
)
from gptcls.schema import shown


@dataclass(frozen=True)
class Recipe:
    """A backbone family's defaults, and the checkpoint they were tuned on."""

    source: str
    options: Mapping[str, Any]


# By preset-name prefix (first match wins). The chapter's for GPT-2; SmolLM2's 576-wide blocks
# need more trainable depth and a faster head to reach the same accuracy.
RECIPES: dict[str, Recipe] = {
    "gpt2": Recipe("gpt2-small (OpenAI's GPT-2 124M: the chapter's recipe)",
                   {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5}),
    # last+mean: the head sees the last real token and the mean of all of them (4 test errors
    # of 300 at seeds 123, 1, 2 where last alone made 5-7; see bench/accuracy.py).
    "smollm2": Recipe("smollm2-135m-instruct-q4 (SmolLM2-135M-Instruct, Q4 GGUF)",
                      {"trainable_blocks": 4, "lr": 1e-4, "head_lr": 1e-3, "epochs": 5,
                       "pooling": "last+mean"}),
    # Chosen by 5-fold cross-validation on the chapter's 1,194 training + validation SMS
    # (bench/recipe_cv.py, seed 123; copies of a text in one fold): last+mean 17 errors, last
    # (the chapter's recipe) 21; on earlier folds, 2 trainable blocks with last+mean 19.
    **dict.fromkeys(("gemma3", "gemma-3"), Recipe(
        "gemma3-270m-q4 (Gemma-3-270M, Q4_K_M GGUF: chosen by cross-validation)",
        {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5,
         "pooling": "last+mean"})),
    # Chosen likewise (folds keeping copies of a text together): Qwen2.5-Coder-0.5B last+mean
    # 19 errors, last 24; Qwen2.5-Coder-1.5B (--precision int8) last+mean 19, last 23.
    "qwen": Recipe("qwen2.5-coder-0.5b/1.5b-instruct-q4 (Qwen2.5-Coder, Q4_K_M GGUFs: chosen "
                   "by cross-validation)",
                   {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5,
                    "pooling": "last+mean"}),
    "": Recipe("any other backbone: the chapter's recipe",
               {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5}),
}
assert all(OPTIONS[k].recipe for r in RECIPES.values() for k in r.options), "not recipe options"


def recipe(model: str) -> Recipe:
    """The recipe of `model` (a preset name or a path: matched on its file name)."""
    name = Path(model).name.lower()
    return next(r for prefix, r in RECIPES.items() if name.startswith(prefix))


def recipe_for(model: str) -> dict[str, Any]:
    """The options `model`'s recipe sets."""
    return dict(recipe(model).options)


def options_with_recipe(out: str | Path, model: str = DEFAULT_MODEL, **given: Any) -> RunOptions:
    """RunOptions for `model`: the defaults, then its recipe, then `given` (None: not given).
    An option given explicitly always beats the recipe."""
    check_names(given)
    values = {k: coerce(k, v) for k, v in given.items() if v is not None}
    values = multi_label_values(values)  # its own default balance; single-label options
    policy, blocks = values.get("trainable"), values.get("trainable_blocks")
    if policy in ("last-layer", "last-block", "all") and blocks is not None:
        raise GptclsError(f"--trainable-blocks goes with --trainable last-N-blocks or lora, "
                          f"not {policy}")
    if policy == "lora" and blocks is not None:  # with lora: adapters in the last N blocks
        values["lora_blocks"] = values.pop("trainable_blocks")
    return build_options({**recipe_for(model), **values, "model": coerce("model", model)}, out)


def describe(opts: RunOptions) -> str:
    """The model, its recipe, and every option that differs from its default."""
    r = recipe(opts.model)
    lines = [f"model: {opts.model} ({opts.weights} weights); recipe: {r.source}"]
    for name, o in OPTIONS.items():
        v = value(opts, name)
        moot = name == "trainable_blocks" and opts.trainable not in (None, "last-N-blocks")
        if name not in ("model", "weights") and v != o.default and not moot:
            from_recipe = name in r.options and r.options[name] == v
            lines.append(f"  {o.flag} {shown(v)}" + (" (recipe)" if from_recipe else ""))
    return "\n".join(lines)
