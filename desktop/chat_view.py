"""The conversation: one view per message, prose as Markdown, code as highlighted blocks.

An answer streams in piece by piece. Pieces are buffered and rendered at most
every RENDER_INTERVAL_MS, so the event loop stays free however fast the model
is. `BlockStream` reports each prose or code block once, when it is finished:
a finished block gets its final widget and is never rendered again; only the
block still growing at the tail is updated.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.code_block import CodeBlockView
from desktop.markdown_blocks import Block, BlockStream, CodeBlock, TextBlock, split_blocks

ROLE_TITLES = {"user": "You", "assistant": "Kodcu", "system": "System"}
# About 30 frames a second: smooth to the eye, cheap for the event loop.
RENDER_INTERVAL_MS = 33


class ProseView(QLabel):
    """A prose block rendered from Markdown, selectable, wrapped to the view's width."""

    def __init__(self, markdown: str = "") -> None:
        super().__init__()
        self.setTextFormat(Qt.TextFormat.MarkdownText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.setOpenExternalLinks(False)  # offline app: links are shown, not followed
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("Message text")
        self.set_markdown(markdown)

    def set_markdown(self, markdown: str) -> None:
        self.markdown = markdown
        self.setText(markdown)


class MessageView(QFrame):
    """One message: who wrote it, a Copy button for the whole of it, and its blocks."""

    edit_requested = Signal(object)  # this view; only questions can be edited

    def __init__(self, role: str, text: str = "", code_style: str | None = None) -> None:
        super().__init__()
        self.role = role
        self.code_style = code_style
        self._text = ""
        self._unrendered = ""
        self._stream = BlockStream()
        self._tail: ProseView | CodeBlockView | None = None  # the block still growing
        self.setObjectName(f"message-{role}")
        self.setAccessibleName(f"Message from {ROLE_TITLES.get(role, role)}")

        title = QLabel(f"<b>{ROLE_TITLES.get(role, role)}</b>")
        title.setAccessibleName("Author")
        self.copy_button = QPushButton("Copy message")
        self.copy_button.setAccessibleName("Copy message")
        self.copy_button.setFlat(True)
        self.copy_button.clicked.connect(self.copy)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(title)
        header.addStretch(1)
        if role == "user":
            self.edit_button = QPushButton("Edit")
            self.edit_button.setAccessibleName("Edit and resend")
            self.edit_button.setFlat(True)
            self.edit_button.clicked.connect(lambda: self.edit_requested.emit(self))
            header.addWidget(self.edit_button)
        header.addWidget(self.copy_button)
        self.body = QVBoxLayout()
        self.body.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(header)
        layout.addLayout(self.body)

        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)
        if text:
            self.set_text(text)

    def text(self) -> str:
        """Everything received so far, as Markdown source (what Copy message copies)."""
        return self._text

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self._text)

    def block_views(self) -> list[QWidget]:
        return [self.body.itemAt(i).widget() for i in range(self.body.count())]

    def set_text(self, text: str) -> None:
        """Show a whole message at once (history, or a message edited)."""
        self._clear()
        self._text = text
        for block in split_blocks(text):
            self._add_finished(block)

    def append(self, piece: str) -> None:
        """Add a streamed piece; rendering follows within RENDER_INTERVAL_MS."""
        self._text += piece
        self._unrendered += piece
        if not self._render_timer.isActive():
            self._render_timer.start()

    def end(self) -> None:
        """The stream is over: render what is left and settle the last block."""
        self._render()
        for block in self._stream.finish():
            self._add_finished(block)
        self._tail = None

    def _clear(self) -> None:
        self._render_timer.stop()
        self._unrendered = ""
        self._stream = BlockStream()
        self._tail = None
        while self.body.count():
            widget = self.body.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()

    def _render(self) -> None:
        self._render_timer.stop()
        if not self._unrendered:
            return
        piece, self._unrendered = self._unrendered, ""
        for block in self._stream.feed(piece):
            self._add_finished(block)
        pending = self._stream.pending()
        if pending is not None:
            self._show_tail(pending)

    def _add_finished(self, block: Block) -> None:
        """Give a finished block its final widget: the tail's, when it was that block."""
        tail, self._tail = self._tail, None
        if isinstance(block, CodeBlock) and isinstance(tail, CodeBlockView):
            tail.set_code(block.code, block.language)
        elif isinstance(block, TextBlock) and isinstance(tail, ProseView):
            tail.set_markdown(block.text)
        else:
            self.body.addWidget(self._new_view(block))

    def _show_tail(self, pending: Block) -> None:
        tail = self._tail
        if isinstance(pending, CodeBlock):
            if not isinstance(tail, CodeBlockView):
                tail = self._tail = CodeBlockView("", pending.language, self.code_style)
                self.body.addWidget(tail)
            # A pending block only grows: append what the view has not seen.
            tail.append_code(pending.code[len(tail.code()) :])
        else:
            if not isinstance(tail, ProseView):
                tail = self._tail = ProseView()
                self.body.addWidget(tail)
            tail.set_markdown(pending.text)

    def _new_view(self, block: Block) -> ProseView | CodeBlockView:
        if isinstance(block, CodeBlock):
            return CodeBlockView(block.code, block.language, self.code_style)
        return ProseView(block.text)

    def set_code_style(self, name: str) -> None:
        self.code_style = name
        for view in self.block_views():
            if isinstance(view, CodeBlockView):
                view.set_style(name)


class ChatView(QScrollArea):
    """The messages of one conversation, top to bottom, following the newest text.

    It keeps to the bottom while an answer streams, unless the user has
    scrolled up to read something: then it stays where the user is.
    """

    edit_requested = Signal(int)  # the position of the question to edit

    def __init__(self) -> None:
        super().__init__()
        self.setAccessibleName("Conversation")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        self.column = QVBoxLayout(content)
        self.column.setContentsMargins(8, 8, 8, 8)
        self.column.addStretch(1)
        self.setWidget(content)
        self.code_style: str | None = None  # Pygments style for code; None: from the desktop
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

    def messages(self) -> list[MessageView]:
        items = (self.column.itemAt(i).widget() for i in range(self.column.count()))
        return [item for item in items if isinstance(item, MessageView)]

    def add_message(self, role: str, text: str = "") -> MessageView:
        view = MessageView(role, text, self.code_style)
        view.edit_requested.connect(lambda v: self.edit_requested.emit(self.messages().index(v)))
        self.column.insertWidget(self.column.count() - 1, view)  # above the stretch
        self._follow = True
        return view

    def remove_from(self, index: int) -> None:
        """Remove the message at `index` and every later one (edit, regenerate)."""
        for view in self.messages()[index:]:
            self.column.removeWidget(view)
            view.deleteLater()

    def clear(self) -> None:
        self.remove_from(0)

    def set_code_style(self, name: str) -> None:
        """Colour every code block, present and future, with a Pygments style."""
        self.code_style = name
        for message in self.messages():
            message.set_code_style(name)

    def plain_text(self) -> str:
        """The conversation as text: each author and message (for tests and export)."""
        return "\n\n".join(
            f"{ROLE_TITLES.get(view.role, view.role)}:\n{view.text()}" for view in self.messages()
        )

    def _on_scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 4

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
