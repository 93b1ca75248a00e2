"""The first window, through real widgets and the real engine on the default model."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import Qt

from desktop.window import MainWindow
from tests import gguf_files

PROMPT = "Write a Python function that returns the square of a number."


@pytest.fixture()
def window(qtbot, default_model: Path):
    win = MainWindow(default_model)
    win.request_options = {"max_tokens": 64}  # short answers keep the suite quick
    qtbot.addWidget(win)
    win.show()
    assert win.engine_control.is_starting()
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: win.composer.send_button.isEnabled(), timeout=5_000)
    yield win
    win.close()


def ask(qtbot, win: MainWindow, text: str = PROMPT):
    win.composer.prompt.setPlainText(text)
    qtbot.mouseClick(win.composer.send_button, Qt.MouseButton.LeftButton)
    assert win.worker is not None, "Send started a worker"
    return win.worker


def test_window_answers_a_prompt(qtbot, window: MainWindow) -> None:
    worker = ask(qtbot, window)
    assert not window.composer.send_button.isEnabled() and window.composer.stop_button.isEnabled()
    with qtbot.waitSignal(worker.done, timeout=60_000) as blocker:
        pass
    stats = blocker.args[0]
    transcript = window.chat.plain_text()
    assert PROMPT in transcript
    assert window.answer.strip() and window.answer in transcript
    assert stats.tokens > 3
    assert "tokens/s" in window.composer.status.text()
    qtbot.waitUntil(lambda: window.composer.send_button.isEnabled(), timeout=5_000)
    assert window.conversation.context()[-1] == {"role": "assistant", "content": window.answer}


def test_enter_sends_and_shift_enter_starts_a_new_line(qtbot, window: MainWindow) -> None:
    qtbot.keyClicks(window.composer.prompt, "first line")
    qtbot.keyClick(window.composer.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer.prompt, "second line")
    assert window.composer.prompt.toPlainText() == "first line\nsecond line"
    assert window.worker is None
    qtbot.keyClick(window.composer.prompt, Qt.Key.Key_Return)
    assert window.worker is not None, "Enter sent the prompt"
    assert window.composer.prompt.toPlainText() == ""
    with qtbot.waitSignal(window.worker.done, timeout=60_000) as blocker:
        qtbot.keyClick(window.composer.prompt, Qt.Key.Key_Escape)  # and Esc stops it
    assert blocker.args[0].finish_reason == "cancelled"
    assert "first line\nsecond line" in window.chat.plain_text()


def start_endless_answer(qtbot, win: MainWindow):
    """Send a prompt whose answer cannot end by itself, and wait for its first piece."""
    # Token 1 is Gemma's <eos>: banned, the answer runs to max_tokens (512: many seconds).
    win.request_options = {"logit_bias": {"1": -100.0}, "logit_bias_type": "input_ids"}
    win.request_options["max_tokens"] = 512
    worker = ask(qtbot, win, "Write a long Python module with many functions.")
    with qtbot.waitSignal(worker.piece, timeout=30_000):
        pass
    return worker


def test_stop_keeps_the_partial_answer(qtbot, window: MainWindow) -> None:
    worker = start_endless_answer(qtbot, window)
    with qtbot.waitSignal(worker.done, timeout=10_000) as blocker:
        qtbot.mouseClick(window.composer.stop_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].finish_reason == "cancelled"
    assert window.answer and window.answer in window.chat.plain_text()
    assert "(stopped)" in window.composer.status.text()


def test_engine_crash_mid_answer_is_reported_and_restarted(qtbot, window: MainWindow) -> None:
    worker = start_endless_answer(qtbot, window)
    old_pid = window.engine.pid
    with qtbot.waitSignal(worker.failed, timeout=10_000):
        psutil.Process(old_pid).kill()  # what a native crash in llama.cpp looks like
    assert window.answer and window.answer in window.chat.plain_text()
    assert window.conversation.context()[-1]["content"] == window.answer, "partial answer kept"
    qtbot.waitUntil(lambda: window.composer.restart_button.isVisible(), timeout=5_000)
    assert "engine stopped unexpectedly (killed by SIGKILL)" in window.composer.error.text()
    assert not window.composer.send_button.isEnabled()
    qtbot.mouseClick(window.composer.restart_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(window.engine_control.ready, timeout=60_000):
        pass
    assert window.engine.pid != old_pid
    qtbot.waitUntil(lambda: window.composer.send_button.isEnabled(), timeout=5_000)
    worker = ask(qtbot, window)
    with qtbot.waitSignal(worker.done, timeout=60_000):
        pass
    assert not window.composer.error.isVisible()


def test_engine_death_between_questions_is_noticed(qtbot, window: MainWindow) -> None:
    psutil.Process(window.engine.pid).kill()
    qtbot.waitUntil(lambda: window.composer.restart_button.isVisible(), timeout=5_000)
    assert "engine stopped unexpectedly" in window.composer.error.text()
    assert not window.composer.send_button.isEnabled()


def test_bad_model_shows_an_error_and_the_window_stays(qtbot, tmp_path: Path) -> None:
    bad = gguf_files.random_bytes(tmp_path / "broken.gguf")
    win = MainWindow(bad)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.engine_control.failed, timeout=30_000):
        pass
    qtbot.waitUntil(lambda: win.composer.restart_button.isVisible(), timeout=5_000)
    assert win.isVisible()
    assert win.composer.error.isVisible() and str(bad) in win.composer.error.text()
    assert not win.composer.send_button.isEnabled()
    win.close()


def test_closing_the_window_stops_the_engine(qtbot, window: MainWindow) -> None:
    pid = window.engine.pid
    window.close()
    assert not psutil.pid_exists(pid)


def test_every_control_has_an_accessible_name(qtbot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QPlainTextEdit,
        QWidget,
    )

    win = MainWindow(gguf_files.random_bytes(tmp_path / "broken.gguf"))  # no engine needed
    qtbot.addWidget(win)
    win.chat.add_message("user", "Show me code")
    win.chat.add_message("assistant", "Here:\n\n```python\nprint('hi')\n```\n")
    controls = (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QLineEdit,
                QPlainTextEdit)  # fmt: skip
    unnamed = [
        f"{type(w).__name__} {w.objectName()!r}"
        for w in win.findChildren(QWidget)
        if isinstance(w, controls)
        and not w.accessibleName()
        and not (isinstance(w, QAbstractButton) and w.text())
        # Qt's own internals (scroll bars' buttons, the line edit inside a spin box)
        and w.parent() is not None
        and not isinstance(w.parent(), (QAbstractSpinBox, QComboBox))
    ]
    assert unnamed == []
    win.close()
