"""`gptcls train --search`: the space and its order, the budget, one trunk pass, the choice on
validation only, and the winner as the run (gpt2-tiny, random weights, a slice of the SMS file)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from gptcls.classifier.model import ClassifierModel
from gptcls.recipes import options_with_recipe
from gptcls.training import search
from gptcls.training.search import Try, TryResult


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the tiny model's ops are too small to share, and two threads on a
    busy machine wait on each other (several times slower); the results do not change."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def files(sms_path, tmp_path_factory) -> dict[str, Path]:
    """train / validation / test CSVs from the SMS file, and the test file with its labels
    shuffled."""
    rows = [tuple(line.rstrip("\n").split("\t", 1)) for line in
            sms_path.read_text(encoding="utf-8").splitlines(keepends=True)[:300]]
    d = tmp_path_factory.mktemp("search-data")
    parts = {"train": rows[:150], "validation": rows[150:220], "test": rows[220:]}
    for name, part in parts.items():
        _write_csv(d / f"{name}.csv", part)
    labels = [label for label, _ in parts["test"]]
    random.Random(0).shuffle(labels)
    assert labels != [label for label, _ in parts["test"]]
    _write_csv(d / "test-shuffled.csv", [(lab, text) for lab, (_, text) in
                                          zip(labels, parts["test"], strict=True)])
    return {name: d / f"{name}.csv" for name in (*parts, "test-shuffled")}


def _small_space(opts, n_layers):
    """Blocks 1 and 2 x the three poolings at the recipe's learning rates: 6 tries."""
    return [t for t in REAL_SPACE(opts, n_layers)
            if t.lr == opts.train.lr and t.head_lr is None]


REAL_SPACE = search.search_space


def _options(files: dict[str, Path], out: Path, test: str = "test", **given):
    return options_with_recipe(
        out, "gpt2-tiny", weights="random", train=str(files["train"]),
        validation=str(files["validation"]), test=str(files[test]), epochs=2, lr=1e-3,
        batch_size=8, eval_freq=1000, prior="train", precision="fp32", search=True, **given)


def _run(files, out: Path, test: str = "test", **given) -> dict:
    from gptcls.training.pipeline import run_training

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "search_space", _small_space)
        return run_training(_options(files, out, test, **given))


def _table(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / search.SEARCH_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def searched(files, tmp_path_factory):
    """One searched run, counting the texts that went through a trunk."""
    counted = {"texts": 0}
    real_trunk = ClassifierModel.trunk

    def counting_trunk(self, idx, lengths=None):
        counted["texts"] += idx.shape[0]
        return real_trunk(self, idx, lengths)

    out = tmp_path_factory.mktemp("search") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ClassifierModel, "trunk", counting_trunk)
        metrics = _run(files, out)
    return out, metrics, counted["texts"]


def test_the_table_holds_every_try_and_the_winner_is_the_best_on_validation(searched):
    out, metrics, _ = searched
    rows = _table(out)
    assert len(rows) == 6 == metrics["search"]["tries"]
    assert not metrics["search"]["stopped_by_budget"]
    first = rows[0]  # the recipe (with the given --lr) comes first
    assert (first["trainable_blocks"], first["pooling"], float(first["lr"])) == ("1", "last",
                                                                                 1e-3)
    assert {(r["trainable_blocks"], r["pooling"]) for r in rows} == {
        (b, p) for b in ("1", "2") for p in ("last", "last+mean", "mean")}
    best = max(rows, key=lambda r: (float(r["val_macro_f1"]), -float(r["val_loss"])))
    assert [r["chosen"] for r in rows].count("1") == 1 and best["chosen"] == "1"
    chosen = metrics["search"]["chosen"]
    assert (str(chosen["trainable_blocks"]), chosen["pooling"]) == (best["trainable_blocks"],
                                                                    best["pooling"])
    assert metrics["search"]["val_macro_f1"] == pytest.approx(float(best["val_macro_f1"]),
                                                              abs=1e-6)
    config = json.loads((out / "config.json").read_text())
    assert config["pooling"] == best["pooling"]
    assert config["trainable_blocks"] == int(best["trainable_blocks"])
    tc = metrics["train_config"]
    assert (tc["pooling"], tc["trainable_blocks"], tc["lr"], tc["early_stopping"]) == (
        best["pooling"], int(best["trainable_blocks"]), float(best["lr"]), "val_f1")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["search"]["chosen"] == chosen and saved["search"]["line"].startswith(
        "search: 6 tries in ")
    # The run's model is the winning try: its validation accuracy is the row's.
    assert metrics["final"]["validation"]["accuracy"] == pytest.approx(
        float(best["val_accuracy"]), abs=1e-6)


def test_the_saved_run_predicts_as_the_winning_try_scored(searched, files):
    from gptcls.classifier.classifier import Classifier

    out, metrics, _ = searched
    with files["validation"].open(newline="") as f:
        val = list(csv.DictReader(f))
    clf = Classifier.load(out, device="cpu", precision="fp32")
    probs = clf.predict_proba([r["text"] for r in val])
    labels = metrics["labels"]
    acc = np.mean([labels[i] == r["label"] for i, r in zip(probs.argmax(1), val, strict=True)])
    # Loading runs the chosen blocks' own trunk instead of the shared cache + frozen blocks:
    # the same arithmetic up to float rounding (at most one borderline text may flip).
    assert abs(acc - metrics["final"]["validation"]["accuracy"]) <= 1 / len(val) + 1e-9


def test_the_trunk_pass_runs_once_for_every_try(searched, files):
    out, metrics, texts = searched
    distinct = 0
    for name in ("train", "validation", "test"):
        with (out / f"{name}.csv").open(newline="") as f:
            distinct += len({r["text"] for r in csv.DictReader(f)})
    # Every split's distinct texts once (cached below 2 blocks, the deepest try), plus the
    # probe's sample; a pass per try would be 6 times as many, one per block count twice.
    assert distinct <= texts <= distinct + search.PROBE_TEXTS
    assert metrics["search"]["trunk_passes"] == 1 and metrics["search"]["trunk_depth"] == 0


def test_test_labels_play_no_part_in_the_choice(searched, files, tmp_path):
    out, metrics, _ = searched
    shuffled = _run(files, tmp_path / "shuffled", test="test-shuffled")
    assert shuffled["search"]["chosen"] == metrics["search"]["chosen"]
    keys = ("trainable_blocks", "pooling", "val_macro_f1", "val_loss", "chosen")
    assert [[r[k] for k in keys] for r in _table(tmp_path / "shuffled")] == [
        [r[k] for k in keys] for r in _table(out)]
    changed = [(tmp_path / "shuffled" / "test.csv").read_text(), (out / "test.csv").read_text()]
    assert changed[0] != changed[1]  # the run did see other test labels


def test_a_small_budget_stops_after_the_first_try(files, tmp_path, monkeypatch):
    """Each try made to look 100 s long: with 150 s the second would pass the budget."""
    offset = {"s": 0.0}
    real_clock, real_evaluate = search.clock, search.evaluate

    def slow_evaluate(*args, **kwargs):  # called once per try, at its end
        offset["s"] += 100.0
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(search, "clock", lambda: real_clock() + offset["s"])
    monkeypatch.setattr(search, "evaluate", slow_evaluate)
    metrics = _run(files, tmp_path / "run", search_budget=150)
    assert len(_table(tmp_path / "run")) == 1
    s = metrics["search"]
    assert s["tries"] == 1 and s["stopped_by_budget"] and s["seconds"] <= 150
    assert "stopped by --search-budget 150 s" in s["line"]


def test_a_budget_too_small_for_one_try_is_one_line_and_writes_nothing(files, tmp_path,
                                                                       capsys):
    from gptcls.cli.main import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--train",
               str(files["train"]), "--validation", str(files["validation"]), "--test",
               str(files["test"]), "--out", str(out), "--search", "--search-budget", "0.001"])
    assert rc == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "--search-budget 0.001 s is too small for one try" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--trainable", "lora"], "drop --trainable lora"),
    (["--no-cache-trunk"], "drop --no-cache-trunk"),
])
def test_options_search_cannot_combine_with(files, tmp_path, capsys, flags, message):
    from gptcls.cli.main import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--train",
               str(files["train"]), "--validation", str(files["validation"]), "--test",
               str(files["test"]), "--out", str(out), "--search", *flags])
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()


def _result(setting: Try, f1: float, loss: float = 0.5) -> TryResult:
    return TryResult(setting, f1, 0.9, loss, 1, 2, 10.0, {"w": 1}, {})


def test_the_loop_stops_before_a_try_that_would_pass_the_budget(monkeypatch):
    space = [Try(1, "last", 1e-3, None), Try(2, "last", 1e-3, None),
             Try(1, "mean", 1e-3, None), Try(1, "last", 5e-4, None)]
    now = {"t": 0.0}
    monkeypatch.setattr(search, "clock", lambda: now["t"])

    def train_try(setting: Try) -> TryResult:
        now["t"] += 10.0  # each try takes 10 s
        return _result(setting, {"mean": 0.9}.get(setting.pooling, 0.5))

    results, best, stopped = search.search_loop(space, train_try, 25.0, 0.0, 2)
    # After two tries (20 s) the next is estimated at 10 s (same block count) or more.
    assert [r.setting for r in results] == space[:2] and stopped
    now["t"] = 0.0
    results, best, stopped = search.search_loop(space, train_try, 1000.0, 0.0, 2)
    assert len(results) == 4 and not stopped
    assert results[best].setting.pooling == "mean"
    assert [bool(r.state) for r in results] == [r is results[best] for r in results]


def test_tries_are_ordered_recipe_first_then_nearest_the_best():
    opts = options_with_recipe("out", "smollm2-135m-instruct-q4")
    space = search.search_space(opts, 30)
    assert space[0] == Try(4, "last+mean", 1e-4, 1e-3)  # the recipe
    assert {t.trainable_blocks for t in space} == {1, 2, 4}
    assert len(space) == 3 * 3 * 3 * 2
    order = [search.next_try(space, set(), None)]
    done = {order[0]}
    for _ in range(7):  # the recipe the best: its 7 one-option neighbours come next
        i = search.next_try(space, done, order[0])
        done.add(i)
        order.append(i)
    assert all(search.distance(space[i], space[0]) == 1 for i in order[1:])
    tiny = search.search_space(options_with_recipe("out", "gpt2-tiny"), 2)
    assert {t.trainable_blocks for t in tiny} == {1, 2}  # capped at the model's depth
    assert tiny[0] == Try(1, "last", 5e-5, None)


def test_time_estimates_scale_from_the_first_try():
    first = _result(Try(1, "last", 1e-3, None), 0.5)
    assert search.estimate_s(Try(1, "mean", 1e-3, None), [first], 4) == 10.0
    deeper = search.estimate_s(Try(4, "last", 1e-3, None), [first], 4)
    assert deeper == pytest.approx(10.0 * (4 + 8 + 1) / (4 + 2 + 1))
