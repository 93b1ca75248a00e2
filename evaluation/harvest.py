"""The model's own verified answers as training rows: the self-training step of rejection
sampling ("Language Models Can Teach Themselves to Program Better", Haluptzok et al.).

    kodcu-eval --problems mbpp.jsonl --task-ids 601-974 --prompt instruct \\
        --model model.gguf --adapter coder.gguf --samples 8 --temperature 0.8 --out runs/sampled
    kodcu-eval harvest runs/sampled --out data/verified.jsonl
    kodcu-train config.yaml        # verified.jsonl as a source: format alpaca, layout as printed

Sample several answers per training problem, keep those that pass the problem's own tests
in the sandbox (kodcu-eval has done both), train on them, repeat. Each passing sample
becomes one Alpaca row, asked the way the run asked it:

- a chat run (`--prompt instruct`): `instruction` is the request kodcu-eval sent, `output`
  the whole answer (its fenced block passed the tests): train with layout chat;
- a base run: `instruction` is the prompt the model continued, `output` the completion:
  train with layout completion.

Identical answers to a problem count once, and at most `per_problem` are kept, so the
easy problems do not crowd out the rest. Only runs on problem files are harvested: the
benchmarks' test sets are what kodcu-eval scores, and training on answers to them would
make those scores meaningless. The report beside the rows counts every step and names
the runs, models and problem files (whose licence the rows inherit, with the model's
terms for its answers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.problem_files import FileError, read_problem_file
from evaluation.problems import Problem
from evaluation.run import RESULTS, SAMPLES

LAYOUTS = {"instruct": "chat", "base": "completion"}
"""The trainer's layout for answers of each kind of run."""


class HarvestError(ValueError):
    """A run cannot be harvested; the message names it and says what to do."""


@dataclass
class Harvest:
    """The rows and what the report says of them."""

    per_problem: int = 4
    """Most answers kept per problem."""
    rows: list[dict[str, str]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None
    samples: int = 0
    passed: int = 0
    duplicates: int = 0
    over_cap: int = 0
    problems: set[str] = field(default_factory=set)
    solved: set[str] = field(default_factory=set)

    def report(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "kind": self.kind,
            "layout": LAYOUTS.get(self.kind or ""),
            "per_problem": self.per_problem,
            "problems": len(self.problems),
            "problems_solved": len(self.solved),
            "samples": self.samples,
            "passed": self.passed,
            "duplicates": self.duplicates,
            "over_per_problem": self.over_cap,
            "rows": len(self.rows),
            "licence": "the problem files' licence for the requests; the model's terms for "
            "its answers",
        }


def harvest(run_dirs: list[Path], per_problem: int = 4) -> Harvest:
    """The passing samples of every run in `run_dirs`, as Alpaca rows, in run order."""
    if per_problem < 1:
        raise HarvestError(f"--per-problem {per_problem}: give 1 or more")
    found = Harvest(per_problem)
    kept: dict[str, set[str]] = {}  # each problem's answers, whitespace collapsed
    for run_dir in run_dirs:
        results = _read_json(run_dir / RESULTS, run_dir)
        config = results.get("config") or {}
        problems = _problems(run_dir, config)
        kind = config.get("kind")
        if found.kind not in (None, kind):
            raise HarvestError(
                f"{run_dir}: a --prompt {kind} run, and the runs before it are --prompt "
                f"{found.kind}; their answers train in different layouts: harvest them into "
                "separate files"
            )
        found.kind = kind
        found.runs.append({"run": str(run_dir), "model": results.get("model"), **_source(config)})
        outcomes = results.get("problems") or {}
        for sample in _samples(run_dir):
            task, index = sample["task_id"], sample["sample"]
            problem = problems.get(task)
            if problem is None:
                continue  # a sample of a problem this run no longer scores
            found.samples += 1
            found.problems.add(task)
            statuses = outcomes.get(task) or []
            if index >= len(statuses) or statuses[index].get("status") != "passed":
                continue
            found.passed += 1
            found.solved.add(task)
            answer = sample["completion"]
            answers, collapsed = kept.setdefault(task, set()), " ".join(answer.split())
            if collapsed in answers:
                found.duplicates += 1
            elif len(answers) >= per_problem:
                found.over_cap += 1
            else:
                answers.add(collapsed)
                found.rows.append(_row(problem, kind, answer))
    return found


def write_harvest(found: Harvest, out: Path) -> Path:
    """Write the rows (JSON Lines) and their report beside them; returns the report's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report_path = out.with_name(out.stem + ".report.json")
    for path, text in (
        (out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in found.rows)),
        (report_path, json.dumps(found.report(), indent=2) + "\n"),
    ):
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    return report_path


def _row(problem: Problem, kind: str, answer: str) -> dict[str, str]:
    request = problem.instruction if kind == "instruct" else problem.base_prompt
    return {"instruction": request, "input": "", "output": answer, "task_id": problem.task_id}


def _problems(run_dir: Path, config: dict[str, Any]) -> dict[str, Problem]:
    """The problems the run was made on, read again from its problem file (unchanged)."""
    path = config.get("problem_file")
    if not path:
        raise HarvestError(
            f"{run_dir}: a --benchmark {config.get('benchmark')} run; its problems are what "
            "kodcu-eval scores, and training on answers to them makes the scores meaningless. "
            "Sample answers to your own training problems (--problems FILE) and harvest those"
        )
    try:
        problem_file = read_problem_file(Path(path))
    except FileError as error:
        raise HarvestError(f"{run_dir}: its problem file cannot be read again: {error}") from None
    if problem_file.sha256 != config.get("problems_sha256"):
        raise HarvestError(
            f"{run_dir}: its problem file {path} has changed since the run (sha256 "
            f"{problem_file.sha256[:12]}, the run recorded "
            f"{str(config.get('problems_sha256'))[:12]}); run the samples again"
        )
    return {problem.task_id: problem for problem in problem_file.problems}


def _source(config: dict[str, Any]) -> dict[str, Any]:
    names = ("problem_file", "problems_sha256", "task_ids", "kind", "samples", "temperature")
    return {name: config.get(name) for name in names}


def _samples(run_dir: Path) -> Iterator[dict[str, Any]]:
    path = run_dir / SAMPLES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise HarvestError(f"{run_dir}: no samples to harvest ({error})") from None
    for number, line in enumerate(lines, start=1):
        try:
            sample = json.loads(line)
            if isinstance(sample["completion"], str) and isinstance(sample["sample"], int):
                yield sample
                continue
        except (ValueError, KeyError, TypeError):
            pass
        raise HarvestError(f"{path}, line {number}: not a kodcu-eval sample")


def _read_json(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise HarvestError(
            f"{run_dir}: not a finished kodcu-eval run ({path.name}: {error}); finish the run "
            "first (the same command goes on from its samples)"
        ) from None
    if not isinstance(data, dict):
        raise HarvestError(f"{path}: not a kodcu-eval results file")
    return data
