"""A model and a LoRA adapter per conversation, switched in the real window."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.adapter_box import NO_ADAPTER, adapters_dir
from desktop.store import ConversationStore
from desktop.window import MainWindow
from tests import gguf_files

QUESTION = "Write a Python function that adds two numbers."


@pytest.fixture()
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "conversations.sqlite3")


def open_window(qtbot, model: Path, store: ConversationStore) -> MainWindow:
    win = MainWindow(model, store=store)
    win.request_options = {"max_tokens": 24, "temperature": 0}  # greedy: comparable answers
    qtbot.addWidget(win)
    win.show()
    wait_ready(qtbot, win)
    return win


def wait_ready(qtbot, win: MainWindow) -> None:
    qtbot.waitUntil(win.composer.send_button.isEnabled, timeout=60_000)


def ask(qtbot, win: MainWindow, text: str = QUESTION) -> str:
    win.composer.prompt.setPlainText(text)
    qtbot.keyClick(win.composer.prompt, Qt.Key.Key_Return)
    with qtbot.waitSignal(win.worker.done, timeout=60_000):
        pass
    return win.answer


def choose(qtbot, win: MainWindow, label: str) -> None:
    """Pick an entry of the adapter box as a user does, and wait for the engine."""
    box = win.adapter_box
    index = box.findText(label)
    assert index >= 0, f"{label} is offered"
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        box.setCurrentIndex(index)
        box.activated.emit(index)
    wait_ready(qtbot, win)


def test_an_adapter_is_switched_on_and_off_without_restarting_the_app(
    qtbot, default_model: Path, store: ConversationStore
) -> None:
    folder = adapters_dir()
    folder.mkdir(parents=True)
    gguf_files.random_lora(default_model, folder / "style-lora.gguf", scale=0.05)
    win = open_window(qtbot, default_model, store)
    assert win.adapter_box.currentText() == NO_ADAPTER
    base = ask(qtbot, win)

    choose(qtbot, win, "style-lora.gguf")
    assert win.engine_control.config.lora_path == folder / "style-lora.gguf"
    assert "style-lora.gguf" in win.composer.status.text()
    assert "style-lora.gguf" in win.windowTitle()
    tuned = ask(qtbot, win)
    assert tuned != base, "the adapter changes what the model says"
    conversation = store.conversation(win.conversation.conversation_id)
    assert conversation.adapter == str(folder / "style-lora.gguf")

    choose(qtbot, win, NO_ADAPTER)
    assert win.engine_control.config.lora_path is None
    assert ask(qtbot, win, QUESTION) == base, "the bare model again"
    win.close()


def test_a_wrong_adapter_is_refused_with_its_reason(
    qtbot, tmp_path: Path, default_model: Path, store: ConversationStore
) -> None:
    win = open_window(qtbot, default_model, store)
    pid = win.engine.pid
    wrong = gguf_files.write_lora_gguf(tmp_path / "llama-lora.gguf", "llama", {}, 8.0)
    with qtbot.waitSignal(win.adapter_box.added, timeout=10_000):
        win.adapter_box.add_file(wrong)
    assert "made for llama models" in win.composer.error.text() and win.composer.error.isVisible()
    assert win.adapter is None and win.adapter_box.currentText() == NO_ADAPTER
    assert win.engine.pid == pid, "the running engine was left alone"
    assert win.composer.send_button.isEnabled()
    win.close()


def test_each_conversation_goes_back_to_its_own_model(
    qtbot, tmp_path: Path, default_model: Path, store: ConversationStore
) -> None:
    # A second model: the default one with a chat template of its own.
    other = gguf_files.with_metadata_string(
        default_model,
        tmp_path / "templated.gguf",
        "tokenizer.chat_template",
        "{{ bos_token }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}",
    )
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "First conversation, on the default model.")
    first = win.conversation.conversation_id

    win.sidebar.new_conversation()
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        win.use_model(other)
    wait_ready(qtbot, win)
    ask(qtbot, win, "Second conversation, on the other model.")
    second = win.conversation.conversation_id
    assert store.conversation(first).model == str(default_model)
    assert store.conversation(second).model == str(other)

    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        win.sidebar.select(first)
    assert win.engine_control.config.model == default_model
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        win.sidebar.select(second)
    assert win.engine_control.config.model == other
    wait_ready(qtbot, win)

    # A model that has gone from the disk: the conversation goes on with the current one.
    moved = shutil.move(other, tmp_path / "moved.gguf")
    win.sidebar.select(first)
    wait_ready(qtbot, win)
    store.set_model(second, str(other))
    win.sidebar.select(second)
    assert "templated.gguf is no longer on this computer" in win.composer.status.text()
    assert store.conversation(second).model == str(default_model)
    assert Path(moved).exists()
    win.close()
