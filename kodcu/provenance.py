"""What a tool records about where its output came from, in one place for all of them.

    folder_fingerprint(Path("gemma-3-270m"))   # {"path", "sha256", "sha256_of"}
    package_versions(["torch", "peft"])         # {"torch": "2.13.0", "peft": "not installed"}

The trainer writes a base model's fingerprint into kodcu.json and the converter checks an
adapter's base against it; both record the versions of the libraries that decided their
output. Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
"""Files of a sharded model that list every shard: they change when a shard does."""
SINGLE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""The weights file of a model that has no index."""


def folder_fingerprint(folder: Path) -> dict:
    """A local model folder identified without reading gigabytes: the sha256 of its
    config.json and weight index, or of its single weights file when there is no index."""
    folder = Path(folder).expanduser()
    digest = hashlib.sha256()
    hashed = []
    candidates = ["config.json", *WEIGHT_INDEXES]
    if not any((folder / name).is_file() for name in WEIGHT_INDEXES):
        candidates += SINGLE_WEIGHTS
    for name in candidates:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0")
            _digest_file(digest, path)
            hashed.append(name)
    return {"path": str(folder.resolve()), "sha256": digest.hexdigest(), "sha256_of": hashed}


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a megabyte at a time."""
    return _digest_file(hashlib.sha256(), path).hexdigest()


def _digest_file(digest: Any, path: Path) -> Any:
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Each installed distribution's version, or "not installed"."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
