"""Read a GGUF file's metadata and tensor table without loading it.

The desktop's model library asks llama-cpp-python for a model's metadata (in a child
process). A LoRA adapter cannot be described that way: llama.cpp opens one only
over a loaded model, and this llama-cpp-python does not notice when llama.cpp
refuses it, so the next generation crashes. Before an adapter reaches llama.cpp
(the desktop's engine, kodcu-eval), its header is read here instead: a few
kilobytes, no native code.

    header = read_gguf_header(Path("adapter.gguf"))
    header.metadata["general.type"], header.tensors["blk.0.ffn_down.weight.lora_a"]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# GGUF value types (gguf_type in llama.cpp's gguf.h), as struct formats.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
MAX_DIMS = 4
"""A tensor has at most 4 dimensions (GGML_MAX_DIMS)."""


class GGUFHeaderError(ValueError):
    """The header cannot be read: not a GGUF file, or cut short."""


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    """Scalar and string values; arrays are skipped (None)."""
    tensors: dict[str, tuple[int, ...]]
    """Each tensor's dimensions in GGUF order (ne[0], the input size of a weight, first)."""
    tensor_table_end: int
    """Byte offset where the tensor table ends (the data section starts after padding)."""
    metadata_end: int
    """Byte offset where the metadata ends and the tensor table starts."""


class _Reader:
    """Reads the header's values; every count and length is checked against the file's
    size before anything is allocated, so a damaged header cannot ask for terabytes."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file = file
        self.size = size

    def left(self) -> int:
        return self.size - self.file.tell()

    def check_room(self, needed: int, what: str) -> None:
        if needed > self.left():
            raise GGUFHeaderError(
                f"the header claims {what} of {needed:,} bytes at offset {self.file.tell():,}, "
                f"more than the file's remaining {self.left():,} (damaged or truncated)"
            )

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        data = self.file.read(size)
        if len(data) < size:
            raise GGUFHeaderError("the file ends inside its header (truncated)")
        return struct.unpack("<" + fmt, data)

    def string(self) -> str:
        (length,) = self.unpack("Q")
        self.check_room(length, "a string")
        data = self.file.read(length)
        if len(data) < length:
            raise GGUFHeaderError("the file ends inside its header (truncated)")
        return data.decode("utf-8", "replace")

    def value(self, value_type: int) -> Any:
        if value_type in _SCALARS:
            return self.unpack(_SCALARS[value_type])[0]
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            item_type, count = self.unpack("IQ")
            if item_type in _SCALARS:  # skip the block without decoding it
                length = count * struct.calcsize("<" + _SCALARS[item_type])
                self.check_room(length, "an array")
                self.file.seek(length, 1)
            else:
                for _ in range(count):
                    self.value(item_type)
            return None
        raise GGUFHeaderError(f"unknown metadata value type {value_type}")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Metadata and tensor shapes of the GGUF file at `path`."""
    with path.open("rb") as file:
        reader = _Reader(file, path.stat().st_size)
        if file.read(4) != b"GGUF":
            raise GGUFHeaderError("not a GGUF file (it does not start with the GGUF signature)")
        version, n_tensors, n_kv = reader.unpack("IQQ")
        metadata = {}
        for _ in range(n_kv):
            key = reader.string()
            (value_type,) = reader.unpack("I")
            metadata[key] = reader.value(value_type)
        metadata_end = file.tell()
        tensors = {}
        for _ in range(n_tensors):
            name = reader.string()
            (n_dims,) = reader.unpack("I")
            if n_dims > MAX_DIMS:
                raise GGUFHeaderError(
                    f"tensor {name!r} claims {n_dims:,} dimensions (at most {MAX_DIMS}): "
                    "the header is damaged"
                )
            tensors[name] = reader.unpack(f"{n_dims}Q")
            reader.unpack("IQ")  # type, offset
        return GGUFHeader(version, metadata, tensors, file.tell(), metadata_end)
