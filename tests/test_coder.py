"""Kodcu Coder: the built-in LoRA adapter, shipped in the package and on by default over
the embedded model in the window, `kodcu --smoke` and `kodcu-serve`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.adapter_box import NO_ADAPTER
from desktop.cli import resolve_adapter
from desktop.model_choice import ModelChoice
from desktop.store import ConversationStore
from desktop.window import MainWindow
from kodcu.coder import CODER_NAME, PACKAGED, coder_path, default_adapter, ensure_coder_adapter
from kodcu.model_file import check_adapter_file

PROMPT = "Write a Python function that returns the square of a number."
LABEL = f"{CODER_NAME} (built-in)"


def test_the_coder_ships_in_the_package_and_fits_the_default_model(default_model: Path) -> None:
    assert PACKAGED.stat().st_size <= 10 * 1024 * 1024, "the issue's size limit: 10 MB"
    check_adapter_file(PACKAGED, default_model)  # a LoRA GGUF for this architecture
    wheel_data = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert 'kodcu = ["adapters/*.gguf"]' in wheel_data.read_text(), "packaged in the wheel"


def test_the_default_model_gets_the_coder_and_other_models_none(
    default_model: Path, tmp_path: Path
) -> None:
    adapter = default_adapter(default_model)
    assert adapter == coder_path()
    assert adapter.read_bytes() == PACKAGED.read_bytes()
    assert default_adapter(tmp_path / "another-model.gguf") is None
    # What the commands make of --adapter / --no-adapter.
    assert resolve_adapter(None, False, default_model) == coder_path()
    assert resolve_adapter(None, True, default_model) is None
    assert resolve_adapter(tmp_path / "mine.gguf", False, default_model) == tmp_path / "mine.gguf"


def test_a_damaged_copy_of_the_coder_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KODCU_CACHE_DIR", str(tmp_path))
    copy = ensure_coder_adapter()
    assert copy is not None and copy.parent == tmp_path / "models"
    copy.write_bytes(bytes(copy.stat().st_size))  # same size, wrong bytes
    assert ensure_coder_adapter() == copy
    assert copy.read_bytes() == PACKAGED.read_bytes()


def test_the_window_starts_with_the_coder_and_no_adapter_gives_the_bare_model(
    qtbot, default_model: Path, tmp_path: Path
) -> None:
    store = ConversationStore(tmp_path / "conversations.sqlite3")
    win = MainWindow(default_model, store=store, adapter=default_adapter(default_model))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(win.composer.send_button.isEnabled, timeout=60_000)
    assert win.adapter_box.currentText() == LABEL
    assert win.engine_control.config.lora_path == coder_path()
    assert LABEL in win.composer.status.text() and LABEL in win.windowTitle()
    win.request_options = {"max_tokens": 96, "temperature": 0}
    win.composer.prompt.setPlainText(PROMPT)
    qtbot.keyClick(win.composer.prompt, Qt.Key.Key_Return)
    with qtbot.waitSignal(win.worker.done, timeout=120_000):
        pass
    assert "```python" in win.answer, "the coder answers in a code block"
    first = win.conversation.conversation_id
    assert store.conversation(first).adapter == str(coder_path()), "remembered"

    box = win.adapter_box
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        box.setCurrentIndex(box.findText(NO_ADAPTER))
        box.activated.emit(box.findText(NO_ADAPTER))
    assert win.engine_control.config.lora_path is None
    assert store.conversation(first).adapter is None
    win.close()


def test_another_model_of_the_same_architecture_does_not_inherit_the_coder(
    default_model: Path, tmp_path: Path
) -> None:
    # The coder's shapes are the 270M model's: a Gemma 3 1B would pass the architecture
    # check and then fail to load it.
    store = ConversationStore(tmp_path / "conversations.sqlite3")
    choice = ModelChoice(store, default_model, default_adapter(default_model))
    choice.use_model(tmp_path / "gemma-3-1b-q4_k_m.gguf")
    assert choice.adapter is None
    choice.use_model(default_model)
    assert choice.adapter is None, "the user's last choice (none) stands on a model switch"
    choice.use_adapter(coder_path())
    assert choice.adapter == coder_path()
