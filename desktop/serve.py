"""`kodcu-serve`: Kodcu's engine without a window, as a local API for IDE plugins.

    kodcu-serve                                 the default model on 127.0.0.1, a free port
    kodcu-serve --model m.gguf --port 8080      a given model and port
    kodcu-serve --host 0.0.0.0                  reachable from other machines (think first)

It prints the OpenAI-compatible base URL and the API key; every request must
send `Authorization: Bearer KEY`. Stop it with Ctrl+C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from desktop.cli import resolve_model
from desktop.engine import Engine, EngineConfig, EngineError
from kodcu.llama import default_threads


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-serve",
        description="Serve a GGUF model over an OpenAI-compatible API on this machine.",
    )
    parser.add_argument(
        "--model", type=Path, help="GGUF model file (default: the embedded Gemma 3 270M)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--api-key", help="key clients must send (default: a random one)")
    parser.add_argument("--ctx", type=int, default=4096, help="context length in tokens")
    parser.add_argument(
        "--threads", type=int, default=default_threads(), help="CPU threads (default: %(default)s)"
    )
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers on the GPU (-1: all)")
    parser.add_argument("--lora", type=Path, help="GGUF LoRA adapter to apply over the model")
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"kodcu-serve: --port must be between 0 and 65535, not {args.port}", file=sys.stderr)
        return 2
    config = EngineConfig(
        model=resolve_model(args.model),
        host=args.host,
        port=args.port,
        n_ctx=args.ctx,
        n_threads=args.threads,
        n_gpu_layers=args.gpu_layers,
        lora_path=args.lora,
        verbose=args.verbose,
    )
    if args.api_key:
        config.api_key = args.api_key
    engine = Engine(config)
    print(f"Loading {config.model} ...", file=sys.stderr, flush=True)
    try:
        engine.start()
    except EngineError as exc:
        print(f"kodcu-serve: {exc}", file=sys.stderr)
        return 1
    # SIGTERM (service managers, `kill`) stops as cleanly as Ctrl+C.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"URL: {engine.base_url}")
    print(f"API key: {engine.api_key}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"Warning: listening on {args.host}; anyone who can reach it and has the key"
            " can use this model.",
            file=sys.stderr,
        )
    print("Press Ctrl+C to stop.", file=sys.stderr, flush=True)
    try:
        while engine.is_running():
            time.sleep(0.5)
        print(
            f"kodcu-serve: the engine stopped unexpectedly ({engine.exit_reason()})",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("Stopping.", file=sys.stderr)
        return 0
    finally:
        engine.stop()


if __name__ == "__main__":
    sys.exit(main())
