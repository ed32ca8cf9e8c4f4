"""What `gptcls audit` writes and prints: audit.csv (probable label errors, ranked),
duplicates.csv (exact, near, conflicting, cross-split groups), summary.json, a one-screen text."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from gptcls.evaluation.audit_run import AuditResult

AUDIT_CSV, DUPLICATES_CSV, SUMMARY_JSON = "audit.csv", "duplicates.csv", "summary.json"
SHOW = 10  # probable label errors printed
_TEXT_WIDTH = 70


def where(result: AuditResult, i: int) -> str:
    """"row 12" or "test row 12"."""
    split = result.rows.splits[i]
    return f"{split + ' ' if split else ''}row {result.rows.rows[i]}"


def issue_records(result: AuditResult) -> list[dict[str, Any]]:
    """One dict per probable label error, most likely first (audit.csv's rows)."""
    rows, out = result.rows, []
    for rank, s in enumerate(result.issues, 1):
        rec: dict[str, Any] = {"rank": rank}
        if any(rows.splits):
            rec["split"] = rows.splits[s.row]
        rec |= {"row": rows.rows[s.row], "given": result.classes[s.given],
                "suggested": result.classes[s.suggested], "margin": round(s.margin, 4),
                "self_confidence": round(s.self_confidence, 4)}
        rec |= {f"p_{c}": round(float(p), 4)
                for c, p in zip(result.classes, result.probs[s.row], strict=True)}
        out.append(rec | {"text": rows.texts[s.row]})
    return out


def duplicate_records(result: AuditResult) -> list[dict[str, Any]]:
    """One dict per row of every duplicate group: kind, group number, where, label, text."""
    rows, out = result.rows, []
    kinds = [("conflict", result.dups.conflicts), ("exact", result.dups.exact),
             ("near", result.dups.near),
             ("cross-split", [sorted(i for ix in d.values() for i in ix) for d in result.shared])]
    for kind, groups in kinds:
        for g, members in enumerate(groups, 1):
            out += [{"kind": kind, "group": g, "split": rows.splits[i], "row": rows.rows[i],
                     "label": rows.labels[i], "text": rows.texts[i]} for i in members]
    return out


def summary(result: AuditResult) -> dict[str, Any]:
    rows, d = result.rows, result.dups
    pairs = Counter((result.classes[s.given], result.classes[s.suggested])
                    for s in result.issues)
    return {
        "rows": len(rows.texts), "classes": dict(sorted(Counter(rows.labels).items())),
        **result.info,
        "probable_label_errors": len(result.issues),
        "errors_by_labels": {f"{g} -> {s}": n for (g, s), n in pairs.most_common()},
        "top": [{k: v for k, v in r.items() if not k.startswith("p_")}
                for r in issue_records(result)[:SHOW]],
        "exact_duplicate_groups": len(d.exact),
        "exact_duplicate_rows": sum(len(g) for g in d.exact),
        "near_duplicate_groups": len(d.near), "near_duplicate_rows": sum(len(g) for g in d.near),
        "conflicting_label_groups": len(d.conflicts),
        "conflicting_label_rows": sum(len(g) for g in d.conflicts),
        "texts_shared_across_splits": len(result.shared),
    }


def write_audit(result: AuditResult, out: Path) -> dict[str, Any]:
    """audit.csv, duplicates.csv and summary.json under `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    head = ["rank", *(["split"] if any(result.rows.splits) else []), "row", "given",
            "suggested", "margin", "self_confidence", *(f"p_{c}" for c in result.classes),
            "text"]
    _write_csv(out / AUDIT_CSV, head, issue_records(result))
    _write_csv(out / DUPLICATES_CSV, ["kind", "group", "split", "row", "label", "text"],
               duplicate_records(result))
    s = summary(result)
    (out / SUMMARY_JSON).write_text(json.dumps(s, indent=2, ensure_ascii=False) + "\n")
    return s


def _write_csv(path: Path, head: list[str], records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, head)
        w.writeheader()
        w.writerows(records)


def summary_lines(result: AuditResult, s: dict[str, Any], out: Path) -> list[str]:
    """The one-screen summary."""
    i = result.info
    lines = [f"audited {s['rows']:,} rows, {len(result.classes)} classes "
             f"({', '.join(f'{k} {v:,}' for k, v in s['classes'].items())})",
             f"features: {i.get('backbone', '?')}, {i.get('pooling', '?')} pooling, frozen; "
             f"{i['folds']} folds; out-of-fold accuracy {i['oof_accuracy']:.2%}",
             f"probable label errors: {s['probable_label_errors']:,}" + (
                 f" ({'; '.join(f'{k} {v}' for k, v in s['errors_by_labels'].items())})"
                 if s["errors_by_labels"] else ""),
             f"exact duplicates: {s['exact_duplicate_rows']:,} rows in "
             f"{s['exact_duplicate_groups']:,} groups; near duplicates: "
             f"{s['near_duplicate_rows']:,} rows in {s['near_duplicate_groups']:,} groups; "
             f"same text, different labels: {s['conflicting_label_groups']:,} groups"]
    if any(result.rows.splits):
        lines.append(f"texts shared across splits: {s['texts_shared_across_splits']:,}")
    if result.issues:
        lines.append(f"top {min(SHOW, len(result.issues))} probable label errors "
                     "(given -> suggested, p_given):")
    for issue in result.issues[:SHOW]:
        text = " ".join(result.rows.texts[issue.row].split())
        text = text if len(text) <= _TEXT_WIDTH else text[:_TEXT_WIDTH - 3] + "..."
        lines.append(f"  {where(result, issue.row):>10}  {result.classes[issue.given]} -> "
                     f"{result.classes[issue.suggested]} ({issue.self_confidence:.3f})  {text}")
    lines.append(f"wrote {out / AUDIT_CSV}, {out / DUPLICATES_CSV}, {out / SUMMARY_JSON}")
    return lines
