"""`kodcu`: the desktop app.

kodcu                         open the chat window on the embedded default model
kodcu --model FILE.gguf       ... on another GGUF model
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
    parser.add_argument("--threads", type=int, help="CPU threads for the engine")
    return parser


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
    if args.smoke is not None:
        from desktop.smoke import run_smoke

        return run_smoke(args.smoke, model, args.max_tokens, args.threads)
    from desktop.app import run_window

    return run_window(model, n_threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
