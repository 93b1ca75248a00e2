"""Evaluation speed: one completion at a time against several decoded together, and loops.

    python benchmarks/evaluate.py                       # the default model, 32 problems
    python benchmarks/evaluate.py --model M.gguf --problems 64 --slots 1,8,16,32
    python benchmarks/evaluate.py --loops --problems 164 --slots 16

Each row makes the same greedy base-prompt completions of the first N HumanEval
problems (at most --max-tokens new tokens, HumanEval's stop sequences) through
`GGUFModel.generate`. The first row is the baseline, and every row says how many of
its completions came out the same as the baseline's.

- By default the rows differ in slots (slots 1 decodes one sequence at a time,
  exactly as llama-cpp-python does). llama.cpp sums in another order when sequences
  share a batch, and a small model's greedy choice can flip on such a difference.
- With --loops, at the first slot count, the baseline decodes every token with the
  model (`kodcu-eval --loops decode`); the next rows continue repeated blocks without
  it (`--loops repeat`), then also count on counting lines in drafts the model checks
  (`--loops count`, the default; evaluation/loops.py).

Tokens/s counts every new token of the texts, continued and drafted ones included.
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
    parser.add_argument("--slots", default="1,8,16", help="comma-separated; first: baseline")
    parser.add_argument("--loops", action="store_true", help="compare the --loops modes")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the engine's)")
    args = parser.parse_args()

    path = args.model or ensure_default_model()
    problems = load_problems("humaneval")[: args.problems]
    slot_counts = [int(s) for s in args.slots.split(",")]
    if args.loops:
        settings = [(slot_counts[0], loops) for loops in ("decode", "repeat", "count")]
    else:
        settings = [(slots, "count") for slots in slot_counts]
    model = GGUFModel(path, adapter=None, threads=args.threads, slots=1)
    rows, baseline = [], None
    for slots, loops in settings:
        model.slots, model.loops = slots, loops
        model.continued_tokens = model.drafted_tokens = 0
        prompts = [Prompt(p.task_id, text=p.base_prompt, stops=p.stops) for p in problems]
        start = time.perf_counter()
        texts = {p.key: text for p, text in model.generate(prompts, args.max_tokens, 0.0)}
        seconds = time.perf_counter() - start
        tokens = sum(len(model.llama.tokenize(t.encode(), add_bos=False)) for t in texts.values())
        baseline = baseline or (seconds, texts)
        same = sum(texts[k] == baseline[1][k] for k in texts)
        rows.append(
            (slots, loops, seconds, tokens, model.continued_tokens, model.drafted_tokens, same)
        )
        print(f"slots {slots}, loops {loops}: {seconds:.1f} s", file=sys.stderr, flush=True)
    model.close()

    print(f"\n{path.name}, {len(problems)} HumanEval problems, greedy", end="")
    print(f", at most {args.max_tokens} new tokens\n")
    print(
        "| slots | loops | seconds | new tokens | continued | drafted | tokens/s | vs first row "
        "| same |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    first_seconds = rows[0][2]
    for slots, loops, seconds, tokens, continued, drafted, same in rows:
        print(
            f"| {slots} | {loops} | {seconds:.1f} | {tokens} | {continued} | {drafted} "
            f"| {tokens / seconds:.1f} | {first_seconds / seconds:.2f}x | {same}/{len(problems)} |"
        )


if __name__ == "__main__":
    main()
