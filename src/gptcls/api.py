"""The Python API: `gptcls.train(data=..., **options)`, the same options as `gptcls train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptcls.options import default_run_dir
from gptcls.recipes import options_with_recipe

if TYPE_CHECKING:
    from gptcls.classifier.classifier import Classifier


def train(data: str | Path | None = None, out: str | Path | None = None,
          **options: Any) -> Classifier:
    """Fine-tune a classifier exactly as `gptcls train` does and return it, loaded.

    `options` are `gptcls train`'s option names with underscores (`model="gpt2-tiny"`,
    `epochs=1`, `pooling="mean"`, `trainable="lora"`, ...); unknown names raise GptclsError.
    The run directory is `out`, or `runs/<data file name>` like the CLI's (`runs/sms-spam` when
    no data is given: the SMS Spam Collection is downloaded)."""
    from gptcls.classifier.classifier import Classifier
    from gptcls.training.pipeline import run_training

    given = {"data": None if data is None else str(data), **options}
    opts = options_with_recipe(out or default_run_dir(given), **given)
    run_training(opts)
    return Classifier.load(opts.out, device=opts.device)
