"""The chat window: a prompt box, Send and Stop, and the answer streaming in.

The window owns the engine. It starts it in the background when it opens,
streams answers through a worker thread, shows errors inline (never a dialog
that blocks the app), keeps the partial answer when something fails, and
offers to restart the engine when its process has died.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop import highlight
from desktop.chat_view import ChatView, MessageView
from desktop.client import ChatStream, GenerationStats, Message
from desktop.display_check import display_problem
from desktop.engine import Engine, EngineConfig
from desktop.workers import EngineStarter, StreamWorker


class PromptEdit(QPlainTextEdit):
    """The prompt box: Enter sends, Shift+Enter starts a new line."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    def __init__(self, model: Path, n_threads: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.n_threads = n_threads
        self.engine: Engine | None = None
        self.history: list[Message] = []
        # Extra fields for each chat completion request (sampling settings).
        self.request_options: dict[str, Any] = {}
        self.answer = ""
        self.starter: EngineStarter | None = None
        self.worker: StreamWorker | None = None
        # Notices an engine that died between questions (the child's exit
        # status is polled, which never blocks).
        self.health = QTimer(self, interval=1000)
        self.health.timeout.connect(self._check_engine)
        self.setWindowTitle(f"Kodcu — {model.name}")
        self.resize(820, 640)
        self._build()
        # Off the UI thread while the model loads: the first code block then
        # finds its lexer imported.
        threading.Thread(target=highlight.warm_up, name="lexer-warm-up", daemon=True).start()
        self.start_engine()

    # -- layout --------------------------------------------------------------------

    def _build(self) -> None:
        self.chat = ChatView()
        self.answer_view: MessageView | None = None
        self.prompt = PromptEdit()
        self.prompt.setAccessibleName("Prompt")
        self.prompt.setPlaceholderText(
            "Ask a coding question… (Enter sends, Shift+Enter for a new line)"
        )
        self.prompt.setFixedHeight(96)
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop")
        self.restart_button = QPushButton("Restart engine")
        self.restart_button.setAccessibleName("Restart engine")
        self.status = QLabel()
        self.status.setAccessibleName("Status")
        self.error = QLabel()
        self.error.setAccessibleName("Error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020;")
        self.error.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.restart_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout()
        layout.addWidget(self.chat, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.prompt)
        layout.addLayout(buttons)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)

        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.restart_button.clicked.connect(self.start_engine)
        self.prompt.submitted.connect(self.send)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        self._set_busy(engine_ready=False, streaming=False)
        self.prompt.setFocus()

    def _set_busy(self, *, engine_ready: bool, streaming: bool) -> None:
        self.send_button.setEnabled(engine_ready and not streaming)
        self.stop_button.setEnabled(streaming)
        self.restart_button.setVisible(not engine_ready and not streaming)
        self.restart_button.setEnabled(self.starter is None)

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    # -- engine --------------------------------------------------------------------

    def start_engine(self) -> None:
        if self.starter is not None:
            return
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        self.health.stop()
        self.error.hide()
        self.status.setText(f"Loading {self.model.name}…")
        config = EngineConfig(model=self.model)
        if self.n_threads:
            config.n_threads = self.n_threads
        self.starter = EngineStarter(lambda: Engine(config))
        self.starter.ready.connect(self._engine_ready)
        self.starter.failed.connect(self._engine_failed)
        self.starter.finished.connect(self._starter_finished)
        self._set_busy(engine_ready=False, streaming=False)
        self.starter.start()

    def _engine_ready(self) -> None:
        assert self.starter is not None
        self.engine = self.starter.engine
        self.status.setText(f"Ready — {self.model.name}")
        self.health.start()

    def _check_engine(self) -> None:
        if self.engine is None or self.engine.is_running():
            return
        self.health.stop()
        self.status.setText("Engine not running")
        self._show_error(
            f"The engine stopped unexpectedly ({self.engine.exit_reason()}). "
            "Restart it to go on; the conversation is kept."
        )
        self._set_busy(engine_ready=False, streaming=self.worker is not None)

    def _engine_failed(self, message: str) -> None:
        self.status.setText("Engine not running")
        self._show_error(message)

    def _starter_finished(self) -> None:
        self.starter = None
        self._set_busy(engine_ready=self.engine_ready(), streaming=False)

    def engine_ready(self) -> bool:
        return self.engine is not None and self.engine.is_running()

    # -- chat ----------------------------------------------------------------------

    def send(self) -> None:
        text = self.prompt.toPlainText().strip()
        if not text or not self.engine_ready() or self.worker is not None:
            return
        assert self.engine is not None
        self.error.hide()
        self.prompt.clear()
        self.history.append({"role": "user", "content": text})
        self.chat.add_message("user", text)
        self.answer_view = self.chat.add_message("assistant")
        self.answer = ""
        stream = ChatStream(
            self.engine.base_url,
            self.engine.api_key,
            list(self.history),
            extra=self.request_options,
        )
        self.worker = StreamWorker(stream)
        self.worker.piece.connect(self._on_piece)
        self.worker.done.connect(self._on_done)
        self.worker.failed.connect(self._on_failed)
        self.worker.finished.connect(self._worker_finished)
        self.status.setText("Answering…")
        self._set_busy(engine_ready=True, streaming=True)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def _on_piece(self, text: str) -> None:
        self.answer += text
        if self.answer_view is not None:
            self.answer_view.append(text)

    def _on_done(self, stats: GenerationStats) -> None:
        self._keep_answer()
        ttft = (stats.time_to_first_token_s or 0) * 1000
        speed = f"{stats.tokens_per_s:.1f} tokens/s" if stats.tokens_per_s else "—"
        ending = " (stopped)" if stats.finish_reason == "cancelled" else ""
        self.status.setText(f"First token {ttft:.0f} ms · {speed}{ending}")

    def _on_failed(self, message: str) -> None:
        self._keep_answer()
        self.status.setText("Answer failed")
        self._show_error(message)
        self._check_engine()

    def _keep_answer(self) -> None:
        # The partial answer stays in the conversation, whatever ended it.
        if self.answer_view is not None:
            self.answer_view.end()
        if self.answer:
            self.history.append({"role": "assistant", "content": self.answer})

    def _worker_finished(self) -> None:
        self.worker = None
        self._set_busy(engine_ready=self.engine_ready(), streaming=False)

    # -- shutdown ------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.health.stop()
        if self.worker is not None:
            self.worker.stop()
            self.worker.wait(5000)
        if self.starter is not None:
            self.starter.wait()
            self.engine = self.starter.engine
        if self.engine is not None:
            self.engine.stop()
        super().closeEvent(event)


def run_window(model: Path, n_threads: int | None = None) -> int:
    problem = display_problem()
    if problem:
        print(f"kodcu: {problem}", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Kodcu")
    window = MainWindow(model, n_threads=n_threads)
    window.show()
    # Ctrl+C in the terminal closes the window in order (engine stopped). Qt's
    # event loop runs no Python code while idle, so a timer lets the handler run.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake_python = QTimer(interval=250)
    wake_python.timeout.connect(lambda: None)
    wake_python.start()
    return app.exec()
