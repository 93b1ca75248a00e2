"""The open conversation: the chat view, the store and the model's context kept in step.

The window asks a question and streams an answer through this class; it writes
both to the store as they happen, so nothing said is lost when the app is
killed. Streamed text is saved every SAVE_INTERVAL_MS (each save is a SQLite
commit and a full-text re-index of the message, too much for every token) and
at the end of the answer; a kill loses at most that much of a partial answer.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QFileDialog, QWidget

from desktop.chat_view import ChatView, MessageView
from desktop.client import Message
from desktop.sidebar import NEW_TITLE
from desktop.store import ConversationStore, Status

SAVE_INTERVAL_MS = 500
TITLE_LENGTH = 60


def ask_export_path(parent: QWidget, title: str) -> Path | None:
    """Ask where to export a conversation, suggesting a file named after its title."""
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip()
    suggested = str(Path.home() / f"{safe or 'conversation'}.md")
    chosen, _ = QFileDialog.getSaveFileName(
        parent, "Export conversation", suggested, "Markdown (*.md)"
    )
    return Path(chosen) if chosen else None


def title_from(question: str) -> str:
    """A conversation's title from its first question: the first line, shortened."""
    line = next((line.strip() for line in question.splitlines() if line.strip()), NEW_TITLE)
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class OpenConversation(QObject):
    """One conversation at a time: load it, add a question, stream an answer into it."""

    def __init__(self, store: ConversationStore, chat: ChatView) -> None:
        super().__init__()
        self.store = store
        self.chat = chat
        self.conversation_id: int | None = None
        self._answer_id: int | None = None
        self._answer_view: MessageView | None = None
        self._unsaved = ""
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_INTERVAL_MS)
        self._save_timer.timeout.connect(self._save)

    def open(self, conversation_id: int | None) -> None:
        """Show a conversation from the store (None: an empty one, created on first question)."""
        self.chat.clear()
        self.conversation_id = conversation_id
        if conversation_id is None:
            return
        for message in self.store.messages(conversation_id):
            view = self.chat.add_message(message.role, message.content)
            if message.status != "complete":
                view.setToolTip("This answer was cut off; Continue goes on from its end.")

    def context(self) -> list[Message]:
        """The conversation so far, as the model sees it (partial answers included)."""
        if self.conversation_id is None:
            return []
        return [
            {"role": m.role, "content": m.content}
            for m in self.store.messages(self.conversation_id)
            if m.content and m.status != "failed"
        ]

    def ask(self, question: str) -> None:
        """Store and show a question, creating the conversation if there is none yet."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(title_from(question)).id
        elif self.store.conversation(self.conversation_id).title == NEW_TITLE:
            self.store.rename(self.conversation_id, title_from(question))
        self.store.add_message(self.conversation_id, "user", question)
        self.chat.add_message("user", question)

    def truncate(self, position: int) -> None:
        """Remove the message at `position` and all after it (to edit and resend)."""
        if self.conversation_id is not None:
            self.store.delete_from(self.conversation_id, position)
        self.chat.remove_from(position)

    def drop_last_answer(self) -> bool:
        """Remove the last answer (to ask again); False when the last message is not one."""
        if self.conversation_id is None:
            return False
        messages = self.store.messages(self.conversation_id)
        if not messages or messages[-1].role != "assistant":
            return False
        self.store.delete_from(self.conversation_id, messages[-1].position)
        self.chat.remove_from(len(messages) - 1)
        return True

    def unfinished_answer(self) -> bool:
        """Whether the conversation ends with an answer that was cut off or stopped."""
        if self.conversation_id is None:
            return False
        messages = self.store.messages(self.conversation_id)
        return (
            bool(messages)
            and messages[-1].role == "assistant"
            and (messages[-1].status == "partial")
        )

    def resume_answer(self) -> None:
        """Open the last, unfinished answer again so that more text streams onto its end."""
        assert self.unfinished_answer() and self.conversation_id is not None
        last = self.store.messages(self.conversation_id)[-1]
        self._answer_id = last.id
        # A fresh view streams on from the saved text; the settled one is replaced.
        self.chat.remove_from(len(self.chat.messages()) - 1)
        self._answer_view = self.chat.add_message("assistant")
        self._answer_view.append(last.content)

    def begin_answer(self) -> None:
        assert self.conversation_id is not None, "ask() comes first"
        self._answer_id = self.store.add_message(
            self.conversation_id, "assistant", "", status="partial"
        ).id
        self._answer_view = self.chat.add_message("assistant")

    def add_to_answer(self, piece: str) -> None:
        if self._answer_view is None:
            return
        self._answer_view.append(piece)
        self._unsaved += piece
        if not self._save_timer.isActive():
            self._save_timer.start()

    def end_answer(self, status: Status) -> str:
        """Settle the answer in the view and the store; return its text."""
        if self._answer_view is None or self._answer_id is None:
            return ""
        self._answer_view.end()
        self._save()
        text = self._answer_view.text()
        # An answer that never started is noise in the conversation.
        if not text and status != "complete" and self.conversation_id is not None:
            position = self.store.message(self._answer_id).position
            self.store.delete_from(self.conversation_id, position)
            self.chat.remove_from(len(self.chat.messages()) - 1)
        else:
            self.store.finish_message(self._answer_id, status)
        self._answer_id = None
        self._answer_view = None
        return text

    def _save(self) -> None:
        self._save_timer.stop()
        if self._unsaved and self._answer_id is not None:
            self.store.append_to_message(self._answer_id, self._unsaved)
        self._unsaved = ""
