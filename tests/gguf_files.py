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


# -- adding a metadata key to a real model -----------------------------------------

# Sizes of GGUF's fixed-width value types, by type id (8 string and 9 array vary).
_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: bytes, pos: int, value_type: int) -> int:
    if value_type in _FIXED_SIZES:
        return pos + _FIXED_SIZES[value_type]
    if value_type == GGUF_TYPE_STRING:
        (length,) = struct.unpack_from("<Q", data, pos)
        return pos + 8 + length
    item_type, count = struct.unpack_from("<IQ", data, pos)  # an array
    pos += 12
    if item_type in _FIXED_SIZES:
        return pos + count * _FIXED_SIZES[item_type]
    for _ in range(count):
        pos = _skip_value(data, pos, item_type)
    return pos


def with_metadata_string(model: Path, path: Path, key: str, value: str) -> Path:
    """Copy `model` with one more string key/value (say, a chat template) in its metadata.

    Tensor data offsets are relative to the data section, so the copy only has
    to re-pad the data section to the file's alignment.
    """
    data = model.read_bytes()
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24
    for _ in range(n_kv):
        (key_length,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + key_length
        (value_type,) = struct.unpack_from("<I", data, pos)
        pos = _skip_value(data, pos + 4, value_type)
    kv_end = pos
    for _ in range(n_tensors):
        (name_length,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + name_length
        (n_dims,) = struct.unpack_from("<I", data, pos)
        pos += 4 + 8 * n_dims + 4 + 8  # dims, type, offset
    alignment = 32  # GGUF's default; the default model does not set general.alignment
    data_start = pos + (-pos % alignment)
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv + 1)
    new_kv = _string(key) + struct.pack("<I", GGUF_TYPE_STRING) + _string(value)
    before_data = head + data[24:kv_end] + new_kv + data[kv_end:pos]
    path.write_bytes(before_data + bytes(-len(before_data) % alignment) + data[data_start:])
    return path
