"""The conversation sidebar over a real store: order, New, rename, delete and search."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QWidget

from desktop.sidebar import ConversationSidebar
from desktop.store import Conversation, ConversationStore


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "c.sqlite3") as opened:
        yield opened


def make_sidebar(qtbot, store: ConversationStore) -> ConversationSidebar:
    sidebar = ConversationSidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.resize(320, 480)
    return sidebar


def create(store: ConversationStore, title: str) -> Conversation:
    """A conversation updated strictly later than every earlier one, so order is certain."""
    newest = max((c.updated_at for c in store.conversations()), default=0.0)
    # Two writes in the same clock tick would tie; the tick passes almost at once.
    while time.time() <= newest:
        pass
    return store.create_conversation(title)


def titles(widget: QListWidget) -> list[str]:
    return [widget.item(row).text() for row in range(widget.count())]


def click_row(qtbot, widget: QListWidget, row: int) -> None:
    center = widget.visualItemRect(widget.item(row)).center()
    qtbot.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, pos=center)


def test_lists_most_recent_first_and_refresh_reorders(qtbot, store: ConversationStore) -> None:
    old, _middle, new = (create(store, t) for t in ("Old", "Middle", "New"))
    sidebar = make_sidebar(qtbot, store)
    assert titles(sidebar.conversation_list) == ["New", "Middle", "Old"]
    assert "Last updated" in sidebar.conversation_list.item(0).toolTip()

    while time.time() <= new.updated_at:
        pass
    store.add_message(old.id, "user", "Bump me to the top")
    sidebar.refresh()
    assert titles(sidebar.conversation_list) == ["Old", "New", "Middle"]


def test_refresh_keeps_the_selection_quietly(qtbot, store: ConversationStore) -> None:
    first = create(store, "First")
    create(store, "Second")
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(first.id)
    create(store, "Third")
    with qtbot.assertNotEmitted(sidebar.conversation_selected):
        sidebar.refresh()
    assert sidebar.current_id() == first.id
    assert titles(sidebar.conversation_list) == ["Third", "Second", "First"]


def test_select_emits_only_on_a_change(qtbot, store: ConversationStore) -> None:
    chat = create(store, "Chat")
    sidebar = make_sidebar(qtbot, store)
    assert sidebar.current_id() is None
    with qtbot.waitSignal(sidebar.conversation_selected, timeout=1000) as blocker:
        sidebar.select(chat.id)
    assert blocker.args == [chat.id]
    with qtbot.assertNotEmitted(sidebar.conversation_selected):
        sidebar.select(chat.id)
    with pytest.raises(KeyError):
        sidebar.select(chat.id + 1000)


def test_new_creates_selects_and_emits(qtbot, store: ConversationStore) -> None:
    create(store, "Existing")
    sidebar = make_sidebar(qtbot, store)
    with qtbot.waitSignal(sidebar.conversation_selected, timeout=1000) as blocker:
        qtbot.mouseClick(sidebar.new_button, Qt.MouseButton.LeftButton)
    new_id = blocker.args[0]
    assert store.conversation(new_id).title == "New conversation"
    assert sidebar.current_id() == new_id
    assert titles(sidebar.conversation_list) == ["New conversation", "Existing"]


def test_clicking_an_item_emits_its_id(qtbot, store: ConversationStore) -> None:
    first, _second = create(store, "First"), create(store, "Second")
    sidebar = make_sidebar(qtbot, store)
    sidebar.show()
    qtbot.waitExposed(sidebar)
    with qtbot.waitSignal(sidebar.conversation_selected, timeout=1000) as blocker:
        click_row(qtbot, sidebar.conversation_list, 1)
    assert blocker.args == [first.id]
    assert sidebar.current_id() == first.id


def test_f2_renames_the_current_conversation(
    qtbot, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = create(store, "Untitled")
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(chat.id)
    asked: list[str] = []

    def ask_title(current: str) -> str | None:
        asked.append(current)
        return "  Binary search  "

    monkeypatch.setattr(sidebar, "_ask_title", ask_title)
    qtbot.keyClick(sidebar.conversation_list, Qt.Key.Key_F2)
    assert asked == ["Untitled"]
    assert store.conversation(chat.id).title == "Binary search"
    assert titles(sidebar.conversation_list) == ["Binary search"]
    assert sidebar.current_id() == chat.id

    # Cancelled, empty or unchanged titles leave it alone.
    monkeypatch.setattr(sidebar, "_ask_title", lambda current: None)
    sidebar.rename_current()
    sidebar.rename_current("   ")
    sidebar.rename_current("Binary search")
    assert store.conversation(chat.id).title == "Binary search"


def test_delete_key_with_confirmation_selects_the_next(
    qtbot, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    oldest, middle, _newest = (create(store, t) for t in ("Oldest", "Middle", "Newest"))
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(middle.id)
    monkeypatch.setattr(sidebar, "_confirm_delete", lambda title: title == "Middle")
    with (
        qtbot.waitSignal(sidebar.conversation_deleted, timeout=1000) as deleted,
        qtbot.waitSignal(sidebar.conversation_selected, timeout=1000) as selected,
    ):
        qtbot.keyClick(sidebar.conversation_list, Qt.Key.Key_Delete)
    assert deleted.args == [middle.id]
    assert selected.args == [oldest.id]
    assert middle.id not in [c.id for c in store.conversations()]
    assert titles(sidebar.conversation_list) == ["Newest", "Oldest"]
    assert sidebar.current_id() == oldest.id


def test_deleting_the_oldest_selects_the_one_above(qtbot, store: ConversationStore) -> None:
    oldest, newest = create(store, "Oldest"), create(store, "Newest")
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(oldest.id)
    with qtbot.waitSignal(sidebar.conversation_selected, timeout=1000) as selected:
        sidebar.delete_current(confirm=False)
    assert selected.args == [newest.id]
    # The last one gone: nothing left to select.
    with qtbot.assertNotEmitted(sidebar.conversation_selected):
        sidebar.delete_current(confirm=False)
    assert sidebar.current_id() is None and store.conversations() == []


def test_delete_refused_keeps_the_conversation(
    qtbot, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = create(store, "Keep me")
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(chat.id)
    monkeypatch.setattr(sidebar, "_confirm_delete", lambda title: False)
    with qtbot.assertNotEmitted(sidebar.conversation_deleted):
        qtbot.keyClick(sidebar.conversation_list, Qt.Key.Key_Delete)
    assert store.conversation(chat.id).title == "Keep me"
    assert sidebar.current_id() == chat.id


def test_context_menu_offers_rename_and_delete(
    qtbot, store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = create(store, "Menu")
    sidebar = make_sidebar(qtbot, store)
    sidebar.select(chat.id)
    monkeypatch.setattr(sidebar, "_ask_title", lambda current: "From the menu")
    menu = sidebar.context_menu()
    actions = {action.text(): action for action in menu.actions()}
    assert list(actions) == ["Rename…", "Delete…"]
    actions["Rename…"].trigger()
    assert store.conversation(chat.id).title == "From the menu"


def test_search_shows_results_and_clearing_returns_to_the_list(
    qtbot, store: ConversationStore
) -> None:
    first, second, other = (create(store, t) for t in ("Trees", "Lists", "Other"))
    store.add_message(first.id, "user", "Explain recursion on trees")
    hit_one = store.add_message(first.id, "assistant", "Recursion calls itself")
    hit_two = store.add_message(second.id, "assistant", "Flatten a list\nwith recursion")
    store.add_message(other.id, "user", "Nothing to see here")
    sidebar = make_sidebar(qtbot, store)
    sidebar.show()
    qtbot.waitExposed(sidebar)

    qtbot.keyClicks(sidebar.search_box, "itself")
    # Debounced: nothing has run while the keys were typed.
    assert not sidebar.results_list.isVisibleTo(sidebar)
    qtbot.waitUntil(lambda: sidebar.results_list.isVisibleTo(sidebar), timeout=2000)
    assert sidebar.results_list.count() == 1
    assert not sidebar.conversation_list.isVisibleTo(sidebar)

    sidebar.search_box.clear()
    qtbot.keyClicks(sidebar.search_box, "recursion")
    qtbot.waitUntil(lambda: sidebar.results_list.isVisibleTo(sidebar), timeout=2000)
    # Both messages of "Trees" match, and one of "Lists".
    results = titles(sidebar.results_list)
    assert len(results) == 3 and all("«" in r and "»" in r for r in results)
    assert {r.splitlines()[0] for r in results} == {"Trees", "Lists"}
    assert all(len(r.splitlines()) == 2 for r in results)  # line breaks folded

    row = next(i for i, r in enumerate(results) if r.startswith("Lists"))
    with qtbot.waitSignal(sidebar.message_found, timeout=1000) as found:
        click_row(qtbot, sidebar.results_list, row)
    assert found.args == [second.id, hit_two.id]

    sidebar.results_list.setCurrentRow(results.index("Trees\n«Recursion» calls itself"))
    with qtbot.waitSignal(sidebar.message_found, timeout=1000) as found:
        qtbot.keyClick(sidebar.results_list, Qt.Key.Key_Return)
    assert found.args == [first.id, hit_one.id]

    sidebar.search_box.clear()
    assert sidebar.conversation_list.isVisibleTo(sidebar)
    assert not sidebar.results_list.isVisibleTo(sidebar)
    assert titles(sidebar.conversation_list) == ["Other", "Lists", "Trees"]


@pytest.mark.parametrize(
    "text", ['"foo AND (', "qux* OR foo", "NEAR(foo", "*", "'); DROP TABLE x;--", '"']
)
def test_hostile_search_text_finds_nothing(qtbot, store: ConversationStore, text: str) -> None:
    chat = create(store, "Foo")
    store.add_message(chat.id, "user", "foo bar baz")
    sidebar = make_sidebar(qtbot, store)
    with qtbot.waitSignal(sidebar.search_timer.timeout, timeout=2000):
        qtbot.keyClicks(sidebar.search_box, text)
    assert sidebar.results_list.isVisibleTo(sidebar)
    assert sidebar.results_list.count() == 0
    assert store.conversation(chat.id).title == "Foo"


def test_accessible_names(qtbot, store: ConversationStore) -> None:
    sidebar = make_sidebar(qtbot, store)
    names = {child.accessibleName() for child in sidebar.findChildren(QWidget)}
    assert {"New conversation", "Search conversations", "Conversations", "Search results"} <= names
    assert sidebar.search_box.placeholderText() == "Search all messages"
    assert sidebar.search_box.isClearButtonEnabled()
