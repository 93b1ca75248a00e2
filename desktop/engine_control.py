"""The window's engine: started off the UI thread, watched, restarted, or a remote server.

`EngineControl` owns the local engine (a llama.cpp server in a child process)
or stands for a remote OpenAI-compatible endpoint, and reports through signals;
it never touches a widget. Its health check polls the child's exit status
once a second, which never blocks.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.engine import Engine, EngineConfig, RemoteEndpoint
from desktop.workers import EngineStarter
from kodcu.coder import adapter_label


class EngineControl(QObject):
    ready = Signal()
    failed = Signal(str)  # could not start: the reason
    died = Signal(str)  # was running, then stopped: how it ended

    def __init__(self, config: EngineConfig, remote: RemoteEndpoint | None = None) -> None:
        super().__init__()
        self.config = config
        self.remote = remote
        self.engine: Engine | None = None
        self.starter: EngineStarter | None = None
        self._starting: EngineConfig | None = None  # what the starter is starting
        self.health = QTimer(self, interval=1000)
        self.health.timeout.connect(self.check)

    # -- what the window asks --------------------------------------------------------

    def is_ready(self) -> bool:
        if self.remote is not None:
            return True
        return self.engine is not None and self.engine.is_running()

    def is_starting(self) -> bool:
        return self.starter is not None

    @property
    def base_url(self) -> str:
        if self.remote is not None:
            return self.remote.url
        assert self.engine is not None, "the engine is not running"
        return self.engine.base_url

    @property
    def api_key(self) -> str:
        if self.remote is not None:
            return self.remote.api_key
        return self.config.api_key

    @property
    def n_ctx(self) -> int:
        return self.remote.n_ctx if self.remote is not None else self.config.n_ctx

    def description(self) -> str:
        if self.remote is not None:
            return self.remote.url
        adapter = self.config.lora_path
        return self.config.model.name + (f" + {adapter_label(adapter)}" if adapter else "")

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart) in the background; `ready` or `failed` follows."""
        if self.starter is not None:
            return
        self._stop_engine()
        if self.remote is not None:
            QTimer.singleShot(0, self.ready.emit)
            return
        config = self._starting = self.config
        self.starter = EngineStarter(lambda: Engine(config))
        self.starter.failed.connect(self._note_failure)
        # Report only once the starter's thread is over, so that listeners see
        # a settled state (is_starting() False).
        self.starter.finished.connect(self._starter_finished)
        self._failure: str | None = None
        self.starter.start()

    def reconfigure(self, config: EngineConfig, remote: RemoteEndpoint | None) -> None:
        """Use new settings from the next start(); the caller restarts when they differ."""
        self.config, self.remote = config, remote

    def stop(self) -> None:
        """Stop for good (the window is closing): wait for a start in progress first."""
        if self.starter is not None:
            self.starter.wait()
            self.engine = self.starter.engine
        self._stop_engine()

    def check(self) -> None:
        """Emit `died` once if the engine's process has gone."""
        if self.engine is None or self.engine.is_running():
            return
        self.health.stop()
        self.died.emit(self.engine.exit_reason())

    def _note_failure(self, message: str) -> None:
        self._failure = message

    def _starter_finished(self) -> None:
        starter, self.starter = self.starter, None
        assert starter is not None
        if (self.config, self.remote) != (self._starting, None):
            # Reconfigured while starting (say, another conversation's model was
            # opened): what just started is stale, so start what is asked for now.
            self.engine = starter.engine
            self.start()
            return
        if self._failure is not None:
            self.failed.emit(self._failure)
            return
        self.engine = starter.engine
        self.health.start()
        self.ready.emit()

    def _stop_engine(self) -> None:
        self.health.stop()
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
