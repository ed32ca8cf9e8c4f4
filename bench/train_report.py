"""The tables of bench/train_speed.py (see its docstring): per-contender times, peak memory and
accuracy, and the speed-up of each gptcls contender over the book's code and transformers'."""

from __future__ import annotations

from gptcls.data.examples import SPLIT_NAMES as SPLITS  # ("train", "validation", "test")

OURS = ("gptcls", "gptcls-fp32", "gptcls-int8")
TITLES = {"gptcls": "gptcls (defaults)", "gptcls-fp32": "gptcls --precision fp32",
          "gptcls-int8": "gptcls --precision int8",
          "book": "book code (llms_from_scratch ch04/ch06)",
          "hf": "transformers GPT2ForSequenceClassification"}
TARGETS = {"book": 40.0, "hf": 4.0}  # minimum speed-up of gptcls, end-to-end wall time


def results_table(results: dict[str, dict]) -> list[str]:
    rows = ["| contender | setup s | train s | final eval s | save s | total s | peak RSS MB "
            "| train acc | val acc | test acc |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"| {TITLES[name]} | failed: {r['error']} |" + " |" * 8)
            continue
        save = f"{r['save_s']:.1f}" if "save_s" in r else "-"
        acc = " | ".join(f"{r['accuracy'][n] * 100:.2f}%" for n in SPLITS)
        rows.append(f"| {TITLES[name]} | {r['setup_s']:.1f} | {r['train_s']:.1f} "
                    f"| {r['eval_s']:.1f} | {save} | {r['total_s']:.1f} | {r['peak_rss_mb']:.0f} "
                    f"| {acc} |")
    return rows


def ratio_table(results: dict[str, dict]) -> list[str]:
    """Per gptcls contender that ran: the baselines' total (and training) time over its own,
    against TARGETS, and its test accuracy; then why a baseline has no ratio."""
    book, hf = TARGETS["book"], TARGETS["hf"]
    rows = ["| contender | trunk | total s | test acc | book / it, total | book / it, training "
            f"| >= {book:g}x | transformers / it, total | >= {hf:g}x |",
            "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for ours in OURS:
        r = results.get(ours, {})
        if "total_s" not in r:
            continue
        b, h = speedup(results.get("book", {}), r), speedup(results.get("hf", {}), r)
        rows.append(f"| {TITLES[ours]} | {r.get('trunk_precision', '?')} | {r['total_s']:.1f} "
                    f"| {r['accuracy']['test'] * 100:.2f}% | {times(b, 'total')} "
                    f"| {times(b, 'train')} | {met(b, book)} | {times(h, 'total')} "
                    f"| {met(h, hf)} |")
    if len(rows) == 2:
        rows.append("| no gptcls contender ran |" + " |" * 8)
    notes = [f"{TITLES[n]}: {why}" for n in ("book", "hf")
             if (why := absent(n, results)) is not None]
    return rows + ([""] + notes if notes else [])  # a blank line ends the markdown table


def speedup(base: dict, ours: dict) -> dict[str, float] | None:
    """The baseline's total and training seconds over ours; None if either has no times."""
    if "total_s" not in base or "total_s" not in ours:
        return None
    return {"total": base["total_s"] / ours["total_s"], "train": base["train_s"] / ours["train_s"]}


def times(ratio: dict[str, float] | None, key: str) -> str:
    return "-" if ratio is None else f"{ratio[key]:.1f}x"


def met(ratio: dict[str, float] | None, target: float) -> str:
    if ratio is None:
        return "-"
    return "met" if ratio["total"] >= target else "MISSED"


def absent(name: str, results: dict[str, dict]) -> str | None:
    """Why the baseline `name` gives no ratio (None: it ran)."""
    r = results.get(name)
    if r is None:
        return "not run (not in --contenders), so no ratio against it"
    if "error" in r:
        return (f"failed ({r['error']}), so no ratio against it; it needs the packages "
                "bash bench/setup.sh installs (llms-from-scratch, pandas, transformers)")
    return None
