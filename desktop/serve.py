"""`kodcu-serve`: Kodcu's engine without a window, as a local API for IDE plugins.

    kodcu-serve                                 the default model and its built-in coder
                                                adapter on 127.0.0.1, a free port
    kodcu-serve --no-lora                       the bare default model
    kodcu-serve --model m.gguf --port 8080      a given model and port
    kodcu-serve --host 0.0.0.0                  reachable from other machines (think first)
    KODCU_API_KEY=... kodcu-serve               a key of your own (or --api-key-file FILE)

It prints the OpenAI-compatible base URL and the API key; every request must
send `Authorization: Bearer KEY`. Stop it with Ctrl+C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from desktop.cli import resolve_adapter, resolve_model
from desktop.engine import Engine, EngineConfig, EngineError
from desktop.settings import is_loopback
from kodcu.llama import default_threads

KEY_ENV = "KODCU_API_KEY"


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
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key-file",
        type=Path,
        help=f"file whose first line is the key clients must send (default: ${KEY_ENV}, "
        "else a random key)",
    )
    keys.add_argument(
        "--api-key", help="the key on the command line: visible to every user in `ps`; avoid"
    )
    parser.add_argument("--ctx", type=int, default=4096, help="context length in tokens")
    parser.add_argument(
        "--threads", type=int, default=default_threads(), help="CPU threads (default: %(default)s)"
    )
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers on the GPU (-1: all)")
    adapters = parser.add_mutually_exclusive_group()
    adapters.add_argument(
        "--lora",
        type=Path,
        help="GGUF LoRA adapter over the model (default: the built-in Kodcu Coder over the "
        "embedded default model, none over other models)",
    )
    adapters.add_argument("--no-lora", action="store_true", help="serve the bare model")
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    return parser


def api_key(args: argparse.Namespace) -> str | None:
    """The key asked for: from --api-key-file, $KODCU_API_KEY or (warned about) --api-key;
    None for a random one. A command line is visible to every user of the machine."""
    if args.api_key_file is not None:
        try:
            lines = args.api_key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"--api-key-file {args.api_key_file}: cannot be read ({exc})"
            ) from None
        if not lines or not lines[0].strip():
            raise ValueError(f"--api-key-file {args.api_key_file}: its first line is empty")
        return lines[0].strip()
    if args.api_key:
        print(
            f"Warning: a key given with --api-key is visible to every user of this machine "
            f"(ps, /proc); use ${KEY_ENV} or --api-key-file instead.",
            file=sys.stderr,
        )
        return args.api_key
    return os.environ.get(KEY_ENV) or None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"kodcu-serve: --port must be between 0 and 65535, not {args.port}", file=sys.stderr)
        return 2
    model = resolve_model(args.model)
    config = EngineConfig(
        model=model,
        host=args.host,
        port=args.port,
        n_ctx=args.ctx,
        n_threads=args.threads,
        n_gpu_layers=args.gpu_layers,
        lora_path=resolve_adapter(args.lora, args.no_lora, model),
        verbose=args.verbose,
    )
    try:
        key = api_key(args)
    except ValueError as exc:
        print(f"kodcu-serve: {exc}", file=sys.stderr)
        return 2
    if key:
        config.api_key = key
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
    if not is_loopback(args.host):
        print(
            f"Warning: listening on {args.host}; anyone who can reach it and has the key"
            " can use this model, and the key and every prompt travel unencrypted (plain HTTP).",
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
