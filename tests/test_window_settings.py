"""Settings reach the real window: sampling, system prompt, engine, local API, remote engine."""

from __future__ import annotations

import json
import socket
import urllib.request
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt

from desktop.engine import Engine
from desktop.highlight import DARK_STYLE
from desktop.settings import Settings, load_settings, save_settings
from desktop.window import MainWindow


def open_window(qtbot, model: Path) -> MainWindow:
    win = MainWindow(model)
    qtbot.addWidget(win)
    win.show()
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        pass
    return win


def ask(qtbot, win: MainWindow, text: str):
    win.composer.prompt.setPlainText(text)
    qtbot.keyClick(win.composer.prompt, Qt.Key.Key_Return)
    worker = win.worker
    with qtbot.waitSignal(worker.done, timeout=60_000):
        pass
    return worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_saved_settings_shape_every_request(qtbot, default_model: Path) -> None:
    save_settings(Settings(system_prompt="Answer in Go.", temperature=0.7, max_tokens=24))
    win = open_window(qtbot, default_model)
    worker = ask(qtbot, win, "Reverse a string.")
    body = worker.stream.body
    assert body["messages"][0] == {"role": "system", "content": "Answer in Go."}
    assert body["temperature"] == 0.7 and body["max_tokens"] == 24
    assert 0 < worker.stream.stats.tokens <= 24
    win.close()


def test_engine_settings_restart_the_engine(qtbot, default_model: Path) -> None:
    win = open_window(qtbot, default_model)
    first_pid = win.engine.pid
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        win.apply_settings(replace(win.settings, context_size=2048, theme="dark"))
    assert win.engine.pid != first_pid and win.engine.config.n_ctx == 2048
    assert win.chat.code_style == DARK_STYLE
    saved, problems = load_settings()
    assert saved.context_size == 2048 and not problems
    win.request_options = {"max_tokens": 8}
    ask(qtbot, win, "Hi")
    assert "/ 2,048 tokens" in win.composer.status.text()
    # Sampling-only changes do not restart the engine.
    pid = win.engine.pid
    win.apply_settings(replace(win.settings, temperature=0.5))
    assert win.engine.pid == pid
    win.close()


def test_local_api_setting_serves_ide_plugins_with_the_key(qtbot, default_model: Path) -> None:
    port = free_port()
    save_settings(Settings(api_enabled=True, api_port=port, api_key="plugin-key-123"))
    win = open_window(qtbot, default_model)
    status = win.composer.status.text()
    assert f"http://127.0.0.1:{port}/v1" in status and "plugin-key-123" in status
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer plugin-key-123"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    win.close()


def test_remote_endpoint_replaces_the_local_engine(qtbot, default_model: Path, engine: Engine):
    # Another OpenAI-compatible server: here a second Kodcu engine on this machine.
    save_settings(Settings(remote_url=engine.base_url, remote_api_key=engine.api_key))
    win = open_window(qtbot, default_model)
    assert win.engine is None, "no local engine is started"
    assert engine.base_url in win.composer.status.text()
    win.request_options = {"max_tokens": 8}
    worker = ask(qtbot, win, "Hi")
    assert worker.stream.base_url == engine.base_url and win.answer
    win.close()


def test_bad_settings_file_is_reported_and_defaults_used(qtbot, default_model: Path) -> None:
    from desktop.settings import settings_path

    settings_path().write_text(json.dumps({"temperature": "hot", "context_size": 2048}))
    win = MainWindow(default_model)
    qtbot.addWidget(win)
    assert "temperature" in win.composer.error.text()
    assert win.settings.temperature == Settings().temperature
    assert win.settings.context_size == 2048
    win.close()


def test_choosing_another_model_restarts_the_engine_on_it(
    qtbot, default_model: Path, tmp_path: Path
) -> None:
    from tests import gguf_files

    win = open_window(qtbot, default_model)
    other = gguf_files.with_metadata_string(
        default_model,
        tmp_path / "templated.gguf",
        "tokenizer.chat_template",
        "{{ messages[-1]['content'] }}",
    )
    with qtbot.waitSignal(win.engine_control.ready, timeout=60_000):
        win.use_model(other)
    assert win.engine.config.model == other and win.engine.chat_template == "gguf"
    assert "templated.gguf" in win.windowTitle() and "templated.gguf" in win.composer.status.text()
    win.close()
