"""The Python API: `from gptcls import Classifier, train`, torch-free `import gptcls`, and the
README's example, executed."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import TESTS

README = TESTS.parent / "README.md"


def test_import_gptcls_is_torch_free_and_the_api_is_lazy():
    code = ("import sys, gptcls; assert 'torch' not in sys.modules, 'torch'; "
            "from gptcls import Classifier, train; assert 'torch' in sys.modules; "
            "print(Classifier.__module__, train.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["gptcls.classifier.classifier", "gptcls.api"]


def test_unknown_names_and_options_fail():
    import gptcls

    with pytest.raises(AttributeError, match="no attribute 'Trainer'"):
        gptcls.Trainer  # noqa: B018
    with pytest.raises(gptcls.GptclsError, match="unknown option"):
        gptcls.train(data="x.csv", out="never", epoch=3)


def _readme_python_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python section has one example"
    return blocks[0]


def test_readme_python_example_runs(sms_path, tmp_path, monkeypatch, capsys):
    code = _readme_python_block()
    assert "../shared/data/sms_spam_collection/SMSSpamCollection" in code
    code = code.replace('"../shared/data/sms_spam_collection/SMSSpamCollection"',
                        repr(str(sms_path)))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    run = tmp_path / "runs" / "python-demo"
    assert (run / "config.json").is_file() and (run / "metrics.json").is_file()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] in ("ham", "spam")  # one text, one label
    clf = namespace["clf"]
    assert clf.labels == ["ham", "spam"]
    probs = clf.predict_proba(["You won a prize! Call now", "Lunch at 1?"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_train_writes_the_same_run_directory_as_the_cli(sms_path, tmp_path, monkeypatch):
    from gptcls import Classifier, train
    from gptcls.cli.main import main

    data = tmp_path / "sms-head.tsv"
    data.write_bytes(b"".join(sms_path.open("rb").readlines()[:600]))
    monkeypatch.chdir(tmp_path)
    clf = train(data=data, model="gpt2-tiny", weights="random", epochs=1, batch_size=32,
                eval_freq=1000, pooling="mean", device="cpu")  # out: runs/sms-head
    assert isinstance(clf, Classifier)
    assert main(["train", "--data", str(data), "--out", "cli", "--model", "gpt2-tiny",
                 "--weights", "random", "--epochs", "1", "--batch-size", "32", "--eval-freq",
                 "1000", "--pool", "mean", "--device", "cpu", "--classify"]) == 0
    api, cli = tmp_path / "runs" / "sms-head", tmp_path / "cli"
    assert {p.name for p in api.iterdir()} == {p.name for p in cli.iterdir()}
    assert (api / "config.json").read_text() == (cli / "config.json").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (api, cli))
    assert a["train_config"] == b["train_config"] and a["final"] == b["final"]
    texts = ["Free entry! Text WIN now", "see you at six"]
    np.testing.assert_allclose(clf.predict_proba(texts),
                               Classifier.load(cli, device="cpu").predict_proba(texts), atol=1e-6)
