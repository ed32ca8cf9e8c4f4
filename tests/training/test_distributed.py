"""torchrun with 2 CPU processes (gloo on 127.0.0.1) trains the same weights as 1 process."""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from gptcls.distributed import Dist, share


def test_share_splits_a_batch_without_overlap():
    idx = list(range(10, 17))
    parts = [share(idx, Dist(r, 3)) for r in range(3)]
    assert parts == [[10, 13, 16], [11, 14], [12, 15]]
    assert share(idx, Dist()) == idx


def test_two_processes_end_with_the_single_process_weights(sms_path, tmp_path):
    data = tmp_path / "sms-head.tsv"  # the first 1,500 messages of the real file
    data.write_bytes(b"".join(sms_path.open("rb").readlines()[:1500]))
    args = ["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(data),
            "--format", "sms", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3",
            "--classify"]
    env = {**os.environ, "GPTCLS_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "gptcls", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "gptcls", *args,
                          "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("Test accuracy:") == 1  # rank 0 alone reports
    wa, wb = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("one", "two"))
    assert wa.keys() == wb.keys()
    compared = 0
    for k in wa:
        if k.endswith("attn.k.bias"):
            # A key bias adds the same q.b to every score of a query, which softmax ignores:
            # its gradient is zero up to float noise, and Adam scales that noise into steps of
            # about lr/10, different in every summation order. What it computes is compared
            # below (losses); every other weight must match.
            continue
        torch.testing.assert_close(wa[k], wb[k], atol=1e-4, rtol=0, msg=k)
        compared += int(k.startswith("backbone.blocks.1.") or k.startswith("head."))
    assert compared >= 10  # the trainable top and head were really compared
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert (a["processes"], b["processes"]) == (1, 2)
    assert a["history"]["steps"] == b["history"]["steps"]
    for split in ("train", "validation", "test"):
        assert abs(a["final"][split]["loss"] - b["final"][split]["loss"]) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "sms-head.tsv", "two"]


def test_predict_under_torchrun_writes_the_single_process_file(tiny_run, tmp_path):
    import csv

    src = tmp_path / "in.csv"
    with (tiny_run / "test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:100]
    with src.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    env = {**os.environ, "GPTCLS_THREADS": "1"}
    outs = {}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone",
                                                  "--nproc-per-node", "2"])):
        outs[name] = tmp_path / f"{name}.csv"
        cmd = [sys.executable, *launcher, "-m", "gptcls", "predict", str(tiny_run), str(src),
               str(outs[name]), "--chunk-size", "16"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.count("wrote 100 rows") == 1  # rank 0 alone reports
    assert "by 2 processes" in res.stdout
    one, two = ([*csv.DictReader(outs[n].open(newline=""))] for n in ("one", "two"))
    assert [r["text"] for r in two] == [r["text"] for r in rows]  # input order kept
    assert [r["label"] for r in two] == [r["label"] for r in one]
    for a, b in zip(one, two, strict=True):
        assert abs(float(a["prob_spam"]) - float(b["prob_spam"])) < 1e-6
    assert not (tmp_path / "two.csv.partial").exists()
