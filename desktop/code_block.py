"""One code block of an answer: its language, Copy (and Run for Python), and the code.

The view keeps the code exactly as the answer gave it and copies that string,
never the editor's text, so the clipboard gets the code byte for byte (the
editor may turn special spaces or line separators into something else).

Run executes a Python block with kodcu.sandbox, off the UI thread, with
time, memory, process and output limits, and shows stdout, stderr and how it
ended under the code. That is not a security sandbox: it stops runaway
programs, not an attacker, so the button's tooltip tells the user to read the
code first.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPalette, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.highlight import PygmentsHighlighter, language_label, lexer_for, style_colors

# Taller blocks scroll inside a view of this many lines.
MAX_VISIBLE_LINES = 40
# How long the Copy button says "Copied".
COPIED_FEEDBACK_MS = 1500
COPY_TEXT = "Copy"
COPIED_TEXT = "Copied"
RUN_TEXT = "Run"
RUNNING_TEXT = "Running…"
# Limits of a program run from the chat: generous for a script, short enough to wait for.
RUN_WALL_S = 20.0
RUN_OUTPUT_LINES = 12
# Streamed code reaches the editor at most this often: each change lexes the
# whole block again, and a model can send far more pieces per second than that.
STREAM_FLUSH_MS = 50


class CodeBlockView(QFrame):
    """A header (language, Run, Copy) above a read-only, highlighted, unwrapped code view."""

    ran = Signal(object)  # kodcu.sandbox.Outcome, from the thread that ran the code

    def __init__(
        self,
        code: str = "",
        language: str | None = None,
        style: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._code = code
        self._language = language
        # Streamed code not yet in the editor.
        self._unshown = ""
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Code block")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.language_label = QLabel()
        self.language_label.setAccessibleName("Code language")
        # Wide enough for "Copied" too, so the header does not shift when it shows.
        self.copy_button = QPushButton(COPIED_TEXT)
        self.copy_button.setMinimumWidth(self.copy_button.sizeHint().width())
        self.copy_button.setText(COPY_TEXT)
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.setToolTip("Copy the code to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        self.run_button = QPushButton(RUN_TEXT)
        self.run_button.setAccessibleName("Run code")
        self.run_button.setToolTip(
            "Run this Python code here, with time and memory limits. It is not a security "
            "sandbox: read the code before you run it."
        )
        self.run_button.clicked.connect(self.run)
        self.output = QPlainTextEdit()
        self.output.setAccessibleName("Run output")
        self.output.setReadOnly(True)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.hide()
        self.ran.connect(self._show_run)

        self.editor = QPlainTextEdit()
        self.editor.setAccessibleName("Code")
        self.editor.setReadOnly(True)
        # Keyboard users can select and copy parts of the code too.
        self.editor.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.editor.setTabChangesFocus(True)
        self.editor.setUndoRedoEnabled(False)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        # Tabs as four columns (Qt's default is 80 pixels, about ten).
        self.editor.setTabStopDistance(4 * self.editor.fontMetrics().horizontalAdvance(" "))
        self.editor.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.editor.setPlainText(code)
        # The horizontal scroll bar comes and goes with the width; the height follows it.
        self.editor.horizontalScrollBar().rangeChanged.connect(self._on_scroll_range)

        self.highlighter = PygmentsHighlighter(
            self.editor.document(), lexer_for(language, code), style
        )
        self._apply_colors()
        self._show_language()

        # Restores the button's text after the "Copied" feedback.
        self._feedback_timer = QTimer(self)
        self._feedback_timer.setSingleShot(True)
        self._feedback_timer.setInterval(COPIED_FEEDBACK_MS)
        self._feedback_timer.timeout.connect(lambda: self.copy_button.setText(COPY_TEXT))
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(STREAM_FLUSH_MS)
        self._flush_timer.timeout.connect(self._flush)

        header = QHBoxLayout()
        header.setContentsMargins(6, 2, 2, 2)
        header.addWidget(self.language_label)
        header.addStretch(1)
        header.addWidget(self.run_button)
        header.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(self.editor)
        layout.addWidget(self.output)
        self._fit_height()

    def code(self) -> str:
        """The code exactly as given: what Copy puts on the clipboard."""
        return self._code

    def language(self) -> str | None:
        """The fence's language tag, if it had one."""
        return self._language

    def copy(self) -> None:
        """Put exactly the code on the clipboard and say so on the button for a moment."""
        QGuiApplication.clipboard().setText(self._code)
        self.copy_button.setText(COPIED_TEXT)
        self._feedback_timer.start()

    def run(self) -> None:
        """Run the Python code in the sandbox; `ran` follows with how it ended."""
        if not self.run_button.isEnabled():
            return
        self.run_button.setEnabled(False)
        self.run_button.setText(RUNNING_TEXT)
        code = self._code
        threading.Thread(target=self._run_in_background, args=(code,), daemon=True).start()

    def _run_in_background(self, code: str) -> None:
        from kodcu.sandbox import Limits, run_program

        outcome = run_program(code, Limits(wall_s=RUN_WALL_S, cpu_s=RUN_WALL_S))
        with contextlib.suppress(RuntimeError):  # the view was closed while it ran
            self.ran.emit(outcome)

    def _show_run(self, outcome: Any) -> None:
        self.run_button.setText(RUN_TEXT)
        self.run_button.setEnabled(True)
        ending = (
            f"exit status 0 · {outcome.duration_s:.2f} s"
            if outcome.passed
            else f"{outcome.status}: {outcome.reason} · {outcome.duration_s:.2f} s"
        )
        parts = [outcome.stdout.rstrip("\n")]
        if outcome.stderr.strip():
            parts.append("stderr:\n" + outcome.stderr.rstrip("\n"))
        parts.append(f"[{ending}]")
        if outcome.isolation:  # each time: the user should know what the code could reach
            parts.append(f"[{outcome.isolation}]")
        self.output.setPlainText("\n".join(part for part in parts if part))
        lines = min(self.output.document().blockCount(), RUN_OUTPUT_LINES)
        margin = 2 * self.output.frameWidth() + 2 * self.output.document().documentMargin() + 2
        self.output.setFixedHeight(int(lines * self.output.fontMetrics().lineSpacing() + margin))
        self.output.show()

    def append_code(self, text: str) -> None:
        """Add streamed code at the end; the document is extended, not rebuilt.

        The code (and Copy) has it at once; the editor within STREAM_FLUSH_MS.
        """
        if not text:
            return
        self._code += text
        self._unshown += text
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def set_code(self, code: str, language: str | None) -> None:
        """Show the finished code; the language is decided again with all of the code."""
        self._flush()
        if code != self._code:
            if code.startswith(self._code):
                # The usual end of a stream: only the last piece is new.
                self._insert_at_end(code[len(self._code) :])
            else:
                self.editor.setPlainText(code)
            self._code = code
        self._language = language
        lexer = lexer_for(language, code)
        if type(lexer) is not type(self.highlighter.lexer()):
            self.highlighter.set_lexer(lexer)
        self._show_language()
        self._fit_height()

    def set_style(self, name: str) -> None:
        """Colour the code with another Pygments style."""
        self.highlighter.set_style(name)
        self._apply_colors()

    def _flush(self) -> None:
        self._flush_timer.stop()
        if self._unshown:
            self._insert_at_end(self._unshown)
            self._unshown = ""
            self._fit_height()

    def _insert_at_end(self, text: str) -> None:
        cursor = QTextCursor(self.editor.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)

    def _show_language(self) -> None:
        label = language_label(self.highlighter.lexer())
        self.language_label.setText(label)
        self.run_button.setVisible(label.startswith("Python"))
        self.editor.setAccessibleDescription(f"{label} code")

    def _apply_colors(self) -> None:
        # The style's own background and text colour, or its token colours may be unreadable.
        background, text = style_colors(self.highlighter.style_name())
        palette = self.editor.palette()
        palette.setColor(QPalette.ColorRole.Base, background)
        palette.setColor(QPalette.ColorRole.Text, text)
        self.editor.setPalette(palette)

    def _on_scroll_range(self, _minimum: int, _maximum: int) -> None:
        self._fit_height()

    def _fit_height(self) -> None:
        lines = self.editor.document().blockCount()
        visible = min(max(lines, 1), MAX_VISIBLE_LINES)
        line_height = self.editor.fontMetrics().lineSpacing()
        # Two spare pixels: Qt scrolls as soon as the last line does not fit strictly.
        height = (
            visible * line_height
            + 2 * self.editor.frameWidth()
            + math.ceil(2 * self.editor.document().documentMargin())
            + 2
        )
        scroll_bar = self.editor.horizontalScrollBar()
        if scroll_bar.maximum() > scroll_bar.minimum():
            height += scroll_bar.sizeHint().height()
        # Short blocks show every line, so an inner vertical scroll bar would only
        # steal width; long ones scroll.
        policy = (
            Qt.ScrollBarPolicy.ScrollBarAlwaysOff
            if lines <= MAX_VISIBLE_LINES
            else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        )
        # Set only on a change: this runs for every streamed piece.
        if self.editor.verticalScrollBarPolicy() != policy:
            self.editor.setVerticalScrollBarPolicy(policy)
        if self.editor.height() != height or self.editor.minimumHeight() != height:
            self.editor.setFixedHeight(height)
