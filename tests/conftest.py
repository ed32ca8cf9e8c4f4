"""Shared fixtures: the real SMS file (never copied into the repo) and one trained tiny run."""

import os
from pathlib import Path

import pytest
from helpers import SMS_PATH

# "auto" precision is fp32 on every machine the suite runs on, in this process and the ones it
# starts (CLI, server, torchrun): the parity checks compare fp32 paths. The bf16 paths are
# tested by pretending the CPU has fast bf16 (monkeypatching gptcls.device.cpu_has_native_bf16).
os.environ["GPTCLS_BF16"] = "0"


@pytest.fixture(scope="session")
def sms_path() -> Path:
    assert SMS_PATH.is_file(), (
        f"the real SMS Spam Collection is expected at {SMS_PATH} "
        "(../shared/data/sms_spam_collection/ beside the repository)")
    return SMS_PATH


@pytest.fixture(scope="session")
def tiny_run(sms_path, tmp_path_factory) -> Path:
    """A gpt2-tiny classifier trained for 2 epochs on the real SMS data through the CLI.
    --prior train: decisions by argmax, as the tests of the prediction paths expect (the
    default for a data file, the source prior's threshold, is tested in tests/evaluation)."""
    from gptcls.cli.main import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
               "--out", str(out), "--epochs", "2", "--lr", "1e-3", "--prior", "train",
               "--classify"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_clf(tiny_run):
    """The tiny run loaded for prediction on the CPU."""
    from gptcls.classifier.classifier import Classifier

    return Classifier.load(tiny_run, device="cpu", precision="fp32")  # exact parity tests


@pytest.fixture(scope="session")
def tiny_test_texts(tiny_run) -> list[str]:
    """The texts of the tiny run's test split, in order."""
    import csv

    with (tiny_run / "test.csv").open(newline="") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and two threads on a shared CPU mostly spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
