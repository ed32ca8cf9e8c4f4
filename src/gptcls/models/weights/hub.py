"""Models from the Hugging Face hub by repository ID (`--model Qwen/Qwen3-0.6B`), through
huggingface_hub: its cache (HF_HOME), resumed downloads, HF_HUB_OFFLINE, HF_ENDPOINT and the
login token (HF_TOKEN or `hf auth login`) apply. Only the files a model needs are fetched."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gptcls.errors import GptclsError

INDEX_FILE = "model.safetensors.index.json"  # a sharded checkpoint: names its shard files
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # the second names eos/pad/bos
# The hub's repository IDs: owner/name of letters, digits, "-", "_" and "."; no "--" or "..".
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9_][\w.-]*")
LOGIN_HINT = "log in with `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
LOCAL_HINT = "download it yourself and pass its local path as the model or weights"


def is_hub_id(name: str) -> bool:
    """`name` has the shape of a hub repository ID (the caller checks presets and paths first)."""
    return HUB_ID.fullmatch(name) is not None and ".." not in name and "--" not in name


def hub_download(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """One file of a hub repo, from the cache or the hub."""
    try:
        return hub_download_raw(repo_id, filename, revision)
    except Exception as exc:  # network, offline mode, missing repo: the hub raises many types
        raise GptclsError(hub_error(repo_id, filename, exc)) from None


def optional_download(repo_id: str, filename: str, revision: str) -> Path | None:
    """A file the repo may lack: None when the hub (or, offline, the cache) has no such file."""
    from huggingface_hub.utils import EntryNotFoundError

    try:
        return hub_download_raw(repo_id, filename, revision)
    except EntryNotFoundError:  # remote 404 of the file, or (offline) not in the cache
        return None
    except Exception as exc:
        raise GptclsError(hub_error(repo_id, filename, exc)) from None


def hub_download_raw(repo_id: str, filename: str, revision: str | None) -> Path:
    """hf_hub_download, its exceptions untouched."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision))


def download_model(repo_id: str, weights: bool = True) -> Path:
    """The cache folder holding the repo's config.json, its safetensors (every shard; only with
    `weights`) and tokenizer files: a local Hugging Face directory from then on."""
    config = hub_download(repo_id, "config.json")
    # The cache keeps each commit in snapshots/<commit>/: pin the other files to the same one,
    # so a push between two downloads cannot mix versions.
    folder = config.parent
    commit = folder.name
    if weights:
        index = optional_download(repo_id, INDEX_FILE, commit)
        if index is None:
            single = optional_download(repo_id, "model.safetensors", commit)
            if single is None:
                raise GptclsError(f"{repo_id} has no model.safetensors on the hub (nor a sharded "
                                  f"{INDEX_FILE}); gptcls reads safetensors weights")
        else:
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                hub_download(repo_id, shard, commit)
    for name in TOKENIZER_FILES:
        optional_download(repo_id, name, commit)
    return folder


def hub_error(repo_id: str, filename: str, exc: BaseException) -> str:
    """One line saying what went wrong with `filename` of `repo_id`, and what to do."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if isinstance(exc, LocalEntryNotFoundError) and isinstance(exc.__cause__, HfHubHTTPError):
        exc = exc.__cause__  # not cached, and why the hub said no (e.g. a plain 403)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        return (f"{repo_id} is gated on the Hugging Face hub: accept its terms at "
                f"{constants.ENDPOINT}/{repo_id}, then {LOGIN_HINT}")
    if isinstance(exc, RepositoryNotFoundError):
        if status == 401:  # the hub answers 401 both for missing and for private repos
            return (f"no such model on the hub: {repo_id} (nor a local path), or it is private: "
                    f"check the name; for a private model, {LOGIN_HINT}")
        return f"no such model on the hub: {repo_id} (nor a local path); check the name"
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        return (f"the Hugging Face hub refused access to {repo_id} ({status}): {LOGIN_HINT} "
                "with a token that may read it")
    if isinstance(exc, LocalEntryNotFoundError):
        if getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)():
            return (f"{filename} of {repo_id} is not in the Hugging Face cache "
                    f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: run once online, or "
                    f"{LOCAL_HINT}")
        return (f"cannot reach the Hugging Face hub ({constants.ENDPOINT}) for {filename} of "
                f"{repo_id}, and it is not in the cache: check the connection, or {LOCAL_HINT}")
    if isinstance(exc, EntryNotFoundError):
        return f"{repo_id} has no {filename} on the Hugging Face hub"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return (f"could not get {filename} of {repo_id} from the Hugging Face hub "
            f"({type(exc).__name__}: {first}); {LOCAL_HINT}")
