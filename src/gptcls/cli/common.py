"""What the commands share: option flags from the schema, the example texts, printing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gptcls.errors import GptclsError
from gptcls.options import GROUPS, OPTIONS
from gptcls.schema import Option, shown

if TYPE_CHECKING:
    import numpy as np

EXAMPLES = [
    "You are a winner you have been specially selected to receive $1000 cash or a $2000 award.",
    "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
]
SHORTCUT_DEST = "shortcut_"  # + option name: the dest of a shortcut flag (--no-padding)


def option_help(o: Option) -> str:
    """The declared help, with the default appended unless the help names it."""
    text = o.help
    if "default" not in text and o.default is not None and o.type is not bool:
        text += f" (default: {shown(o.default)}{', or the recipe' if o.recipe else ''})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_options(parser: argparse.ArgumentParser, names: Sequence[str] | None = None,
                defaults: bool = False, required: Sequence[str] = ()) -> None:
    """Flags for the options `names` (all, in argument groups: `gptcls train`). defaults=False
    leaves every option None unless given, so the model's recipe can fill it in."""
    grouped = names is None
    targets = {g: parser.add_argument_group(g) for g in GROUPS} if grouped else {}
    for o in (OPTIONS[n] for n in (names or OPTIONS)):
        if not o.flags:
            continue  # set through another flag (lora_blocks: --trainable-blocks)
        where = targets[o.group] if grouped else parser
        kw: dict[str, Any] = {"dest": o.name, "help": option_help(o),
                              "default": o.default if defaults else None}
        if o.type is bool:
            kw.update(action="store_const", const=not o.negative)
        else:
            kw.update(type=o.type if o.type in (int, float) else str, choices=o.choices,
                      metavar=o.metavar)
        if o.name in required:
            kw["required"] = True
        where.add_argument(*o.flags, **kw)
        if o.shortcut:
            where.add_argument(o.shortcut.flag, dest=SHORTCUT_DEST + o.name, action="store_true",
                               help=o.shortcut.help.replace("%", "%%"))


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (None: not given), shortcuts applied."""
    given = {name: v for name in OPTIONS if (v := getattr(args, name, None)) is not None}
    for o in OPTIONS.values():
        if o.shortcut and getattr(args, SHORTCUT_DEST + o.name, False):
            if given.get(o.name, o.shortcut.value) != o.shortcut.value:
                raise GptclsError(o.shortcut.conflict.format(given=given[o.name]))
            given[o.name] = o.shortcut.value
    return given


def add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-q/-v, before the command (default False) and after it (default SUPPRESS, so an
    absent flag there keeps what was given before the command)."""
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print results, warnings and errors only: no log, no progress")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="also print debugging detail")


def prediction_records(clf, texts: list[str], probs: np.ndarray) -> list[dict[str, Any]]:
    """What `classify --json` prints for each text: the text, its label and every label's
    probability (probs: (len(texts), num_labels), in clf.labels' order)."""
    return [{"text": text, ("labels" if isinstance(label, list) else "label"): label,
             "probabilities": {lab: float(q) for lab, q in zip(clf.labels, p, strict=True)}}
            for text, label, p in zip(texts, clf.labels_from_proba(probs), probs, strict=True)]


def print_predictions(clf, texts: list[str], long_text: str | None = None,
                      chunk_reduce: str = "mean", as_json: bool = False) -> None:
    """One `label<TAB>probability<TAB>text` line per text, or (as_json) one JSON object per
    line (JSON Lines: `prediction_records`) and nothing else."""
    probs = clf.predict_proba(texts, long_text=long_text, chunk_reduce=chunk_reduce)
    for r in prediction_records(clf, texts, probs):
        if as_json:
            print(json.dumps(r, ensure_ascii=False))
        elif "labels" in r:  # multi-label: the set, each label with its probability
            from gptcls.classifier.multilabel import label_set_line

            print(label_set_line(r, clf.config.label_separator))
        else:
            print(f"{r['label']}\t{r['probabilities'][r['label']]:.4f}\t{r['text']}")
