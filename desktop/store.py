"""Chat conversations on disk: one SQLite file in the user's data directory.

    from desktop.store import ConversationStore

    with ConversationStore() as store:          # data_dir() / "conversations.sqlite3"
        chat = store.create_conversation("Sorting in Python")
        store.add_message(chat.id, "user", "How do I sort a dict by value?")
        answer = store.add_message(chat.id, "assistant", "", status="partial")
        store.append_to_message(answer.id, "Use `sorted(d.items(), ...)`")
        store.finish_message(answer.id, "complete")
        print(store.export_markdown(chat.id))

Every write commits at once, so a streamed answer that is cut off by a crash
or a kill is still there, marked "partial", when the app starts again.

Threads: the connection is opened with sqlite3's default check_same_thread=True,
so a store must be used only from the thread that created it (the UI thread).
Workers that stream an answer hand the text to the UI thread, which stores it.

Plain Python, no Qt: tools and tests use it without a display.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from kodcu.paths import data_dir

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "partial", "failed"]

# Migration N (1-based) brings a database from user_version N-1 to N. Append new
# scripts at the end; never edit one that has shipped, as users' files already ran it.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('complete', 'partial', 'failed')),
        created_at REAL NOT NULL,
        UNIQUE (conversation_id, position)
    );
    CREATE INDEX conversations_by_update ON conversations(updated_at);
    -- External content: the text lives once, in messages; the triggers keep the index in step.
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
    END;
    """,
    # 2: each conversation remembers the LoRA adapter it ran with, beside its model.
    "ALTER TABLE conversations ADD COLUMN adapter TEXT;",
)

CONVERSATION_COLUMNS = "id, title, model, created_at, updated_at, adapter"
MESSAGE_COLUMNS = "id, conversation_id, position, role, content, status, created_at"
# Control characters, never in typed text, mark matches in search snippets (brackets
# would be ambiguous in code); the sidebar shows them as it likes.
MATCH_START, MATCH_END = "\x02", "\x03"
BUMP = "UPDATE conversations SET updated_at = ? WHERE id = ?"
HEADINGS: dict[str, str] = {"user": "You", "assistant": "Kodcu", "system": "System"}
STATUS_NOTES: dict[str, str] = {"partial": "(stopped before the end)", "failed": "(failed)"}


class StoreError(Exception):
    """The conversation file cannot be used; the message is meant for the user."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str | None
    """The GGUF model file the conversation runs on (None: whatever is current)."""
    created_at: float
    updated_at: float
    adapter: str | None = None
    """The GGUF LoRA adapter applied over the model, if any."""


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    position: int
    role: Role
    content: str
    status: Status
    created_at: float


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str
    snippet: str
    """Text around the match, each matched word between MATCH_START and MATCH_END."""


class ConversationStore:
    """Conversations and their messages in one SQLite file. See the module docstring."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else data_dir() / "conversations.sqlite3"
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no hidden transactions; each statement commits
            # unless we open one ourselves with _transaction().
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open {self.path}: {exc}.") from exc
        try:
            self._check_version(db)
            # Only now may anything write: the checks above only read the file.
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, much faster per commit
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(self._not_ours(f"SQLite says: {exc}")) from exc
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer version of Kodcu (database version "
                f"{version}; this version knows up to {len(MIGRATIONS)}). "
                "Update Kodcu to open it; the file has not been changed."
            )
        if version == 0 and tables > 0:  # another program's database: leave it alone
            raise StoreError(self._not_ours("it holds another program's tables"))

    def _not_ours(self, reason: str) -> str:
        return (
            f"{self.path} is not a Kodcu conversation database ({reason}). Move or rename "
            "that file and start Kodcu again to begin a new one; the file has not been changed."
        )

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for target in range(version + 1, len(MIGRATIONS) + 1):
            # BEGIN inside the script: executescript() would commit one opened outside it.
            script = MIGRATIONS[target - 1]
            try:
                db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;"
                )
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(
                    f"Cannot upgrade {self.path} to database version {target}: {exc}. "
                    f"The file is unchanged at version {target - 1}."
                ) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_conversation(
        self, title: str = "New conversation", model: str | None = None, adapter: str | None = None
    ) -> Conversation:
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO conversations (title, model, adapter, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (title, model, adapter, now, now),
        )
        return self.conversation(_rowid(cursor))

    def conversation(self, conversation_id: int) -> Conversation:
        sql = f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?"
        row = self._db.execute(sql, (conversation_id,)).fetchone()
        if row is None:
            raise KeyError(f"no conversation with id {conversation_id}")
        return Conversation(*row)

    def conversations(self) -> list[Conversation]:
        """All conversations, most recently updated first."""
        rows = self._db.execute(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations "
            "ORDER BY updated_at DESC, id DESC"  # id: a stable order for equal times
        )
        return [Conversation(*row) for row in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        # Renaming does not touch updated_at: the list stays ordered by chat activity.
        cursor = self._db.execute(
            "UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)
        )
        _require_row(cursor, "conversation", conversation_id)

    def set_model(
        self, conversation_id: int, model: str | None, adapter: str | None = None
    ) -> None:
        cursor = self._db.execute(
            "UPDATE conversations SET model = ?, adapter = ? WHERE id = ?",
            (model, adapter, conversation_id),
        )
        _require_row(cursor, "conversation", conversation_id)

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation; its messages go with it (ON DELETE CASCADE)."""
        cursor = self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        _require_row(cursor, "conversation", conversation_id)

    def add_message(
        self, conversation_id: int, role: Role, content: str, status: Status = "complete"
    ) -> Message:
        """Append a message at the end of the conversation and bump its updated_at."""
        _check_choice("role", role, Role)
        _check_choice("status", status, Status)
        self.conversation(conversation_id)  # KeyError before anything is written
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO messages "
                "(conversation_id, position, role, content, status, created_at) "
                "SELECT ?, coalesce(max(position) + 1, 0), ?, ?, ?, ? "
                "FROM messages WHERE conversation_id = ?",
                (conversation_id, role, content, status, now, conversation_id),
            )
            db.execute(BUMP, (now, conversation_id))
        return self.message(_rowid(cursor))

    def message(self, message_id: int) -> Message:
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
        row = self._db.execute(sql, (message_id,)).fetchone()
        if row is None:
            raise KeyError(f"no message with id {message_id}")
        return Message(*row)

    def messages(self, conversation_id: int) -> list[Message]:
        """The conversation's messages in order."""
        self.conversation(conversation_id)  # an empty list must mean "no messages yet"
        rows = self._db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY position",
            (conversation_id,),
        )
        return [Message(*row) for row in rows]

    def append_to_message(self, message_id: int, text: str) -> None:
        """Append streamed text and commit, so it survives the app being killed."""
        cursor = self._db.execute(
            "UPDATE messages SET content = content || ? WHERE id = ?", (text, message_id)
        )
        _require_row(cursor, "message", message_id)

    def finish_message(self, message_id: int, status: Status) -> None:
        _check_choice("status", status, Status)
        cursor = self._db.execute(
            "UPDATE messages SET status = ? WHERE id = ?", (status, message_id)
        )
        _require_row(cursor, "message", message_id)

    def delete_from(self, conversation_id: int, position: int) -> int:
        """Delete the messages at `position` and after (to resend or regenerate).

        Returns how many were deleted.
        """
        self.conversation(conversation_id)
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conversation_id, position),
            )
            db.execute(BUMP, (time.time(), conversation_id))
        return cursor.rowcount

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing every word of `query`, best matches first."""
        # Each word becomes a quoted FTS5 string, so operators and brackets typed by
        # the user are plain text and can never be an FTS5 syntax error.
        terms = ['"' + word.replace('"', '""') + '"' for word in query.split()]
        if not terms:
            return []
        rows = self._db.execute(
            "SELECT m.conversation_id, m.id, c.title, "
            f"snippet(messages_fts, 0, '{MATCH_START}', '{MATCH_END}', '…', 12) "
            "FROM messages_fts "
            "JOIN messages AS m ON m.id = messages_fts.rowid "
            "JOIN conversations AS c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?",
            (" ".join(terms), limit),
        )
        return [SearchHit(*row) for row in rows]

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document, message contents verbatim."""
        title = " ".join(self.conversation(conversation_id).title.split())
        parts = [f"# {title}"]
        for message in self.messages(conversation_id):
            parts.append(f"## {HEADINGS[message.role]}")
            content = message.content.rstrip("\n")
            fence = _unclosed_fence(content)
            if fence:
                # An answer stopped inside a code block: close it, or every later
                # heading would be swallowed by the open fence.
                content += "\n" + fence
            if content:
                parts.append(content)
            if message.status in STATUS_NOTES:
                parts.append(f"*{STATUS_NOTES[message.status]}*")
        return "\n\n".join(parts) + "\n"


def _rowid(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None  # always set after a one-row INSERT
    return cursor.lastrowid


def _require_row(cursor: sqlite3.Cursor, kind: str, row_id: int) -> None:
    if cursor.rowcount == 0:
        raise KeyError(f"no {kind} with id {row_id}")


def _check_choice(name: str, value: str, choices: object) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _unclosed_fence(text: str) -> str | None:
    """The fence that would close a code block left open at the end of `text`."""
    open_fence: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith(("```", "~~~")) or line.startswith("    "):
            continue  # not a fence line (four spaces of indent make it code text)
        run = stripped[: len(stripped) - len(stripped.lstrip(stripped[0]))]
        if open_fence is None:
            open_fence = run
        elif run[0] == open_fence[0] and len(run) >= len(open_fence) and run == stripped:
            open_fence = None  # a closing fence: at least as long, nothing after it
    return open_fence
