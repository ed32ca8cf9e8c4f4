"""Every `gptcls train` option, declared once, torch-free.

An option is a field of RunOptions, DataOptions or TrainConfig declared with `option(...)`
(gptcls.schema): its name, type (the annotation), default, help, choices, group and whether a
recipe may set it.
Everything else is derived from these declarations: the argparse flags of `gptcls train`
(cli/train.py), the grid and YAML keys (training/grid.py), resume's saved options, the value
checks (`check_values`), the run directory's config fields and metrics.json's `train_config`.

Adding an option: one `option(...)` field here, the code that uses it, a README line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcls.errors import GptclsError
from gptcls.schema import (
    Option,
    Shortcut,
    check_fractions,
    declared,
    option,
    parse_fractions,
)

DEFAULT_MODEL = "smollm2-135m-instruct-q4"
# last: the last real token (independent of padding); last-position: the last position of a
# sequence padded to max_length, as the book does; mean: the average of every real token's
# output; last+mean: both side by side (2C features, the bonus table's "pooled embeddings").
POOLINGS = ("last", "last-position", "first", "mean", "last+mean")
TRUNCATIONS = ("head", "tail")
LONG_TEXTS = ("truncate", "chunk")  # what a text longer than max_length becomes
TRAINABLE_POLICIES = ("last-layer", "last-block", "last-N-blocks", "all", "lora")
LR_SCHEDULES = ("constant", "linear", "cosine")
EARLY_STOPPING = ("val_loss", "val_f1")
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # int8: CPU, classifier/int8.py
SAVE_MODES = ("delta", "full")  # what a run directory's model.safetensors holds
# auto: undersample the SMS Spam Collection (the chapter), keep every row of other data
# (data/partition.py resolved_balance).
BALANCE_MODES = ("auto", "undersample", "none", "weighted")
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet", "sms", "trec", "fasttext")
LABEL_LEVELS = ("coarse", "fine")  # COARSE or COARSE:fine of a hierarchical label
CONTEXTS = ("longest", "model")  # or a positive number of tokens
DEFAULT_RANK = 8
DEFAULT_ALPHA = 16.0
DEFAULT_TARGETS = "attn"
# Argparse groups of `gptcls train --help`, in order.
GROUPS = ("model", "data", "split", "training", "trainable layers", "LoRA", "inputs and head",
          "speed and runtime")


@dataclass(frozen=True)
class DataOptions:
    """How to get labelled examples and split them. No path: the SMS Spam Collection."""

    data: str | None = option(None, "labelled file: CSV, TSV, JSONL, Parquet or the headerless "
                              "SMSSpamCollection (train's default: download the SMS Spam "
                              "Collection)", "data", metavar="FILE")
    train: str | None = option(None, "training file (with --validation and --test, instead of "
                               "--data)", "data", metavar="FILE")
    validation: str | None = option(None, "validation file", "data", metavar="FILE")
    test: str | None = option(None, "test file", "data", metavar="FILE")
    format: str | None = option(None, "file format (default: from the extension)", "data",
                                choices=FORMATS)
    text_column: str | None = option(
        None, "column holding the text, or several joined into one text (title,description); "
        "a name or a 1-based position (default: detected)", "data", in_config=True)
    label_column: str | None = option(None, "column holding the label (default: detected)",
                                      "data")
    encoding: str = option("utf-8", "text encoding, e.g. latin-1 (default: utf-8)", "data")
    no_header: bool = option(False, "CSV/TSV: the first row is data; columns are named by "
                             "position 1, 2, ... (default: detected)", "data")
    label_level: str | None = option(
        None, "labels written COARSE:fine: keep the coarse part or the whole label (default: "
        "coarse for --format trec, the label as written otherwise)", "data", choices=LABEL_LEVELS)
    label_names: str | None = option(
        None, "name labels written as codes, e.g. 1=World,2=Sports: the run trains on the names "
        "(reports, predictions, server, exports) and evaluate renames a file's codes the same "
        "way", "data", in_config=True, metavar="CODE=NAME,...")
    keep_rare_labels: bool = option(False, "train on labels seen in only 1-2 rows (under 1% "
                                    "of them) instead of dropping them as probable typos",
                                    "data")
    strict: bool = option(False, "reject rows with empty text or no label instead of dropping "
                          "them", "data")
    normalize_labels: bool = option(True, "keep labels exactly as written (default: strip and "
                                    "case-fold)", "data")
    split: tuple[float, float, float] = option(
        (0.7, 0.1, 0.2), "train,validation,test fractions (default: 0.7,0.1,0.2)", "split",
        metavar="FRACTIONS")
    split_seed: int = option(123, "seed of the train/validation/test split", "split")
    multi_label: bool = option(False, "each text has a set of labels (one sigmoid per label, "
                               "thresholds chosen on validation): a separated list in the label "
                               "column, or --label-column a,b,c naming 0/1 columns", "data",
                               in_config=True)
    label_separator: str = option("|", "with --multi-label: what separates the labels in one "
                                  "column (default: |)", "data", in_config=True)
    balance: str = option("auto", "auto (default): undersample the SMS Spam Collection as the "
                          "chapter does and keep every row of any other data; undersample "
                          "the majority classes, keep the data as it is (none), or weight "
                          "the loss by inverse class frequency", "split",
                          choices=BALANCE_MODES)
    cache: str | None = option(None, "download cache directory (default: $GPTCLS_CACHE or "
                               "~/.cache/gptcls)", "speed and runtime", metavar="DIR")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. The defaults are chapter 6's."""

    epochs: int = option(5, "training epochs", "training", recipe=True, minimum=0)
    batch_size: int = option(
        8, "texts per micro-batch", "training", recipe=True, minimum=1,
        shortcut=Shortcut("--no-padding", 1, "batches of one text, so nothing is ever padded "
                          "(use --grad-accum N for the effect of batch N)",
                          "--no-padding means batches of one text; drop --batch-size {given} "
                          "(use --grad-accum {given} instead)"))
    lr: float = option(5e-5, "learning rate of the trainable blocks", "training", recipe=True)
    head_lr: float | None = option(None, "learning rate of the head (default: --lr)",
                                   "training", recipe=True)
    weight_decay: float = option(0.1, "AdamW weight decay", "training", recipe=True)
    label_smoothing: float = option(
        0.0, "spread this much of each target's probability over all classes (0: none, the "
        "chapter's); softens overconfident predictions", "training", recipe=True, minimum=0,
        below=1)
    eval_freq: int = option(50, "steps between loss evaluations", "training", minimum=1)
    eval_iter: int = option(5, "batches per loss evaluation", "training", minimum=1)
    seed: int = option(123, "training seed (head initialisation, batch order)", "training")
    cache_trunk: bool = option(True, "run the frozen layers every step instead of caching "
                               "their output", "speed and runtime")
    max_cache_mb: float = option(4096.0, "above this many MB of trunk activations the trunk "
                                 "is not cached (runs every step)", "speed and runtime")
    bucket: bool = option(True, "batch texts in plain shuffled order instead of grouping "
                          "similar lengths (more padding)", "speed and runtime")
    lr_schedule: str = option("constant", "constant (default, the chapter's), or linear/cosine "
                              "decay to 0", "training", recipe=True, choices=LR_SCHEDULES)
    warmup_steps: int = option(0, "linear learning-rate warmup steps", "training", recipe=True,
                               minimum=0)
    early_stopping: str | None = option(
        None, "score all of validation each epoch and keep the best epoch's weights",
        "training", recipe=True, choices=EARLY_STOPPING)
    patience: int | None = option(None, "with --early-stopping: stop after this many epochs "
                                  "without improvement", "training", recipe=True)
    # auto = bf16 where the hardware has native bf16 (CUDA, AVX512-BF16/AMX CPUs), else fp32.
    precision: str = option(
        "auto", "compute dtype of the matrix products (frozen trunk, trained layers, "
        "evaluation): auto (default: bf16 where the hardware has native bf16 measured faster "
        "than fp32 - CUDA, most AVX512-BF16/AMX CPUs - else fp32), fp32 (exact), bf16, or int8 "
        "(CPU: the frozen trunk's linear layers in int8, the trained layers in fp32); "
        "weights and optimizer state stay fp32", "speed and runtime",
        choices=PRECISIONS)
    trunk_cache_dir: str | None = option(
        None, "keep frozen-trunk activations here and reuse them in later runs with the same "
        "weights, texts, depth and precision (seeds, grids)", "speed and runtime", metavar="DIR")
    grad_accum: int = option(1, "micro-batches per optimizer step (with --batch-size 1: no "
                             "padding at all, the bonus table's rows 14-15)", "training",
                             recipe=True, minimum=1, metavar="N")
    checkpoint_every: int | None = option(
        None, "checkpoint every N steps and at each epoch end, for --resume",
        "speed and runtime", metavar="N")
    # Not recipe options: they choose among recipes (training/search.py).
    search: bool = option(False, "try a few recipes (trainable blocks, pooling, lr, head lr; "
                          "early stopping on validation macro-F1) on one pass of the frozen "
                          "trunk and keep the best on validation (table: search.csv)",
                          "training")
    search_budget: float = option(600.0, "with --search: seconds it may take, trunk pass "
                                  "included (default 600)", "training", minimum=0,
                                  metavar="SECONDS")
    # Derived from the data (--balance weighted), never given: not an option.
    class_weights: list[float] | None = None


@dataclass(frozen=True)
class RunOptions:
    """One training run: where it goes, the backbone, the classifier, data and training."""

    out: Path
    model: str = option(DEFAULT_MODEL, "backbone: a preset, a path (.gguf, Hugging Face "
                        "directory, ...) or a hub ID owner/name", "model")
    weights: str = option("pretrained", "pretrained (default), random, or a path to local "
                          "weights", "model")
    save: str = option("delta", "what the run directory stores: delta (default: only what "
                       "training changed, plus the base's path and sha256; loading needs that "
                       "base) or full (every weight: self-contained)", "model",
                       choices=SAVE_MODES)
    trainable: str | None = option(
        None, "what trains besides the head and final norm: nothing (last-layer), the last "
        "block, the last --trainable-blocks blocks, all blocks, or LoRA adapters (default: "
        "the model's recipe, last-N-blocks)", "trainable layers", recipe=True,
        choices=TRAINABLE_POLICIES, label="trainable policy")
    trainable_blocks: int = option(
        1, "how many top blocks to fine-tune (last-N-blocks), or to give LoRA adapters (lora; "
        "default: all)", "trainable layers", recipe=True, minimum=0, metavar="N")
    train_final_norm: bool = option(True, "keep the final norm frozen (default: it trains with "
                                    "the head)", "trainable layers", recipe=True,
                                    in_config=True)
    train_embeddings: bool = option(False, "also train the token (and position) embeddings",
                                    "trainable layers", recipe=True, in_config=True)
    lora_rank: int | None = option(None, f"LoRA rank (default {DEFAULT_RANK})", "LoRA",
                                   recipe=True)
    lora_alpha: float | None = option(
        None, f"LoRA alpha; updates are scaled by alpha/rank (default {DEFAULT_ALPHA:g})",
        "LoRA", recipe=True)
    lora_targets: str | None = option(
        None, f"comma-separated projections to adapt (default {DEFAULT_TARGETS}): attn, mlp, "
        "all, or q, k, v, attn.proj, fc, mlp.proj (GPT-2), gate, up, down (Llama)", "LoRA",
        recipe=True)
    lora_blocks: int | None = option(
        None, "LoRA adapters in the last N blocks (default: all); on the command line "
        "--trainable-blocks N with --trainable lora", "LoRA", recipe=True, flags=(),
        via="--trainable-blocks")
    merge_lora: bool = option(True, "save the LoRA adapters separately instead of merging them "
                              "into the weights (merge later with `gptcls merge`)", "LoRA")
    pooling: str = option(
        "last", "which outputs the head reads: last real token (GPT-2's default), last+mean "
        "(SmolLM2's default), mean, first, or last-position (the book's)", "inputs and head",
        flags=("--pooling", "--pool"), choices=POOLINGS, recipe=True, in_config=True)
    head_bias: bool = option(
        True, "train the head without a bias: with --pooling last, Llama, Qwen, Gemma 3 and "
        "Mistral runs then export to stock transformers classes (no trust_remote_code)",
        "inputs and head", recipe=True, in_config=True)
    max_length: int | None = option(None, "cap on tokens per text (instead of 512)",
                                    "inputs and head", recipe=True)
    context: str = option(
        "longest", "tokens per text: longest (default: the longest training text up to 512, "
        "else covering 98% of them), model (its context) or a number", "inputs and head",
        recipe=True)
    truncate: str = option("head", "keep the first (head, default) or last (tail) max-length "
                           "tokens of long texts", "inputs and head", choices=TRUNCATIONS,
                           recipe=True, in_config=True)
    long_text: str = option(
        "truncate", "texts longer than max-length: cut them (truncate, default) or train on "
        "half-overlapping windows, each with the text's label, and score validation/test texts "
        "by their windows' mean probability (chunk; the run then predicts that way by default)",
        "inputs and head", choices=LONG_TEXTS, in_config=True)
    causal_mask: bool = option(True, "let every token attend to every real token "
                               "(bidirectional)", "inputs and head", recipe=True)
    threshold: float | None = option(None, "binary tasks: predict the second label when its "
                                     "probability >= this", "inputs and head")
    max_fpr: float | None = option(None, "binary tasks: choose the threshold on validation for "
                                   "this false-positive rate", "inputs and head")
    prior: str | None = option(None, "class prior to decide at: train, source (before balancing) "
                               "or spam=0.13,ham=0.87 (default: train for the chapter, source "
                               "for your data); binary: the threshold best there", "inputs and "
                               "head")
    device: str = option("auto", "auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, "
                         "mps", "speed and runtime")
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"run": RunOptions, "data": DataOptions, "train": TrainConfig}


OPTIONS: dict[str, Option] = {o.name: o for section, cls in SECTIONS.items()
                              for o in declared(section, cls)}
assert len(OPTIONS) == sum(len(declared(s, c)) for s, c in SECTIONS.items()), "duplicate names"
# The data-reading options evaluate shares with train.
READ_OPTIONS = ("data", "format", "text_column", "label_column", "encoding", "strict",
                "normalize_labels", "no_header", "label_level", "label_names")


def coerce(name: str, value: Any) -> Any:
    """`value` as option `name`'s type (from the CLI, YAML, --set or Python); None stays None."""
    o = OPTIONS[name]
    if value is None:
        return None
    if o.type is tuple:
        if isinstance(value, str):
            return parse_fractions(value)
        fractions = tuple(float(x) for x in value)
        check_fractions(fractions)
        return fractions
    if o.type is bool:
        if not isinstance(value, bool):
            raise GptclsError(f"{o.label} must be true or false, got {value!r}")
        return value
    if o.type in (int, float) and not isinstance(value, bool):
        try:
            number = o.type(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and (o.type is float or float(value) == number):
            return number
    if o.type is str and isinstance(value, (str, int, Path)) and not isinstance(value, bool):
        return str(value)
    kind = {int: "an integer", float: "a number", str: "text"}[o.type]
    raise GptclsError(f"{o.label} must be {kind}, got {value!r}")


def check_names(names: Any) -> None:
    unknown = sorted(set(names) - set(OPTIONS))
    if unknown:
        raise GptclsError(f"unknown option(s) {', '.join(unknown)}; valid options: "
                          f"{', '.join(sorted(OPTIONS))}")


def build_options(values: Mapping[str, Any], out: str | Path) -> RunOptions:
    parts: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for name, value in values.items():
        parts[OPTIONS[name].section][name] = value
    return RunOptions(out=Path(out), data=DataOptions(**parts["data"]),
                      train=TrainConfig(**parts["train"]), **parts["run"])


def value(opts: RunOptions, name: str) -> Any:
    o = OPTIONS[name]
    return getattr(opts if o.section == "run" else getattr(opts, o.section), name)


def to_dict(opts: RunOptions) -> dict[str, Any]:
    """Every option's value, flat and JSON-ready (metrics.json's train_config, resume)."""
    return {name: list(v) if isinstance(v := value(opts, name), tuple) else v
            for name in OPTIONS}


def from_dict(d: Mapping[str, Any], out: str | Path) -> RunOptions:
    """Inverse of to_dict (no recipe: the values are the resolved ones; missing: default)."""
    check_names(d)
    return build_options({k: coerce(k, v) for k, v in d.items() if v is not None}, out)


def config_fields(opts: RunOptions) -> dict[str, Any]:
    """The options a run directory's config.json records as they are."""
    return {o.name: value(opts, o.name) for o in OPTIONS.values() if o.in_config}


def check_values(opts: RunOptions) -> None:
    """Choices, ranges and forms: every check that needs no model, no data and no torch."""
    for o in OPTIONS.values():
        v = value(opts, o.name)
        if v is None:
            continue
        if o.choices and v not in o.choices:
            raise GptclsError(f"unknown {o.label} {v!r}; choose one of: {', '.join(o.choices)}")
        if o.minimum is not None and v < o.minimum:
            raise GptclsError(f"{o.name} must be at least {o.minimum:g}, got {v}")
        if o.below is not None and v >= o.below:
            raise GptclsError(f"{o.name} must be below {o.below:g}, got {v}")
    if opts.context not in CONTEXTS:
        parse_context(opts.context)
    if not opts.merge_lora and opts.trainable != "lora":
        raise GptclsError("--no-merge-lora needs --trainable lora")
    if opts.data.label_names is not None:
        if opts.data.multi_label:
            raise GptclsError("--label-names is for single-label data, not --multi-label")
        from gptcls.data.label_names import parse_label_names

        parse_label_names(opts.data.label_names, opts.data.normalize_labels)  # its form


def parse_context(context: str | int) -> int:
    try:
        n = int(context)
    except ValueError:
        n = 0
    if n <= 0:
        raise GptclsError(f"--context must be longest, model or a positive number of tokens, "
                          f"got {context!r}")
    return n


def default_run_dir(given: Mapping[str, Any]) -> Path:
    """runs/<the data file's name without extension> (the training file's with --train);
    runs/sms-spam for the SMS Spam Collection download."""
    source = given.get("data") or given.get("train")
    if not source:
        return Path("runs/sms-spam")
    from gptcls.data.formats.text import inner_path

    return Path("runs") / inner_path(Path(str(source))).stem  # train.csv.gz -> train
