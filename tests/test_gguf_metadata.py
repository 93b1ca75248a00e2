"""Model metadata, read by llama.cpp in a child process, on real files."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from desktop import gguf_metadata
from desktop.gguf_metadata import MetadataError, ModelInfo, info_from_metadata, read_metadata
from tests import gguf_files


def failure(path: Path, timeout_s: float = 30) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        read_metadata(path, timeout_s=timeout_s)
    assert str(path) in str(caught.value), "the message names the file"
    assert isinstance(caught.value, ValueError)
    return caught.value


def test_default_model(default_model: Path) -> None:
    started = time.perf_counter()
    info = read_metadata(default_model)
    seconds = time.perf_counter() - started

    assert info.path == default_model
    assert info.file_size == default_model.stat().st_size
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 32768
    assert info.chat_template is False
    assert info.name == "Gemma 3 270m"
    assert (info.parameter_label, info.parameter_count) == ("270M", 270_000_000)
    assert not info.parameters_estimated
    # About 0.7 s here (interpreter, llama_cpp import, 262k-token vocabulary);
    # the bound only catches a load of the weights by mistake.
    assert seconds < 10
    assert ModelInfo.from_json(info.to_json()) == info


def test_chat_template_is_reported(default_model: Path, tmp_path: Path) -> None:
    path = gguf_files.with_metadata_string(
        default_model, tmp_path / "chat.gguf", "tokenizer.chat_template", "{{ messages }}"
    )
    assert read_metadata(path).chat_template is True


def test_text_file(tmp_path: Path) -> None:
    error = failure(gguf_files.text_file(tmp_path / "page.gguf"))
    assert "text file" in error.problem


def test_random_bytes(tmp_path: Path) -> None:
    error = failure(gguf_files.random_bytes(tmp_path / "noise.gguf"))
    assert "GGUF signature" in error.problem


def test_truncated_copy(default_model: Path, tmp_path: Path) -> None:
    # A vocabulary-only load still checks that every tensor lies inside the file,
    # so the first 8 MB of a real model fail here, as they would in the engine.
    error = failure(gguf_files.truncated_copy(default_model, tmp_path / "cut.gguf"))
    assert "not within the file bounds" in error.problem
    assert "truncated or damaged" in error.hint


def test_truncated_inside_the_metadata(default_model: Path, tmp_path: Path) -> None:
    path = gguf_files.truncated_copy(default_model, tmp_path / "cut.gguf", keep_bytes=1000)
    assert "failed to read key-value pairs" in failure(path).problem


def test_unknown_architecture(tmp_path: Path) -> None:
    error = failure(gguf_files.unknown_architecture(tmp_path / "odd.gguf"))
    assert "unknown model architecture: 'kodcunet'" in error.problem
    assert "does not support that architecture" in error.hint


def test_missing_file(tmp_path: Path) -> None:
    assert failure(tmp_path / "gone.gguf").problem == "the file does not exist"


def test_a_child_that_crashes(
    default_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a native crash inside llama.cpp: the child dies without a reply.
    crash = [sys.executable, "-c", "import os, sys; sys.stderr.write('boom\\n'); os.abort()"]
    monkeypatch.setattr(gguf_metadata, "_child_command", lambda path: crash)
    error = failure(default_model)
    assert "stopped with signal" in error.problem and "boom" in error.problem


def test_a_child_that_takes_too_long(default_model: Path) -> None:
    error = failure(default_model, timeout_s=0.01)
    assert "took longer than 0.01 s" in error.problem


def test_cancelling_kills_the_reader(default_model: Path) -> None:
    # A dialog closing sets the event; the child is killed, not waited for.
    cancel = threading.Event()
    cancel.set()
    before = set(psutil.Process().children())  # an engine from another test may run
    with pytest.raises(MetadataError) as caught:
        read_metadata(default_model, cancel=cancel)
    assert "cancelled" in caught.value.problem
    assert set(psutil.Process().children()) == before, "no reader process left running"


def test_parameters_estimated_without_a_size_label(tmp_path: Path) -> None:
    metadata = {"general.architecture": "llama", "llama.context_length": "4096"}
    info = info_from_metadata(tmp_path / "m.gguf", 4_500_000_000, metadata, "Q4_K_M")
    # 4.5 GB at the 4.5 bits per weight of Q4_K: 8 billion weights.
    assert (info.parameter_count, info.parameter_label) == (8_000_000_000, "≈8B")
    assert info.parameters_estimated
    assert info.name == "m" and info.context_length == 4096


def test_size_labels() -> None:
    assert gguf_metadata.parse_size_label("1.5B") == 1_500_000_000
    assert gguf_metadata.parse_size_label("8x7B") == 56_000_000_000
    assert gguf_metadata.parse_size_label("large") is None
