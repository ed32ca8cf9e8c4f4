"""bench/quality.py, the quality harness (a benchmark, not a test): its splits, baselines and
target check on small data, no gptcls training."""

import csv
import json
import subprocess

import pytest
from helpers import bench_modules

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def harness():
    with bench_modules("quality", "quality_report", "common") as modules:
        yield modules


def test_sms_chapter_split_is_the_chapters(harness, tmp_path):
    quality, _, _ = harness
    (train, validation, test), what = quality.prepare("sms-chapter", None, tmp_path)
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)
    assert "1,045/149/300 rows, 2 labels" in what
    with (tmp_path / "sms-chapter" / "test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["text"], r["label"]) for r in rows] == [(e.text, e.label) for e in test]


def test_trec_fine_drops_rare_labels_and_keeps_test_apart(harness, tmp_path):
    quality, _, _ = harness
    (train, validation, test), what = quality.prepare("trec-fine", None, tmp_path)
    assert len(test) <= 499 and len(train) + len(validation) <= 5444
    assert "dropped (as gptcls does)" in what
    counts: dict[str, int] = {}
    for e in [*train, *validation, *test]:
        counts[e.label] = counts.get(e.label, 0) + 1
    assert min(counts.values()) >= 3  # nothing gptcls' loader would drop as a typo
    assert all(":" in e.label for e in test)
    assert 0.08 < len(validation) / (len(train) + len(validation)) < 0.12


def test_limit_samples_each_split(harness, tmp_path):
    quality, _, _ = harness
    (train, validation, test), _ = quality.prepare("ag-news", 50, tmp_path)
    assert (len(train), len(validation), len(test)) == (50, 50, 50)
    assert all("\n" in e.text for e in train)  # title and description joined


def test_baselines_are_tuned_on_validation_and_one_is_selected(harness):
    _, _, common = harness
    from gptcls.data.examples import Example

    words = {"spam": "win cash prize now free", "ham": "see you at lunch later"}
    data = [Example(f"{words[lab]} {i}", lab) for i in range(40) for lab in words]
    rows = common.all_baselines(data[:50], data[50:66], data[66:], positive="spam")
    assert len(rows) == 6 and sum(r["selected"] for r in rows) == 1
    best = max(r["validation_macro_f1"] for r in rows)
    assert next(r for r in rows if r["selected"])["validation_macro_f1"] == best
    for r in rows:
        assert r["C"] in common.C_GRID and r["accuracy"] == pytest.approx(1.0)
        assert (r["ece"] is None) == r["contender"].endswith("SVM")
        assert r["pos_f1"] == pytest.approx(1.0)


@pytest.mark.parametrize(("acc", "f1", "met"), [(0.993, 0.986, True), (0.992, 0.986, False),
                                                (0.993, 0.985, False)])
def test_target_is_both_error_rates_at_most_0_7_of_the_baselines(harness, acc, f1, met):
    _, report, _ = harness
    base = {"accuracy": 0.99, "macro_f1": 0.98}
    row = {"dataset": "sms-natural", "accuracy": acc, "macro_f1": f1, "n_test": 1000}
    assert report.target_check(row, base)[0] is met


def test_chapter_target_also_caps_errors_at_3_of_300(harness):
    _, report, _ = harness
    base = {"accuracy": 0.9, "macro_f1": 0.9}  # a weak baseline: the 3-of-300 rule decides
    four = {"dataset": "sms-chapter", "accuracy": 296 / 300, "macro_f1": 0.986, "n_test": 300}
    three = {**four, "accuracy": 297 / 300}
    assert report.target_check(four, base)[0] is False
    assert report.target_check(three, base)[0] is True


def test_render_marks_seeds_and_spreads(harness):
    _, report, _ = harness
    base = {"dataset": "d", "contender": "TF-IDF x", "seed": None, "C": 1.0, "selected": True,
            "accuracy": 0.9, "macro_f1": 0.9, "ece": 0.05, "train_s": 1.0,
            "predict_per_s": 1000.0, "n_test": 100}
    runs = [{"dataset": "d", "contender": "gptcls m", "seed": s, "accuracy": a, "macro_f1": a,
             "ece": 0.02, "train_s": 10.0, "predict_per_s": 50.0, "n_test": 100}
            for s, a in ((123, 0.95), (1, 0.92))]
    failed = {"dataset": "d", "contender": "gptcls m", "seed": 2, "error": "boom"}
    text = report.render([base, *runs, failed], {"d": "a dataset"}, ["d"])
    assert "| d | TF-IDF x (C=1) * | – | 90.00% |" in text
    assert "93.50% (92.00%–95.00%)" in text
    assert "123 PASS, 1 FAIL, 2 error" in text


def test_set_overrides_the_recipe_in_every_gptcls_run_and_names_the_contender(
        harness, tmp_path, monkeypatch):
    import gptcls.training.pipeline as pipeline

    quality, _, _ = harness
    args = quality.parse_args(["--models", "smollm2-135m-instruct-q4", "--set",
                               "trainable-blocks=2", "--set", "epochs=3", "--out",
                               str(tmp_path)])
    assert args.overrides == {"trainable_blocks": "2", "epochs": "3"}
    specs = []

    def fake_subprocess_run(cmd, **kw):  # the child's command line: its spec, as JSON
        specs.append(json.loads(cmd[cmd.index("--child") + 1]))
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(quality.subprocess, "run", fake_subprocess_run)
    row = quality.run_gptcls("sms-chapter", "smollm2-135m-instruct-q4", 1, args)
    assert row["contender"] == ("gptcls smollm2-135m-instruct-q4 --trainable-blocks 2 "
                                "--epochs 3")
    (spec,) = specs
    assert spec["set"] == {"trainable_blocks": "2", "epochs": "3"}
    assert spec["run_dir"].endswith("smollm2-135m-instruct-q4-seed1-trainable_blocks=2-epochs=3")
    seen = {}

    def fake_training(opts):
        seen.update(blocks=opts.trainable_blocks, epochs=opts.train.epochs, lr=opts.train.lr)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "run_training", fake_training)
    with pytest.raises(RuntimeError, match="stop here"):
        quality.child({**spec, "split_dir": str(tmp_path), "epochs": None, "weights": None})
    assert seen == {"blocks": 2, "epochs": 3, "lr": 1e-4}  # lr: the recipe's


def test_set_refuses_an_option_that_is_not_a_recipe_option(harness, capsys):
    quality, _, _ = harness
    with pytest.raises(SystemExit) as exc:
        quality.parse_args(["--set", "seed=2"])
    assert exc.value.code == 2
    assert "--set 'seed=2': give NAME=VALUE with a recipe option" in capsys.readouterr().err
