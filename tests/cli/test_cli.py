"""The command line end to end on the real SMS file with a tiny model, and its error contract."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import main
from gptcls.errors import GptclsError


def test_train_writes_a_complete_run_directory(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.json", "train.csv", "validation.csv",
            "test.csv", "loss-plot.png", "loss-plot.pdf", "accuracy-plot.png",
            "accuracy-plot.pdf"} <= names
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["examples"] == {"train": 1045, "validation": 149, "test": 300}
    losses = m["history"]["val_losses"]
    assert losses[-1] < losses[0], losses  # validation loss went down
    assert m["trunk_cached"] is True
    for key in ("train_s", "trunk_cache_s", "final_eval_s", "total_s"):
        assert m["times"][key] > 0
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["labels"] == ["ham", "spam"] and cfg["pooling"] == "last"
    assert cfg["format_version"] == 2 and cfg["tokenizer"] == {"type": "tiktoken-gpt2"}
    assert cfg["save"] == "full"  # random weights cannot be found again: every weight stored


def test_classify_prints_label_and_probability(tiny_run, capsys):
    assert main(["classify", str(tiny_run), "Free entry! Text WIN now", "see you soon"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        label, prob, _text = line.split("\t")
        assert label in ("ham", "spam") and 0.5 <= float(prob) <= 1.0


def test_classify_reads_stdin_and_files(tiny_run, tmp_path, capsys, monkeypatch):
    f = tmp_path / "msgs.txt"
    f.write_text("hello there\n\nCall now to claim\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    assert main(["classify", str(tiny_run), "-", "--file", str(f)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in out] == ["from stdin", "hello there",
                                                      "Call now to claim"]


def test_python_api_matches_the_cli_preprocessing(tiny_run):
    clf = Classifier.load(tiny_run, device="cpu")
    texts = ["Free entry! Text WIN now", "see you soon", "x" * 5000]
    probs = clf.predict_proba(texts)
    assert probs.shape == (3, 2)
    torch.testing.assert_close(torch.from_numpy(probs.sum(1)), torch.ones(3))
    # Batched prediction equals one-at-a-time prediction (no dependence on the batch).
    single = [clf.predict_proba([t])[0] for t in texts]
    torch.testing.assert_close(torch.from_numpy(probs), torch.from_numpy(np.stack(single)),
                               atol=1e-5, rtol=0)
    assert clf.predict(texts) == [clf.labels[int(p.argmax())] for p in probs]


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/nonexistent/file", "--model", "gpt2-tiny", "--weights", "random"],
     "not found"),
    (["train", "--model", "gpt5"], "unknown model preset 'gpt5'"),
    (["classify", "/nonexistent/run", "hi"], "run directory not found"),
    (["classify", "RUN", ""], "empty"),
    (["classify", "RUN"], "no texts to classify"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tiny_run, capsys):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptcls: error:") and message in err and "\n" not in err


def test_empty_data_file_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert main(["train", "--data", str(empty), "--model", "gpt2-tiny", "--weights", "random",
                 "--out", str(tmp_path / "run")]) == 2
    assert "gptcls: error:" in capsys.readouterr().err


def test_incomplete_and_newer_run_directories_are_refused(tiny_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_run / "config.json").read_text())
    assert main(["classify", str(broken), "hi"]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err
    newer = tmp_path / "newer"
    newer.mkdir()
    cfg = json.loads((tiny_run / "config.json").read_text())
    cfg["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(cfg))
    (newer / "model.safetensors").write_bytes((tiny_run / "model.safetensors").read_bytes())
    assert main(["classify", str(newer), "hi"]) == 2
    assert "upgrade gptcls" in capsys.readouterr().err


def test_console_script_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "gptcls", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("gptcls ")


def test_generate_with_random_tiny_weights(capsys):
    assert main(["generate", "Every effort moves you", "--model", "gpt2-tiny", "--weights",
                 "random", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("Every effort moves you")


def test_repeated_texts_are_classified_once_and_get_identical_probabilities(tiny_run):
    clf = Classifier.load(tiny_run, device="cpu")
    texts = ["win cash now", "lunch?", "win cash now", "see you", "lunch?"]
    calls = []
    forward = clf.model.forward
    clf.model.forward = lambda x, lengths: (calls.append(x.shape[0]), forward(x, lengths))[1]
    probs = clf.predict_proba(texts)
    assert sum(calls) == 3
    np.testing.assert_array_equal(probs[0], probs[2])
    np.testing.assert_array_equal(probs[1], probs[4])
    assert probs.shape == (5, 2)


def test_bf16_inference_is_close_to_fp32(tiny_run):
    texts = ["Free entry! Text WIN now", "see you soon", "call me when you land"]
    fp32 = Classifier.load(tiny_run, device="cpu").predict_proba(texts)
    bf16 = Classifier.load(tiny_run, device="cpu", precision="bf16").predict_proba(texts)
    assert np.abs(fp32 - bf16).max() < 0.05
    with pytest.raises(GptclsError, match="unknown precision 'fp8'"):
        Classifier.load(tiny_run, device="cpu", precision="fp8")


def test_classify_takes_texts_after_options(tiny_run, capsys):
    """`classify RUN --long-text chunk "TEXT"` (the README's order): the texts after an option
    are classified, in order; an unknown option is still refused (exit 2)."""
    assert main(["classify", str(tiny_run), "--long-text", "chunk", "win cash", "hello"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[2] for ln in lines] == ["win cash", "hello"]
    with pytest.raises(SystemExit) as exc:
        main(["classify", str(tiny_run), "--bogus", "x"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus x" in capsys.readouterr().err


def test_train_classifies_the_chapter_examples_only_for_spam_and_ham(tmp_path, caplog):
    """`gptcls train` without --classify: the chapter's two SMS for a spam/ham run, the first
    two test texts (true labels logged) for any other labels, nothing without a test split."""
    import logging

    from gptcls.cli.common import EXAMPLES
    from gptcls.cli.train import default_examples
    from gptcls.data.examples import Example
    from gptcls.data.splits import write_split_csv

    assert default_examples(["Ham", "SPAM"], tmp_path) == EXAMPLES
    assert default_examples(["world", "sports"], tmp_path) == []  # no test.csv
    rows = [Example("Stocks fall\nMarkets slide", "business"), Example("Cup final", "sports"),
            Example("Election day", "world")]
    write_split_csv(tmp_path / "test.csv", rows, ["business", "sports", "world"])
    with caplog.at_level(logging.INFO, logger="gptcls"):
        texts = default_examples(["business", "sports", "world"], tmp_path)
    assert texts == ["Stocks fall\nMarkets slide", "Cup final"]
    assert "true labels: business, sports" in caplog.text
