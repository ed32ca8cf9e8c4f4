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
