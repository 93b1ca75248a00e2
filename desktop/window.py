"""The chat window: conversations on the left, the open one on the right, a prompt box.

The window owns the engine. It starts it in the background when it opens,
streams answers through a worker thread, shows errors inline (never a dialog
that blocks the app), keeps the partial answer when something fails, and
offers to restart the engine when its process has died.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop import highlight
from desktop.adapter_box import AdapterBox
from desktop.answering import Answering, answer_status
from desktop.chat_view import ChatView
from desktop.client import GenerationStats
from desktop.composer import Composer, button, row
from desktop.context import FittedContext
from desktop.conversation import OpenConversation, ask_export_path
from desktop.engine import Engine, EngineConfig, RemoteEndpoint
from desktop.engine_control import EngineControl
from desktop.model_choice import ModelChoice
from desktop.model_dialog import ModelDialog
from desktop.model_library import ModelLibrary
from desktop.settings import Settings, engine_setup, load_settings, save_settings
from desktop.settings_dialog import SettingsDialog
from desktop.sidebar import ConversationSidebar
from desktop.store import ConversationStore, StoreError
from desktop.theme import apply_theme
from desktop.workers import StreamWorker


class MainWindow(QMainWindow):
    def __init__(
        self,
        model: Path,
        n_threads: int | None = None,
        store: ConversationStore | None = None,
        adapter: Path | None = None,
    ) -> None:
        super().__init__()
        self.n_threads = n_threads  # from the command line: wins over the settings
        self.settings, settings_problems = load_settings()
        store_problem = None
        if store is None:
            try:
                store = ConversationStore()
            except StoreError as exc:
                # Chat still works; this session's conversations are kept in memory only.
                store_problem = f"{exc} Conversations are not saved in this session."
                store = ConversationStore(Path(":memory:"))
        self.store = store
        # The model and adapter in use, remembered per conversation.
        self.choice = ModelChoice(store, model, adapter)
        self.engine_control = EngineControl(*self._engine_setup(self.settings))
        self.engine_control.ready.connect(self._engine_ready)
        self.engine_control.failed.connect(self._engine_failed)
        self.engine_control.died.connect(self._engine_died)
        # Extra request fields on top of the settings' sampling (tests, experiments).
        self.request_options: dict[str, Any] = {}
        self.answer = ""
        self.answering = Answering()
        self.answering.piece.connect(self._on_piece)
        self.answering.done.connect(self._on_done)
        self.answering.failed.connect(self._on_failed)
        self.fitted: FittedContext | None = None  # what the last answer's prompt held
        self.setWindowTitle(f"Kodcu — {self.choice.description()}")
        self.resize(1100, 720)
        self._build()
        problems = [*settings_problems, *([store_problem] if store_problem else [])]
        if problems:
            self._show_error(" ".join(problems))
        self._open_latest()
        # Off the UI thread while the model loads: the first code block then
        # finds its lexer imported.
        threading.Thread(target=highlight.warm_up, name="lexer-warm-up", daemon=True).start()
        self.start_engine()

    # -- layout --------------------------------------------------------------------

    def _build(self) -> None:
        self.chat = ChatView()
        self.conversation = OpenConversation(self.store, self.chat)
        self.sidebar = ConversationSidebar(self.store)
        self.sidebar.conversation_selected.connect(self.open_conversation)
        self.sidebar.conversation_deleted.connect(self._conversation_deleted)
        self.sidebar.message_found.connect(self._show_message)
        self.chat.edit_requested.connect(self.edit_question)
        self.editing: int | None = None  # position of the question being edited
        self.composer = Composer()
        self.export_button = button("Export…", "Export conversation")
        self.models_button = button("Models…", "Models")
        self.adapter_box = AdapterBox()
        self.adapter_box.show_adapter(self.choice.adapter)
        self.adapter_box.adapter_chosen.connect(self.use_adapter)
        self.adapter_box.add_failed.connect(self._show_error)
        self.settings_button = button("Settings…", "Settings")

        # Above the chat: what runs and how; below it, the composer.
        top = row(
            self.models_button, self.adapter_box, None, self.export_button, self.settings_button
        )
        layout = QVBoxLayout()
        layout.addLayout(top)
        layout.addWidget(self.chat, 1)
        layout.addWidget(self.composer)
        chat_panel = QWidget()
        chat_panel.setLayout(layout)
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(chat_panel)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        self.setCentralWidget(splitter)

        self.composer.send_button.clicked.connect(self.send)
        self.composer.stop_button.clicked.connect(self.stop)
        self.composer.restart_button.clicked.connect(self.start_engine)
        self.settings_button.clicked.connect(self.open_settings)
        self.models_button.clicked.connect(self.open_models)
        self.composer.regenerate_button.clicked.connect(self.regenerate)
        self.composer.continue_button.clicked.connect(self.continue_answer)
        self.export_button.clicked.connect(self.export)
        self.choice.changed.connect(self._model_changed)
        self.choice.refused.connect(self._show_error)
        self.choice.note.connect(self.composer.say)
        self.composer.prompt.submitted.connect(self.send)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, activated=self.stop)
        QShortcut(QKeySequence.StandardKey.Preferences, self, activated=self.open_settings)
        QShortcut(QKeySequence.StandardKey.New, self, activated=self.sidebar.new_conversation)
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self.sidebar.search_box.setFocus)
        self._set_busy(engine_ready=False, streaming=False)
        self.composer.prompt.setFocus()

    def apply_theme(self, theme: str) -> None:
        """Switch the look ("system", "light" or "dark"), code blocks included."""
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        self.chat.set_code_style(apply_theme(app, theme))

    def _set_busy(self, *, engine_ready: bool, streaming: bool) -> None:
        self.composer.set_state(
            engine_ready=engine_ready,
            streaming=streaming,
            starting=self.engine_control.is_starting(),
            # Going on from a cut-off answer needs a server that continues a final
            # assistant message; Kodcu's engine does, an arbitrary remote one may not.
            can_continue=self.engine_control.remote is None
            and self.conversation.unfinished_answer(),
        )

    def _show_error(self, message: str) -> None:
        self.composer.show_error(message)

    # -- settings ------------------------------------------------------------------

    def _engine_setup(self, settings: Settings) -> tuple[EngineConfig, RemoteEndpoint | None]:
        old = getattr(self, "engine_control", None)  # keep the key across restarts
        return engine_setup(
            settings,
            self.choice.model,
            self.n_threads,
            old.config.api_key if old else None,
            self.choice.adapter,
        )

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.settings())

    def open_models(self) -> None:
        dialog = ModelDialog(ModelLibrary(), self)
        dialog.model_chosen.connect(self.use_model)
        dialog.exec()

    def use_model(self, model: Path) -> None:
        """Run another GGUF model in this conversation: the engine restarts on it."""
        self.choice.use_model(model)

    def use_adapter(self, adapter: Path | None) -> None:
        """Apply a GGUF LoRA adapter over the model (None: the bare model), live."""
        if not self.choice.use_adapter(adapter):
            self.adapter_box.show_adapter(self.choice.adapter)

    @property
    def adapter(self) -> Path | None:
        return self.choice.adapter

    def _model_changed(self) -> None:
        self.adapter_box.show_adapter(self.choice.adapter)
        self.engine_control.reconfigure(*self._engine_setup(self.settings))
        self.setWindowTitle(f"Kodcu — {self.choice.description()}")
        self.start_engine()

    def apply_settings(self, settings: Settings) -> None:
        """Save new settings and use them: look, sampling, and the engine if it changed."""
        try:
            save_settings(settings)  # fills in a generated API key
        except (OSError, ValueError) as exc:
            self._show_error(f"Settings not saved: {exc}")
            return
        self.settings = settings
        self.apply_theme(settings.theme)
        config, remote = self._engine_setup(settings)
        if (config, remote) != (self.engine_control.config, self.engine_control.remote):
            self.engine_control.reconfigure(config, remote)
            self.start_engine()

    # -- engine --------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The local engine while it runs (None for a remote endpoint)."""
        return self.engine_control.engine

    def start_engine(self) -> None:
        if self.engine_control.is_starting():
            return
        self.composer.error.hide()
        self.composer.say(f"Loading {self.engine_control.description()}…")
        self.engine_control.start()
        self._set_busy(engine_ready=False, streaming=self.worker is not None)

    def _engine_ready(self) -> None:
        status = f"Ready — {self.engine_control.description()}"
        if self.settings.api_enabled and self.engine_control.remote is None:
            status += (
                f" · local API {self.engine_control.base_url}, key {self.engine_control.api_key}"
            )
            if self.settings.api_exposure():
                status += " · WARNING: reachable from other machines; key sent unencrypted"
        self.composer.say(status)
        self._set_busy(engine_ready=True, streaming=self.worker is not None)

    def _engine_died(self, reason: str) -> None:
        self.composer.say("Engine not running")
        self._show_error(
            f"The engine stopped unexpectedly ({reason}). "
            "Restart it to go on; the conversation is kept."
        )
        self._set_busy(engine_ready=False, streaming=self.worker is not None)

    def _engine_failed(self, message: str) -> None:
        self.composer.say("Engine not running")
        self._show_error(message)
        self._set_busy(engine_ready=False, streaming=False)

    def engine_ready(self) -> bool:
        return self.engine_control.is_ready()

    # -- conversations -------------------------------------------------------------

    def _open_latest(self) -> None:
        latest = self.store.conversations()
        if latest:
            self.sidebar.select(latest[0].id)  # emits conversation_selected
        else:
            self.open_conversation(None)

    def open_conversation(self, conversation_id: int | None) -> None:
        if conversation_id is not None and conversation_id == self.conversation.conversation_id:
            return
        if self.answering.busy():
            # The answer in progress stays, stopped, in the conversation it belongs to.
            self.answering.abandon()
            self.conversation.end_answer("partial")
            self._set_busy(engine_ready=self.engine_ready(), streaming=False)
        self.editing = None
        self.conversation.open(conversation_id)
        self.choice.open(conversation_id)
        self._set_busy(engine_ready=self.engine_ready(), streaming=False)
        self.composer.prompt.setFocus()

    def _conversation_deleted(self, conversation_id: int) -> None:
        if conversation_id == self.conversation.conversation_id:
            self.open_conversation(None)

    def _show_message(self, conversation_id: int, message_id: int) -> None:
        self.sidebar.select(conversation_id)
        position = self.store.message(message_id).position
        views = self.chat.messages()
        if position < len(views):
            self.chat.ensureWidgetVisible(views[position])

    # -- chat ----------------------------------------------------------------------

    def send(self) -> None:
        text = self.composer.prompt.toPlainText().strip()
        if not text or not self.engine_ready() or self.worker is not None:
            return
        self.composer.error.hide()
        self.composer.prompt.clear()
        if self.editing is not None:  # the edited question replaces itself and what followed
            self.conversation.truncate(self.editing)
            self.editing = None
        self.conversation.ask(text)
        self.choice.remember(self.conversation.conversation_id)  # a new one: the current model
        self.sidebar.refresh()
        self.sidebar.select(self.conversation.conversation_id)  # a new one is now listed
        self._answer()

    def edit_question(self, position: int) -> None:
        """Put a sent question back in the prompt box; sending replaces it and later turns."""
        if self.worker is not None:
            return
        self.editing = position
        self.composer.prompt.setPlainText(self.chat.messages()[position].text())
        self.composer.prompt.setFocus()
        self.composer.say("Editing a question: sending replaces it and every later message")

    def regenerate(self) -> None:
        """Answer the last question again, replacing the last answer."""
        if not self.engine_ready() or self.worker is not None:
            return
        if self.conversation.drop_last_answer():
            self.composer.error.hide()
            self._answer()

    def continue_answer(self) -> None:
        """Go on with the last answer from where it was cut off or stopped."""
        if not self.composer.continue_button.isEnabled():
            return
        self.composer.error.hide()
        self._answer(resume=True)

    def export(self) -> None:
        """Save the open conversation as a Markdown file the user picks."""
        conversation_id = self.conversation.conversation_id
        if conversation_id is not None:
            title = self.store.conversation(conversation_id).title
            path = ask_export_path(self, title)
            if path is not None:
                self._write_export(path, conversation_id)

    def _write_export(self, path: Path, conversation_id: int) -> None:
        try:
            path.write_text(self.store.export_markdown(conversation_id), encoding="utf-8")
        except OSError as exc:
            self._show_error(f"Could not export to {path}: {exc.strerror or exc}.")
            return
        self.composer.say(f"Exported to {path}")

    def _answer(self, resume: bool = False) -> None:
        """Stream an answer to the conversation as it stands (`resume`: add to the last one)."""
        context = self.settings.messages_prefix() + self.conversation.context()
        if resume:
            self.conversation.resume_answer()
        else:
            self.conversation.begin_answer()
        self.answer = ""
        self.answering.start(
            self.engine_control.base_url,
            self.engine_control.api_key,
            context,
            self.engine_control.n_ctx,
            {**self.settings.request_options(), **self.request_options},
        )
        self.composer.say("Answering…")
        self._set_busy(engine_ready=True, streaming=True)

    @property
    def worker(self) -> StreamWorker | None:
        """The answer's worker thread while one streams."""
        return self.answering.worker

    def stop(self) -> None:
        self.answering.stop()

    def _on_piece(self, text: str) -> None:
        self.answer += text
        self.conversation.add_to_answer(text)

    def _on_done(self, stats: GenerationStats, fitted: FittedContext | None) -> None:
        self.fitted = fitted
        # An answer stopped by the user or by the token limit can be continued.
        cut_off = stats.finish_reason in ("cancelled", "length")
        self.conversation.end_answer("partial" if cut_off else "complete")
        self.sidebar.refresh()
        status = answer_status(stats, fitted, self.engine_control.n_ctx)
        self.composer.say(status)
        self._set_busy(engine_ready=self.engine_ready(), streaming=False)

    def _on_failed(self, message: str) -> None:
        # Whatever arrived before the failure stays in the conversation.
        self.conversation.end_answer("partial")
        self.composer.say("Answer failed")
        self._show_error(message)
        self._set_busy(engine_ready=self.engine_ready(), streaming=False)
        self.engine_control.check()

    # -- shutdown ------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self.answering.shutdown()
        self.engine_control.stop()
        self.store.close()
        super().closeEvent(event)
