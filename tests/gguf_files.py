"""Bad model files for tests, each made the way a user might end up with one."""

from __future__ import annotations

import os
import struct
from pathlib import Path

GGUF_TYPE_UINT32 = 4
GGUF_TYPE_STRING = 8


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_metadata_only_gguf(path: Path, metadata: dict[str, str | int]) -> Path:
    """A well-formed GGUF v3 file with metadata and no tensors."""
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        out += _string(key)
        if isinstance(value, str):
            out += struct.pack("<I", GGUF_TYPE_STRING) + _string(value)
        else:
            out += struct.pack("<II", GGUF_TYPE_UINT32, value)
    path.write_bytes(out)
    return path


def unknown_architecture(path: Path) -> Path:
    return write_metadata_only_gguf(
        path, {"general.architecture": "kodcunet", "general.name": "not a real model"}
    )


def truncated_copy(model: Path, path: Path, keep_bytes: int = 8 * 1024 * 1024) -> Path:
    """The first bytes of a real model, as an interrupted download leaves it."""
    with model.open("rb") as src:
        path.write_bytes(src.read(keep_bytes))
    return path


def random_bytes(path: Path, size: int = 1024 * 1024) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def text_file(path: Path) -> Path:
    path.write_text("<!doctype html><title>404 Not Found</title>\n<h1>Not Found</h1>\n" * 20)
    return path
