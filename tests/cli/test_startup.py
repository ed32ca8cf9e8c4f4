"""Help, version and argument errors answer without importing torch (a fresh interpreter each)."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from gptcls.cli.main import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "numpy", "transformers") if m in sys.modules)
print("EXIT", code, "HEAVY", ",".join(heavy) or "-")
"""


def _probe(argv: list[str]) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                         text=True, timeout=120)
    last = out.stdout.strip().splitlines()[-1]
    return last, out.stderr


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"],
                                  ["classify", "--help"], ["grid", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    last, _ = _probe(argv)
    assert last == "EXIT 0 HEAVY -", last


@pytest.mark.parametrize("argv, message", [
    (["train", "--pooling", "max"], "invalid choice: 'max'"),
    (["train", "--epochs", "many"], "invalid int value: 'many'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["classify"], "the following arguments are required: run_dir"),
    (["evaluate", "RUN"], "evaluate: which labelled file? gptcls evaluate RUN_DIR FILE"),
    (["evaluate", "RUN", "a.csv", "--data", "b.csv"], "two labelled files (a.csv and --data"),
    (["nope"], "invalid choice: 'nope'"),
    # option values argparse cannot check: the schema's checks, still before torch
    (["train", "--context", "long"], "--context must be longest, model or a positive number"),
    (["train", "--grad-accum", "0"], "grad_accum must be at least 1, got 0"),
    (["train", "--no-padding", "--batch-size", "8"], "--no-padding means batches of one text"),
    (["train", "--trainable", "all", "--trainable-blocks", "2"], "--trainable-blocks goes with"),
    (["train", "--split", "0.5,0.6"], "need 3 split fractions"),
    (["train", "--label-names", "1World"], "--label-names '1World': give CODE=NAME pairs"),
])
def test_argument_errors_do_not_import_torch(argv, message):
    last, err = _probe(argv)
    assert last == "EXIT 2 HEAVY -", (last, err)
    assert message in err and "Traceback" not in err


def test_version_is_fast_in_a_subprocess():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "gptcls", "--version"],
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.startswith("gptcls ")
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "numpy" not in imported
