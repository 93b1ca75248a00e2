"""The conversation sidebar: New, a search box and the list of saved conversations.

The list shows the store's conversations, most recently updated first. Typing in
the search box switches to the messages that match (after a short pause, so the
query does not run on every key); clearing it brings the list back. Rename and
Delete are on each item's context menu and on F2 and the Delete key.

The widget only reads and writes the store; loading a conversation is left to
whoever listens to its signals.
"""

from __future__ import annotations

from PySide6.QtCore import QDateTime, QEvent, QLocale, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.store import MATCH_END, MATCH_START, ConversationStore

NEW_TITLE = "New conversation"
# Long enough that a fast typist's keys do not each run a query, short enough to feel live.
SEARCH_DELAY_MS = 200
# Search results keep both ids: the conversation and the message that matched.
CONVERSATION_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1


class ConversationSidebar(QWidget):
    """New conversation, search and the conversation list over a ConversationStore."""

    conversation_selected = Signal(int)
    conversation_deleted = Signal(int)
    message_found = Signal(int, int)  # conversation_id, message_id

    def __init__(self, store: ConversationStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        # True while the list is changed by code, so only the user's picks are signalled.
        self._quiet = False

        self.new_button = QPushButton(NEW_TITLE)
        self.new_button.setAccessibleName("New conversation")
        self.new_button.clicked.connect(self.new_conversation)

        self.search_box = QLineEdit()
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setPlaceholderText("Search all messages")
        self.search_box.setClearButtonEnabled(True)
        for clear_button in self.search_box.findChildren(QToolButton):
            clear_button.setAccessibleName("Clear search")
        self.search_box.textChanged.connect(self._search_text_changed)
        self.search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self.search_timer.timeout.connect(self._run_search)

        self.conversation_list = QListWidget()
        self.conversation_list.setAccessibleName("Conversations")
        # Long titles end in "…" rather than pushing out a horizontal scroll bar.
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conversation_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conversation_list.currentItemChanged.connect(self._current_changed)
        self.conversation_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conversation_list.customContextMenuRequested.connect(self._show_context_menu)
        self.conversation_list.installEventFilter(self)

        self.results_list = QListWidget()
        self.results_list.setAccessibleName("Search results")
        self.results_list.setWordWrap(True)
        self.results_list.itemClicked.connect(self._result_activated)
        self.results_list.installEventFilter(self)
        self.results_list.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search_box)
        layout.addWidget(self.conversation_list)
        layout.addWidget(self.results_list)
        self.refresh()

    # -- the conversation list -------------------------------------------------------

    def refresh(self) -> None:
        """Reload from the store, keeping the current conversation selected if it still exists."""
        current = self.current_id()
        self._quiet = True
        try:
            self.conversation_list.clear()
            for conversation in self.store.conversations():
                item = QListWidgetItem(conversation.title)
                item.setData(CONVERSATION_ROLE, conversation.id)
                updated = QDateTime.fromSecsSinceEpoch(int(conversation.updated_at))
                when = QLocale().toString(updated, QLocale.FormatType.ShortFormat)
                item.setToolTip(f"{conversation.title}\nLast updated {when}")
                self.conversation_list.addItem(item)
                if conversation.id == current:
                    self.conversation_list.setCurrentItem(item)
        finally:
            self._quiet = False
        if self.search_box.text().strip():
            self._run_search()  # results may name renamed or deleted conversations

    def current_id(self) -> int | None:
        item = self.conversation_list.currentItem()
        return None if item is None else int(item.data(CONVERSATION_ROLE))

    def select(self, conversation_id: int) -> None:
        """Make a conversation current; emits conversation_selected unless it already was."""
        if conversation_id == self.current_id():
            return
        item = self._item_for(conversation_id)
        if item is None:
            self.refresh()  # created elsewhere since the last refresh
            item = self._item_for(conversation_id)
        if item is None:
            raise KeyError(f"no conversation with id {conversation_id}")
        self._quiet = True  # one signal below, whether or not Qt would have sent one
        self.conversation_list.setCurrentItem(item)
        self._quiet = False
        self.conversation_selected.emit(conversation_id)

    def new_conversation(self) -> int:
        conversation = self.store.create_conversation(NEW_TITLE)
        # A new conversation matches no search: show the list it appears in.
        self.search_box.clear()
        self.refresh()
        self.select(conversation.id)
        return conversation.id

    def rename_current(self, title: str | None = None) -> None:
        """Rename the current conversation; asks for the title when none is given."""
        conversation_id = self.current_id()
        if conversation_id is None:
            return
        old_title = self.store.conversation(conversation_id).title
        if title is None:
            title = self._ask_title(old_title)
            if title is None:
                return
        title = title.strip()
        if not title or title == old_title:
            return
        self.store.rename(conversation_id, title)
        self.refresh()

    def delete_current(self, confirm: bool = True) -> None:
        """Delete the current conversation, then select the one that followed it."""
        conversation_id = self.current_id()
        if conversation_id is None:
            return
        title = self.store.conversation(conversation_id).title
        if confirm and not self._confirm_delete(title):
            return
        row = self.conversation_list.currentRow()
        self.store.delete(conversation_id)
        self.conversation_deleted.emit(conversation_id)
        self.refresh()
        # The next older one now sits at the same row; after the oldest, take the one above.
        following = self.conversation_list.item(min(row, self.conversation_list.count() - 1))
        if following is not None:
            self.select(int(following.data(CONVERSATION_ROLE)))

    def _item_for(self, conversation_id: int) -> QListWidgetItem | None:
        for row in range(self.conversation_list.count()):
            item = self.conversation_list.item(row)
            if item.data(CONVERSATION_ROLE) == conversation_id:
                return item
        return None

    def _current_changed(
        self, current: QListWidgetItem | None, _previous: QListWidgetItem | None
    ) -> None:
        if current is not None and not self._quiet:
            self.conversation_selected.emit(int(current.data(CONVERSATION_ROLE)))

    def _show_context_menu(self, position: QPoint) -> None:
        if self.conversation_list.itemAt(position) is None:
            return
        menu = self.context_menu()
        menu.exec(self.conversation_list.viewport().mapToGlobal(position))
        menu.deleteLater()

    def context_menu(self) -> QMenu:
        """Rename and Delete for the current conversation."""
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename_current())
        menu.addAction("Delete…", lambda: self.delete_current())
        return menu

    # -- dialogs, one method each so tests can replace them -----------------------------

    def _ask_title(self, current: str) -> str | None:
        title, ok = QInputDialog.getText(
            self, "Rename conversation", "Title:", QLineEdit.EchoMode.Normal, current
        )
        return title if ok else None

    def _confirm_delete(self, title: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Delete conversation",
            f"Delete “{title}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- search ---------------------------------------------------------------------

    def _search_text_changed(self, text: str) -> None:
        if text.strip():
            self.search_timer.start()  # restarts the wait on every key
            return
        self.search_timer.stop()
        self.results_list.clear()
        self.results_list.hide()
        self.conversation_list.show()

    def _run_search(self) -> None:
        query = self.search_box.text()
        if not query.strip():
            return
        self.results_list.clear()
        for hit in self.store.search(query):
            # Matches stay marked [like this]; a message's line breaks would waste rows.
            marked = hit.snippet.replace(MATCH_START, "«").replace(MATCH_END, "»")
            snippet = " ".join(marked.split())
            item = QListWidgetItem(f"{hit.title}\n{snippet}")
            item.setData(CONVERSATION_ROLE, hit.conversation_id)
            item.setData(MESSAGE_ROLE, hit.message_id)
            item.setToolTip(snippet)
            self.results_list.addItem(item)
        self.conversation_list.hide()
        self.results_list.show()

    def _result_activated(self, item: QListWidgetItem) -> None:
        self.message_found.emit(int(item.data(CONVERSATION_ROLE)), int(item.data(MESSAGE_ROLE)))

    # -- keys -----------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        # A filter rather than shortcuts: keys act only on the list that has them,
        # and F2 would otherwise go to the list's own (unused) item editing.
        if event.type() != QEvent.Type.KeyPress or not isinstance(event, QKeyEvent):
            return super().eventFilter(watched, event)
        key = event.key()
        if watched is self.conversation_list and key == Qt.Key.Key_F2:
            self.rename_current()
            return True
        if watched is self.conversation_list and key == Qt.Key.Key_Delete:
            self.delete_current()
            return True
        if watched is self.results_list and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            item = self.results_list.currentItem()
            if item is not None:
                self._result_activated(item)
            return True
        return super().eventFilter(watched, event)
