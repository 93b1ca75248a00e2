"""`kodcu-eval`: HumanEval / MBPP pass@k for a GGUF, a model folder, an adapter or a server.

    kodcu-eval --benchmark humaneval --model model.gguf --out runs/he-base
    kodcu-eval --benchmark mbpp --mbpp mbpp.jsonl --model model.gguf --adapter lora.gguf \\
        --prompt instruct --out runs/mbpp-lora
    kodcu-eval --benchmark humaneval --model http://127.0.0.1:8080/v1 --samples 10 \\
        --temperature 0.8 --k 1,10 --out runs/he-server
    kodcu-eval compare runs/he-base runs/he-lora          # a table, and compare.png

Generated code runs in child processes with time, memory, process and output
limits (kodcu/sandbox/). That is NOT a security sandbox: it contains
accidents and runaway programs, not an attacker. Evaluate models you trust, or
run kodcu-eval in a container or a throwaway virtual machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluation.loops import DRAFT_MODES
from evaluation.models import ModelError, open_model
from evaluation.problems import BENCHMARKS, ProblemError, load_problems
from evaluation.run import RESULTS, SAMPLES, RunConfig, RunError, evaluate


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--benchmark", choices=BENCHMARKS, required=True)
    parser.add_argument("--model", required=True, help="GGUF file, model/adapter folder or URL")
    parser.add_argument("--adapter", type=Path, help="a LoRA GGUF applied over a GGUF --model")
    parser.add_argument("--prompt", choices=("base", "instruct"), default="base")
    parser.add_argument("--samples", type=int, default=1, help="samples per problem (n)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--k", default="1", help="comma-separated k of pass@k (default 1)")
    parser.add_argument("--limit", type=int, help="only the first N problems")
    parser.add_argument("--workers", type=int, default=2, help="test processes at once")
    parser.add_argument(
        "--slots",
        type=int,
        default=16,
        help="completions decoded together for a GGUF or a Hugging Face folder, or requests "
        "in flight to a server (default 16; 1 decodes one at a time, and with "
        "--drafts none exactly as llama-cpp-python or transformers does)",
    )
    parser.add_argument(
        "--drafts",
        choices=DRAFT_MODES,
        default="loops",
        help="what a GGUF drafts for greedy decoding: loops (default: the continuation of "
        "a repeated block or of counting lines, every drafted token checked by the model "
        "and kept only where it is the model's own greedy choice), none (every token "
        "decoded in a step of its own; slower). See README",
    )
    parser.add_argument("--max-tokens", type=int, default=384, help="new tokens per sample")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per test program")
    parser.add_argument("--threads", type=int, help="CPU threads for a GGUF model")
    parser.add_argument("--mbpp", type=Path, help="local mbpp.jsonl (default: the Hub)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    try:
        ks = [int(k) for k in args.k.split(",")]
    except ValueError:
        return _fail(f"--k {args.k}: give whole numbers separated by commas, e.g. 1,10")
    if args.temperature == 0 and args.samples > 1:
        return _fail("--samples above 1 needs --temperature above 0 (greedy samples are equal)")
    if args.slots < 1:
        return _fail(f"--slots {args.slots}: give 1 or more")
    if max(ks) > args.samples:
        return _fail(f"--k {max(ks)} needs at least that many --samples (now {args.samples})")
    try:
        problems = load_problems(args.benchmark, args.mbpp)[: args.limit]
        model = open_model(args.model, args.adapter, args.threads, args.slots, args.drafts)
    except (ProblemError, ModelError) as error:
        return _fail(str(error))
    config = RunConfig(
        benchmark=args.benchmark,
        kind=args.prompt,
        samples=args.samples,
        temperature=args.temperature,
        ks=ks,
        max_tokens=args.max_tokens,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    try:
        results = evaluate(problems, model, config, args.out)
    except (ModelError, RunError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print(
            f"kodcu-eval: interrupted; the samples made so far are in {args.out / SAMPLES}: "
            "run the same command to go on from them",
            file=sys.stderr,
        )
        return 130
    finally:
        model.close()
    scores = ", ".join(f"{k} {v:.4f}" for k, v in results["scores"]["pass@k"].items())
    print(f"{scores} · {results['timings']['wall_s']:.0f} s · {args.out / 'report.md'}")
    return 0


def compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kodcu-eval compare")
    parser.add_argument("runs", type=Path, nargs="+", help="output folders of kodcu-eval")
    parser.add_argument("--plot", type=Path, default=Path("compare.png"), help="the chart")
    args = parser.parse_args(argv)
    rows = []
    for folder in args.runs:
        try:
            results = json.loads((folder / RESULTS).read_text())
        except (OSError, ValueError) as error:
            return _fail(f"{folder}: not a kodcu-eval run ({error})")
        rows.append((folder.name, results))
    metrics = sorted({m for _, r in rows for m in r["scores"]["pass@k"]})
    print("| run | benchmark | model | prompt | " + " | ".join(metrics) + " | wall s |")
    print("| --- " * (len(metrics) + 5) + "|")
    for name, r in rows:
        values = " | ".join(f"{r['scores']['pass@k'].get(m, float('nan')):.4f}" for m in metrics)
        config = r["config"]
        print(
            f"| {name} | {config['benchmark']} | {r['model']} | {config['kind']} | {values} "
            f"| {r['timings']['wall_s']:.0f} |"
        )
    _plot(rows, metrics, args.plot)
    print(f"plot: {args.plot}")
    return 0


def _plot(rows: list, metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(4, 1.6 * len(rows) * len(metrics)), 3.5))
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
        values = [r["scores"]["pass@k"].get(metric, 0.0) for _, r in rows]
        axes.bar([x + i * width for x in range(len(rows))], values, width, label=metric)
    axes.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(rows))])
    axes.set_xticklabels([name for name, _ in rows])
    axes.set_ylabel("pass rate")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _fail(message: str) -> int:
    print(f"kodcu-eval: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        return compare(argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
