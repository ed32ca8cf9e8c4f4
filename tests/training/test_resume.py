"""Gradient accumulation and exact resumption from checkpoints (in-process and after kill -9)."""

import copy

import pytest
import torch
from helpers import CPU, synthetic, tiny_classifier

from gptcls.errors import GptclsError
from gptcls.options import TrainConfig
from gptcls.training.checkpoint import Checkpointer
from gptcls.training.loop import _step, make_optimizer, make_scheduler, train
from gptcls.training.trunk_cache import build_store


def test_accumulated_micro_batches_equal_one_big_batch():
    ids, labels = synthetic(16)
    base = tiny_classifier("llama-tiny", blocks=2, seed=3)
    store = build_store(base, ids, labels, True, CPU)
    cfg = TrainConfig(lr=1e-2)
    results = []
    for group in ([list(range(8))], [list(range(4)), list(range(4, 8))]):
        model = copy.deepcopy(base)
        opt = make_optimizer(model, cfg)
        loss = _step(model, store, group, opt, make_scheduler(opt, cfg, 10), CPU, None)
        results.append((loss, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


class Crash(Exception):
    pass


class CrashingCheckpointer(Checkpointer):
    """Dies right after its n-th save, as a killed process would after writing it."""

    def __init__(self, *args, crash_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.saves, self.crash_after = 0, crash_after

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.saves += 1
        if self.saves == self.crash_after:
            raise Crash


@pytest.mark.parametrize("crash_after", [2, 4, 5])  # mid-epoch, mid-epoch 2, an epoch end
def test_resume_after_a_crash_gives_the_uninterrupted_run(tmp_path, crash_after):
    ids, labels = synthetic(96)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, eval_freq=4, eval_iter=2, seed=7,
                      grad_accum=2, lr_schedule="cosine", warmup_steps=2,
                      early_stopping="val_loss")

    def run(checkpoint):
        model = tiny_classifier(blocks=1, seed=2)
        tr = build_store(model, ids[:64], labels[:64], True, CPU)
        va = build_store(model, ids[64:], labels[64:], True, CPU)
        hist = train(model, tr, va, cfg, CPU, log=lambda m: None, checkpoint=checkpoint)
        return hist, model

    ref_hist, ref_model = run(None)
    with pytest.raises(Crash):
        run(CrashingCheckpointer(tmp_path, every=3, fingerprint="f", crash_after=crash_after))
    hist, model = run(Checkpointer(tmp_path, every=3, fingerprint="f"))
    assert {k: v for k, v in hist.items() if k != "epoch_seconds"} == \
        {k: v for k, v in ref_hist.items() if k != "epoch_seconds"}
    for (name, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_checkpoint_of_other_data_is_refused(tmp_path):
    ids, labels = synthetic(32)
    model = tiny_classifier(blocks=1)
    tr = build_store(model, ids, labels, True, CPU)
    cfg = TrainConfig(epochs=1, batch_size=8, eval_freq=100)
    train(model, tr, tr, cfg, CPU, log=lambda m: None, checkpoint=Checkpointer(tmp_path, 2, "a"))
    with pytest.raises(GptclsError, match="fingerprint differs"):
        train(model, tr, tr, cfg, CPU, log=lambda m: None,
              checkpoint=Checkpointer(tmp_path, 2, "b"))
    with pytest.raises(GptclsError, match="positive number of steps"):
        Checkpointer(tmp_path, 0)


def _gptcls(args, **kwargs):
    import os
    import subprocess
    import sys

    env = {**os.environ, "GPTCLS_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "gptcls", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_kill_9_mid_epoch_then_resume_ends_like_an_uninterrupted_run(sms_path, tmp_path):
    import json
    import signal
    import time

    from safetensors.torch import load_file

    data = tmp_path / "sms-head.tsv"  # the first 1,500 messages of the real file: ~400 balanced
    data.write_bytes(b"".join(sms_path.open("rb").readlines()[:1500]))
    args = ["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(data),
            "--format", "sms", "--epochs", "2", "--batch-size", "2", "--lr", "1e-3",
            "--checkpoint-every", "20",
            "--lr-schedule", "cosine", "--classify"]
    ref = _gptcls([*args, "--out", str(tmp_path / "ref")])
    assert ref.wait(timeout=600) == 0, ref.stdout.read()

    run = tmp_path / "run"
    proc = _gptcls([*args, "--out", str(run)])
    state = run / "checkpoint" / "train-state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it was killed"
    assert not (run / "metrics.json").exists()
    ckpt = torch.load(state, weights_only=True)["state"]
    assert ckpt["epoch"] == 0 and 0 < ckpt["batch"] < len(ckpt["order"])  # mid-epoch

    resumed = _gptcls(["train", "--resume", str(run), "--classify"])
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    assert "resuming" in out
    assert not (run / "checkpoint").exists()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "ref", run))
    assert a["final"] == b["final"]
    for key in ("train_losses", "val_losses", "train_accs", "val_accs", "steps"):
        assert a["history"][key] == b["history"][key], key
    wa, wb = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "ref", run))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=0, rtol=0, msg=k)


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_run, capsys):
    from gptcls.cli.main import main

    assert main(["train", "--resume", str(tiny_run)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
