"""`kodcu --smoke "PROMPT"`: answer one prompt on the terminal, with no window.

Starts the engine on the model (the embedded default unless --model says
otherwise, with the built-in Kodcu Coder adapter over it unless --no-adapter),
streams the answer to stdout, then prints the time to first token and the
generation speed. The installers run it as their self-test, so it exits 0 only
when a real answer came back.
"""

from __future__ import annotations

import sys
from pathlib import Path

from desktop.client import ApiError, ChatStream
from desktop.engine import Engine, EngineConfig, EngineError


def run_smoke(
    prompt: str,
    model: Path,
    max_tokens: int = 256,
    n_threads: int | None = None,
    adapter: Path | None = None,
) -> int:
    config = EngineConfig(model=model, lora_path=adapter)
    if n_threads:
        config.n_threads = n_threads
    print(f"Loading {model}" + (f" + {adapter}" if adapter else "") + " ...", file=sys.stderr)
    try:
        with Engine(config) as engine:
            stream = ChatStream(
                engine.base_url,
                engine.api_key,
                [{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
            )
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
    except (EngineError, ApiError) as exc:
        print(f"\nkodcu --smoke failed: {exc}", file=sys.stderr)
        return 1
    stats = stream.stats
    print()
    if stats.tokens == 0:
        print("kodcu --smoke failed: the model answered with no text.", file=sys.stderr)
        return 1
    ttft_ms = (stats.time_to_first_token_s or 0.0) * 1000
    speed = stats.tokens_per_s
    print(f"time to first token: {ttft_ms:.0f} ms")
    print(f"tokens/s: {speed:.1f}" if speed else "tokens/s: n/a (one token)")
    print(f"tokens: {stats.tokens}, finish reason: {stats.finish_reason}")
    return 0
