"""Shared fixtures: the real default model and one running engine for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Qt tests run without a screen unless a display is asked for explicitly.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from desktop.engine import Engine, EngineConfig  # noqa: E402
from kodcu.default_model import ensure_default_model  # noqa: E402


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The embedded Gemma 3 270M GGUF, assembled into the real cache once."""
    return ensure_default_model()


@pytest.fixture(scope="session")
def engine(default_model: Path) -> Iterator[Engine]:
    """One engine on the default model, shared by tests that only talk to it."""
    with Engine(EngineConfig(model=default_model, n_ctx=2048)) as running:
        yield running


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    # Tests never write into the user's real data directory.
    monkeypatch.setenv("KODCU_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture()
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hugging Face Hub is out of reach: libraries fail at once instead of retrying."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
