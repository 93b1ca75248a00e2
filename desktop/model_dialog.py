"""The model library window: the user's models, adding, downloading and removing them.

    from desktop.model_dialog import ModelDialog
    from desktop.model_library import ModelLibrary

    dialog = ModelDialog(ModelLibrary(), parent=window)
    dialog.model_chosen.connect(lambda path: restart_engine_with(path))
    dialog.exec()

The table lists ModelLibrary.models(); a worker thread describes the files one by
one (a child process each) and fills the rows as answers come. Copies and
downloads run in a worker too, one at a time, with a progress bar and a Cancel
button. Problems are shown in red inside the dialog, never in a modal box.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.gguf_metadata import ModelInfo
from desktop.hub_download import DownloadCancelled, DownloadError, download, gguf_file_name
from desktop.model_library import CURATED, CopyCancelled, LibraryError, ModelEntry, ModelLibrary

COLUMNS = ["Name", "Architecture", "Parameters", "Quantization", "Context", "Size"]
ERROR_STYLE = "color: #d32f2f;"
RESUME_MESSAGE = "Cancelled — Download again to resume."
ENTRY_ROLE = Qt.ItemDataRole.UserRole  # (path, embedded) on the Name item

Progress = Callable[[int, int | None], None]


def human_size(size: int) -> str:
    """Bytes for display, in binary units: 253113024 -> "241 MB"."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


class Describer(QThread):
    """Describes entries one by one; emits described or failed per entry."""

    described = Signal(object, object)  # Path, ModelInfo
    failed = Signal(object, str)  # Path, message

    def __init__(self, library: ModelLibrary, entries: list[ModelEntry]) -> None:
        super().__init__()
        self._library = library
        self._entries = entries
        self._stop = threading.Event()

    def run(self) -> None:
        for entry in self._entries:
            if self._stop.is_set():
                return
            try:
                info = self._library.describe(entry, cancel=self._stop)
            except (ValueError, OSError) as exc:  # MetadataError is a ValueError
                if self._stop.is_set():
                    return
                self.failed.emit(entry.path, str(exc))
            else:
                self.described.emit(entry.path, info)

    def stop(self) -> None:
        self._stop.set()


class FileJob(QThread):
    """Runs `work(progress, cancel)`, a copy or a download; ends with exactly one of
    succeeded (the new file's Path) or ended (a message, and whether it is an error)."""

    progressed = Signal(object, object)  # bytes done, total bytes or None
    succeeded = Signal(object)
    ended = Signal(str, bool)

    def __init__(
        self, work: Callable[[Progress, threading.Event], Path], cancelled_message: str
    ) -> None:
        super().__init__()
        self._work = work
        self._cancelled_message = cancelled_message
        self.cancel = threading.Event()

    def run(self) -> None:
        try:
            path = self._work(self.progressed.emit, self.cancel)
        except (CopyCancelled, DownloadCancelled):
            self.ended.emit(self._cancelled_message, False)
        except (ValueError, OSError, DownloadError) as exc:  # LibraryError, ModelFileError
            self.ended.emit(str(exc), True)
        else:
            self.succeeded.emit(path)


W = TypeVar("W", bound=QWidget)


def _named(widget: W, name: str) -> W:
    widget.setAccessibleName(name)
    return widget


def _row(*widgets: QWidget, stretch_after: int = -1) -> QHBoxLayout:
    layout = QHBoxLayout()
    for index, widget in enumerate(widgets):
        layout.addWidget(widget)
        if index == stretch_after:
            layout.addStretch()
    return layout


class ModelDialog(QDialog):
    """The model library; emits model_chosen(Path) when the user picks a model."""

    model_chosen = Signal(object)

    def __init__(
        self, library: ModelLibrary, parent: QWidget | None = None, endpoint: str | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(820, 480)
        self.library = library
        self.endpoint = endpoint
        self._describer: Describer | None = None
        self._job: FileJob | None = None
        self._threads: list[QThread] = []  # kept alive until they finish

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        _named(self.table, "Models")

        self.add_button = self._button("Add file…", "Add a model file", self._add_file)
        self.remove_button = self._button("Remove", "Remove the selected model", self._remove)
        self.use_button = self._button("Use this model", "Use the selected model", self._use)
        self.close_button = self._button("Close", "Close", self.reject)

        self.curated = _named(QComboBox(), "Suggested models")
        for model in CURATED:
            hint = f" ({model.size_hint_gb:g} GB)" if model.size_hint_gb else ""
            self.curated.addItem(model.label + hint)
        self.curated.currentIndexChanged.connect(self._fill_from_curated)
        self.repo_id = _named(QLineEdit(), "Repository id")
        self.repo_id.setPlaceholderText("repo id, e.g. org/model-GGUF")
        self.file_name = _named(QLineEdit(), "File name")
        self.file_name.setPlaceholderText("file name, e.g. model-q4_k_m.gguf")
        self.download_button = self._button("Download", "Download the model", self._download)
        self._fill_from_curated(self.curated.currentIndex())

        self.progress = _named(QProgressBar(), "Progress")
        self.cancel_button = self._button("Cancel", "Cancel the copy or download", self._cancel)
        self.message = _named(QLabel(), "Message")
        self.message.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        buttons = (self.add_button, self.remove_button, self.use_button, self.close_button)
        layout.addLayout(_row(*buttons, stretch_after=1))
        fetch = (self.curated, self.repo_id, self.file_name, self.download_button)
        layout.addLayout(_row(QLabel("Download:"), *fetch))
        layout.addLayout(_row(self.progress, self.cancel_button))
        layout.addWidget(self.message)

        self._show_job(False)
        self.progress.setVisible(False)
        self.refresh()

    def _button(self, text: str, name: str, slot: Callable[[], object]) -> QPushButton:
        button = _named(QPushButton(text), name)
        button.clicked.connect(slot)
        return button

    # -- the table ----------------------------------------------------------------------

    def refresh(self, select: Path | None = None) -> None:
        """List the models again and describe in the background those not yet cached."""
        select = select or self.selected_path()
        entries = self.library.models()
        self.table.setRowCount(0)
        for entry in entries:
            row = self.table.rowCount()
            self.table.insertRow(row)
            suffix = " (built in)" if entry.embedded else ""
            name = QTableWidgetItem(entry.path.name + suffix)
            name.setData(ENTRY_ROLE, (entry.path, entry.embedded))
            name.setToolTip(str(entry.path))
            self.table.setItem(row, 0, name)
            for column in range(1, len(COLUMNS) - 1):
                self.table.setItem(row, column, QTableWidgetItem("…" if not entry.info else ""))
            self.table.setItem(row, len(COLUMNS) - 1, QTableWidgetItem(human_size(entry.file_size)))
            if entry.info is not None:
                self._described(entry.path, entry.info)
            if entry.path == select:
                self.table.selectRow(row)
        if self._describer is not None:
            self._describer.stop()
        pending = [entry for entry in entries if entry.info is None]
        self._describer = Describer(self.library, pending) if pending else None
        if self._describer is not None:
            self._describer.described.connect(self._described)
            self._describer.failed.connect(self._describe_failed)
            self._start(self._describer)
        self._update_buttons()

    def _row_of(self, path: Path) -> int | None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(ENTRY_ROLE)[0] == path:
                return row
        return None

    def _described(self, path: Path, info: ModelInfo) -> None:
        context = f"{info.context_length:,}" if info.context_length else None
        values = [info.architecture, info.parameter_label, info.quantization, context]
        self._fill_row(path, [value or "—" for value in values], f"{info.name}\n{path}")

    def _describe_failed(self, path: Path, message: str) -> None:
        self._fill_row(path, ["unreadable", "", "", ""], message)

    def _fill_row(self, path: Path, values: list[str], tooltip: str) -> None:
        row = self._row_of(path)
        if row is None:
            return  # removed since
        for column, value in enumerate(values, start=1):
            self.table.item(row, column).setText(value)
        self.table.item(row, 0).setToolTip(tooltip)

    def _selected(self) -> tuple[Path, bool] | None:
        """The selected row's (path, embedded)."""
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).data(ENTRY_ROLE) if rows else None

    def selected_path(self) -> Path | None:
        selected = self._selected()
        return selected[0] if selected else None

    def _update_buttons(self) -> None:
        selected = self._selected()
        self.use_button.setEnabled(selected is not None)
        removable = selected is not None and not selected[1]
        self.remove_button.setEnabled(removable and self._job is None)

    # -- actions ------------------------------------------------------------------------

    def _choose_file(self) -> Path | None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Add a model file", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        return Path(name) if name else None

    def _confirm_remove(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Remove model", f"Delete {name} from the disk?")
        return answer == QMessageBox.StandardButton.Yes

    def _add_file(self) -> None:
        source = self._choose_file()
        if source is not None:
            self._run_job(
                lambda progress, cancel: self.library.add_file(source, progress, cancel),
                "Cancelled.",
            )

    def _download(self) -> None:
        repo_id, filename = self.repo_id.text().strip(), self.file_name.text().strip()
        if not repo_id or not filename:
            self._say("Enter a repository id and a file name to download.", error=True)
            return
        folder, endpoint = self.library.folder, self.endpoint
        try:
            name = gguf_file_name(filename)
        except DownloadError as exc:
            self._say(str(exc), error=True)
            return
        overwrite = (folder / name).exists()
        if overwrite and not self._confirm_replace(name):
            self._say(f"Kept the {name} you have.")
            return
        self._run_job(
            lambda progress, cancel: download(
                repo_id,
                filename,
                folder,
                endpoint=endpoint,
                progress=progress,
                cancel=cancel,
                overwrite=overwrite,
            ),
            RESUME_MESSAGE,
        )

    def _confirm_replace(self, name: str) -> bool:
        answer = QMessageBox.question(
            self, "Replace model", f"{name} is already in your models. Download it again over it?"
        )
        return answer == QMessageBox.StandardButton.Yes

    def _fill_from_curated(self, index: int) -> None:
        if 0 <= index < len(CURATED):
            self.repo_id.setText(CURATED[index].repo_id)
            self.file_name.setText(CURATED[index].filename)

    def _remove(self) -> None:
        selected = self._selected()
        if selected is None or selected[1] or not self._confirm_remove(selected[0].name):
            return
        path = selected[0]
        try:
            self.library.remove(path)
        except (LibraryError, OSError) as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Removed {path.name}.")
        self.refresh()

    def _use(self) -> None:
        path = self.selected_path()
        if path is not None:
            self.model_chosen.emit(path)
            self.accept()

    # -- copies and downloads -----------------------------------------------------------

    def _run_job(self, work: Callable[[Progress, threading.Event], Path], cancelled: str) -> None:
        self._say("")
        self._job = FileJob(work, cancelled)
        self._job.progressed.connect(self._progressed)
        self._job.succeeded.connect(self._job_succeeded)
        self._job.ended.connect(self._job_ended)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self._show_job(True)
        self._start(self._job)

    def _progressed(self, done: int, total: int | None) -> None:
        if total:
            self.progress.setRange(0, 100)
            self.progress.setValue(min(100, done * 100 // total))
            self.progress.setFormat(f"{human_size(done)} of {human_size(total)} — %p%")
        else:
            self.progress.setRange(0, 0)  # busy: the size is unknown
            self.progress.setFormat(human_size(done))

    def _job_succeeded(self, path: Path) -> None:
        self._job_ended(f"Added {path.name}.", False)
        self.refresh(select=path)

    def _job_ended(self, message: str, error: bool) -> None:
        self._job = None
        self._show_job(False)
        self._say(message, error=error)
        self._update_buttons()

    def _cancel(self) -> None:
        if self._job is not None:
            self._job.cancel.set()
            self.cancel_button.setEnabled(False)

    def _show_job(self, running: bool) -> None:
        if running:
            self.progress.setVisible(True)  # stays, at its last value, after the job
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        for widget in (self.add_button, self.download_button):
            widget.setEnabled(not running)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(ERROR_STYLE if error else "")

    # -- threads ------------------------------------------------------------------------

    def _start(self, thread: QThread) -> None:
        self._threads = [old for old in self._threads if not old.isFinished()]
        self._threads.append(thread)
        thread.start()

    def done(self, result: int) -> None:
        """Closing stops the workers: a download keeps its .part for a later resume."""
        if self._job is not None:
            self._job.cancel.set()
        if self._describer is not None:
            self._describer.stop()
        for thread in list(self._threads):
            thread.wait()
        super().done(result)
