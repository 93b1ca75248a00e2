"""Kodcu's engine (child server + HTTP stream) against llama-cpp-python in-process.

    python benchmarks/engine.py                    # default model, 3 prompts x 3 rounds
    python benchmarks/engine.py --model m.gguf --max-tokens 256 --rounds 5

Both sides load the same GGUF with the same context, threads, chat template and
sampling (greedy, end-of-sequence banned so every answer is exactly
--max-tokens long). Rounds alternate between the two so that drift in the
machine's speed hits both alike. Prints a table with the ratios and checks the
targets: engine tokens/s >= 0.95 x in-process, first-token overhead <= 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from desktop.client import ChatStream  # noqa: E402
from desktop.engine import Engine, EngineConfig  # noqa: E402
from kodcu.default_model import ensure_default_model  # noqa: E402
from kodcu.llama import default_threads, use_chat_template  # noqa: E402

# Sampling settings given explicitly to both sides: the server's request defaults
# (repeat_penalty 1.1) differ from Llama.create_chat_completion's (1.0).
SAMPLING = {"temperature": 0.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}

PROMPTS = [
    "Write a Python function that returns the square of a number.",
    "Explain what a SQL LEFT JOIN does, with an example query.",
    "Write a JavaScript function that debounces another function.",
]


@dataclass
class Run:
    ttft_s: float
    tokens: int
    tokens_per_s: float


def _speed(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def run_in_process(llama, prompt: str, max_tokens: int, eos_ban: dict[int, float]) -> Run:
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    for chunk in llama.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        logit_bias=eos_ban,
        stream=True,
        **SAMPLING,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter() - start
            first = first or last
            tokens += 1
    return Run(first, tokens, _speed(tokens, first, last))


def run_engine(engine: Engine, prompt: str, max_tokens: int, eos_ban: dict[int, float]) -> Run:
    stream = ChatStream(
        engine.base_url,
        engine.api_key,
        [{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=SAMPLING["temperature"],
        top_p=SAMPLING["top_p"],
        extra={
            "top_k": SAMPLING["top_k"],
            "min_p": SAMPLING["min_p"],
            "repeat_penalty": SAMPLING["repeat_penalty"],
            "logit_bias": {str(k): v for k, v in eos_ban.items()},
            "logit_bias_type": "input_ids",
        },
    )
    for _ in stream:
        pass
    stats = stream.stats
    return Run(stats.time_to_first_token_s or 0.0, stats.tokens, stats.tokens_per_s or 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--ctx", type=int, default=2048)
    args = parser.parse_args()
    model = args.model or ensure_default_model()

    from llama_cpp import Llama

    llama = Llama(
        str(model),
        n_ctx=args.ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    if "tokenizer.chat_template" not in llama.metadata:
        use_chat_template(llama)  # what the engine does, too
    eos_ban = {llama.token_eos(): -100.0}
    engine = Engine(EngineConfig(model=model, n_ctx=args.ctx, n_threads=args.threads))
    engine.start()
    try:
        # Warm both up once (page cache, first allocations), then measure.
        run_in_process(llama, PROMPTS[0], 8, eos_ban)
        run_engine(engine, PROMPTS[0], 8, eos_ban)
        results: dict[str, dict[str, list[Run]]] = {p: {"in": [], "engine": []} for p in PROMPTS}
        for round_no in range(args.rounds):
            for prompt in PROMPTS:
                sides = ["in", "engine"] if round_no % 2 == 0 else ["engine", "in"]
                for side in sides:
                    if side == "in":
                        run = run_in_process(llama, prompt, args.max_tokens, eos_ban)
                    else:
                        run = run_engine(engine, prompt, args.max_tokens, eos_ban)
                    results[prompt][side].append(run)
    finally:
        engine.stop()
        llama.close()

    print(
        f"model: {model.name}  threads: {args.threads}  ctx: {args.ctx}  "
        f"max tokens: {args.max_tokens}  rounds: {args.rounds} (medians)\n"
    )
    header = (
        "prompt",
        "in-proc tok/s",
        "engine tok/s",
        "ratio",
        "in-proc TTFT ms",
        "engine TTFT ms",
        "overhead ms",
    )
    rows = []
    ratios, overheads = [], []
    for prompt, sides in results.items():
        in_speed = statistics.median(r.tokens_per_s for r in sides["in"])
        en_speed = statistics.median(r.tokens_per_s for r in sides["engine"])
        in_ttft = statistics.median(r.ttft_s for r in sides["in"]) * 1000
        en_ttft = statistics.median(r.ttft_s for r in sides["engine"]) * 1000
        ratios.append(en_speed / in_speed)
        overheads.append(en_ttft - in_ttft)
        rows.append(
            (
                prompt[:34],
                f"{in_speed:.1f}",
                f"{en_speed:.1f}",
                f"{ratios[-1]:.3f}",
                f"{in_ttft:.1f}",
                f"{en_ttft:.1f}",
                f"{overheads[-1]:+.1f}",
            )
        )
    ratio, overhead = statistics.median(ratios), statistics.median(overheads)
    rows.append(("median", "", "", f"{ratio:.3f}", "", "", f"{overhead:+.1f}"))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    ok_speed, ok_ttft = ratio >= 0.95, overhead <= 50
    print(f"\ntokens/s ratio {ratio:.3f} (target >= 0.95): {'met' if ok_speed else 'NOT met'}")
    print(
        f"first-token overhead {overhead:+.1f} ms (target <= 50 ms): "
        f"{'met' if ok_ttft else 'NOT met'}"
    )
    return 0 if ok_speed and ok_ttft else 1


if __name__ == "__main__":
    sys.exit(main())
