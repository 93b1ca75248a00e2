"""Bad model files get a clear message before any native code touches them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kodcu.model_file import ModelFileError, check_gguf_file
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
