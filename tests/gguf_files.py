"""Bad model files for tests, each made the way a user might end up with one."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from kodcu.gguf_header import read_gguf_header

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


def with_metadata_string(model: Path, path: Path, key: str, value: str) -> Path:
    """Copy `model` with one more string key/value (say, a chat template) in its metadata.

    Tensor data offsets are relative to the data section, so the copy only has
    to re-pad the data section to the file's alignment.
    """
    header = read_gguf_header(model)
    data = model.read_bytes()
    alignment = 32  # GGUF's default; the default model does not set general.alignment
    data_start = header.tensor_table_end + (-header.tensor_table_end % alignment)
    n_tensors, n_kv = len(header.tensors), len(header.metadata)
    head = b"GGUF" + struct.pack("<IQQ", header.version, n_tensors, n_kv + 1)
    new_kv = _string(key) + struct.pack("<I", GGUF_TYPE_STRING) + _string(value)
    before_data = (
        head
        + data[24 : header.metadata_end]
        + new_kv
        + data[header.metadata_end : header.tensor_table_end]
    )
    path.write_bytes(before_data + bytes(-len(before_data) % alignment) + data[data_start:])
    return path


# -- a LoRA adapter for a real model -----------------------------------------------

GGUF_TYPE_FLOAT32 = 6
GGML_TYPE_F32 = 0


def write_lora_gguf(
    path: Path,
    architecture: str,
    tensors: dict[str, tuple[bytes, bytes, int, int, int]],
    alpha: float,
) -> Path:
    """A GGUF LoRA adapter as llama.cpp reads it.

    `tensors` maps a base weight's name to (A as float32 bytes, B as float32 bytes,
    rank, input size, output size). llama.cpp wants A with ne = [input, rank] and
    B with ne = [rank, output], named "<weight>.lora_a" and "<weight>.lora_b".
    """
    metadata: list[bytes] = []

    def add_string(key: str, value: str) -> None:
        metadata.append(_string(key) + struct.pack("<I", GGUF_TYPE_STRING) + _string(value))

    add_string("general.architecture", architecture)
    add_string("general.type", "adapter")
    add_string("adapter.type", "lora")
    metadata.append(_string("adapter.lora.alpha") + struct.pack("<If", GGUF_TYPE_FLOAT32, alpha))
    infos, blobs, offset = b"", [], 0
    for name, (a, b, rank, n_in, n_out) in tensors.items():
        for suffix, data, dims in ((".lora_a", a, (n_in, rank)), (".lora_b", b, (rank, n_out))):
            assert len(data) == 4 * dims[0] * dims[1], f"{name}{suffix}: wrong size"
            infos += _string(name + suffix) + struct.pack("<I2QIQ", 2, *dims, GGML_TYPE_F32, offset)
            padded = data + bytes(-len(data) % 32)
            blobs.append(padded)
            offset += len(padded)
    head = b"GGUF" + struct.pack("<IQQ", 3, 2 * len(tensors), len(metadata))
    before_data = head + b"".join(metadata) + infos
    path.write_bytes(before_data + bytes(-len(before_data) % 32) + b"".join(blobs))
    return path


def random_lora(model: Path, path: Path, scale: float = 0.05, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA adapter for `model` (the default Gemma 3) over every block's FFN output.

    scale 0 gives B = 0: an adapter that changes nothing, as a fresh PEFT adapter is.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    tensors = {}
    for name, dims in read_gguf_header(model).tensors.items():
        if name.endswith("ffn_down.weight"):
            n_in, n_out = dims
            a = rng.standard_normal((rank, n_in), dtype=np.float32)  # numpy order: ne reversed
            b = scale * rng.standard_normal((n_out, rank), dtype=np.float32)
            tensors[name] = (a.tobytes(), b.tobytes(), rank, n_in, n_out)
    return write_lora_gguf(path, "gemma3", tensors, alpha=float(rank))
