"""Which model and LoRA adapter run now, remembered per conversation.

Each conversation keeps the model file and adapter it ran on (in the store).
Opening it switches back to them when they still exist; choosing another model
or adapter while it is open updates it. The window restarts the engine on
`changed`; this object never touches a widget or the engine.

    choice = ModelChoice(store, default_model, adapter=default_adapter(default_model))
    choice.changed.connect(restart_engine)
    choice.use_adapter(Path("sql-lora.gguf"))   # refused (with the reason) if it does not fit
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop.store import ConversationStore
from kodcu.coder import adapter_label, coder_path, default_adapter
from kodcu.model_file import ModelFileError, check_adapter_file


class ModelChoice(QObject):
    changed = Signal()  # model or adapter changed: the engine must restart
    refused = Signal(str)  # an adapter that does not fit the model, and why
    note = Signal(str)  # something the user should know (a model gone from the disk)

    def __init__(self, store: ConversationStore, model: Path, adapter: Path | None = None) -> None:
        super().__init__()
        self.store = store
        self.model = model
        self.adapter = adapter
        self.conversation_id: int | None = None

    def use_model(self, model: Path) -> None:
        """Run another model; the adapter stays when it was made for the same architecture,
        else the model's default adapter (the built-in coder for the default model) runs."""
        adapter = self.adapter
        if adapter == coder_path():  # trained for the default model alone, whatever fits
            adapter = default_adapter(model)
        elif adapter is not None:
            try:
                check_adapter_file(adapter, model)
            except ModelFileError:
                adapter = default_adapter(model)
        self._run_on(model, adapter)

    def use_adapter(self, adapter: Path | None) -> bool:
        """Apply a GGUF LoRA adapter over the model (None: the bare model)."""
        if adapter is not None:
            try:
                check_adapter_file(adapter, self.model)
            except ModelFileError as exc:
                self.refused.emit(str(exc))
                return False
        self._run_on(self.model, adapter)
        return True

    def open(self, conversation_id: int | None) -> None:
        """Follow the open conversation: switch to its model and adapter if they exist."""
        self.conversation_id = conversation_id
        if conversation_id is None:
            return
        conversation = self.store.conversation(conversation_id)
        if conversation.model is None:  # new, or from before conversations had a model
            self.remember()
            return
        model = Path(conversation.model)
        adapter = Path(conversation.adapter) if conversation.adapter else None
        missing = next((p for p in (model, adapter) if p is not None and not p.is_file()), None)
        if missing is not None:
            self.remember()
            self.note.emit(
                f"{missing.name} is no longer on this computer; "
                f"this conversation goes on with {self.description()}"
            )
            return
        self._run_on(model, adapter, remember=False)

    def remember(self, conversation_id: int | None = None) -> None:
        """Store the current model and adapter with the (given or open) conversation."""
        if conversation_id is not None:
            self.conversation_id = conversation_id
        if self.conversation_id is not None:
            adapter = str(self.adapter) if self.adapter else None
            self.store.set_model(self.conversation_id, str(self.model), adapter)

    def description(self) -> str:
        return self.model.name + (f" + {adapter_label(self.adapter)}" if self.adapter else "")

    def _run_on(self, model: Path, adapter: Path | None, remember: bool = True) -> None:
        if (model, adapter) != (self.model, self.adapter):
            self.model, self.adapter = model, adapter
            self.changed.emit()
        if remember:
            self.remember()
