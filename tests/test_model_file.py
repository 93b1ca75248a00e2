"""Bad model files get a clear message before any native code touches them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kodcu.model_file import ModelFileError, check_adapter_file, check_gguf_file
from tests import gguf_files


def problem(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        check_gguf_file(path)
    assert str(path) in str(caught.value), "the message names the file"
    return caught.value.problem


def test_missing_file(tmp_path: Path) -> None:
    assert problem(tmp_path / "nope.gguf") == "the file does not exist"


def test_folder(tmp_path: Path) -> None:
    assert "folder" in problem(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert problem(path) == "the file is empty"


def test_text_file_named_gguf(tmp_path: Path) -> None:
    assert "text file" in problem(gguf_files.text_file(tmp_path / "page.gguf"))


def test_random_bytes(tmp_path: Path) -> None:
    assert "GGUF signature" in problem(gguf_files.random_bytes(tmp_path / "noise.gguf"))


def test_header_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "short.gguf"
    path.write_bytes(b"GGUF\x03\x00")
    assert "truncated" in problem(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + (9).to_bytes(4, "little") + bytes(16))
    assert "version 9" in problem(path)


def test_real_model_passes(default_model: Path) -> None:
    check_gguf_file(default_model)


def _header(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


# Headers that claim more than the file holds: each once made the reader allocate it.
DAMAGED_HEADERS = {
    "a key of 2**62 bytes": _header(0, 1) + struct.pack("<Q", 2**62) + b"general",
    "a string value of 2**61 bytes": _header(0, 1)
    + _string("general.name")
    + struct.pack("<IQ", 8, 2**61),
    "an array of 2**60 floats": _header(0, 1)
    + _string("adapter.lora.alpha")
    + struct.pack("<IIQ", 9, 6, 2**60),
    "a tensor of 2**31 dimensions": _header(1, 0)
    + _string("blk.0.attn_q.weight.lora_a")
    + struct.pack("<I", 2**31),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_HEADERS))
def test_an_adapter_header_that_claims_too_much_is_refused_not_allocated(
    tmp_path: Path, default_model: Path, damage: str
) -> None:
    path = tmp_path / "adapter.gguf"
    path.write_bytes(DAMAGED_HEADERS[damage] + bytes(64))
    with pytest.raises(ModelFileError) as caught:
        check_adapter_file(path, default_model)
    assert str(path) in str(caught.value)
    assert "damaged" in caught.value.problem
