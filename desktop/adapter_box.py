"""The adapter picker: which GGUF LoRA adapter runs over the model, switched while chatting.

Adapters live in ``data_dir() / "adapters"``; "Add adapter from file…" copies one
there (off the UI thread: a 7B model's adapter is tens of megabytes). The built-in
Kodcu Coder adapter (kodcu/coder.py) is listed by name when this installation has it.
Choosing an entry emits `adapter_chosen` with the adapter's path, or None for the bare
model.

    box = AdapterBox()
    box.adapter_chosen.connect(window.use_adapter)
    box.show_adapter(Path(".../sql-lora.gguf"))   # reflect a choice made elsewhere
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QWidget

from kodcu.coder import adapter_label, coder_path
from kodcu.paths import data_dir

NO_ADAPTER = "No adapter"
ADD_ADAPTER = "Add adapter from file…"


def adapters_dir() -> Path:
    return data_dir() / "adapters"


class AdapterBox(QComboBox):
    adapter_chosen = Signal(object)  # Path | None
    added = Signal(object)  # Path of a copied adapter (emitted from the copying thread)
    add_failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("LoRA adapter")
        self.view().setAccessibleName("LoRA adapters")
        self.setToolTip("A LoRA adapter (GGUF) applied over the model; switch at any time")
        self.folder = adapters_dir()
        self._current: Path | None = None
        self.added.connect(self._added)
        self.refresh()
        self.activated.connect(self._activated)

    def refresh(self) -> None:
        """List the adapters folder again, keeping the current choice shown."""
        self.blockSignals(True)
        self.clear()
        self.addItem(NO_ADAPTER, None)
        paths = [coder_path()] if coder_path().is_file() else []
        paths += sorted(self.folder.glob("*.gguf")) if self.folder.is_dir() else []
        if self._current is not None and self._current not in paths:
            paths.append(self._current)  # in use from elsewhere (an older conversation)
        for path in paths:
            self.addItem(adapter_label(path), str(path))
        self.addItem(ADD_ADAPTER, ADD_ADAPTER)
        self.setCurrentIndex(max(0, self.findData(str(self._current) if self._current else None)))
        self.blockSignals(False)

    def show_adapter(self, adapter: Path | None) -> None:
        """Show `adapter` as chosen without emitting adapter_chosen."""
        self._current = adapter
        self.refresh()

    def _activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == ADD_ADAPTER:
            self.refresh()  # back to the current choice while the file is chosen
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Add a LoRA adapter", str(Path.home()), "GGUF adapters (*.gguf)"
            )
            if chosen:
                self.add_file(Path(chosen))
            return
        adapter = Path(data) if data else None
        if adapter != self._current:
            self._current = adapter
            self.adapter_chosen.emit(adapter)

    def add_file(self, source: Path) -> None:
        """Copy `source` into the adapters folder in the background, then choose it."""

        def copy() -> None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                target = self.folder / source.name
                if target.resolve() != source.resolve():
                    partial = target.with_suffix(".part")
                    shutil.copyfile(source, partial)
                    partial.replace(target)  # a half-copied adapter never shows up
            except OSError as exc:
                self.add_failed.emit(f"Could not add {source}: {exc.strerror or exc}.")
                return
            self.added.emit(target)

        threading.Thread(target=copy, name="adapter-copy", daemon=True).start()

    def _added(self, path: Path) -> None:
        self._current = path
        self.refresh()
        self.adapter_chosen.emit(path)
