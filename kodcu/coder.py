"""Kodcu Coder 270M: the LoRA adapter Kodcu ships for its embedded default model.

The adapter (a LoRA GGUF, trained by `make coder`; its model card is MODEL_CARD.md)
travels inside the package, beside this module. The desktop, `kodcu --smoke` and
`kodcu-serve` apply it over the embedded default model unless told otherwise. Other
models get no adapter by default: it was trained for this base only.

    adapter = default_adapter(model)   # the coder's path for the default model, else None

Conversations remember the adapter by path, so the packaged file is copied once to the
cache (a copy whose size or modification time differs from the packaged file's is
copied again), where its path survives an update or a move of the installation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kodcu.paths import cache_dir

CODER_NAME = "Kodcu Coder 270M"
CODER_FILE = "kodcu-coder-270m-lora.gguf"
PACKAGED = Path(__file__).resolve().parent / "adapters" / CODER_FILE


def coder_path() -> Path:
    """Where the built-in coder adapter lives once copied out of the package."""
    return cache_dir() / "models" / CODER_FILE


def ensure_coder_adapter() -> Path | None:
    """The built-in coder adapter's path, copied from the package if needed; None when
    this installation carries no coder adapter."""
    if not PACKAGED.is_file():
        return None
    target = coder_path()
    if _same_bytes(PACKAGED, target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        shutil.copy2(PACKAGED, partial)  # with its modification time, for _same_bytes
        os.replace(partial, target)  # a half-copied adapter is never used
    finally:
        partial.unlink(missing_ok=True)
    return target


def adapter_label(adapter: Path) -> str:
    """How an adapter is shown: the built-in coder by name, any other by its file name."""
    return f"{CODER_NAME} (built-in)" if adapter == coder_path() else adapter.name


def default_adapter(model: Path) -> Path | None:
    """The adapter to run over `model` when the user chose none: the built-in coder over
    the embedded default model, nothing over any other model."""
    from kodcu.default_model import default_model_path

    try:
        is_default = model.resolve() == default_model_path().resolve()
    except OSError:
        return None
    return ensure_coder_adapter() if is_default else None


def _same_bytes(a: Path, b: Path) -> bool:
    """True when `b` is the untouched copy of `a`: the copy keeps the packaged file's
    modification time, and any later write to it changes its own (every start asks, so
    no file is read here)."""
    try:
        ours, theirs = a.stat(), b.stat()
    except OSError:
        return False
    return (ours.st_size, ours.st_mtime_ns) == (theirs.st_size, theirs.st_mtime_ns)
