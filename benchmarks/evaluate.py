"""Evaluation speed: HumanEval completions one at a time against several decoded together.

    python benchmarks/evaluate.py                       # the default model, 32 problems
    python benchmarks/evaluate.py --model M.gguf --problems 64 --slots 1,8,16,32

Each row makes the same greedy base-prompt completions of the first N HumanEval
problems (at most --max-tokens new tokens, HumanEval's stop sequences) through
`GGUFModel.generate` with a number of slots; slots 1 is the baseline, decoding one
sequence at a time exactly as llama-cpp-python does. It prints wall time, tokens
per second and how many completions came out the same as the baseline's: llama.cpp
sums in another order when sequences share a batch, and a small model's greedy
choice can flip on such a difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from evaluation.models import GGUFModel, Prompt
    from evaluation.problems import load_problems
    from kodcu.default_model import ensure_default_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the embedded model)")
    parser.add_argument("--problems", type=int, default=32, help="first N HumanEval problems")
    parser.add_argument("--slots", default="1,8,16", help="comma-separated; 1 is the baseline")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the engine's)")
    args = parser.parse_args()

    path = args.model or ensure_default_model()
    problems = load_problems("humaneval")[: args.problems]
    model = GGUFModel(path, adapter=None, threads=args.threads, slots=1)
    rows, baseline = [], None
    for slots in [int(s) for s in args.slots.split(",")]:
        model.slots = slots
        prompts = [Prompt(p.task_id, text=p.base_prompt, stops=p.stops) for p in problems]
        start = time.perf_counter()
        texts = {p.key: text for p, text in model.generate(prompts, args.max_tokens, 0.0)}
        seconds = time.perf_counter() - start
        tokens = sum(len(model.llama.tokenize(t.encode(), add_bos=False)) for t in texts.values())
        baseline = baseline or (seconds, texts)
        same = sum(texts[k] == baseline[1][k] for k in texts)
        rows.append((slots, seconds, tokens, baseline[0] / seconds, same))
        print(f"slots {slots}: {seconds:.1f} s", file=sys.stderr, flush=True)
    model.close()

    print(f"\n{path.name}, {len(problems)} HumanEval problems, greedy", end="")
    print(f", at most {args.max_tokens} new tokens\n")
    first = rows[0][0]  # the baseline: slots 1 unless --slots starts elsewhere
    print(f"| slots | seconds | new tokens | tokens/s | vs slots {first} | same as slots {first} |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for slots, seconds, tokens, speedup, same in rows:
        print(
            f"| {slots} | {seconds:.1f} | {tokens} | {tokens / seconds:.1f} | {speedup:.2f}x "
            f"| {same}/{len(problems)} |"
        )


if __name__ == "__main__":
    main()
