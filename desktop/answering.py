"""One answer at a time: fit the conversation into the context, stream it, settle it.

The window hands over the messages and the engine's address; a StreamWorker
thread does the network work (counting tokens, streaming) and this object
reports through signals. It owns the worker's lifetime: a QThread must stay
referenced until its thread has finished and its last signal has reached every
receiver, or Qt deletes it mid-emission and later receivers never hear of it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.client import DEFAULT_MAX_TOKENS, ChatStream, GenerationStats, Message
from desktop.context import FittedContext, TokenCounter, fit_context
from desktop.workers import StreamWorker


class Answering(QObject):
    piece = Signal(str)
    done = Signal(object, object)  # GenerationStats, FittedContext | None
    failed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.worker: StreamWorker | None = None
        self._retiring: set[StreamWorker] = set()
        self._counter: TokenCounter | None = None  # used by one worker at a time
        self._fitted: FittedContext | None = None

    def busy(self) -> bool:
        return self.worker is not None

    def start(
        self,
        base_url: str,
        api_key: str,
        messages: list[Message],
        n_ctx: int,
        options: dict[str, Any],
    ) -> StreamWorker:
        """Stream an answer to `messages`; `options` are extra request fields."""
        assert self.worker is None, "one answer at a time"
        if self._counter is None or self._counter.base_url != base_url:
            self._counter = TokenCounter(base_url, api_key)
        counter = self._counter
        max_tokens = int(options.get("max_tokens", DEFAULT_MAX_TOKENS))

        def fit(conversation: list[Message]) -> FittedContext:  # runs in the worker
            return fit_context(conversation, n_ctx, max_tokens, counter)

        self._fitted = None
        worker = StreamWorker(ChatStream(base_url, api_key, messages, extra=options), fit=fit)
        worker.context_fitted.connect(self._on_fitted)
        worker.piece.connect(self.piece.emit)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        self.worker = worker
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the answer to end; `done` follows with finish_reason 'cancelled'."""
        if self.worker is not None:
            self.worker.stop()

    def abandon(self) -> None:
        """Stop and forget the answer in progress: no more signals from it."""
        worker = self.worker
        if worker is None:
            return
        for signal in (worker.piece, worker.done, worker.failed):
            signal.disconnect()
        worker.stop()
        self._retire()

    def shutdown(self) -> None:
        """Stop every worker and wait for their threads (the window is closing)."""
        for worker in [self.worker, *self._retiring]:
            if worker is not None:
                worker.stop()
                worker.wait(5000)

    def _on_fitted(self, fitted: FittedContext) -> None:
        self._fitted = fitted

    def _on_done(self, stats: GenerationStats) -> None:
        self._retire()  # first: receivers may start the next answer at once
        self.done.emit(stats, self._fitted)

    def _on_failed(self, message: str) -> None:
        self._retire()
        self.failed.emit(message)

    def _retire(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        self._retiring.add(worker)

        def release() -> None:
            QTimer.singleShot(0, lambda: self._retiring.discard(worker))

        if worker.isRunning():
            worker.finished.connect(release)
        else:
            release()


def answer_status(stats: GenerationStats, fitted: FittedContext | None, n_ctx: int) -> str:
    """The status line after an answer: speed, how it ended, and what the context held."""
    ttft = (stats.time_to_first_token_s or 0) * 1000
    speed = f"{stats.tokens_per_s:.1f} tokens/s" if stats.tokens_per_s else "—"
    ending = {"cancelled": " (stopped)", "length": " (token limit reached)"}.get(
        stats.finish_reason or "", ""
    )
    status = f"First token {ttft:.0f} ms · {speed}{ending}"
    if fitted is not None:
        used = fitted.prompt_tokens + stats.tokens
        status += f" · context {used:,} / {n_ctx:,} tokens"
        if fitted.left_out:
            # Never silently: say that the model did not see the oldest turns.
            status += (
                f" · {fitted.left_out} earliest message(s) left out: "
                "the conversation is longer than the context"
            )
    return status
