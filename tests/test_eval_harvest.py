"""kodcu-eval harvest: the passing samples of runs on one's own problems, as training rows
that kodcu-train reads; and --task-ids, which picks a split out of a problem file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evaluation.cli import main
from trainer.data import SourceConfig, load_examples

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PROBLEMS = [json.loads(line) for line in (EXAMPLES / "problems.jsonl").read_text().splitlines()]
SAMPLES = [json.loads(line) for line in (EXAMPLES / "samples.jsonl").read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Path, Path]:
    """A run on the example problems (a copy): their two samples each, one of them again
    with other spacing, tested in the sandbox."""
    problems = shutil.copy(EXAMPLES / "problems.jsonl", tmp_path / "problems.jsonl")
    again = {**SAMPLES[0], "completion": SAMPLES[0]["completion"].replace(", ", ",  ")}
    samples = write_jsonl(tmp_path / "samples.jsonl", [*SAMPLES, again])
    out = tmp_path / "run"
    assert main(["score", str(samples), "--problems", str(problems), "--out", str(out)]) == 0
    return out, Path(problems)


def test_passing_answers_become_rows_the_trainer_reads(
    scored: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, _ = scored
    rows_path = tmp_path / "data" / "verified.jsonl"
    assert main(["harvest", str(run), "--out", str(rows_path)]) == 0
    said = capsys.readouterr().out
    # One right answer each for four of the five problems (examples/samples.jsonl); the
    # same answer again with other spacing counts once.
    assert "4 rows from 5 passing of 11 samples (4 of 5 problems solved; 1 identical" in said
    assert "format: alpaca\n      layout: completion" in said
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    prompts = {row["task_id"]: row["prompt"] for row in PROBLEMS}
    # The rows are the answers the sandbox passed, as scoring recorded them.
    statuses = json.loads((run / "results.json").read_text())["problems"]
    right = {
        s["task_id"]: s["completion"]
        for s in reversed(SAMPLES)
        if statuses[s["task_id"]][SAMPLES.index(s) % 2]["status"] == "passed"
    }
    assert {row["task_id"]: row["output"] for row in rows} == right
    assert all(row["instruction"] == prompts[row["task_id"]] for row in rows)
    report = json.loads((tmp_path / "data" / "verified.report.json").read_text())
    assert (report["rows"], report["passed"], report["duplicates"]) == (4, 5, 1)
    assert report["runs"][0]["problem_file"].endswith("problems.jsonl")

    # kodcu-train reads them as the text the model continues, then its answer.
    source = SourceConfig(str(rows_path), format="alpaca", layout="completion", licence="MIT")
    examples, [loaded] = load_examples([source])
    assert loaded["kept"] == 4
    clamp = next(e for e in examples if e.output == right["Kodcu/0"])
    assert clamp.instruction == prompts["Kodcu/0"] and clamp.layout == "completion"


def test_at_most_per_problem_answers_are_kept(scored: tuple[Path, Path], tmp_path: Path) -> None:
    run, problems = scored
    # Another right answer to clamp, in a second run: one answer per problem is kept.
    more = {**SAMPLES[0], "completion": "    return min(max(value, low), high)\n"}
    samples = write_jsonl(tmp_path / "more.jsonl", [*SAMPLES, more])
    other = tmp_path / "other"
    assert main(["score", str(samples), "--problems", str(problems), "--out", str(other)]) == 0
    out = tmp_path / "capped.jsonl"
    assert main(["harvest", str(run), str(other), "--out", str(out), "--per-problem", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["task_id"] for row in rows) == ["Kodcu/0", "Kodcu/1", "Kodcu/2", "Kodcu/4"]
    report = json.loads(out.with_name("capped.report.json").read_text())
    assert report["over_per_problem"] == 1 and len(report["runs"]) == 2


def test_benchmark_runs_and_changed_problem_files_are_refused(
    scored: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, problems = scored
    results = json.loads((run / "results.json").read_text())
    benchmark = tmp_path / "he-run"
    benchmark.mkdir()
    shutil.copy(run / "samples.jsonl", benchmark / "samples.jsonl")
    config = {**results["config"], "benchmark": "humaneval", "problem_file": None}
    (benchmark / "results.json").write_text(json.dumps({**results, "config": config}))
    assert main(["harvest", str(benchmark), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "a --benchmark humaneval run; its problems are what kodcu-eval scores" in (
        capsys.readouterr().err
    )

    problems.write_text(problems.read_text() + "\n")
    assert main(["harvest", str(run), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "has changed since the run" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_task_ids_pick_a_split_out_of_a_problem_file(tmp_path: Path) -> None:
    lines = (EXAMPLES / "mbpp_style.jsonl").read_text().splitlines()
    mbpp_style = [json.loads(line) for line in lines]
    answers = write_jsonl(
        tmp_path / "answers.jsonl",
        [{"task_id": row["task_id"], "completion": row["code"]} for row in mbpp_style[1:]],
    )
    out = tmp_path / "run"
    options = ["--problems", str(EXAMPLES / "mbpp_style.jsonl"), "--task-ids", "2-99"]
    assert main(["score", str(answers), *options, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["problems"]) == [str(row["task_id"]) for row in mbpp_style[1:]]
    assert results["config"]["task_ids"] == "2-99"
    bad = ["score", str(answers), "--problems", str(EXAMPLES / "mbpp_style.jsonl")]
    assert main([*bad, "--task-ids", "9-1", "--out", str(tmp_path / "bad")]) == 2


def test_task_ids_pick_problems_by_name_and_by_number(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """LeetCodeDataset's task ids are slugs with no number: --task-ids takes whole ids,
    and mixes them with number ranges."""
    slugs = {"Kodcu/0": "clamp-a-number", "Kodcu/1": "initials", "Kodcu/2": "count-changes"}
    rows = [{**row, "task_id": slugs.get(row["task_id"], row["task_id"])} for row in PROBLEMS]
    problems = write_jsonl(tmp_path / "problems.jsonl", rows)
    chosen = ("Kodcu/0", "Kodcu/1", "Kodcu/4")
    samples = [
        {**row, "task_id": slugs.get(row["task_id"], row["task_id"])}
        for row in SAMPLES
        if row["task_id"] in chosen
    ]
    answers = write_jsonl(tmp_path / "samples.jsonl", samples)
    score = ["score", str(answers), "--problems", str(problems)]

    out = tmp_path / "run"
    assert main([*score, "--task-ids", "initials, clamp-a-number,4", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["problems"]) == ["Kodcu/4", "clamp-a-number", "initials"]

    bad = tmp_path / "bad"
    assert main([*score, "--task-ids", "initials,two-sum", "--out", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "no problem has the task id two-sum" in error and str(problems) in error
    assert main([*score, "--task-ids", "initials,,4", "--out", str(bad)]) == 2
    assert "an empty part" in capsys.readouterr().err
    assert not bad.exists()
