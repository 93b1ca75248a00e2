"""The composer: the prompt box, the answer's buttons below it, the status line and errors.

The window connects the buttons to its actions and tells the composer, through
`set_state`, whether the engine is ready and an answer is streaming; the
composer enables what makes sense then. It knows nothing of engines or stores.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.prompt_edit import PromptEdit


def button(text: str, accessible_name: str) -> QPushButton:
    made = QPushButton(text)
    made.setAccessibleName(accessible_name)
    return made


def row(*widgets: QWidget | None) -> QHBoxLayout:
    """Widgets side by side; None is a stretch, and a label takes the spare room."""
    layout = QHBoxLayout()
    for widget in widgets:
        if widget is None:
            layout.addStretch(1)
        else:
            layout.addWidget(widget, 1 if isinstance(widget, QLabel) else 0)
    return layout


class Composer(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = PromptEdit()
        self.prompt.setAccessibleName("Prompt")
        self.prompt.setPlaceholderText(
            "Ask a coding question… (Enter sends, Shift+Enter for a new line)"
        )
        self.prompt.setFixedHeight(96)
        self.send_button = button("Send", "Send")
        self.stop_button = button("Stop", "Stop")
        self.regenerate_button = button("Regenerate", "Regenerate")
        self.continue_button = button("Continue", "Continue the answer")
        self.restart_button = button("Restart engine", "Restart engine")
        self.status = QLabel()
        self.status.setAccessibleName("Status")
        self.error = QLabel()
        self.error.setAccessibleName("Error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020;")
        self.error.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error)
        layout.addWidget(self.prompt)
        layout.addLayout(
            row(
                self.status,
                self.restart_button,
                self.continue_button,
                self.regenerate_button,
                self.stop_button,
                self.send_button,
            )
        )

    def set_state(
        self, *, engine_ready: bool, streaming: bool, starting: bool, can_continue: bool
    ) -> None:
        """Enable the buttons that make sense while the engine and the answer are so."""
        idle = engine_ready and not streaming
        self.send_button.setEnabled(idle)
        self.regenerate_button.setEnabled(idle)
        self.continue_button.setEnabled(idle and can_continue)
        self.stop_button.setEnabled(streaming)
        self.restart_button.setVisible(not engine_ready and not streaming and not starting)

    def say(self, text: str) -> None:
        """Put `text` on the status line."""
        self.status.setText(text)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
