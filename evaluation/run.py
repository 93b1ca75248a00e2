"""One evaluation run: generate every sample, test each as soon as it exists, score, report.

    summary = evaluate(problems, model, RunConfig(kind="base", samples=1), Path("runs/he"))

The model makes several completions at once where it can (`slots`; see
evaluation/batched.py), and tests run in the sandbox's worker processes while it
goes on generating, so the run takes about as long as generation alone. The output folder holds
`samples.jsonl` (written as samples arrive), `results.json` (per problem: each
sample's status and reason; pass@k; the settings and timings) and `report.md`, and
`run.json`, the settings that shape the samples. A run into a folder that already holds
samples made with the same settings goes on from them: an interrupted run loses only
the completions it was making, and a finished one is tested and scored again.

Samples made elsewhere are tested and reported by the same parts (`SampleTests`, `record`;
evaluation/score_samples.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.models import Model, Prompt
from evaluation.problems import Problem, PromptKind
from evaluation.scoring import score
from kodcu.sandbox import Limits, Outcome, Sandbox

SAMPLES = "samples.jsonl"
RESULTS = "results.json"
REPORT = "report.md"
SETTINGS = "run.json"
SAMPLE_FIELDS = ("benchmark", "problems_sha256", "kind", "samples", "temperature", "max_tokens")
"""The RunConfig fields that shape the samples; the others only shape their tests."""
LABELS = {"problems_sha256": "problem file (sha256)"}
"""How a setting is named when a folder's samples were made with another."""


class RunError(ValueError):
    """The output folder holds another run's samples; the message says what to do."""


@dataclass
class RunConfig:
    benchmark: str = "humaneval"
    kind: PromptKind = "base"
    """base: the model completes the prompt; instruct: it answers through its chat template."""
    samples: int = 1
    """Samples per problem (n of pass@k)."""
    temperature: float = 0.0
    """0 is greedy decoding (then one sample is all there is)."""
    ks: list[int] = field(default_factory=lambda: [1])
    max_tokens: int = 384
    workers: int = 2
    """Test processes running at once, beside generation."""
    timeout_s: float = 10.0
    """Wall and CPU time each test program may take."""
    problem_file: str | None = None
    """The problem file the problems came from (`--problems`); None for a benchmark."""
    problems_sha256: str | None = None
    """That file's sha256: samples made from another file are never mixed with these."""
    task_ids: str | None = None
    """`--task-ids`: the ranges of the file's task ids that were run; None for all."""


class SampleTests:
    """Tests samples in the sandbox as they come, while more are made; `outcomes()` waits
    for them all. Used as a context manager: leaving it ends any test still running."""

    def __init__(self, problems: list[Problem], config: RunConfig) -> None:
        self._problems = {problem.task_id: problem for problem in problems}
        self._kind = config.kind
        self._pending: dict[str, list[tuple[int, Future[Outcome]]]] = {
            problem.task_id: [] for problem in problems
        }
        limits = Limits(wall_s=config.timeout_s, cpu_s=config.timeout_s)
        self._sandbox = Sandbox(limits, workers=config.workers)

    def submit(self, task: str, index: int, completion: str) -> str:
        """Test sample `index` of `task`; returns the program it runs (Problem.program)."""
        program = self._problems[task].program(completion, self._kind)
        self.submit_program(task, index, program)
        return program

    def submit_program(self, task: str, index: int, program: str) -> Future[Outcome]:
        """Test a whole program against the task's tests."""
        problem = self._problems[task]
        future = self._sandbox.submit(program, problem.test, problem.entry_point)
        self._pending[task].append((index, future))
        return future

    def outcomes(self) -> dict[str, list[Outcome]]:
        """Each task's outcomes in sample order, once all are known."""
        return {
            task: [future.result() for _, future in sorted(futures, key=lambda f: f[0])]
            for task, futures in self._pending.items()
        }

    def __enter__(self) -> SampleTests:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sandbox.close()


def evaluate(
    problems: list[Problem],
    model: Model,
    config: RunConfig,
    out_dir: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark and write the output folder; returns results.json's content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = _settings(model, config)
    earlier = _earlier_samples(out_dir, settings, progress)
    # The problem file's path is recorded, not compared: the same problems may move.
    recorded = {**settings, "problem_file": config.problem_file}
    (out_dir / SETTINGS).write_text(json.dumps(recorded, indent=2) + "\n")
    started = time.perf_counter()
    counted = _token_counts(model)  # the model's counters run on over its life
    prompts = [
        _prompt(problem, config, index, seed=number * config.samples + index)
        for number, problem in enumerate(problems)
        for index in range(config.samples)
    ]
    made = {p.key: earlier[p.key]["completion"] for p in prompts if p.key in earlier}
    if made:
        progress(f"{len(made)} of {len(prompts)} samples are already in {out_dir / SAMPLES}")
    with SampleTests(problems, config) as tests, (out_dir / SAMPLES).open("a") as out:
        for (task, index), completion in made.items():
            tests.submit(task, index, completion)
        todo = [prompt for prompt in prompts if prompt.key not in made]
        completions = model.generate(todo, config.max_tokens, config.temperature)
        for done, (prompt, completion) in enumerate(completions, start=len(made) + 1):
            task, index = prompt.key
            program = tests.submit(task, index, completion)
            sample = {"task_id": task, "sample": index, "completion": completion}
            out.write(json.dumps({**sample, "program": program}) + "\n")
            out.flush()
            elapsed = time.perf_counter() - started
            progress(f"[{done}/{len(prompts)}] {task} sample {index} generated ({elapsed:.0f} s)")
        generation_s = time.perf_counter() - started
        outcomes = tests.outcomes()
    wall_s = time.perf_counter() - started
    results = {
        "model": model.name,
        "config": asdict(config),
        "slots": model.slots,
        "drafts": model.drafts,
        **{name: now - counted[name] for name, now in _token_counts(model).items()},
        "timings": {"wall_s": round(wall_s, 1), "generation_s": round(generation_s, 1)},
    }
    return record(out_dir, results, outcomes, config.ks)


def record(
    out_dir: Path, results: dict[str, Any], outcomes: dict[str, list[Outcome]], ks: list[int]
) -> dict[str, Any]:
    """Add the scores and each sample's outcome to `results` (what made the samples, the
    config, the timings) and write results.json and report.md; returns the results."""
    results = {
        **results,
        "scores": score(outcomes, ks),
        "problems": {task: [_outcome(o) for o in samples] for task, samples in outcomes.items()},
        # What the sandbox could not isolate (kodcu.sandbox.Limits.isolate); [] when all held.
        "isolation": sorted({o.isolation for samples in outcomes.values() for o in samples} - {""}),
    }
    (out_dir / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / REPORT).write_text(report(results))
    return results


def _token_counts(model: Model) -> dict[str, int]:
    """How many tokens the model drafted and kept, dropped, and added unchecked so far."""
    return {
        "drafted_tokens": model.drafted_tokens,
        "rejected_tokens": model.rejected_tokens,
        "unchecked_tokens": model.unchecked_tokens,
    }


def _settings(model: Model, config: RunConfig) -> dict[str, Any]:
    fields = {name: value for name, value in asdict(config).items() if name in SAMPLE_FIELDS}
    return {"model": model.name, "slots": model.slots, "drafts": model.drafts, **fields}


def _earlier_samples(
    out_dir: Path, settings: dict[str, Any], progress: Callable[[str], None]
) -> dict[tuple[str, int], dict[str, Any]]:
    """The samples already in out_dir, by (task, sample), if made with these settings.

    samples.jsonl is written again without any line that is not a whole sample (the last
    one, if the run was stopped as it wrote it), so that new samples follow good ones.
    """
    path = out_dir / SAMPLES
    if not path.exists() or path.stat().st_size == 0:
        return {}
    try:
        recorded = json.loads((out_dir / SETTINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        why = f"made with settings that {SETTINGS} does not record"
    else:
        names = [LABELS.get(n, n) for n, value in settings.items() if recorded.get(n) != value]
        why = f"made with another {', '.join(names)}" if names else ""
    if why:
        raise RunError(
            f"{out_dir} holds samples {why}: give another --out, or delete {path} to start over"
        )
    samples: dict[tuple[str, int], dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            sample = json.loads(line)
            key = (sample["task_id"], sample["sample"])
            whole = isinstance(sample["completion"], str) and isinstance(key[0], str)
            whole = whole and isinstance(key[1], int)
        except (ValueError, KeyError, TypeError):
            whole = False
        if not whole:
            progress(f"{path}, line {number}: not a whole sample; it will be made again")
            continue
        samples.setdefault(key, sample)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(s) + "\n" for s in samples.values()), encoding="utf-8")
    temporary.replace(path)
    return samples


def _prompt(problem: Problem, config: RunConfig, index: int, seed: int) -> Prompt:
    key = (problem.task_id, index)
    if config.kind == "base":
        return Prompt(key, text=problem.base_prompt, stops=problem.stops, seed=seed)
    return Prompt(key, messages=[{"role": "user", "content": problem.instruction}], seed=seed)


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "exception": outcome.exception,
        "duration_s": round(outcome.duration_s, 3),
    }


def _how_made(results: dict[str, Any]) -> str:
    config, wall_s = results["config"], results["timings"]["wall_s"]
    problems = f"{len(results['problems'])} problems"
    if "scored" in results:  # samples made elsewhere: only how they were tested is known
        return (
            f"{problems}, {results['scores']['samples']} samples made elsewhere for "
            f"{config['kind']} prompts, scored from `{results['scored']['samples_file']}`; "
            f"{wall_s:.0f} s testing."
        )
    return (
        f"{problems}, {config['samples']} sample(s) each, "
        f"{config['kind']} prompts, temperature {config['temperature']}, "
        f"at most {config['max_tokens']} new tokens; {wall_s:.0f} s in all "
        f"({results['timings']['generation_s']:.0f} s generating)."
    )


def _whose_tokens(results: dict[str, Any]) -> str:
    """Who chose the tokens: the model, every one (`--drafts`)."""
    if results.get("unchecked_tokens"):
        return f"APPROXIMATE: {results['unchecked_tokens']} tokens were not chosen by the model."
    if results["drafts"] == "none":
        return "Every token was decoded by the model; none was drafted (`--drafts none`)."
    return (
        f"Every token was chosen or checked by the model: {results['drafted_tokens']} "
        f"came from drafts of greedy loops that the model checked and kept, and "
        f"{results['rejected_tokens']} drafted tokens it would not have chosen were "
        f"dropped (`--drafts {results['drafts']}`; `--drafts none` drafts nothing)."
    )


def report(results: dict[str, Any]) -> str:
    """results.json as Markdown: the scores, then how the failures failed."""
    config, scores = results["config"], results["scores"]
    lines = [
        f"# {config['benchmark']} — {results['model']}",
        "",
        _how_made(results),
    ]
    if "scored" not in results:  # samples made elsewhere: how is not known
        lines.append(_whose_tokens(results))
    lines += [
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value:.4f} |" for name, value in scores["pass@k"].items()]
    for note in results.get("isolation", []):
        lines += ["", f"Sandbox: {note}."]
    lines += ["", "## How samples ended", "", "| status | samples |", "| --- | --- |"]
    lines += [f"| {status} | {n} |" for status, n in sorted(scores["statuses"].items())]
    failures = [
        (task, sample["status"], sample["reason"])
        for task, samples in results["problems"].items()
        for sample in samples
        if sample["status"] != "passed"
    ]
    if failures:
        lines += ["", "## Failures", "", "| problem | status | reason |", "| --- | --- | --- |"]
        for task, status, reason in failures:
            lines.append(
                f"| {task} | {status} | {reason.splitlines()[0][:120] if reason else ''} |"
            )
    return "\n".join(lines) + "\n"
