"""The conversation store, on real SQLite files: what a user would notice if it broke."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from desktop import store as store_module
from desktop.store import MATCH_END, MATCH_START, MIGRATIONS, ConversationStore, StoreError
from kodcu.paths import data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.sqlite3"


@pytest.fixture()
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def raw_query(path: Path, sql: str) -> list[tuple]:
    """Look at the file with plain sqlite3, as another program would."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def user_version(path: Path) -> int:
    return raw_query(path, "PRAGMA user_version")[0][0]


def test_default_file_is_in_the_data_directory() -> None:
    with ConversationStore() as store:
        store.create_conversation("Hello")
        assert store.path == data_dir() / "conversations.sqlite3"
    assert (data_dir() / "conversations.sqlite3").is_file()


def test_create_rename_and_set_model_are_kept(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        chat = store.create_conversation()
        assert chat.title == "New conversation" and chat.model is None
        store.rename(chat.id, "Sorting a dict")
        store.set_model(chat.id, "gemma-3-270m", "sql-lora.gguf")
    with ConversationStore(db_path) as store:
        [again] = store.conversations()
        assert (again.id, again.title, again.model) == (chat.id, "Sorting a dict", "gemma-3-270m")
        assert again.adapter == "sql-lora.gguf"
        assert again.created_at == chat.created_at


def test_list_shows_the_most_recently_updated_first(store: ConversationStore) -> None:
    first = store.create_conversation("first")
    second = store.create_conversation("second")
    third = store.create_conversation("third")
    assert [c.title for c in store.conversations()] == ["third", "second", "first"]
    store.add_message(first.id, "user", "back to the first one")
    assert [c.id for c in store.conversations()] == [first.id, third.id, second.id]
    assert store.conversation(first.id).updated_at >= first.updated_at


def test_messages_come_back_in_order(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        chat = store.create_conversation()
        texts = ["You are helpful.", "Hi", "Hello! How can I help?", "Sort a list"]
        for role, text in zip(["system", "user", "assistant", "user"], texts, strict=True):
            store.add_message(chat.id, role, text)
    with ConversationStore(db_path) as store:
        messages = store.messages(chat.id)
    assert [m.content for m in messages] == texts
    assert [m.position for m in messages] == [0, 1, 2, 3]
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert all(m.status == "complete" for m in messages)


def test_conversations_keep_their_own_messages(store: ConversationStore) -> None:
    a = store.create_conversation("a")
    b = store.create_conversation("b")
    store.add_message(a.id, "user", "in a")
    store.add_message(b.id, "user", "in b")
    assert [m.content for m in store.messages(a.id)] == ["in a"]
    assert [(m.content, m.position) for m in store.messages(b.id)] == [("in b", 0)]


def test_delete_takes_the_messages_too(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        kept = store.create_conversation("kept")
        gone = store.create_conversation("gone")
        store.add_message(kept.id, "user", "keep this")
        doomed = store.add_message(gone.id, "user", "forget this")
        store.delete(gone.id)
        assert [c.id for c in store.conversations()] == [kept.id]
        with pytest.raises(KeyError):
            store.message(doomed.id)
        assert store.search("forget") == []
    assert raw_query(db_path, "SELECT content FROM messages") == [("keep this",)]


def test_delete_from_drops_the_tail_for_resend(store: ConversationStore) -> None:
    chat = store.create_conversation()
    for text in ["q1", "a1", "q2", "a2"]:
        store.add_message(chat.id, "user" if text.startswith("q") else "assistant", text)
    assert store.delete_from(chat.id, 2) == 2
    assert [m.content for m in store.messages(chat.id)] == ["q1", "a1"]
    edited = store.add_message(chat.id, "user", "q2, edited")
    assert edited.position == 2
    assert store.search("a2") == []


def test_streamed_text_is_appended_then_finished(store: ConversationStore) -> None:
    chat = store.create_conversation()
    answer = store.add_message(chat.id, "assistant", "", status="partial")
    for piece in ["def square(x):", "\n", "    return x * x"]:
        store.append_to_message(answer.id, piece)
    assert store.message(answer.id).content == "def square(x):\n    return x * x"
    assert store.message(answer.id).status == "partial"
    store.finish_message(answer.id, "complete")
    assert store.message(answer.id).status == "complete"
    assert [hit.message_id for hit in store.search("square")] == [answer.id]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.rename(999, "x"),
        lambda s: s.set_model(999, "m"),
        lambda s: s.delete(999),
        lambda s: s.conversation(999),
        lambda s: s.add_message(999, "user", "hi"),
        lambda s: s.messages(999),
        lambda s: s.delete_from(999, 0),
        lambda s: s.export_markdown(999),
        lambda s: s.append_to_message(999, "more"),
        lambda s: s.finish_message(999, "complete"),
        lambda s: s.message(999),
    ],
)
def test_missing_ids_raise_key_error(
    store: ConversationStore, call: Callable[[ConversationStore], object]
) -> None:
    with pytest.raises(KeyError, match="999"):
        call(store)


def test_unknown_role_or_status_is_refused(store: ConversationStore) -> None:
    chat = store.create_conversation()
    with pytest.raises(ValueError, match="role"):
        store.add_message(chat.id, "robot", "hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        store.add_message(chat.id, "user", "hi", status="done")  # type: ignore[arg-type]
    assert store.messages(chat.id) == []


def test_search_finds_words_across_conversations(store: ConversationStore) -> None:
    python = store.create_conversation("Python sorting")
    rust = store.create_conversation("Rust sorting")
    store.add_message(python.id, "user", "How do I sort a dictionary by value in Python?")
    store.add_message(rust.id, "user", "How do I sort a Vec in Rust?")
    store.add_message(rust.id, "assistant", "Call v.sort() on a mutable Vec.")

    hits = store.search("sort")
    assert {(hit.conversation_id, hit.title) for hit in hits} == {
        (python.id, "Python sorting"),
        (rust.id, "Rust sorting"),
    }
    assert all(f"{MATCH_START}sort{MATCH_END}" in hit.snippet for hit in hits)

    [hit] = store.search("DICTIONARY value")  # every word, any case
    assert hit.conversation_id == python.id and f"{MATCH_START}dictionary{MATCH_END}" in hit.snippet
    assert store.search("dictionary Vec") == []
    assert store.search("") == [] and store.search("   ") == []


def test_search_limit(store: ConversationStore) -> None:
    chat = store.create_conversation()
    for i in range(5):
        store.add_message(chat.id, "user", f"hello number {i}")
    assert len(store.search("hello", limit=3)) == 3


@pytest.mark.parametrize(
    "query",
    ['"foo AND (', "*", '"', '""', "'", "NEAR(foo bar", "foo OR", "-foo", "col:foo", "^", ")("],
)
def test_search_survives_hostile_input(store: ConversationStore, query: str) -> None:
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "foo bar (baz) AND qux")
    hits = store.search(query)
    assert all(hit.conversation_id == chat.id for hit in hits)


def test_search_treats_operators_as_words(store: ConversationStore) -> None:
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "use OR and AND as plain words")
    store.add_message(chat.id, "user", "nothing to see")
    assert len(store.search("OR AND")) == 1
    assert len(store.search('"plain words"')) == 1


def test_export_markdown(store: ConversationStore) -> None:
    chat = store.create_conversation("Squares")
    code = "Here:\n\n```python\ndef square(x):\n    return x * x\n```\n"
    store.add_message(chat.id, "system", "Be brief.")
    store.add_message(chat.id, "user", "Write square()")
    store.add_message(chat.id, "assistant", code)
    store.add_message(chat.id, "user", "And cube()?")
    store.add_message(chat.id, "assistant", "Sure, here is", status="partial")

    text = store.export_markdown(chat.id)
    assert text.startswith("# Squares\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## System", "## You", "## Kodcu", "## You", "## Kodcu"]
    assert code.rstrip("\n") in text
    assert text.count("(stopped before the end)") == 1
    assert text.index("Sure, here is") < text.index("(stopped before the end)")


def test_export_closes_a_code_block_left_open_by_a_stopped_answer(
    store: ConversationStore,
) -> None:
    chat = store.create_conversation("Stopped")
    store.add_message(chat.id, "assistant", "```python\ndef f(", status="partial")
    store.add_message(chat.id, "user", "Why did you stop?")
    text = store.export_markdown(chat.id)
    assert "```python\ndef f(\n```" in text
    # Outside any code block, the next heading is still a heading.
    before_heading = text[: text.index("## You")]
    assert before_heading.count("```") % 2 == 0


def test_fresh_file_is_at_the_latest_version_in_wal_mode(db_path: Path) -> None:
    with ConversationStore(db_path):
        pass
    assert user_version(db_path) == len(MIGRATIONS)
    assert raw_query(db_path, "PRAGMA journal_mode") == [("wal",)]


def version_1_database(path: Path) -> None:
    """A database as the first release wrote it, built without the store."""
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO conversations VALUES (1, 'Old chat', NULL, 1.0, 2.0)")
    db.execute("INSERT INTO messages VALUES (1, 1, 0, 'user', 'written long ago', 'complete', 1.5)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_a_database_from_an_earlier_run_opens_with_its_data(db_path: Path) -> None:
    version_1_database(db_path)
    with ConversationStore(db_path) as store:
        [chat] = store.conversations()
        assert chat.title == "Old chat" and chat.adapter is None
        assert [m.content for m in store.messages(chat.id)] == ["written long ago"]
        assert store.search("long")[0].message_id == 1
    assert user_version(db_path) == len(MIGRATIONS)


def test_missing_migrations_are_applied_in_order(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_1_database(db_path)
    later = ("CREATE TABLE tags (name TEXT);", "INSERT INTO tags VALUES ('added by 3');")
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, *later))
    with ConversationStore(db_path) as store:
        assert store.conversations()[0].title == "Old chat"
    assert user_version(db_path) == len(MIGRATIONS) + 2
    assert raw_query(db_path, "SELECT name FROM tags") == [("added by 3",)]


def test_a_failing_migration_changes_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version_1_database(db_path)
    broken = "CREATE TABLE half_done (x); THIS IS NOT SQL;"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    # The shipped migrations apply; the broken one after them changes nothing.
    with pytest.raises(StoreError, match=f"version {len(MIGRATIONS) + 1}"):
        ConversationStore(db_path)
    assert user_version(db_path) == len(MIGRATIONS)
    tables = {row[0] for row in raw_query(db_path, "SELECT name FROM sqlite_master")}
    assert "half_done" not in tables and "conversations" in tables


def test_a_newer_database_is_refused_untouched(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        store.create_conversation("from the future")
    newer = len(MIGRATIONS) + 1
    raw_query(db_path, f"PRAGMA user_version = {newer}")
    before = db_path.read_bytes()
    files_before = sorted(db_path.parent.iterdir())

    with pytest.raises(StoreError) as caught:
        ConversationStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert f"database version {newer}" in message
    assert f"knows up to {len(MIGRATIONS)}" in message
    assert db_path.read_bytes() == before
    assert sorted(db_path.parent.iterdir()) == files_before


def test_a_text_file_is_refused_untouched(db_path: Path) -> None:
    db_path.write_text("These are my notes, not a database.\n" * 50)
    before = db_path.read_bytes()
    with pytest.raises(StoreError) as caught:
        ConversationStore(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert "Move or rename" in message
    assert db_path.read_bytes() == before
    assert list(db_path.parent.iterdir()) == [db_path]


def test_another_programs_database_is_refused_untouched(db_path: Path) -> None:
    raw_query(db_path, "CREATE TABLE photos (name TEXT)")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="not a Kodcu conversation database"):
        ConversationStore(db_path)
    assert db_path.read_bytes() == before


def test_closed_store_cannot_be_used(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        store.create_conversation()
    with pytest.raises(sqlite3.ProgrammingError):
        store.conversations()


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from desktop.store import ConversationStore

    store = ConversationStore(Path(sys.argv[1]))
    chat = store.create_conversation("Killed mid-answer")
    store.add_message(chat.id, "user", "Explain recursion")
    answer = store.add_message(chat.id, "assistant", "", status="partial")
    for i in range(100_000):
        store.append_to_message(answer.id, f"piece{i} ")
        if i == 4:
            print("appended 5 pieces", flush=True)
        if i >= 4:
            time.sleep(0.02)
    """
)


def test_a_partial_answer_survives_the_app_being_killed(db_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "appended 5 pieces", child.stderr.read() if child.stderr else ""
    finally:
        child.kill()  # SIGKILL: no chance to close or flush anything
        child.communicate()

    with ConversationStore(db_path) as store:
        [chat] = store.conversations()
        assert chat.title == "Killed mid-answer"
        question, answer = store.messages(chat.id)
    assert (question.role, question.content) == ("user", "Explain recursion")
    assert answer.role == "assistant" and answer.status == "partial"
    pieces = answer.content.split()
    assert len(pieces) >= 5
    assert pieces == [f"piece{i}" for i in range(len(pieces))]
