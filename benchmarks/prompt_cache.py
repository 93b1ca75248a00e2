"""Does a follow-up question get its first token as fast as the first one did?

    python benchmarks/prompt_cache.py            # default model, 8 turns
    python benchmarks/prompt_cache.py --turns 12 --model m.gguf

The engine keeps the last prompt's KV cache and reuses its longest common
prefix, so in a conversation only the new question is processed: time to first
token should stay flat as the history grows. The baseline in the same run is a
second engine sent the same history with a different first line each turn,
which defeats the cache, so every turn processes the whole history again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from desktop.client import ChatStream, count_tokens  # noqa: E402
from desktop.engine import Engine, EngineConfig  # noqa: E402
from kodcu.default_model import ensure_default_model  # noqa: E402

QUESTIONS = [
    "Write a Python function that parses an ISO date.",
    "Now make it accept a timezone offset.",
    "Add a docstring with two examples.",
    "Write a unit test for it with pytest.",
    "How would you do the same in JavaScript?",
    "And in SQL, for a column of strings?",
    "Which of these is the fastest, and why?",
    "Summarise the whole discussion in three bullet points.",
]


def ask(engine: Engine, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, str]:
    stream = ChatStream(
        engine.base_url, engine.api_key, messages, max_tokens=max_tokens, temperature=0.0
    )
    answer = "".join(stream)
    return (stream.stats.time_to_first_token_s or 0.0) * 1000, answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    model = args.model or ensure_default_model()
    rows = []
    with (
        Engine(EngineConfig(model=model, n_ctx=4096)) as engine,
        Engine(EngineConfig(model=model, n_ctx=4096)) as baseline,
    ):
        for warm in (engine, baseline):  # first requests page the model in
            ask(warm, [{"role": "user", "content": "Hello"}], 4)
        history: list[dict[str, str]] = []
        for turn in range(args.turns):
            history.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            cached_ms, answer = ask(engine, history, args.max_tokens)
            # A new first line makes the whole prompt new to the baseline's cache.
            cold = [{"role": "system", "content": f"Session {turn}: be helpful."}, *history]
            cold_ms, _ = ask(baseline, cold, 1)
            tokens = sum(
                count_tokens(engine.base_url, engine.api_key, m["content"]) for m in history
            )
            rows.append((turn + 1, tokens, cached_ms, cold_ms))
            history.append({"role": "assistant", "content": answer})
    print(f"model: {model.name}; answers of up to {args.max_tokens} tokens\n")
    print("turn | history tokens | TTFT, cache reused (ms) | TTFT, whole history (ms)")
    print("---- | -------------- | ----------------------- | ------------------------")
    for turn, tokens, cached_ms, cold_ms in rows:
        print(f"{turn:<4} | {tokens:<14} | {cached_ms:<23.1f} | {cold_ms:.1f}")
    first, last = rows[0][2], rows[-1][2]
    print(f"\nfollow-up TTFT: first turn {first:.1f} ms, last turn {last:.1f} ms "
          f"(whole-history baseline at the last turn: {rows[-1][3]:.1f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
