"""The settings dialog: a form over a Settings value, checked before it closes.

    from desktop.settings import load_settings, save_settings
    from desktop.settings_dialog import SettingsDialog

    settings, problems = load_settings()
    dialog = SettingsDialog(settings, parent=window)
    if dialog.exec() == QDialog.DialogCode.Accepted:
        save_settings(dialog.settings())

The dialog only edits a copy: nothing is saved or applied until the caller does it.
OK runs Settings.validate(); problems are shown in red inside the dialog, which
stays open, so the user can fix them without losing the other edits.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.settings import THEMES, Settings, allowed_range

ENGINE_NOTE = "Changing the context size, threads or GPU layers restarts the engine."
# Red that stays readable on both light and dark backgrounds.
ERROR_STYLE = "color: #d32f2f;"


class SettingsDialog(QDialog):
    """Edit a Settings value; settings() reads the form back."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")

        # -- generation ---------------------------------------------------------------------
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        self.system_prompt.setPlaceholderText("Instructions sent before every conversation")
        self.system_prompt.setTabChangesFocus(True)  # Tab moves on, as in the other fields
        self.system_prompt.setMaximumHeight(100)
        self.temperature = _double_spin("temperature", settings.temperature, 0.05)
        self.top_p = _double_spin("top_p", settings.top_p, 0.05)
        # The range is 0 < top_p <= 1; the spin box cannot exclude 0, so it starts a step above.
        self.top_p.setMinimum(0.01)
        self.max_tokens = _spin("max_tokens", settings.max_tokens)
        self.repeat_penalty = _double_spin("repeat_penalty", settings.repeat_penalty, 0.05)

        # -- engine -------------------------------------------------------------------------
        self.context_size = _spin("context_size", settings.context_size)
        self.context_size.setSingleStep(256)
        self.cpu_threads = _spin("cpu_threads", settings.cpu_threads)
        self.gpu_layers = _spin("gpu_layers", settings.gpu_layers)
        self.gpu_layers.setSpecialValueText("All")  # shown instead of the minimum, -1

        # -- local API ----------------------------------------------------------------------
        self.api_enabled = QCheckBox("Enable the local API")
        self.api_enabled.setChecked(settings.api_enabled)
        self.api_host = QLineEdit(settings.api_host)
        self.api_port = _spin("api_port", settings.api_port)
        self.api_key = QLineEdit(settings.api_key)
        self.api_key.setPlaceholderText("Made when you save")
        self.show_api_key = _show_toggle(self.api_key, "Show API key")

        # -- remote engine ------------------------------------------------------------------
        self.remote_url = QLineEdit(settings.remote_url)
        self.remote_url.setPlaceholderText("Empty: the local engine")
        self.remote_api_key = QLineEdit(settings.remote_api_key)
        self.show_remote_api_key = _show_toggle(self.remote_api_key, "Show remote API key")

        # -- appearance ---------------------------------------------------------------------
        self.theme = QComboBox()
        for theme in THEMES:
            self.theme.addItem(theme.capitalize(), theme)
        # An unknown theme (only possible from code) shows the first entry rather than none.
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings.theme)))

        generation = _section(
            "Generation",
            [
                ("System prompt", self.system_prompt),
                ("Temperature", self.temperature),
                ("Top p", self.top_p),
                ("Max tokens", self.max_tokens),
                ("Repeat penalty", self.repeat_penalty),
            ],
        )
        engine = _section(
            "Engine",
            [
                ("Context size", self.context_size),
                ("CPU threads", self.cpu_threads),
                ("GPU layers", self.gpu_layers),
            ],
        )
        self.engine_note = QLabel(ENGINE_NOTE)
        self.engine_note.setWordWrap(True)
        engine_form = engine.layout()
        assert isinstance(engine_form, QFormLayout)
        engine_form.addRow(self.engine_note)
        local_api = _section(
            "Local API",
            [
                ("Enable the local API", self.api_enabled),
                ("API host", self.api_host),
                ("API port", self.api_port),
                ("API key", _with_toggle(self.api_key, self.show_api_key)),
            ],
        )
        # Said while the host is typed, not only after OK.
        self.api_warning = QLabel()
        self.api_warning.setStyleSheet(ERROR_STYLE)
        self.api_warning.setWordWrap(True)
        self.api_warning.setAccessibleName("Local API warning")
        api_form = local_api.layout()
        assert isinstance(api_form, QFormLayout)
        api_form.addRow(self.api_warning)
        remote = _section(
            "Remote engine",
            [
                ("Remote URL", self.remote_url),
                ("Remote API key", _with_toggle(self.remote_api_key, self.show_remote_api_key)),
            ],
        )
        appearance = _section("Appearance", [("Theme", self.theme)])

        # Hidden until OK finds a problem; inside the dialog so no second window pops up.
        self.error_label = QLabel()
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Problems")
        self.error_label.hide()

        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        for section in (generation, engine, local_api, remote, appearance):
            layout.addWidget(section)
        layout.addWidget(self.error_label)
        layout.addWidget(self.button_box)

        # The API fields mean nothing while the API is off; greying them out says so.
        self.api_enabled.toggled.connect(self._update_api_fields)
        self._update_api_fields(settings.api_enabled)
        self.api_host.textChanged.connect(self._update_api_warning)
        self._update_api_warning()

    def settings(self) -> Settings:
        """The values in the form, whether or not they are valid."""
        return Settings(
            system_prompt=self.system_prompt.toPlainText(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            max_tokens=self.max_tokens.value(),
            repeat_penalty=self.repeat_penalty.value(),
            context_size=self.context_size.value(),
            cpu_threads=self.cpu_threads.value(),
            gpu_layers=self.gpu_layers.value(),
            api_enabled=self.api_enabled.isChecked(),
            # Stray spaces from a paste would make an address or key silently wrong.
            api_host=self.api_host.text().strip(),
            api_port=self.api_port.value(),
            api_key=self.api_key.text().strip(),
            remote_url=self.remote_url.text().strip(),
            remote_api_key=self.remote_api_key.text().strip(),
            theme=str(self.theme.currentData()),
        )

    def accept(self) -> None:
        """Close with Accepted only when the form is valid; otherwise show why and stay."""
        problems = self.settings().validate()
        if problems:
            self.error_label.setText("\n".join(problems))
            self.error_label.show()
            return
        self.error_label.hide()
        super().accept()

    def _update_api_fields(self, enabled: bool) -> None:
        for widget in (self.api_host, self.api_port, self.api_key, self.show_api_key):
            widget.setEnabled(enabled)
        if hasattr(self, "api_warning"):
            self._update_api_warning()

    def _update_api_warning(self) -> None:
        warning = self.settings().api_exposure()
        self.api_warning.setText(warning or "")
        self.api_warning.setVisible(warning is not None)


def _spin(name: str, value: int) -> QSpinBox:
    """A whole-number box limited to the setting's allowed range."""
    low, high = allowed_range(name)
    box = QSpinBox()
    box.setRange(int(low), int(high))
    box.setValue(value)
    return box


def _double_spin(name: str, value: float, step: float) -> QDoubleSpinBox:
    """A two-decimal box limited to the setting's allowed range."""
    low, high = allowed_range(name)
    box = QDoubleSpinBox()
    box.setDecimals(2)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _show_toggle(line_edit: QLineEdit, accessible_name: str) -> QCheckBox:
    """Hide a key behind dots, with a "Show" box that reveals it while checked."""
    line_edit.setEchoMode(QLineEdit.EchoMode.Password)
    toggle = QCheckBox("Show")
    # Two toggles both read "Show"; the accessible name tells a screen reader which key.
    toggle.setAccessibleName(accessible_name)
    toggle.toggled.connect(
        lambda shown: line_edit.setEchoMode(
            QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        )
    )
    return toggle


def _with_toggle(line_edit: QLineEdit, toggle: QCheckBox) -> QWidget:
    """A key field with its Show box to the right."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(line_edit)
    layout.addWidget(toggle)
    # Clicking the row's label, or tabbing to the row, lands in the key field.
    row.setFocusProxy(line_edit)
    return row


def _section(title: str, rows: list[tuple[str, QWidget]]) -> QGroupBox:
    """A titled group of labelled rows; each control's accessible name is its label."""
    box = QGroupBox(title)
    form = QFormLayout(box)
    for label, widget in rows:
        # A key row is a container whose focus proxy is its line edit: the name goes there.
        control = widget.focusProxy() or widget
        control.setAccessibleName(label)
        if isinstance(control, QCheckBox):
            # A check box carries its own text; a second label beside it would repeat it.
            form.addRow(control)
        else:
            label_widget = QLabel(label)
            label_widget.setBuddy(control)
            form.addRow(label_widget, widget)
    return box
