"""Conversations in the real window: saved as they happen, listed, reopened, searched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.store import ConversationStore
from desktop.window import MainWindow

REPO = Path(__file__).resolve().parent.parent
ENDLESS = {"logit_bias": {"1": -100.0}, "logit_bias_type": "input_ids"}


@pytest.fixture()
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "conversations.sqlite3")


def open_window(qtbot, model: Path, store: ConversationStore) -> MainWindow:
    win = MainWindow(model, store=store)
    win.request_options = {"max_tokens": 48}  # short answers keep the suite quick
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        pass
    qtbot.waitUntil(win.composer.send_button.isEnabled, timeout=5_000)
    return win


def ask(qtbot, win: MainWindow, text: str):
    win.composer.prompt.setPlainText(text)
    qtbot.keyClick(win.composer.prompt, Qt.Key.Key_Return)
    with qtbot.waitSignal(win.worker.done, timeout=60_000) as blocker:
        pass
    return blocker.args[0]  # GenerationStats


def test_answers_are_saved_and_listed(qtbot, default_model: Path, store) -> None:
    win = open_window(qtbot, default_model, store)
    stats = ask(qtbot, win, "Write a Python function that reverses a string.\nKeep it short.")
    [conversation] = store.conversations()
    assert conversation.title == "Write a Python function that reverses a string."
    messages = store.messages(conversation.id)
    # An answer that ran into max_tokens is kept as unfinished, to be continued.
    answer_status = "partial" if stats.finish_reason == "length" else "complete"
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", answer_status),
    ]
    assert messages[1].content == win.answer
    assert win.sidebar.conversation_list.item(0).text() == conversation.title
    win.close()


def test_conversations_switch_and_keep_their_context(qtbot, default_model: Path, store) -> None:
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "What is a Python list?")
    first = win.conversation.conversation_id
    qtbot.keyClick(win, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # Ctrl+N
    assert win.conversation.conversation_id != first and win.chat.messages() == []
    ask(qtbot, win, "What is a SQL index?")
    win.sidebar.select(first)
    assert [m.text() for m in win.chat.messages()][0] == "What is a Python list?"
    assert len(win.conversation.context()) == 2
    ask(qtbot, win, "And a tuple?")
    assert [m.role for m in store.messages(first)] == ["user", "assistant"] * 2
    win.close()


def test_search_result_opens_its_conversation(qtbot, default_model: Path, store) -> None:
    older = store.create_conversation("Regex help")
    store.add_message(older.id, "user", "How do I match a hexadecimal colour?")
    store.add_message(older.id, "assistant", "Use #[0-9a-fA-F]{6}.")
    store.create_conversation("Something else")
    win = open_window(qtbot, default_model, store)
    win.sidebar.search_box.setText("hexadecimal")
    qtbot.waitUntil(lambda: win.sidebar.results_list.count() == 1, timeout=5_000)
    item = win.sidebar.results_list.item(0)
    rect = win.sidebar.results_list.visualItemRect(item)
    qtbot.mouseClick(
        win.sidebar.results_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
    )
    assert win.conversation.conversation_id == older.id
    assert win.chat.messages()[0].text() == "How do I match a hexadecimal colour?"
    win.close()


def test_unreadable_conversation_file_still_lets_the_user_chat(qtbot, default_model, tmp_path):
    data = Path(os.environ["KODCU_DATA_DIR"])
    broken = data / "conversations.sqlite3"
    broken.write_text("these are not conversations\n")
    win = MainWindow(default_model)
    win.request_options = {"max_tokens": 48}
    qtbot.addWidget(win)
    win.show()
    assert str(broken) in win.composer.error.text() and "not saved" in win.composer.error.text()
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        pass
    ask(qtbot, win, "Say hi.")
    assert win.answer
    assert broken.read_text() == "these are not conversations\n", "the file is left as it was"
    win.close()


DRIVER = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path
    from PySide6.QtWidgets import QApplication
    from desktop.store import ConversationStore
    from desktop.window import MainWindow

    app = QApplication([])
    window = MainWindow(Path(sys.argv[1]), store=ConversationStore(Path(sys.argv[2])))
    window.request_options = json.loads(sys.argv[3])
    pieces = []

    def started():
        window.composer.prompt.setPlainText("Write a long Python module.")
        window.send()
        window.worker.piece.connect(on_piece)

    def on_piece(text):
        pieces.append(text)
        if len(pieces) == 40:  # more than one save interval of text
            print("streaming", flush=True)

    window.engine_control.ready.connect(started)
    window.show()
    app.exec()
    """
)


def test_partial_answer_survives_the_app_being_killed(default_model: Path, tmp_path) -> None:
    database = tmp_path / "kill.sqlite3"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    app = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(default_model), str(database), json.dumps(ENDLESS)],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        assert app.stdout and app.stdout.readline().strip() == "streaming"
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    finally:
        if app.poll() is None:
            app.kill()
    with ConversationStore(database) as store:
        [conversation] = store.conversations()
        question, answer = store.messages(conversation.id)
    assert question.content == "Write a long Python module."
    assert answer.status == "partial" and len(answer.content) > 20


def test_long_conversation_is_cut_visibly_not_refused(qtbot, default_model: Path, store) -> None:
    long_ago = store.create_conversation("A long one")
    for i in range(8):  # about 8 x 700 tokens: more than the 4096-token context
        role = "user" if i % 2 == 0 else "assistant"
        store.add_message(long_ago.id, role, f"Message {i}: " + "lorem ipsum dolor " * 230)
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "Summarise what we discussed.")
    assert win.answer, "the engine answered instead of refusing an over-long prompt"
    assert win.fitted is not None and win.fitted.left_out > 0
    status = win.composer.status.text()
    assert f"{win.fitted.left_out} earliest message(s) left out" in status
    assert "context" in status and "/ 4,096 tokens" in status
    win.close()


def test_regenerate_replaces_the_last_answer(qtbot, default_model: Path, store) -> None:
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "Name a sorting algorithm.")
    conversation = win.conversation.conversation_id
    first_answer = store.messages(conversation)[-1]
    win.request_options["temperature"] = 1.0  # a fresh sample
    qtbot.mouseClick(win.composer.regenerate_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(win.worker.done, timeout=60_000):
        pass
    messages = store.messages(conversation)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].created_at > first_answer.created_at, "a new answer replaced the old"
    assert messages[1].content == win.answer
    assert len(win.chat.messages()) == 2
    win.close()


def test_continue_goes_on_with_a_cut_off_answer(qtbot, default_model: Path, store) -> None:
    win = open_window(qtbot, default_model, store)
    win.request_options = {**ENDLESS, "max_tokens": 16, "temperature": 0}
    assert not win.composer.continue_button.isEnabled()
    stats = ask(qtbot, win, "Write a Python function that adds two numbers.")
    assert stats.finish_reason == "length"
    assert "token limit reached" in win.composer.status.text()
    conversation = win.conversation.conversation_id
    [_, cut] = store.messages(conversation)
    assert cut.status == "partial" and cut.content
    qtbot.waitUntil(win.composer.continue_button.isEnabled, timeout=5_000)
    qtbot.mouseClick(win.composer.continue_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(win.worker.done, timeout=60_000):
        pass
    [_, answer] = store.messages(conversation)
    assert answer.content.startswith(cut.content), "the same answer, longer"
    assert answer.content == cut.content + win.answer and win.answer.strip()
    assert len(win.chat.messages()) == 2
    assert win.chat.messages()[1].text() == answer.content
    # Reopened later, the conversation still offers to continue it.
    win.open_conversation(None)
    assert not win.composer.continue_button.isEnabled()
    win.open_conversation(conversation)
    assert win.composer.continue_button.isEnabled()
    win.close()


def test_export_writes_the_conversation_as_markdown(
    qtbot, default_model: Path, store, tmp_path, monkeypatch
) -> None:
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "Write hello world in Rust.")
    target = tmp_path / "export.md"
    # The native file dialog is the one part replaced: it answers with `target`.
    monkeypatch.setattr("desktop.window.ask_export_path", lambda parent, title: target)
    qtbot.mouseClick(win.export_button, Qt.MouseButton.LeftButton)
    text = target.read_text()
    assert text.startswith("# Write hello world in Rust.")
    assert "## You\n\nWrite hello world in Rust." in text and win.answer.strip() in text
    assert str(target) in win.composer.status.text()
    win.close()


def test_edit_and_resend_replaces_later_turns(qtbot, default_model: Path, store) -> None:
    win = open_window(qtbot, default_model, store)
    ask(qtbot, win, "Sort a list in Python.")
    ask(qtbot, win, "Now in reverse order.")
    conversation = win.conversation.conversation_id
    first_question = win.chat.messages()[0]
    qtbot.mouseClick(first_question.edit_button, Qt.MouseButton.LeftButton)
    assert win.composer.prompt.toPlainText() == "Sort a list in Python."
    win.composer.prompt.setPlainText("Sort a list in Rust.")
    qtbot.keyClick(win.composer.prompt, Qt.Key.Key_Return)
    with qtbot.waitSignal(win.worker.done, timeout=60_000):
        pass
    messages = store.messages(conversation)
    assert [(m.role, m.content) for m in messages][0] == ("user", "Sort a list in Rust.")
    assert [m.role for m in messages] == ["user", "assistant"]
    assert [m.text() for m in win.chat.messages()][0] == "Sort a list in Rust."
    assert len(win.chat.messages()) == 2
    win.close()
