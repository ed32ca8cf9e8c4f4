"""`gptcls grid`: train every combination of a few settings and tabulate them like the book.

Chapter 6's bonus table changes one design choice at a time (token position, trainable layers,
context length, ...). A grid makes such a table reproducible: each combination is an ordinary
run directory, a failed run becomes a row with its error instead of ending the grid, and a rerun
reuses the runs that finished with the same settings, so a killed grid resumes where it stopped.
Keys are `gptcls train`'s option names (gptcls.options.OPTIONS), so options added to training are
grid keys at once.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcls.errors import GptclsError
from gptcls.log import line_logger

SETTINGS_FILE = "grid-settings.json"
CONFIG_KEYS = {"base", "grid", "out"}
# The book's columns (label in grid.md, name in grid.csv), then the varying settings.
BOOK_COLUMNS = [("model", "model"), ("weights", "weights"), ("token position", "token_position"),
                ("trainable layers", "trainable_layers"), ("context length", "context_length"),
                ("train acc", "train_accuracy"), ("val acc", "validation_accuracy"),
                ("test acc", "test_accuracy"), ("test macro-F1", "test_macro_f1"),
                ("time (s)", "time_s")]
PERCENT = {"train_accuracy", "validation_accuracy", "test_accuracy", "test_macro_f1"}


@dataclass
class GridSpec:
    """Fixed settings (`base`) and, per varying key, the values to try (`grid`)."""

    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    out: str | None = None


def normalize_key(key: str) -> str:
    """`--trainable-blocks` and `trainable_blocks` name the same option."""
    return key.strip().lstrip("-").replace("-", "_")


def parse_value(text: str, quoted: bool = False) -> Any:
    """A --set value: quoted text stays a string; else None, a bool, an int, a float or text."""
    if quoted:
        return text
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def split_values(text: str) -> list[tuple[str, bool]]:
    """Split `a,"b,c",'d'` at commas outside quotes: [(text, was_quoted), ...]."""
    parts: list[tuple[str, bool]] = []
    buf, quote, quoted = "", "", False
    for ch in text:
        if quote:  # inside quotes everything is text, commas included
            quote, buf = ("", buf) if ch == quote else (quote, buf + ch)
        elif ch in "\"'" and not buf.strip():
            quote, quoted, buf = ch, True, ""
        elif ch == ",":
            parts.append((buf if quoted else buf.strip(), quoted))
            buf, quoted = "", False
        else:
            buf += ch
    if quote:
        raise GptclsError(f"unbalanced quote in --set value {text!r}")
    parts.append((buf if quoted else buf.strip(), quoted))
    return parts


def parse_set(items: Sequence[str]) -> dict[str, list[Any]]:
    """Repeated `--set key=a,b,c` -> {key: [a, b, c]} with typed values."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = normalize_key(key)
        if not sep or not key:
            raise GptclsError(f"--set expects KEY=VALUE[,VALUE...], got {item!r}")
        if key in grid:
            raise GptclsError(f"--set {key} given twice; list all its values in one --set")
        grid[key] = [parse_value(v, q) for v, q in split_values(values)]
    return grid


def load_config(path: str | Path) -> GridSpec:
    """A YAML file with `base:` (fixed settings), `grid:` (key: [values]) and optional `out:`."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise GptclsError(f"grid config not found: {p}")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise GptclsError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or set(doc) - CONFIG_KEYS:
        raise GptclsError(f"{p}: expected a mapping with keys {sorted(CONFIG_KEYS)}")
    base, grid = doc.get("base") or {}, doc.get("grid") or {}
    if not isinstance(base, dict) or not isinstance(grid, dict):
        raise GptclsError(f"{p}: 'base' and 'grid' must be mappings of option: value(s)")
    return GridSpec(base={normalize_key(str(k)): v for k, v in base.items()},
                    grid={normalize_key(str(k)): v if isinstance(v, list) else [v]
                          for k, v in grid.items()},
                    out=None if doc.get("out") is None else str(doc["out"]))


def build_spec(config: str | Path | None = None, sets: Sequence[str] = (),
               data: str | None = None) -> GridSpec:
    """The config file's settings, then `--set` (replaces a key's values), then `--data`."""
    spec = load_config(config) if config else GridSpec()
    for key, values in parse_set(sets).items():
        spec.base.pop(key, None)
        spec.grid[key] = values
    if data is not None:
        spec.grid.pop("data", None)
        spec.base["data"] = data
    return spec


def valid_keys() -> set[str]:
    """Every train option; not `out`: the grid sets it, one run directory per combination."""
    from gptcls.options import OPTIONS

    return set(OPTIONS)


def check_keys(keys: Sequence[str] | set[str]) -> None:
    valid = valid_keys()
    unknown = sorted(set(keys) - valid)
    if unknown:
        raise GptclsError(f"unknown grid key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(valid))}")


def combinations(spec: GridSpec) -> list[dict[str, Any]]:
    """The cartesian product of `spec.grid` in the order given, each merged over `spec.base`."""
    for key, values in spec.grid.items():
        if not values:
            raise GptclsError(f"grid key {key!r} has no values")
    keys = list(spec.grid)
    return [{**spec.base, **dict(zip(keys, combo, strict=True))}
            for combo in itertools.product(*(spec.grid[k] for k in keys))]


def options_for(settings: dict[str, Any], run_dir: Path):
    """RunOptions of one combination: its model's recipe, then the settings (None: recipe's)."""
    from gptcls.options import DEFAULT_MODEL
    from gptcls.recipes import options_with_recipe

    rest = dict(settings)
    model = rest.pop("model", None) or DEFAULT_MODEL
    return options_with_recipe(run_dir, str(model), **rest)


def validate(runs: Sequence[dict[str, Any]]) -> None:
    """Catch bad keys, unknown models and unbuildable options before anything trains."""
    from gptcls.training.pipeline import check_options

    if not runs:
        raise GptclsError("the grid is empty: give a config file or --set KEY=VALUES")
    check_keys({k for r in runs for k in r})
    for settings in runs:  # model, policy, LoRA, pooling, schedule, context, ...
        try:
            check_options(options_for(settings, Path(".")))
        except (TypeError, ValueError, GptclsError) as exc:
            raise GptclsError(f"grid settings {settings}: {exc}") from None


def varying_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every run, in first-seen order."""
    keys = list(dict.fromkeys(k for r in runs for k in r))
    return [k for k in keys if len({_jsonable(r.get(k)) for r in runs}) > 1]


def _jsonable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def run_name(index: int, width: int, settings: dict[str, Any], varying: Sequence[str]) -> str:
    """`07-pooling-first_lr-0.0001`: the index, then a short slug of the varying settings."""
    values = {k: settings.get(k) for k in varying}  # a path shows as its file name
    slug = "_".join(f"{k}-{Path(v).name if isinstance(v, str) else v}" for k, v in values.items())
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "-", slug).strip("-_")[:60] or "run"
    return f"{index:0{width}d}-{slug}"


def _completed(run_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run with these exact settings, else None (train it again)."""
    metrics, saved = run_dir / "metrics.json", run_dir / SETTINGS_FILE
    if not (metrics.is_file() and saved.is_file()):
        return None
    if _jsonable(json.loads(saved.read_text())) != _jsonable(json.loads(_jsonable(settings))):
        return None
    return json.loads(metrics.read_text())


def run_one(settings: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train one combination (or reuse its finished run); failures become a 'failed' row."""
    from gptcls.training.pipeline import run_training

    if (done := _completed(run_dir, settings)) is not None:
        return make_row(run_dir, settings, done, "reused")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)
    (run_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, default=str) + "\n")
    try:
        metrics = run_training(options_for(settings, run_dir))
    except Exception as exc:  # noqa: BLE001 - the grid records it and goes on
        (run_dir / "error.txt").write_text(traceback.format_exc())
        return make_row(run_dir, settings, None, "failed", f"{type(exc).__name__}: {exc}")
    (run_dir / "error.txt").unlink(missing_ok=True)
    return make_row(run_dir, settings, metrics, "ok")


def run_runs(runs: Sequence[dict[str, Any]], out: str | Path,
             names: Sequence[str] | None = None,
             log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Validate, then train each settings dict into `out/<name>`; write grid.md/.csv/.png."""
    log = log or line_logger(__name__)
    validate(runs)
    out, varying = Path(out), varying_keys(runs)
    width = max(2, len(str(len(runs))))
    names = list(names or [run_name(i, width, r, varying) for i, r in enumerate(runs, 1)])
    rows = []
    for i, (settings, name) in enumerate(zip(runs, names, strict=True), 1):
        log(f"grid [{i}/{len(runs)}] {name}: training")
        row = run_one(dict(settings), out / name)
        log(f"grid [{i}/{len(runs)}] {name}: {_progress(row)}")
        rows.append(row)
    write_outputs(rows, out, varying)
    return rows


def run_grid(spec: GridSpec, out: str | Path | None = None,
             log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Train the cartesian product of `spec` (see run_runs); out: argument, config, runs/grid."""
    return run_runs(combinations(spec), out or spec.out or "runs/grid", log=log)


def _progress(row: dict[str, Any]) -> str:
    if row["status"] == "failed":
        return f"FAILED ({row['error']})"
    return (f"{row['status']}, test accuracy {row['test_accuracy'] * 100:.2f}% "
            f"in {row['time_s']:.1f} s")


def make_row(run_dir: Path, settings: dict[str, Any], metrics: dict[str, Any] | None,
             status: str, error: str = "") -> dict[str, Any]:
    """One table row: the book's columns from the run's metrics (settings for a failed run)."""
    from gptcls.options import DEFAULT_MODEL

    m = metrics or {}
    test_report = m.get("reports", {}).get("test", {})
    return {
        "run": run_dir.name, "status": status, "error": error, "settings": settings,
        "model": m.get("model", settings.get("model") or DEFAULT_MODEL),
        "weights": m.get("weights", settings.get("weights") or "pretrained"),
        "token_position": m.get("pooling", settings.get("pooling") or "last"),
        "trainable_layers": _trainable_label(run_dir, settings, m),
        "context_length": m.get("max_length", settings.get("max_length")),
        "train_accuracy": m.get("train_accuracy"),
        "validation_accuracy": m.get("validation_accuracy"),
        "test_accuracy": m.get("test_accuracy"),
        "test_macro_f1": test_report.get("macro_f1"),
        "time_s": m.get("times", {}).get("total_s"),
    }


def _trainable_label(run_dir: Path, settings: dict[str, Any], m: dict[str, Any]) -> str:
    """'last 2 blocks', 'head only', 'all 12 blocks', or the named policy (lora, all, ...)."""
    config = _run_config(run_dir) if m else {}  # a failed run's folder may hold an old one
    policy = config.get("trainable") or settings.get("trainable") or m.get("trainable")
    n = m.get("trainable_blocks", config.get("trainable_blocks", settings.get("trainable_blocks")))
    if isinstance(policy, str) and policy not in ("last-N-blocks", "last-block"):
        return policy
    if n is None:
        return "recipe"
    n_layers = config.get("model", {}).get("n_layers")
    if n == 0:
        return "head only"
    if n_layers is not None and n == n_layers:
        return f"all {n} blocks"
    return f"last {n} block{'s' if n != 1 else ''}"


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The run's config.json ({} before a run saved one)."""
    try:
        return dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "–"
    if name in PERCENT:
        return f"{value * 100:.2f}%"
    if name == "time_s":
        return f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _extra_keys(varying: Sequence[str]) -> list[str]:
    return [k for k in varying if k not in ("model", "weights", "pooling")]  # book columns


def markdown_table(rows: Sequence[dict[str, Any]], varying: Sequence[str] = ()) -> str:
    """The book's columns, then each varying setting, then the run's status."""
    extra = _extra_keys(varying)
    head = ["run", *(label for label, _ in BOOK_COLUMNS), *extra, "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        status = r["status"] if r["status"] != "failed" else f"failed: {r['error']}"
        cells = [r["run"], *(_cell(k, r[k]) for _, k in BOOK_COLUMNS),
                 *(_cell(k, r["settings"].get(k)) for k in extra), _cell("status", status[:120])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[dict[str, Any]], path: Path, varying: Sequence[str] = ()) -> None:
    extra = _extra_keys(varying)
    head = ["run", *(k for _, k in BOOK_COLUMNS), *extra, "status", "error"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            w.writerow([r["run"], *(r[k] for _, k in BOOK_COLUMNS),
                        *(r["settings"].get(k) for k in extra), r["status"], r["error"]])


def plot_rows(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Test accuracy per run as horizontal bars (failed runs: an empty bar marked 'failed')."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; never pops up a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * max(len(rows), 1)))
    names = [r["run"] for r in rows][::-1]
    values = [(r["test_accuracy"] or 0.0) * 100 for r in rows][::-1]
    bars = ax.barh(names, values, color="tab:blue")
    for bar, r in zip(bars, rows[::-1], strict=True):
        text = "failed" if r["test_accuracy"] is None else f"{r['test_accuracy'] * 100:.2f}%"
        ax.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, text,
                va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("Test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(rows: Sequence[dict[str, Any]], out: Path,
                  varying: Sequence[str] = ()) -> list[Path]:
    """grid.md, grid.csv and grid.png in `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "grid.md", out / "grid.csv", out / "grid.png"]
    paths[0].write_text(markdown_table(rows, varying) + "\n", encoding="utf-8")
    write_csv(rows, paths[1], varying)
    plot_rows(rows, paths[2])
    return paths
