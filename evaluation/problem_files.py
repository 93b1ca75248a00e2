"""Problem files of your own, in HumanEval's, MBPP's or LeetCodeDataset's format, and the
JSON rows of any file.

    found = read_problem_file(Path("examples/problems.jsonl"))
    found.format, found.sha256, len(found.problems)      # "humaneval", "3b1f...", 5
    select_task_ids(found.problems, "601-974,two-sum")  # by number ranges and by name

A file is JSON Lines (`.jsonl`, also gzipped as `.jsonl.gz`) or one JSON array (`.json`),
in UTF-8 (a byte-order mark is fine). Its format is found from its rows, and one file holds
one format:
- HumanEval's: `task_id`, `prompt`, `entry_point`, `test` (which defines `check(candidate)`),
  optionally `canonical_solution` (the body that completes the prompt);
- MBPP's: `task_id`, `text`, `test_list` (asserts), optionally `test_setup_code` and `code`
  (the reference solution). sanitized-mbpp.json's `prompt` and `test_imports` stand in for
  `text` and `test_setup_code`;
- LeetCodeDataset's: HumanEval's fields with the imports in `prompt`, the statement and the
  starter code in `query`, `entry_point` "Solution().method", optionally `completion` (the
  reference solution). A chat model is asked `query`; a base model continues the imports,
  the starter code and the statement as the method's docstring.
Prompts and tests are then built exactly as for the benchmark in that format
(evaluation/problems.py); unlike `--benchmark mbpp`, every row is a problem. Task ids are
the file's own; a number becomes text (7 is "7").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.problems import (
    Problem,
    function_name,
    humaneval_problem,
    leetcode_problem,
    mbpp_problem,
)
from kodcu.mbpp import in_ranges, parse_task_ids

FORMATS = {
    "humaneval": "HumanEval's format",
    "mbpp": "MBPP's format",
    "leetcode": "LeetCodeDataset's format",
}
REQUIRED = {
    "humaneval": "task_id, prompt, entry_point and test",
    "mbpp": "task_id, text and test_list",
    "leetcode": "task_id, prompt, query, entry_point and test",
}


class FileError(ValueError):
    """A problem or samples file cannot be used; the message names the file, the line (or
    the item of a JSON array) and the field, and says what to do."""


@dataclass(frozen=True)
class ProblemFile:
    """A problem file as read: what a run records about it, and its problems."""

    path: Path
    """The file as it was given."""
    format: str
    """"humaneval" or "mbpp"."""
    sha256: str
    """Of the file's bytes: a run into a folder made from another file is refused."""
    problems: list[Problem]
    """One per row, in the file's order."""

    def describe(self) -> str:
        return (
            f"{self.path}: {len(self.problems)} problems in {FORMATS[self.format]} "
            f"(sha256 {self.sha256[:12]})"
        )


def select_task_ids(problems: list[Problem], spec: str) -> list[Problem]:
    """The problems `--task-ids` names, in the file's order. Parts joined with commas are
    inclusive ranges of the task id's last number ("601-974", "7": MBPP's and HumanEval's
    ids) or whole task ids ("two-sum": LeetCodeDataset's slugs). ValueError naming a range
    that is empty, a task id the problems lack, or a selection that leaves nothing."""
    numbers, names = [], []
    for part in (part.strip() for part in spec.split(",")):
        if not part:
            raise ValueError(f"{spec!r}: an empty part; join ranges and task ids with commas")
        if re.fullmatch(r"[\d\s-]+", part):
            numbers += parse_task_ids(part)
        else:
            names.append(part)
    present = {problem.task_id for problem in problems}
    missing = [name for name in names if name not in present]
    if missing:
        raise ValueError(f"{spec!r}: no problem has the task id {', '.join(missing[:5])}")
    wanted = set(names)
    chosen = [p for p in problems if p.task_id in wanted or in_ranges(p.task_id, numbers)]
    if not chosen:
        raise ValueError(f"{spec!r}: no problem's task id is in these ranges")
    return chosen


def read_problem_file(path: Path) -> ProblemFile:
    """Every problem of the file at `path`; FileError names the line and field of a bad row."""
    data = read_bytes(path)
    rows = list(read_rows(path, data))
    if not rows:
        raise FileError(
            f"{path}: holds no problems; give one JSON object per line in HumanEval's format "
            f"({REQUIRED['humaneval']}) or MBPP's ({REQUIRED['mbpp']})"
        )
    found = {where: _format_of(path, where, row) for where, row in rows}
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        first = [
            f"{FORMATS[kind]} (first at {next(w for w, k in found.items() if k == kind)})"
            for kind in kinds
        ]
        raise FileError(
            f"{path}: mixes {' and '.join(first)}; put each format in a file of its own"
        )
    kind = kinds[0]
    problems, seen = [], {}
    for where, row in rows:
        problem = _problem(path, where, row, kind)
        if problem.task_id in seen:
            raise FileError(
                f"{path}, {where}: field `task_id`: {problem.task_id!r} again (first at "
                f"{seen[problem.task_id]}); give every problem its own task_id"
            )
        seen[problem.task_id] = where
        problems.append(problem)
    if kind == "humaneval":  # LeetCodeDataset's rows ask in `query`
        _refuse_unasked(path, rows)
    return ProblemFile(path, kind, hashlib.sha256(data).hexdigest(), problems)


def _refuse_unasked(path: Path, rows: list[tuple[str, Any]]) -> None:
    """Refuse a file whose prompts never name the function its tests call: the model would
    be asked nothing (LeetCodeDataset's rows without their `query`, say, hold only imports
    in `prompt`)."""
    # An entry point with no name in it ("()", say) names nothing a prompt could hold.
    names = [(where, function_name(row["entry_point"]), row) for where, row in rows]
    names = [(where, name if re.search(r"\w", name) else "", row) for where, name, row in names]
    if any(name and name in row["prompt"] for _, name, row in names):
        return
    where, name, _ = names[0]
    called = f"`{name}`, the function `test` calls" if name else "its entry point"
    raise FileError(
        f"{path}, {where}: field `prompt` does not name {called}, and no other row's prompt "
        "names its own: the model would be asked nothing about what to write. In HumanEval's "
        "format `prompt` holds the signature and docstring the model continues; move each "
        "problem's statement there"
    )


def read_rows(path: Path, data: bytes | None = None) -> Iterator[tuple[str, Any]]:
    """(where, value) for each row of a JSON Lines file or JSON array: where is "line 3"
    (blank lines skipped) or "item 3" of an array."""
    data = read_bytes(path) if data is None else data
    name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    text = _text(path, data)
    if name.endswith(".json"):
        yield from _array_items(path, text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            hint = "each line must be one JSON object"
            if number == 1 and line.lstrip().startswith("["):
                hint = "this looks like a JSON array: name the file .json"
            raise FileError(f"{path}, line {number}: not JSON ({error}); {hint}") from None
        yield f"line {number}", value


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileError(f"{path}: file not found") from None
    except OSError as error:
        raise FileError(f"{path}: cannot be read ({error.strerror or error})") from None


def _text(path: Path, data: bytes) -> str:
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise FileError(f"{path}: not a gzip file ({error}); drop the .gz ending") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is fine
    except UnicodeDecodeError as error:
        raise FileError(f"{path}: not UTF-8 text ({error}); save it as UTF-8") from None


def _array_items(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except ValueError as error:
        raise FileError(f"{path}: not JSON ({error}); a .json file holds one JSON array") from None
    if not isinstance(value, list):
        raise FileError(
            f"{path}: holds {type_name(value)}, not a JSON array; a .json file holds an "
            "array of objects (or use JSON Lines, one object per line, in a .jsonl file)"
        )
    for number, item in enumerate(value, start=1):
        yield f"item {number}", item


def _format_of(path: Path, where: str, row: Any) -> str:
    if not isinstance(row, dict):
        raise FileError(
            f"{path}, {where}: {type_name(row)}, not a JSON object; each problem is an object "
            'such as {"task_id": ..., "prompt": ..., ...}'
        )
    humaneval = "entry_point" in row or "test" in row
    if "test_list" in row and humaneval:
        raise FileError(
            f"{path}, {where}: has both HumanEval's `test`/`entry_point` and MBPP's "
            "`test_list`; keep the fields of one format"
        )
    if "test_list" in row:
        return "mbpp"
    if humaneval:
        return "leetcode" if "query" in row else "humaneval"
    raise FileError(
        f"{path}, {where}: neither HumanEval's format ({REQUIRED['humaneval']}) nor MBPP's "
        f"({REQUIRED['mbpp']}); it has {', '.join(sorted(row)) or 'no fields'}"
    )


def _problem(path: Path, where: str, row: dict, kind: str) -> Problem:
    def need(name: str, expected: str, required: bool = True) -> Any:
        return _field(path, where, row, name, expected, kind if required else None)

    task_id = _task_id(path, where, row, kind)
    if kind == "humaneval":
        fields = {name: need(name, "text") for name in ("prompt", "entry_point", "test")}
        solution = need("canonical_solution", "text or null", required=False)
        return humaneval_problem({**fields, "task_id": task_id, "canonical_solution": solution})
    if kind == "leetcode":
        names = ("prompt", "query", "entry_point", "test")
        fields = {name: need(name, "text") for name in names}
        solution = need("completion", "text or null", required=False)
        try:
            return leetcode_problem({**fields, "task_id": task_id, "completion": solution})
        except ValueError as why:
            raise FileError(
                f"{path}, {where}: field `query`: {why} ({fields['entry_point']}); "
                "end the query with the starter code in a ```python block"
            ) from None
    # sanitized-mbpp.json calls the task's text `prompt`.
    text = need("prompt" if "text" not in row and "prompt" in row else "text", "text")
    tests = need("test_list", "list of text")
    if not tests:
        raise FileError(f"{path}, {where}: field `test_list`: empty; give at least one assert")
    setup = need("test_setup_code", "text or null", required=False)
    if "test_imports" in row and setup is None:
        setup = "\n".join(need("test_imports", "list of text", required=False))
    code = need("code", "text or null", required=False)
    fields = {"text": text, "test_list": tests, "test_setup_code": setup, "code": code}
    return mbpp_problem(fields, task_id)


def _task_id(path: Path, where: str, row: dict, kind: str) -> str:
    value = _field(path, where, row, "task_id", "text or a whole number", kind)
    return str(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


CHECKS = {
    "text": _is_text,
    "text or null": lambda v: v is None or isinstance(v, str),
    "list of text": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    # JSON's true and false are ints to Python, and no task id.
    "text or a whole number": lambda v: _is_text(v) or type(v) is int,
}
"""What each field may hold, by the words the error message uses."""


def _field(path: Path, where: str, row: dict, name: str, expected: str, kind: str | None) -> Any:
    """row[name], checked; `kind` names the format whose required field it is (None: the
    field may be missing)."""
    if name not in row:
        if kind is None:
            return None
        raise FileError(
            f"{path}, {where}: field `{name}`: missing; a problem in {FORMATS[kind]} needs "
            f"{REQUIRED[kind]}"
        )
    value = row[name]
    if not CHECKS[expected](value):
        got = "empty text" if isinstance(value, str) and not value.strip() else type_name(value)
        if expected == "list of text" and isinstance(value, list):
            got = "a list holding " + ", ".join(sorted({type_name(v) for v in value}))
        raise FileError(f"{path}, {where}: field `{name}`: expected {expected}, got {got}")
    return value


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"
