"""Training rows from Python Programming Puzzles (P3, microsoft/PythonProgrammingPuzzles, MIT).

    data:
      sources:
        - path: puzzles.json       # P3's puzzles/puzzles.json, with split.json beside it
          format: p3
          split: train              # train or test (split.json's lists), or all
          licence: MIT

A P3 puzzle is a function `sat(answer, ...)` that returns True on a right answer, and a
solution function `sol(...)` with a docstring that says what to find. Each instance with
a reference solution is one row, the first of its `sol_bodies`:

- layout completion (the format's own; HumanEval's shape): the puzzle's `sat`, then
  `sol`'s signature and docstring, continued with the body, as `kodcu-eval --prompt base`
  and editors ask;
- layout chat: the docstring's task and the `sat` check in a ```python block, answered
  with the whole `sol` in a ```python block, as the desktop asks.

Puzzles are chosen by name from split.json beside the file (P3's split: its test puzzles
are for evaluation, so the default split, train, leaves them out). Instances outside the
split are counted in the source's report as `outside_split`, instances without a
reference solution as `without_solution`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainer.data_files import BadRow, DataError

FIELDS = ("name", "sat", "sol_header", "sol_docstring", "sol_bodies")
"""The fields of a P3 instance that a row is made from."""

SPLITS = ("train", "test", "all")


def split_names(source_path: str, split: str) -> set[str] | None:
    """The puzzle names of `split` from split.json beside the puzzles file; None for "all"."""
    if split not in SPLITS:
        raise DataError(f"{source_path}: split {split!r} is not one of {SPLITS} for format p3")
    if split == "all":
        return None
    path = Path(source_path).expanduser().parent / "split.json"
    if not path.is_file():
        raise DataError(
            f"{source_path}: format p3 picks puzzles by name from split.json beside the file "
            f"(P3's puzzles/split.json) and {path} does not exist; put it there, or set "
            "split: all to read every puzzle (P3's test puzzles included)"
        )
    try:
        names = json.loads(path.read_text(encoding="utf-8-sig"))[split]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path}: not P3's split file (a JSON object with the lists 'train' and 'test'): "
            f"{type(error).__name__}: {error}"
        ) from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise DataError(f"{path}: {split!r} is not a list of puzzle names")
    return set(names)


def select(
    rows: Iterator[tuple[int, Any]], names: set[str] | None, report: dict
) -> Iterator[tuple[int, Any]]:
    """The rows of the chosen puzzles that have a reference solution; counts the others
    in `report` (from the call on, so an empty file reports zeros too)."""
    report |= {"outside_split": 0, "without_solution": 0}
    return _select(rows, names, report)


def _select(
    rows: Iterator[tuple[int, Any]], names: set[str] | None, report: dict
) -> Iterator[tuple[int, Any]]:
    for index, row in rows:
        if isinstance(row, dict) and isinstance(row.get("name"), str):
            if names is not None and row["name"].split(":")[0] not in names:
                report["rows"] += 1
                report["outside_split"] += 1
                continue
            if row.get("sol_bodies") == []:
                report["rows"] += 1
                report["without_solution"] += 1
                continue
        yield index, row  # bad rows too: the reader names and counts them


def convert(row: dict[str, Any], layout: str, text: Any, field: Any) -> tuple[str, str, str]:
    """(instruction, input, output) of one instance; `text` and `field` are the reader's
    checked field accessors (they raise BadRow naming the field)."""
    sat = text(row, "sat").strip("\n")
    header = text(row, "sol_header").strip("\n")
    docstring = text(row, "sol_docstring").strip("\n")
    bodies = field(row, "sol_bodies")
    if not isinstance(bodies, list) or not all(isinstance(body, str) for body in bodies):
        raise BadRow("bad field 'sol_bodies'", "field 'sol_bodies' is not a list of strings")
    body = text({"sol_bodies[0]": bodies[0]}, "sol_bodies[0]").strip("\n") + "\n"
    if layout == "completion":
        return f"{sat}\n\n\n{header}\n{docstring}\n", "", body
    task = inspect.cleandoc(docstring.strip().strip('"').strip("'"))
    instruction = (
        f"{task}\n\nWrite the Python function `{header.removesuffix(':')}` so that "
        f"`sat(sol())` returns True, where:\n```python\n{sat}\n```"
    )
    return instruction, "", f"```python\n{header}\n{body}```"
