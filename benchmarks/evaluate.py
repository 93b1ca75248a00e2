"""Evaluation speed: `kodcu-eval`'s exact default against decoding every token, same run.

    python benchmarks/evaluate.py --mbpp mbpp.jsonl          # HumanEval (164) and MBPP (500)
    python benchmarks/evaluate.py --benchmarks humaneval --limit 40
    python benchmarks/evaluate.py --model M.gguf --slots 16 --json runs/bench.json

Each benchmark is run twice in full, as `kodcu-eval` runs it (greedy, base prompts,
generation and the sandbox's tests together, `evaluation.run.evaluate`), on one loaded
model, one run after the other:

- the baseline, `--drafts none`: the model decodes every token in a step of its own;
- the default, `--drafts loops`: loops are drafted and every drafted token is checked
  by the model in the shared decode step (evaluation/batched.py).

Both sides are exact greedy decoding; the table says how many texts differ (none:
every token is computed alike in any batch shape, evaluation/batched.py) and the
pass@1 of each. Wall time is the
whole run, tests included; tokens/s counts the new tokens of the texts (the texts
tokenized again, so a text cut at a stop sequence counts what is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS_S = {"humaneval": 300.0, "mbpp": 600.0}
"""Wall-time targets of the default on a 2-core x86-64 CPU (5 and 10 minutes)."""


def main() -> None:
    from evaluation.models import GGUFModel
    from evaluation.problems import ProblemError, load_problems
    from kodcu.default_model import ensure_default_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the embedded model)")
    parser.add_argument("--benchmarks", default="humaneval,mbpp", help="comma-separated")
    parser.add_argument("--mbpp", type=Path, help="local mbpp.jsonl (default: the Hub)")
    parser.add_argument("--limit", type=int, help="only the first N problems of each")
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--threads", type=int, help="CPU threads (default: the engine's)")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    args = parser.parse_args()

    path = args.model or ensure_default_model()
    model = GGUFModel(path, adapter=None, threads=args.threads, slots=args.slots)
    rows = []
    for benchmark in args.benchmarks.split(","):
        try:
            problems = load_problems(benchmark, args.mbpp)[: args.limit]
        except ProblemError as error:
            print(f"{benchmark}: skipped ({error})", file=sys.stderr)
            continue
        runs = [run(model, problems, benchmark, drafts, args) for drafts in DRAFTS]
        (baseline, baseline_texts), *_ = runs
        for row, texts in runs:
            row["differ"] = sorted(k for k in texts if texts[k] != baseline_texts[k])
            row["vs_baseline"] = baseline["wall_s"] / row["wall_s"]
            rows.append(row)
    model.close()
    print_table(path.name, rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


DRAFTS = ("none", "loops")
"""The baseline first, then the default."""


def run(model, problems: list, benchmark: str, drafts: str, args) -> tuple[dict, dict]:
    """One full kodcu-eval run: its table row, and its texts by task."""
    from evaluation.run import RunConfig, evaluate

    model.drafts = drafts
    config = RunConfig(benchmark=benchmark, max_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as out:
        results = evaluate(problems, model, config, Path(out), progress=lambda _: None)
        samples = [json.loads(line) for line in (Path(out) / "samples.jsonl").open()]
    texts = {s["task_id"]: s["completion"] for s in samples}
    tokens = sum(len(model.llama.tokenize(t.encode(), add_bos=False)) for t in texts.values())
    wall_s = results["timings"]["wall_s"]
    row = {
        "benchmark": benchmark,
        "problems": len(problems),
        "drafts": drafts,
        "wall_s": wall_s,
        "generation_s": results["timings"]["generation_s"],
        "new_tokens": tokens,
        "tokens_per_s": tokens / max(results["timings"]["generation_s"], 0.1),
        "drafted_tokens": results["drafted_tokens"],
        "rejected_tokens": results["rejected_tokens"],
        "unchecked_tokens": results["unchecked_tokens"],
        "pass@1": results["scores"]["pass@k"]["pass@1"],
    }
    print(f"{benchmark}, --drafts {drafts}: {wall_s:.0f} s", file=sys.stderr, flush=True)
    return row, texts


def print_table(model_name: str, rows: list[dict]) -> None:
    print(f"\n{model_name}, greedy, base prompts, kodcu-eval runs with tests\n")
    print(
        "| benchmark | drafts | wall s | generating s | new tokens | tokens/s | drafted kept "
        "| drafted dropped | pass@1 | texts differing | vs none | target |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        target = TARGETS_S.get(row["benchmark"]) if row["drafts"] == "loops" else None
        full = row["problems"] in (164, 500)
        verdict = (
            "" if target is None or not full else ("met" if row["wall_s"] <= target else "missed")
        )
        verdict = f"≤ {target:.0f} s: {verdict}" if verdict else ""
        differ = ", ".join(row["differ"]) or "0"
        print(
            f"| {row['benchmark']} ({row['problems']}) | {row['drafts']} | {row['wall_s']:.0f} "
            f"| {row['generation_s']:.0f} | {row['new_tokens']} | {row['tokens_per_s']:.1f} "
            f"| {row['drafted_tokens']} | {row['rejected_tokens']} | {row['pass@1']:.4f} "
            f"| {differ} | {row['vs_baseline']:.2f}x | {verdict} |"
        )


if __name__ == "__main__":
    main()
