"""MBPP's rows and prompts, for the two tools that need them: the trainer (to keep
MBPP's test tasks out of training data, and to train on its train split asked the way
the evaluation asks) and the evaluation (to score models on them).

    rows = read_mbpp(Path("mbpp.jsonl"), hint="give a local copy with --mbpp")
    test_rows = [row for row in rows if int(row["task_id"]) in MBPP_TEST_IDS]
    prompt = base_prompt(rows[0]["text"], rows[0]["test_list"])

A local `mbpp.jsonl` (or the sanitized `sanitized-mbpp.json`), or the Hugging Face
Hub when no path is given. Standard library only; `datasets` only for the Hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

MBPP_TEST_IDS = range(11, 511)  # the test split: task ids 11-510
MBPP_HUB_ID = "google-research-datasets/mbpp"


def parse_task_ids(spec: str) -> list[tuple[int, int]]:
    """ "601-974" or "11-510,601-974" or "7" as inclusive (low, high) ranges; ValueError
    saying how to write them otherwise."""
    ranges = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"{spec!r}: write inclusive ranges like '601-974' or '1-5,9'")
        low = int(match[1])
        high = int(match[2]) if match[2] else low
        if high < low:
            raise ValueError(f"{spec!r}: range {low}-{high} is empty")
        ranges.append((low, high))
    return ranges


def in_ranges(task_id: object, ranges: list[tuple[int, int]]) -> bool:
    """Whether a task id ("601", 601 or "MBPP/601": its last number) is in the ranges."""
    match = re.search(r"(\d+)$", str(task_id))
    return match is not None and any(low <= int(match[1]) <= high for low, high in ranges)


def base_prompt(text: str, tests: list[str]) -> str:
    """What a base model continues (as in bigcode-evaluation-harness): the task text and
    its first test in a docstring; the model writes the function after it."""
    return f'"""\n{text.strip()}\n{tests[0].strip()}\n"""\n'


def instruction(text: str, tests: list[str]) -> str:
    """How a chat model is asked (as in the MBPP paper): the text and all the tests, and
    the answer's shape: one fenced Python block, as the desktop shows it."""
    return (
        f"{text.strip()}\nYour code should pass these tests:\n\n"
        + "\n".join(test.strip() for test in tests)
        + "\n\nAnswer with the code in one ```python code block."
    )


class MBPPError(ValueError):
    """MBPP cannot be read; the message names the file (or the Hub) and what to do."""


def read_mbpp(path: Path | None, hint: str) -> list[dict]:
    """Every row of the MBPP file at `path` (None: the Hub's test split); `hint` says what
    the user can do instead, and ends every error message."""
    if path is None:
        try:
            import datasets

            return [dict(row) for row in datasets.load_dataset(MBPP_HUB_ID, "full", split="test")]
        except Exception as error:  # noqa: BLE001 - offline, missing package, Hub errors
            raise MBPPError(
                f"MBPP could not be loaded from the Hugging Face Hub "
                f"({type(error).__name__}: {error}); {hint}"
            ) from None
    if not path.is_file():
        raise MBPPError(f"{path}: file not found; {hint}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as error:
            raise MBPPError(f"{path}: not JSON ({error}); {hint}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as error:
                raise MBPPError(f"{path}, line {number}: not JSON ({error}); {hint}") from None
    return rows
