"""A small stand-in for the Hugging Face Hub on 127.0.0.1, for download tests.

    with HubServer(tmp_path / "hub") as hub:
        hub.publish("org/repo", "model.gguf", data)
        download("org/repo", "model.gguf", dest, endpoint=hub.url)
        hub.requests[-1].headers["Range"]

It answers ``/{repo}/resolve/{revision}/{filename}`` from files under its
folder, with Range requests (206), an ETag holding the sha256 like the Hub's
LFS files, and optionally the Hub's redirect to a CDN. Failure modes are
attributes a test sets before downloading.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]


@dataclass
class HubServer:
    root: Path
    redirect_host: str | None = None
    """Answer /resolve/ with a 302 to /cdn/... on this host (say "localhost"), like the Hub."""
    etag: str | None = None
    """The sha256 to announce instead of the real one (to fake a damaged download)."""
    send_etag: bool = True
    token: str | None = None
    """When set, requests without `Authorization: Bearer TOKEN` get a 401."""
    drop_after: int | None = None
    """Close the connection after this many body bytes, once (then reset to None)."""
    stall_after: int | None = None
    """Stop sending (without closing) after this many body bytes, on every request."""
    chunk_bytes: int = 64 * 1024
    chunk_delay_s: float = 0.0
    """Pause between chunks, for a slow server."""
    requests: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self  # type: ignore[attr-defined]
        # A short poll interval makes shutdown (once per test) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, repo_id: str, filename: str, data: bytes, revision: str = "main") -> Path:
        path = self.root / repo_id / revision / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        hub = self.hub
        hub.requests.append(SeenRequest(self.path, dict(self.headers.items())))
        if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
            self.send_error(401, "Invalid username or password.")
            return
        if self.path.startswith("/cdn/"):
            self._send_file(hub.root / self.path.removeprefix("/cdn/"))
            return
        match = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", self.path)
        file = hub.root / match.group(1) / match.group(2) / match.group(3) if match else None
        if file is None or not file.is_file():
            self.send_error(404, "Entry not found")
            return
        if hub.redirect_host:
            relative = file.relative_to(hub.root).as_posix()
            self.send_response(302)
            self.send_header("Location", f"http://{hub.redirect_host}:{hub.port}/cdn/{relative}")
            if hub.send_etag:
                self.send_header("X-Linked-ETag", f'"{self._sha256(file)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(file)

    def _sha256(self, file: Path) -> str:
        return self.hub.etag or hashlib.sha256(file.read_bytes()).hexdigest()

    def _send_file(self, file: Path) -> None:
        hub = self.hub
        data = file.read_bytes()
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        if hub.send_etag and not hub.redirect_host:
            self.send_header("ETag", f'"{self._sha256(file)}"')
        self.end_headers()
        self._send_body(data[start:])

    def _send_body(self, body: bytes) -> None:
        hub = self.hub
        limit, hub.drop_after = hub.drop_after, None
        stall = hub.stall_after
        sent = 0
        try:
            while sent < len(body):
                if limit is not None and sent >= limit:
                    return  # the connection closes without the rest
                if stall is not None and sent >= stall:
                    hub._stop.wait(10)
                    return
                end = min(len(body), sent + hub.chunk_bytes)
                for cut in (limit, stall):
                    if cut is not None and sent < cut < end:
                        end = cut
                self.wfile.write(body[sent:end])
                self.wfile.flush()
                sent = end
                if hub.chunk_delay_s:
                    time.sleep(hub.chunk_delay_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a cancel or a timeout)
