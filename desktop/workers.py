"""Background work for the window: each job is a QThread that reports through signals.

The UI thread never waits on the engine or the network: it starts a worker,
connects to its signals and carries on. Stopping is cooperative: `stop()`
asks the worker to finish, and the worker's last signal says how it ended.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QThread, Signal

from desktop.client import ApiError, ChatStream, Message
from desktop.context import FittedContext
from desktop.engine import Engine, EngineError


class EngineStarter(QThread):
    """Loads the model and starts the engine off the UI thread."""

    ready = Signal()
    failed = Signal(str)

    def __init__(self, engine_factory: Callable[[], Engine]) -> None:
        super().__init__()
        self._engine_factory = engine_factory
        self.engine: Engine | None = None

    def run(self) -> None:
        try:
            self.engine = self._engine_factory()
            self.engine.start()
        except (EngineError, OSError, ValueError) as exc:
            self.failed.emit(str(exc))
        else:
            self.ready.emit()


class StreamWorker(QThread):
    """Streams one answer; emits each piece of text, then exactly one of done/failed.

    With `fit`, the conversation is first fitted into the model's context here,
    off the UI thread (it may ask the engine to count tokens), and
    `context_fitted` says what was sent.
    """

    piece = Signal(str)
    context_fitted = Signal(object)  # FittedContext
    done = Signal(object)  # GenerationStats, finish_reason "cancelled" after stop()
    failed = Signal(str)

    def __init__(
        self, stream: ChatStream, fit: Callable[[list[Message]], FittedContext] | None = None
    ) -> None:
        super().__init__()
        self.stream = stream
        self.fit = fit

    def run(self) -> None:
        try:
            if self.fit is not None:
                fitted = self.fit(self.stream.body["messages"])
                self.stream.body["messages"] = fitted.messages
                self.context_fitted.emit(fitted)
            for text in self.stream:
                self.piece.emit(text)
        except (ApiError, OSError, ValueError) as exc:
            self.failed.emit(str(exc))
        else:
            self.done.emit(self.stream.stats)

    def stop(self) -> None:
        """Ask the stream to end; safe from any thread, returns at once."""
        self.stream.cancel()
