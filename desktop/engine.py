"""Kodcu's local inference engine: llama.cpp behind an OpenAI-compatible server.

The server (llama-cpp-python's ``llama_cpp.server``) runs in a child process
bound to 127.0.0.1 on a free port, with a random API key. The app, the local API
for IDE plugins (``kodcu-serve``) and the evaluation harness all talk to it over
HTTP. This module never imports llama_cpp: a crash in native code stays in the
child, and the app only sees the child exit and reports why.

    from desktop.engine import Engine, EngineConfig
    with Engine(EngineConfig(model=path)) as engine:
        print(engine.base_url, engine.api_key)
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kodcu.llama import default_threads
from kodcu.model_file import (
    ModelFileError,
    check_adapter_file,
    check_gguf_file,
    explain_load_failure,
)


class EngineError(RuntimeError):
    """The engine could not start or died; the message is meant for the user."""


@dataclass
class EngineConfig:
    """How to run the engine. Every field has a default fit for a laptop CPU."""

    model: Path
    """The GGUF model file to load."""
    host: str = "127.0.0.1"
    """Address to bind. Keep the loopback address unless others must reach the API."""
    port: int = 0
    """TCP port; 0 picks a free one."""
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """Key that every request must carry as `Authorization: Bearer KEY`."""
    n_ctx: int = 4096
    """Context length in tokens (prompt and answer together)."""
    n_threads: int = field(default_factory=default_threads)
    """CPU threads for prompt processing and generation."""
    n_gpu_layers: int = 0
    """Layers to offload to a GPU (-1: all); 0 on a CPU-only build."""
    lora_path: Path | None = None
    """A GGUF LoRA adapter to apply over the model."""
    startup_timeout_s: float = 120.0
    """How long loading the model and starting the server may take."""
    verbose: bool = False
    """Pass llama.cpp's full log through to this process's stderr."""


@dataclass
class RemoteEndpoint:
    """An OpenAI-compatible server elsewhere (llama-server, Ollama, vLLM)."""

    url: str
    """Its API root, e.g. http://gpu-box:8000/v1."""
    api_key: str
    """Sent as a bearer token; empty for servers that want none."""
    n_ctx: int
    """The context size to plan for (the server's own limit is not asked)."""


def _child_command() -> list[str]:
    # A frozen app (PyInstaller) has no `python -m`; it re-enters its own main.
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-child"]
    return [sys.executable, "-m", "desktop.engine_child"]


class Engine:
    """A llama.cpp server in a child process; start(), then talk HTTP to base_url."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.port: int | None = None
        self.chat_template: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=400)
        self._events: queue.Queue[dict[str, object]] = queue.Queue()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the child and wait until it answers; raise EngineError if it cannot."""
        with self._lock:
            if self.is_running():
                return
            try:
                check_gguf_file(self.config.model)
                if self.config.lora_path is not None:
                    check_adapter_file(self.config.lora_path, self.config.model)
            except ModelFileError as exc:
                raise EngineError(str(exc)) from exc
            self._spawn()
            try:
                self._wait_until_ready()
            except BaseException:
                self._terminate()
                raise

    def stop(self) -> None:
        """Stop the child: let it exit on its own, then terminate, then kill."""
        with self._lock:
            self._terminate()

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. http://127.0.0.1:41234/v1."""
        if self.port is None:
            raise EngineError("The engine is not running.")
        host = self.config.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def exit_reason(self) -> str:
        """How the child ended, for a message: exit code or signal, and its last error."""
        code = self._proc.poll() if self._proc else None
        if code is None:
            return "still running" if self._proc else "not started"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        errors = [line for line in self._log if "error" in line.lower()]
        return f"{how}: {errors[-1]}" if errors else how

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last lines the child wrote to stderr (llama.cpp and server messages)."""
        return list(self._log)[-lines:]

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------

    def _spawn(self) -> None:
        c = self.config
        settings = {
            "model": str(c.model),
            "host": c.host,
            "port": c.port,
            "api_key": c.api_key,
            "n_ctx": c.n_ctx,
            "n_threads": c.n_threads,
            "n_gpu_layers": c.n_gpu_layers,
            "lora_path": str(c.lora_path) if c.lora_path else None,
            "verbose": c.verbose,
        }
        popen_extra: dict[str, object] = {}
        if os.name == "posix":
            # Ctrl+C in a terminal goes to the parent, which stops the child in order.
            popen_extra["start_new_session"] = True
        else:
            popen_extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        self._log.clear()
        self.port = None
        self._proc = subprocess.Popen(
            _child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen_extra,  # type: ignore[arg-type]
        )
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        self._proc.stdin.write(json.dumps(settings).encode() + b"\n")
        self._proc.stdin.flush()  # the pipe stays open: its end-of-file is the stop signal
        self._events = queue.Queue()
        threading.Thread(
            target=self._read_events, args=(self._proc, self._events), daemon=True
        ).start()
        threading.Thread(target=self._read_log, args=(self._proc,), daemon=True).start()

    @staticmethod
    def _read_events(proc: subprocess.Popen[bytes], events: queue.Queue[dict[str, object]]) -> None:
        assert proc.stdout
        for line in proc.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                continue
        events.put({"event": "exited"})

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._log.append(line)
            if self.config.verbose:
                print(line, file=sys.stderr)

    def _wait_until_ready(self) -> None:
        assert self._proc
        deadline = time.monotonic() + self.config.startup_timeout_s
        try:
            event = self._events.get(timeout=self.config.startup_timeout_s)
        except queue.Empty:
            raise EngineError(
                f"The engine did not load {self.config.model} within "
                f"{self.config.startup_timeout_s:.0f} s."
            ) from None
        if event.get("event") != "listening":
            self._proc.wait(timeout=10)
            if event.get("stage") == "bind":
                raise EngineError(
                    f"Cannot listen on {self.config.host} port {self.config.port}: "
                    f"{event.get('message')}. Choose another port, or 0 for a free one."
                )
            llama_log = event.get("llama_log")
            if not isinstance(llama_log, list):  # the child died before it could report
                time.sleep(0.05)  # let the log reader take the child's last lines
                llama_log = list(self._log)
            detail, hint = explain_load_failure(llama_log, str(event.get("message", "")))
            raise EngineError(f"Could not load the model {self.config.model}: {detail}. {hint}")
        self.port = int(event["port"])  # type: ignore[arg-type]
        self.chat_template = str(event.get("chat_template"))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineError(f"The engine exited while starting: {self.log_tail(3)}")
            if self._answers():
                return
            time.sleep(0.02)
        raise EngineError("The engine loaded the model but its server did not answer.")

    def _answers(self) -> bool:
        request = urllib.request.Request(
            self.base_url + "/models", headers={"Authorization": f"Bearer {self.api_key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        self.port = None
        if proc is None:
            return
        if proc.poll() is None:
            assert proc.stdin
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the child's watchdog exits on end-of-file
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
