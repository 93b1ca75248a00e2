"""The embedded default model is assembled once, verified, reused and repaired."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kodcu import default_model
from kodcu.default_model import EXPECTED_SHA256, ensure_default_model, sha256_of


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KODCU_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_first_use_assembles_into_the_cache_and_checks_sha256(cache: Path) -> None:
    model = ensure_default_model()
    assert model.parent.parent == cache
    assert model.name == "gemma-3-270m-q4_k_m.gguf"
    assert sha256_of(model) == EXPECTED_SHA256
    assert not list(model.parent.glob("*.partial-*")), "no half-written file is left behind"


def test_second_use_reuses_the_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ensure_default_model()
    before = model.stat().st_mtime_ns

    def no_assembly(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was assembled again")

    monkeypatch.setattr(default_model.embedded, "assemble", no_assembly)
    assert ensure_default_model() == model
    assert model.stat().st_mtime_ns == before


def test_damaged_copy_is_detected_and_rebuilt(cache: Path) -> None:
    model = ensure_default_model()
    with model.open("r+b") as f:  # flip bytes in the middle, size unchanged
        f.seek(50_000_000)
        f.write(b"\x00" * 64)
    assert not default_model.is_intact(model)
    assert ensure_default_model() == model
    assert sha256_of(model) == EXPECTED_SHA256


def test_truncated_copy_is_rebuilt(cache: Path) -> None:
    model = ensure_default_model()
    with model.open("r+b") as f:
        f.truncate(1000)
    ensure_default_model()
    assert sha256_of(model) == EXPECTED_SHA256


def test_damage_that_keeps_size_and_mtime_is_caught_by_a_full_check(cache: Path) -> None:
    # The stamp is a shortcut, not a substitute: with the stamp gone the file is hashed.
    model = ensure_default_model()
    stat = model.stat()
    with model.open("r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    model.with_name(model.name + ".verified.json").unlink()
    assert not default_model.is_intact(model)
