"""Check problems before a model meets them: each reference solution must pass its own tests.

    checked = check_solutions(problems, RunConfig(timeout_s=10), print)
    checked.failed        # [("my/3", "failed", "AssertionError: ... (line 12)")]
    checked.unchecked     # tasks whose file gives no solution

A problem whose own solution fails (a typo in a test, a missing import, a test that takes
longer than --timeout) would count against every model. The solutions run in the same
sandbox, with the same tests and limits, as the samples will.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from evaluation.problems import Problem
from evaluation.run import RunConfig, SampleTests


@dataclass
class SolutionCheck:
    """What the check found."""

    passed: list[str] = field(default_factory=list)
    """Tasks whose solution passed."""
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    """(task, status, reason) of each solution that did not pass."""
    unchecked: list[str] = field(default_factory=list)
    """Tasks without a solution (no `canonical_solution` or `code`)."""

    def summary(self) -> str:
        counts = f"{len(self.passed)} passed, {len(self.failed)} failed"
        if self.unchecked:
            shown = ", ".join(self.unchecked[:10])
            more = f" and {len(self.unchecked) - 10} more" if len(self.unchecked) > 10 else ""
            counts += f", {len(self.unchecked)} unchecked (no solution given: {shown}{more})"
        return f"reference solutions: {counts}"

    def failures(self) -> str:
        """The failing tasks, one per line, with why."""
        return "\n".join(f"  {task}: {status}: {reason}" for task, status, reason in self.failed)


def check_solutions(
    problems: list[Problem], config: RunConfig, progress: Callable[[str], None] = print
) -> SolutionCheck:
    """Run every problem's solution against its tests; `config` gives the timeout and the
    number of test processes."""
    checked = SolutionCheck(unchecked=[p.task_id for p in problems if p.solution is None])
    with SampleTests(problems, config) as tests:
        futures = [
            (problem.task_id, tests.submit_program(problem.task_id, 0, problem.solution))
            for problem in problems
            if problem.solution is not None
        ]
        for done, (task, future) in enumerate(futures, start=1):
            outcome = future.result()
            reason = outcome.reason.splitlines()[0] if outcome.reason else ""
            if outcome.passed:
                checked.passed.append(task)
            else:
                checked.failed.append((task, outcome.status, reason))
            shown = "passed" if outcome.passed else f"{outcome.status}: {reason}"
            progress(f"[{done}/{len(futures)}] {task}: solution {shown}")
    return checked
