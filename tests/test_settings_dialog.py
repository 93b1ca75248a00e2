"""The settings dialog: shows a Settings, reads edits back, and refuses invalid ones."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from desktop.settings import Settings
from desktop.settings_dialog import ENGINE_NOTE, SettingsDialog
from tests.samples import EVERY_FIELD_CHANGED

# Push buttons (OK, Cancel) are named by their text; these are the form's inputs.
INPUT_TYPES = (QAbstractSpinBox, QCheckBox, QComboBox, QLineEdit, QPlainTextEdit)

GIVEN = EVERY_FIELD_CHANGED


def make_dialog(qtbot: QtBot, settings: Settings) -> SettingsDialog:
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def click_ok(qtbot: QtBot, dialog: SettingsDialog) -> None:
    button = dialog.button_box.button(QDialogButtonBox.StandardButton.Ok)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_dialog_shows_the_given_values(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, GIVEN)
    assert dialog.system_prompt.toPlainText() == "Yanıtları Türkçe ver.\nKısa tut."
    assert dialog.temperature.value() == 0.7
    assert dialog.max_tokens.value() == 1024
    assert dialog.gpu_layers.text() == "All"
    assert dialog.api_enabled.isChecked()
    assert dialog.api_host.text() == "0.0.0.0"
    assert dialog.remote_url.text() == "https://example.com"
    assert dialog.theme.currentText() == "Dark"
    # Unedited, the form reads back exactly what it was given.
    assert dialog.settings() == GIVEN


def test_edits_then_ok_return_the_new_values(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    qtbot.keyClicks(dialog.system_prompt, "Be brief.")
    dialog.temperature.setValue(1.5)
    dialog.top_p.setValue(0.8)
    dialog.max_tokens.setValue(2048)
    dialog.repeat_penalty.setValue(1.0)
    dialog.context_size.setValue(16384)
    dialog.cpu_threads.setValue(1)
    dialog.gpu_layers.setValue(10)
    qtbot.keyClick(dialog.api_enabled, Qt.Key.Key_Space)
    dialog.api_port.setValue(8123)
    qtbot.keyClicks(dialog.api_key, "k1")
    qtbot.keyClicks(dialog.remote_url, "http://localhost:8080")
    qtbot.keyClicks(dialog.remote_api_key, "k2")
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))

    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        click_ok(qtbot, dialog)

    assert dialog.result() == QDialog.DialogCode.Accepted
    assert not dialog.isVisible()
    assert dialog.settings() == Settings(
        system_prompt="Be brief.",
        temperature=1.5,
        top_p=0.8,
        max_tokens=2048,
        repeat_penalty=1.0,
        context_size=16384,
        cpu_threads=1,
        gpu_layers=10,
        api_enabled=True,
        api_port=8123,
        api_key="k1",
        remote_url="http://localhost:8080",
        remote_api_key="k2",
        theme="light",
    )


def test_invalid_remote_url_keeps_the_dialog_open(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    qtbot.keyClicks(dialog.remote_url, "example.com")
    click_ok(qtbot, dialog)

    assert dialog.isVisible()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.isVisible()
    assert "remote_url" in dialog.error_label.text()
    assert "http://" in dialog.error_label.text()

    # Fixing the field and pressing OK again closes it.
    dialog.remote_url.setText("https://example.com")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert not dialog.error_label.isVisible()


def test_empty_api_host_is_reported_in_the_dialog(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, replace(Settings(), api_enabled=True))
    dialog.api_host.clear()
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert "api_host" in dialog.error_label.text()


def test_an_api_open_to_other_machines_is_warned_about_while_typing(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, replace(Settings(), api_enabled=True))
    assert not dialog.api_warning.isVisible(), "127.0.0.1: this machine only"
    dialog.api_host.clear()
    qtbot.keyClicks(dialog.api_host, "0.0.0.0")
    assert dialog.api_warning.isVisible()
    assert "unencrypted" in dialog.api_warning.text() and "0.0.0.0" in dialog.api_warning.text()
    qtbot.keyClick(dialog.api_enabled, Qt.Key.Key_Space)  # API off: nothing listens
    assert not dialog.api_warning.isVisible()
    # The OK button still works: listening more widely is the user's choice.
    qtbot.keyClick(dialog.api_enabled, Qt.Key.Key_Space)
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_loopback_addresses_need_no_warning() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert replace(Settings(), api_enabled=True, api_host=host).api_exposure() is None
    for host in ("0.0.0.0", "192.168.1.5", "::", "my-laptop.local"):
        assert replace(Settings(), api_enabled=True, api_host=host).api_exposure()


def test_cancel_rejects(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    qtbot.keyClicks(dialog.remote_url, "not a url")
    dialog.button_box.button(QDialogButtonBox.StandardButton.Cancel).click()
    assert dialog.result() == QDialog.DialogCode.Rejected
    assert not dialog.isVisible()


def test_every_input_has_an_accessible_name(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    inputs = [
        widget
        for widget in dialog.findChildren(QWidget)
        if isinstance(widget, INPUT_TYPES)
        # Spin boxes and combo boxes hold a line edit of their own; the outer widget is named.
        and not isinstance(widget.parent(), (QAbstractSpinBox, QComboBox))
    ]
    assert len(inputs) >= 17
    unnamed = [type(widget).__name__ for widget in inputs if not widget.accessibleName()]
    assert unnamed == []


def test_accessible_names_equal_the_labels(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    labels = {label.text() for label in dialog.findChildren(QLabel) if label.buddy()}
    for label in dialog.findChildren(QLabel):
        if label.buddy() is not None:
            assert label.buddy().accessibleName() == label.text()
    assert {"System prompt", "Temperature", "API key", "Remote API key", "Theme"} <= labels
    assert dialog.api_enabled.accessibleName() == dialog.api_enabled.text()


def test_keys_are_hidden_until_show_is_checked(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, GIVEN)
    for field, toggle in [
        (dialog.api_key, dialog.show_api_key),
        (dialog.remote_api_key, dialog.show_remote_api_key),
    ]:
        assert field.echoMode() == QLineEdit.EchoMode.Password
        qtbot.mouseClick(toggle, Qt.MouseButton.LeftButton)
        assert field.echoMode() == QLineEdit.EchoMode.Normal
        qtbot.mouseClick(toggle, Qt.MouseButton.LeftButton)
        assert field.echoMode() == QLineEdit.EchoMode.Password


def test_api_fields_follow_the_enable_box(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    assert not dialog.api_host.isEnabled()
    assert not dialog.api_key.isEnabled()
    qtbot.keyClick(dialog.api_enabled, Qt.Key.Key_Space)
    assert dialog.api_host.isEnabled()
    assert dialog.api_port.isEnabled()


def test_engine_note_is_shown(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, Settings())
    assert dialog.engine_note.text() == ENGINE_NOTE
    assert dialog.engine_note.isVisible()
