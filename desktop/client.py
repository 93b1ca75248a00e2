"""A streaming client for OpenAI-compatible chat completion APIs.

It speaks to Kodcu's own engine and to any remote server of the same kind
(llama-server, Ollama, vLLM). Standard library only, so that the app's
imports stay light. `ChatStream.cancel()` may be called from any thread: it
closes the connection, which tells the server to stop generating.

    stream = ChatStream(engine.base_url, engine.api_key, [{"role": "user", "content": "Hi"}])
    for piece in stream:
        print(piece, end="")
    print(stream.stats.tokens_per_s)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Message = dict[str, str]
DEFAULT_MAX_TOKENS = 512


class ApiError(RuntimeError):
    """The server answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class GenerationStats:
    """Timings of one streamed answer, measured on the client side."""

    time_to_first_token_s: float | None = None
    """From sending the request to the first piece of text."""
    tokens: int = 0
    """Streamed chunks with text; llama.cpp's server sends one per token."""
    total_s: float = 0.0
    """From sending the request to the end of the stream."""
    finish_reason: str | None = None
    """'stop', 'length', or 'cancelled' when the stream was stopped."""
    _last_token_at: float = 0.0

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed after the first token (prompt processing excluded)."""
        if self.tokens < 2 or self.time_to_first_token_s is None:
            return None
        generation_s = self._last_token_at - self.time_to_first_token_s
        return (self.tokens - 1) / generation_s if generation_s > 0 else None


def _error_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
        detail = data.get("detail") or data.get("error", {}).get("message") or data
    except (ValueError, AttributeError):
        detail = body.decode("utf-8", "replace")[:300]
    if status == 401:
        return f"The server rejected the API key (HTTP 401: {detail})."
    return f"The server answered HTTP {status}: {detail}"


def _open(
    base_url: str, api_key: str | None, timeout_s: float
) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """A connection to the server of `base_url`, its path, and the JSON and key headers."""
    url = urlsplit(base_url)
    connection_class = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    conn = connection_class(url.hostname or "127.0.0.1", url.port, timeout=timeout_s)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return conn, url.path, headers


def count_tokens(base_url: str, api_key: str | None, text: str, timeout_s: float = 10.0) -> int:
    """Tokens in `text` by the server's own tokenizer (llama-cpp-python's /extras route).

    Other OpenAI-compatible servers have no such route; callers fall back to an
    estimate when this raises ApiError.
    """
    # The route sits beside the OpenAI API root, not under it.
    conn, path, headers = _open(base_url.rstrip("/").removesuffix("/v1"), api_key, timeout_s)
    try:
        conn.request("POST", path + "/extras/tokenize/count", json.dumps({"input": text}), headers)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise ApiError(f"Could not reach {base_url}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ApiError(_error_message(response.status, body), response.status)
    return int(json.loads(body)["count"])


class ChatStream:
    """One streamed chat completion: iterate for text, `cancel()` to stop it."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        messages: list[Message],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.2,
        top_p: float = 0.95,
        timeout_s: float = 600.0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.body = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": True,
            **(extra or {}),
        }
        self.timeout_s = timeout_s
        self.stats = GenerationStats()
        self._cancelled = threading.Event()
        self._conn: http.client.HTTPConnection | None = None

    def cancel(self) -> None:
        """Stop the stream from any thread; the iterator then ends quietly."""
        self._cancelled.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            # Unblocks a read in progress and tells the server we are gone.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        conn, path, headers = _open(self.base_url, self.api_key, self.timeout_s)
        headers["Accept"] = "text/event-stream"
        self._conn = conn
        try:
            if self._cancelled.is_set():
                return
            try:
                conn.request("POST", path + "/chat/completions", json.dumps(self.body), headers)
                response = conn.getresponse()
            except OSError as exc:
                if self._cancelled.is_set():
                    return
                raise ApiError(f"Could not reach {self.base_url}: {exc}") from exc
            if response.status != 200:
                raise ApiError(_error_message(response.status, response.read()), response.status)
            yield from self._read_events(response, start)
        finally:
            self.stats.total_s = time.perf_counter() - start
            if self._cancelled.is_set():
                self.stats.finish_reason = "cancelled"
            self._conn = None
            conn.close()

    def _read_events(self, response: http.client.HTTPResponse, start: float) -> Iterator[str]:
        stats = self.stats
        while not self._cancelled.is_set():
            try:
                line = response.readline()
            except OSError:
                if self._cancelled.is_set():
                    return
                raise
            if not line:
                if self._cancelled.is_set():
                    return
                # OpenAI-compatible servers end a stream with [DONE]; without it
                # the server went away mid-answer (crashed, killed, network).
                raise ApiError("The server closed the connection before the answer was complete.")
            if not line.startswith(b"data:"):
                continue  # blank separators, comments and pings
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            chunk = json.loads(data)
            if "error" in chunk:
                raise ApiError(f"The server failed while answering: {chunk['error']}")
            choice = chunk["choices"][0]
            text = (choice.get("delta") or {}).get("content")
            if choice.get("finish_reason"):
                stats.finish_reason = choice["finish_reason"]
            if text:
                now = time.perf_counter() - start
                if stats.time_to_first_token_s is None:
                    stats.time_to_first_token_s = now
                stats.tokens += 1
                stats._last_token_at = now
                yield text
