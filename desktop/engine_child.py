"""The engine's child process: llama-cpp-python's OpenAI-compatible server.

`desktop.engine.Engine` starts this as ``python -m desktop.engine_child`` (or
``kodcu --engine-child`` in a frozen build); it is not meant to be run by hand.
Running llama.cpp here, not in the app, means a native crash on a bad model
file kills this process and leaves the app standing.

Protocol with the parent:

* stdin, first line: the settings as JSON (see `ChildSettings` in
  `desktop.engine`). The API key travels here, not on the command line where
  any user's ``ps`` would show it.
* stdin then stays open and silent. End-of-file means the parent is gone; the
  operating system closes the pipe even when the parent is killed with
  SIGKILL, so the child exits at once and never outlives the app.
* stdout: exactly one JSON line, either
  ``{"event": "listening", "port": N, "chat_template": "gguf" | "alpaca"}``
  or ``{"event": "error", "message": "..."}``. Everything else the server or
  llama.cpp prints goes to stderr, which the parent keeps for error messages.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import Any, TextIO

from kodcu.llama import use_chat_template


def _exit_when_parent_dies() -> None:
    # Blocks until the parent closes its end of the pipe or dies.
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


def capture_llama_log(verbose: bool, problems: list[str]) -> Any:
    """Route llama.cpp's log through us, keeping its warnings and errors.

    llama-cpp-python silences stderr while a model loads unless verbose, which
    also hides the reason a load failed ("unknown model architecture", "tensor
    data is not within the file bounds"). The callback sees every message
    whatever happens to stderr, so the child can send the reason to the parent.
    Returns the callback, which must stay referenced while llama.cpp may call it.
    """
    import ctypes

    import llama_cpp

    # ggml_log_level in the llama.cpp this package builds (llama-cpp-python's own
    # table is older and takes 4 for debug): 3 warn, 4 error, 5 continues a line.
    warn, error, cont = 3, 4, 5
    last_level = [0]

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != cont:
            last_level[0] = level
        message = text.decode("utf-8", "replace")
        if last_level[0] in (warn, error):
            problems.append(message.strip())
        if verbose or last_level[0] == error:
            sys.stderr.write(message)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol and send all other output to stderr.

    llama-cpp-python's server prints to stdout (for example on each client
    disconnect); redirecting file descriptor 1 also catches native prints.
    """
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _report(protocol: TextIO, event: dict[str, Any]) -> None:
    protocol.write(json.dumps(event) + "\n")
    protocol.flush()


def _create_app(settings: dict[str, Any]) -> tuple[Any, str]:
    """Load the model and build the FastAPI app; return it and the template in use."""
    import llama_cpp.server.app as server_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    server_settings = ServerSettings(api_key=settings["api_key"], interrupt_requests=True)
    model_settings = ModelSettings(
        model=settings["model"],
        model_alias="kodcu",
        n_ctx=settings["n_ctx"],
        n_threads=settings["n_threads"],
        n_threads_batch=settings["n_threads"],
        n_gpu_layers=settings["n_gpu_layers"],
        lora_path=settings.get("lora_path"),
        verbose=settings.get("verbose", False),
        # The server's default (True) computes logits over the whole vocabulary
        # for every prompt token; with Gemma's 262k-token vocabulary that made
        # prompt processing twice as slow. Only per-token logprobs need it.
        logits_all=False,
    )
    app = server_app.create_app(server_settings=server_settings, model_settings=[model_settings])
    llama = server_app._llama_proxy._current_model
    return app, use_chat_template(llama)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


def main() -> int:
    settings = json.loads(sys.stdin.readline())
    threading.Thread(target=_exit_when_parent_dies, daemon=True).start()
    protocol = protocol_stream()
    problems: list[str] = []
    callback = capture_llama_log(settings.get("verbose", False), problems)  # noqa: F841
    # Bind before loading: a port in use should fail at once, not after the load.
    try:
        sock = _bind(settings["host"], settings["port"])
    except OSError as exc:
        _report(protocol, {"event": "error", "stage": "bind", "message": exc.strerror or str(exc)})
        return 3
    try:
        app, template = _create_app(settings)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
        _report(
            protocol,
            {
                "event": "error",
                "stage": "load",
                "message": f"{type(exc).__name__}: {exc}",
                "llama_log": [line for line in problems if line][-10:],
            },
        )
        return 3

    import uvicorn

    _report(
        protocol,
        {"event": "listening", "port": sock.getsockname()[1], "chat_template": template},
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Skip interpreter shutdown: the watchdog thread is blocked reading stdin,
    # and finalizing with it there aborts the process.
    os._exit(code)
