"""`kodcu`: the desktop app.

kodcu                         open the chat window on the embedded default model, with
                              the built-in Kodcu Coder adapter over it
kodcu --model FILE.gguf       ... on another GGUF model (no adapter unless --adapter)
kodcu --no-adapter            ... on the bare model
kodcu --smoke "PROMPT"        no window: answer PROMPT on the terminal, print timings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu", description="Kodcu, an offline coding assistant."
    )
    parser.add_argument(
        "--model", type=Path, help="GGUF model file (default: the embedded Gemma 3 270M)"
    )
    parser.add_argument(
        "--smoke", metavar="PROMPT", help="answer PROMPT on the terminal with no window and exit"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="longest answer for --smoke (default: 256)"
    )
    adapters = parser.add_mutually_exclusive_group()
    adapters.add_argument(
        "--adapter",
        type=Path,
        help="GGUF LoRA adapter over the model (default: the built-in Kodcu Coder over the "
        "embedded default model, none over other models)",
    )
    adapters.add_argument(
        "--no-adapter", action="store_true", help="run the bare model, with no adapter"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the engine")
    return parser


def resolve_adapter(adapter: Path | None, no_adapter: bool, model: Path) -> Path | None:
    """The adapter to run: the one asked for, none, or the model's default (the built-in
    Kodcu Coder over the embedded default model)."""
    if no_adapter:
        return None
    if adapter is not None:
        return adapter.expanduser()
    from kodcu.coder import default_adapter

    return default_adapter(model)


def resolve_model(model: Path | None) -> Path:
    """The model to run: the one asked for, or the embedded default (assembled once)."""
    if model is not None:
        return model.expanduser()
    from kodcu.default_model import ensure_default_model

    return ensure_default_model()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A frozen build re-enters here for its child processes.
    if argv[:1] == ["--engine-child"]:
        from desktop.engine_child import main as engine_child

        return engine_child()
    if argv[:1] == ["--metadata-child"] and len(argv) == 2:
        from desktop.gguf_metadata import child_main as metadata_child

        metadata_child(argv[1])
    args = _parser().parse_args(argv)
    model = resolve_model(args.model)
    adapter = resolve_adapter(args.adapter, args.no_adapter, model)
    if args.smoke is not None:
        from desktop.smoke import run_smoke

        return run_smoke(args.smoke, model, args.max_tokens, args.threads, adapter)
    from desktop.app import run_window

    return run_window(model, n_threads=args.threads, adapter=adapter)


if __name__ == "__main__":
    sys.exit(main())
