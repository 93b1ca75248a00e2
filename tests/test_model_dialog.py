"""The model library window: listing, describing, adding, downloading, removing, choosing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop.model_dialog import RESUME_MESSAGE, ModelDialog
from desktop.model_library import ModelLibrary
from tests import gguf_files
from tests.hub_server import HubServer

REPO = "org/coder-GGUF"
NAME = "coder-q4_k_m.gguf"
MakeDialog = Callable[..., ModelDialog]


def small_gguf(path: Path, padding: int = 600_000) -> Path:
    """A valid GGUF header with a long string value, so a download spans many chunks."""
    return gguf_files.write_metadata_only_gguf(
        path, {"general.architecture": "llama", "kodcu.padding": "x" * padding}
    )


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # reach the test server directly
    with HubServer(tmp_path / "hub") as server:
        yield server


@pytest.fixture
def make_dialog(qtbot: QtBot, tmp_path: Path, default_model: Path) -> Iterator[MakeDialog]:
    dialogs: list[ModelDialog] = []

    def make(endpoint: str | None = None) -> ModelDialog:
        dialog = ModelDialog(ModelLibrary(tmp_path / "models"), endpoint=endpoint)
        qtbot.addWidget(dialog)
        dialogs.append(dialog)
        return dialog

    yield make
    for dialog in dialogs:
        dialog.reject()  # stops and waits for the worker threads


def names(dialog: ModelDialog) -> list[str]:
    return [dialog.table.item(row, 0).text() for row in range(dialog.table.rowCount())]


def row_of(dialog: ModelDialog, name: str) -> int:
    return names(dialog).index(name)


def cell(dialog: ModelDialog, row: int, column: int) -> str:
    return dialog.table.item(row, column).text()


def test_lists_the_built_in_model_and_describes_it_in_the_background(
    make_dialog: MakeDialog, qtbot: QtBot, default_model: Path
) -> None:
    dialog = make_dialog()

    assert names(dialog) == [f"{default_model.name} (built in)"]
    assert cell(dialog, 0, 5) == "241 MB"
    qtbot.waitUntil(lambda: cell(dialog, 0, 1) == "gemma3", timeout=60_000)
    assert cell(dialog, 0, 3) == "Q4_K_M"
    assert cell(dialog, 0, 2) == "270M"
    assert cell(dialog, 0, 4) == "32,768"
    for widget in (dialog.table, dialog.add_button, dialog.curated, dialog.repo_id):
        assert widget.accessibleName()


def test_add_file_adds_a_row(
    make_dialog: MakeDialog, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = small_gguf(tmp_path / "tiny.gguf", padding=10)
    dialog = make_dialog()
    monkeypatch.setattr(dialog, "_choose_file", lambda: source)

    dialog.add_button.click()

    qtbot.waitUntil(lambda: "tiny.gguf" in names(dialog), timeout=10_000)
    assert (tmp_path / "models" / "tiny.gguf").read_bytes() == source.read_bytes()
    assert dialog.selected_path() == tmp_path / "models" / "tiny.gguf"
    assert dialog.message.text() == "Added tiny.gguf."
    row = row_of(dialog, "tiny.gguf")
    # A header without a vocabulary: llama.cpp cannot load it, so it is listed as unreadable.
    qtbot.waitUntil(lambda: cell(dialog, row, 1) == "unreadable", timeout=60_000)
    assert "tiny.gguf" in dialog.table.item(row, 0).toolTip()


def test_adding_a_text_file_shows_the_error(
    make_dialog: MakeDialog, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = gguf_files.text_file(tmp_path / "page.gguf")
    dialog = make_dialog()
    dialog.show()
    monkeypatch.setattr(dialog, "_choose_file", lambda: source)

    dialog.add_button.click()

    qtbot.waitUntil(lambda: "text file" in dialog.message.text(), timeout=10_000)
    assert "d32f2f" in dialog.message.styleSheet()
    assert dialog.isVisible()
    assert not (tmp_path / "models" / "page.gguf").exists()
    assert len(names(dialog)) == 1
    assert dialog.add_button.isEnabled()


def test_download_completes_and_adds_a_row(
    make_dialog: MakeDialog, qtbot: QtBot, hub: HubServer, tmp_path: Path
) -> None:
    hub.publish(REPO, NAME, small_gguf(tmp_path / "source.gguf").read_bytes())
    dialog = make_dialog(endpoint=hub.url)
    dialog.repo_id.setText(REPO)
    dialog.file_name.setText(NAME)

    dialog.download_button.click()

    qtbot.waitUntil(lambda: NAME in names(dialog), timeout=10_000)
    assert dialog.progress.value() == 100
    assert "%p%" in dialog.progress.format() and "KB" in dialog.progress.format()
    assert (tmp_path / "models" / NAME).exists()
    assert not dialog.cancel_button.isVisible()


def test_download_over_an_existing_model_asks_first(
    make_dialog: MakeDialog,
    qtbot: QtBot,
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub.publish(REPO, NAME, small_gguf(tmp_path / "source.gguf").read_bytes())
    mine = tmp_path / "models" / NAME
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_bytes(b"mine")
    dialog = make_dialog(endpoint=hub.url)
    asked: list[str] = []
    monkeypatch.setattr(dialog, "_confirm_replace", lambda name: asked.append(name) or False)
    dialog.repo_id.setText(REPO)
    dialog.file_name.setText(NAME)
    dialog.download_button.click()
    assert asked == [NAME] and mine.read_bytes() == b"mine" and hub.requests == []
    monkeypatch.setattr(dialog, "_confirm_replace", lambda name: True)
    dialog.download_button.click()
    qtbot.waitUntil(lambda: mine.read_bytes() != b"mine", timeout=10_000)
    qtbot.waitUntil(lambda: dialog.progress.value() == 100, timeout=10_000)


def test_a_file_name_that_is_not_gguf_is_refused_in_the_dialog(
    make_dialog: MakeDialog, hub: HubServer
) -> None:
    dialog = make_dialog(endpoint=hub.url)
    dialog.repo_id.setText(REPO)
    dialog.file_name.setText("/")
    dialog.download_button.click()
    assert "not a GGUF file name" in dialog.message.text() and hub.requests == []


def test_cancelled_download_keeps_the_part(
    make_dialog: MakeDialog, qtbot: QtBot, hub: HubServer, tmp_path: Path
) -> None:
    hub.publish(REPO, NAME, small_gguf(tmp_path / "source.gguf").read_bytes())
    hub.chunk_bytes, hub.chunk_delay_s = 16 * 1024, 0.05
    dialog = make_dialog(endpoint=hub.url)
    dialog.repo_id.setText(REPO)
    dialog.file_name.setText(NAME)

    dialog.download_button.click()
    qtbot.waitUntil(lambda: 0 < dialog.progress.value() < 100, timeout=10_000)
    dialog.cancel_button.click()

    qtbot.waitUntil(lambda: dialog.message.text() == RESUME_MESSAGE, timeout=10_000)
    assert not (tmp_path / "models" / NAME).exists()
    assert (tmp_path / "models" / (NAME + ".part")).exists()
    assert dialog.download_button.isEnabled()


def test_download_of_a_missing_file_shows_the_error(
    make_dialog: MakeDialog, qtbot: QtBot, hub: HubServer
) -> None:
    dialog = make_dialog(endpoint=hub.url)
    dialog.repo_id.setText(REPO)
    dialog.file_name.setText("missing.gguf")

    dialog.download_button.click()

    qtbot.waitUntil(lambda: "HTTP 404" in dialog.message.text(), timeout=10_000)
    assert "d32f2f" in dialog.message.styleSheet()


def test_curated_choice_fills_the_fields(make_dialog: MakeDialog) -> None:
    dialog = make_dialog()
    dialog.curated.setCurrentIndex(1)
    assert dialog.repo_id.text() == "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"
    assert dialog.file_name.text() == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def test_use_this_model_emits_the_selected_path(
    make_dialog: MakeDialog, qtbot: QtBot, default_model: Path
) -> None:
    dialog = make_dialog()
    assert not dialog.use_button.isEnabled()
    dialog.table.selectRow(0)

    with qtbot.waitSignal(dialog.model_chosen) as chosen:
        dialog.use_button.click()

    assert chosen.args == [default_model]
    assert dialog.result() == dialog.DialogCode.Accepted


def test_remove_deletes_an_added_file_but_not_the_built_in(
    make_dialog: MakeDialog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    added = small_gguf(tmp_path / "models" / "extra.gguf", padding=10)
    dialog = make_dialog()
    asked: list[str] = []
    monkeypatch.setattr(dialog, "_confirm_remove", lambda name: asked.append(name) or True)

    dialog.table.selectRow(0)
    assert not dialog.remove_button.isEnabled()

    dialog.table.selectRow(row_of(dialog, "extra.gguf"))
    assert dialog.remove_button.isEnabled()
    dialog.remove_button.click()

    assert asked == ["extra.gguf"]
    assert not added.exists()
    assert "extra.gguf" not in names(dialog)
