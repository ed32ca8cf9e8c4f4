"""Atomic writes: whole files or none, with the mode open() would give (umask applies)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from gptcls.files import atomic_write, atomic_write_bytes, save_safetensors


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a" / "x.bin", b"data")
        save_safetensors(tmp_path / "y.safetensors", {"w": torch.ones(2)})
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "x.bin", tmp_path / "y.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"data"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_save_safetensors_round_trips_dtypes_and_metadata(tmp_path):
    from safetensors import safe_open

    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16),
               "c": torch.arange(6, dtype=torch.int64).reshape(2, 3), "d": torch.tensor(2.5)}
    save_safetensors(tmp_path / "t.safetensors", tensors, metadata={"format": "pt"})
    back = load_file(str(tmp_path / "t.safetensors"))
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    with safe_open(str(tmp_path / "t.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
