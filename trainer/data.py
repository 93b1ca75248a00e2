"""Training data: read instruction rows from local files or the Hugging Face Hub.

    from trainer.data import SourceConfig, load_examples, split_examples

    examples, reports = load_examples(
        [
            SourceConfig("data/train.jsonl"),
            SourceConfig("mbpp.jsonl", format="mbpp", task_ids="601-974"),
        ],
        on_bad_row="skip",
    )
    train, validation = split_examples(examples, validation_fraction=0.05, seed=0)

Every source becomes `Example` rows (instruction / input / output) and one report:
how many rows were read, kept and skipped (by reason), and the file's sha256, so a
trained adapter records exactly which data it saw. Row numbers count from 0; for
JSON lines files messages give the 1-based line number instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kodcu import mbpp
from trainer import p3
from trainer.data_files import BadRow as _BadRow
from trainer.data_files import DataError, open_rows
from trainer.function_prompt import NoFunction, function_prompt

FORMATS = ("alpaca", "mbpp", "messages", "fields", "python", "p3")
LAYOUTS = ("chat", "completion", "function")

# The row fields each format reads; `SourceConfig.fields` may rename any of them.
FORMAT_FIELDS = {
    "alpaca": ("instruction", "input", "output", "task_id"),
    "fields": ("instruction", "input", "output", "task_id"),
    "mbpp": ("text", "code", "test_list", "task_id"),
    "messages": ("messages", "task_id"),
    "python": (),
    "p3": p3.FIELDS,
}

SKIP_HINT = "fix the row or set data.on_bad_row: skip"


@dataclass
class SourceConfig:
    """One data source."""

    path: str
    """A local file (.json, .jsonl, .jsonl.gz, .csv, .parquet) or a Hugging Face Hub dataset id."""
    format: str = "alpaca"
    """How rows map to instruction / input / output: "alpaca", "mbpp", "messages" or "fields";
    "python": a folder of .py files, one row per documented function (trainer/python_source.py);
    "p3": Python Programming Puzzles' puzzles.json, one row per solved instance (trainer/p3.py)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Column names for the format's fields, e.g. {"instruction": "question", "output": "answer",
    "input": "context"}; required for format "fields", a renaming for the others."""
    split: str = "train"
    """Split name for Hub datasets (local files have one split); for format p3 the puzzles of
    split.json's "train" or "test" list, or "all"."""
    subset: str | None = None
    """Hub dataset configuration name."""
    task_ids: str | None = None
    """Only rows whose task_id is in this inclusive range, e.g. "601-974" (MBPP's train split);
    several ranges may be joined with commas: "511-600,601-974"."""
    limit: int | None = None
    """Read at most this many rows (for quick trials)."""
    revision: str | None = None
    """Hub dataset revision (commit, branch or tag) to pin; ignored for local files."""
    layout: str | None = None
    """How the rows are asked; null: the format's own ("completion" for formats python and
    p3, "chat" for the others). "chat": through the chat template, as the desktop asks;
    format mbpp then asks kodcu-eval's instruct prompt and answers in a ```python block.
    "completion": the text is continued as it is, as benchmark harnesses and editors ask;
    format mbpp continues kodcu-eval's base prompt (the task text and first test in a
    docstring) with the code, format alpaca/fields continues the instruction with the
    output. "function" (format mbpp only): HumanEval's shape, the tested function's
    signature and a docstring with the task and its tests as examples, continued with
    the body (trainer/function_prompt.py); rows it cannot show so are counted in the
    report's outside_layout. Format python is always "completion"."""
    max_response_lines: int | None = None
    """Keep only rows whose response is at most this many lines (null: all). For format
    python, short bodies are HumanEval's shape (its reference bodies run 1 to 30 lines);
    the rows left out are counted in the report's over_max_response_lines."""
    licence: str | None = None
    """The data's licence (an SPDX id such as CC-BY-4.0 or PSF-2.0), recorded in the source's
    report in kodcu.json; required for format "python"."""


@dataclass(frozen=True)
class Example:
    """One training row in Alpaca's shape."""

    instruction: str
    input: str
    output: str
    source: str
    """The `SourceConfig.path` it came from."""
    row: int
    """0-based row index in that source (for error messages and reports); in a JSON lines
    file the line index, blank lines included, so the line number is row + 1; for format
    python, the source is the .py file and this is the def's line index."""
    layout: str = "chat"
    """chat: the instruction goes through the chat template; completion: the instruction is
    the text to continue, as it is (a signature and docstring), and the model goes on."""


def load_examples(
    sources: list[SourceConfig], on_bad_row: str = "error"
) -> tuple[list[Example], list[dict]]:
    """Read every source; on_bad_row "error" raises DataError at the first bad row, "skip"
    skips and counts it.

    Returns the examples and one report dict per source:
    {"source": path, "sha256": file hash or Hub "id@revision", "rows": n_read, "kept": n,
    "skipped": n, "skipped_by_reason": {"missing field 'output'": 3, ...},
    "outside_task_ids": n, "system_messages_dropped": n}, and for layout "function"
    "outside_layout": {why: n}. rows = kept + skipped + outside_task_ids + outside_layout.
    """
    if on_bad_row not in ("error", "skip"):
        raise DataError(f"data.on_bad_row is {on_bad_row!r}; use 'error' or 'skip'")
    examples: list[Example] = []
    reports = []
    for source in sources:
        kept, report = _load_source(source, on_bad_row)
        examples.extend(kept)
        reports.append(report)
    return examples, reports


def split_examples(
    examples: list[Example], validation_fraction: float, seed: int, unit: str = "source_row"
) -> tuple[list[Example], list[Example]]:
    """Deterministic shuffled train / validation split (validation_fraction 0 → empty validation).

    What is held out whole is `unit`: "example", or "source_row": the examples made from
    one row of one source (its layouts) together, a seeded random share of those rows.
    Both parts keep the original order, so the same data, fraction and seed always give
    the same two lists (and, when every row gave one example, the same for either unit).
    A positive fraction of at least two units gives at least one held-out unit.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"validation_fraction is {validation_fraction}; use 0 <= fraction < 1")
    if unit not in ("source_row", "example"):
        raise DataError(f"validation_unit is {unit!r}; use 'source_row' or 'example'")
    units: dict[object, list[int]] = {}  # unit -> its examples' indices, in data order
    for index, example in enumerate(examples):
        key = (example.source, example.row) if unit == "source_row" else index
        units.setdefault(key, []).append(index)
    members = list(units.values())
    n_val = round(len(members) * validation_fraction)
    if validation_fraction > 0 and n_val == 0 and len(members) >= 2:
        n_val = 1
    picked = random.Random(seed).sample(range(len(members)), n_val)
    chosen = {index for unit_index in picked for index in members[unit_index]}
    train = [ex for i, ex in enumerate(examples) if i not in chosen]
    validation = [ex for i, ex in enumerate(examples) if i in chosen]
    return train, validation


def parse_task_ids(spec: str) -> list[tuple[int, int]]:
    """ "601-974" or "11-510,601-974" or "7" as inclusive (low, high) ranges."""
    try:
        return mbpp.parse_task_ids(spec)
    except ValueError as error:
        raise DataError(f"task_ids {error}") from None


def _load_source(source: SourceConfig, on_bad_row: str) -> tuple[list[Example], dict]:
    if source.format not in FORMATS:
        raise DataError(f"{source.path}: format {source.format!r} is not one of {FORMATS}")
    unknown = set(source.fields) - set(FORMAT_FIELDS[source.format])
    if unknown:
        raise DataError(
            f"{source.path}: fields {sorted(unknown)} mean nothing for format "
            f"{source.format!r}; it reads {list(FORMAT_FIELDS[source.format])}"
        )
    if source.layout is None:  # the format's own
        own = "completion" if source.format in ("python", "p3") else "chat"
        source = replace(source, layout=own)
    if source.layout not in LAYOUTS:
        raise DataError(f"{source.path}: layout {source.layout!r} is not one of {LAYOUTS}")
    if source.layout == "completion" and source.format == "messages":
        raise DataError(
            f"{source.path}: format 'messages' rows are chats; remove layout: completion"
        )
    if source.layout == "function" and source.format != "mbpp":
        raise DataError(f"{source.path}: layout 'function' is for format 'mbpp' rows only")
    if source.format == "python" and source.layout != "completion":
        raise DataError(
            f"{source.path}: format 'python' rows are completions (a signature and docstring "
            "continued with the body); remove layout, or set it to completion"
        )
    if source.format == "fields" and not {"instruction", "output"} <= set(source.fields):
        raise DataError(
            f"{source.path}: format 'fields' needs fields.instruction and fields.output "
            "(the column names of the instruction and the response)"
        )
    if source.format == "p3" and (source.task_ids or source.fields):
        raise DataError(f"{source.path}: task_ids and fields mean nothing for format p3")
    if source.limit is not None and source.limit < 0:
        raise DataError(f"{source.path}: limit is {source.limit}; use a positive number")
    if source.max_response_lines is not None and source.max_response_lines < 1:
        raise DataError(
            f"{source.path}: max_response_lines is {source.max_response_lines}; "
            "use 1 or more, or null for every row"
        )
    report = {"source": source.path, "sha256": "", "rows": 0, "kept": 0, "skipped": 0}
    report |= {"skipped_by_reason": {}, "outside_task_ids": 0, "system_messages_dropped": 0}
    if source.layout == "function":
        report["outside_layout"] = {}
    if source.licence is not None:
        report["licence"] = source.licence
    try:
        if source.format == "python":
            from trainer.python_source import load_python  # it imports this module

            examples = load_python(source, on_bad_row, report)
        else:
            rows, report["sha256"], lines = open_rows(source)
            if source.format == "p3":
                rows = p3.select(rows, p3.split_names(source.path, source.split), report)
            examples = _read(source, rows, lines, on_bad_row, report)
    except UnicodeDecodeError as error:
        raise DataError(f"{source.path}: not UTF-8 text ({error}); save it as UTF-8") from None
    except OSError as error:  # a broken gzip file, a directory, no permission
        raise DataError(f"{source.path}: cannot be read ({error})") from None
    if source.max_response_lines is not None:
        short = [e for e in examples if _lines(e.output) <= source.max_response_lines]
        report["over_max_response_lines"] = len(examples) - len(short)
        if examples and not short:
            raise DataError(
                f"{source.path}: every one of its {len(examples)} responses is longer than "
                f"max_response_lines ({source.max_response_lines}); raise it or remove it"
            )
        examples = short
    report["kept"] = len(examples)
    report["skipped"] = sum(report["skipped_by_reason"].values())
    why = _no_rows(source, report) if source.format != "python" else None
    if why:
        raise DataError(f"{source.path}: {why}; there is nothing to train on")
    return examples, report


def _lines(text: str) -> int:
    """Lines of a response, blank lines at its ends not counted."""
    return len(text.strip("\n").split("\n"))


def _read(
    source: SourceConfig,
    rows: Iterator[tuple[int, Any]],
    lines: bool,
    on_bad_row: str,
    report: dict,
) -> list[Example]:
    """The source's examples; counts rows read, skipped and left out into `report`."""
    ranges = parse_task_ids(source.task_ids) if source.task_ids else None
    names = {name: source.fields.get(name, name) for name in FORMAT_FIELDS[source.format]}
    skipped = report["skipped_by_reason"]
    examples = []
    columns: dict[str, None] = {}  # the rows' keys in order seen, for "no row fits" messages
    for index, row in rows:
        left_out = report["outside_task_ids"] + report.get("outside_split", 0)
        if source.limit is not None and report["rows"] - left_out >= source.limit:
            break
        report["rows"] += 1
        try:
            if isinstance(row, _BadRow):
                raise row
            if not isinstance(row, dict):
                kind = type(row).__name__
                raise _BadRow("row is not an object", f"the row is a {kind}, not an object")
            if len(columns) < 50:
                columns.update(dict.fromkeys(map(str, row)))
            if ranges is not None:
                task_id = _task_id(row, names["task_id"])
                if not mbpp.in_ranges(task_id, ranges):
                    report["outside_task_ids"] += 1
                    continue
            instruction, input_, output, had_system = _convert(row, source, names)
        except NoFunction as why:  # a good row this layout cannot show: counted, not an error
            report["outside_layout"][str(why)] = report["outside_layout"].get(str(why), 0) + 1
            continue
        except _BadRow as bad:
            where = f"line {index + 1}" if lines else f"row {index}"
            if on_bad_row == "error":
                # A first row without the format's columns: skip would drop every row.
                missing = bad.key.startswith("missing field") and not examples
                hint = _columns_hint(source, list(columns)) if missing else SKIP_HINT
                raise DataError(f"{source.path}, {where}: {bad.message}; {hint}") from None
            skipped[bad.key] = skipped.get(bad.key, 0) + 1
            continue
        report["system_messages_dropped"] += had_system
        layout = "completion" if source.layout == "function" else source.layout
        examples.append(Example(instruction, input_, output, source.path, index, layout))
    if not examples and skipped and all(key.startswith("missing field") for key in skipped):
        raise DataError(
            f"{source.path}: no row has the fields it needs; {_columns_hint(source, list(columns))}"
        )
    return examples


REQUIRED_FIELDS = {
    "alpaca": ("instruction", "output"),
    "fields": ("instruction", "output"),
    "mbpp": ("text", "code", "test_list"),
    "messages": ("messages",),
    "p3": ("sat", "sol_header", "sol_docstring", "sol_bodies"),
}


def _columns_hint(source: SourceConfig, columns: list[str]) -> str:
    """What the rows hold against what the format reads, and how to map one to the other."""
    found = ", ".join(columns) if columns else "none"
    needed = REQUIRED_FIELDS[source.format]
    example = ", ".join(f"{name}: <column>" for name in needed)
    return (
        f"the rows' columns are {found}, and format {source.format!r} reads "
        f"{', '.join(needed)}; name your columns with fields: {{{example}}} or choose the "
        "format that matches them (alpaca, mbpp, messages)"
    )


def _no_rows(source: SourceConfig, report: dict) -> str | None:
    """Why a source gave nothing to train on, before hygiene could say it less clearly."""
    if source.limit == 0 or report["kept"] or report["skipped"] or report.get("outside_layout"):
        return None
    path = Path(source.path).expanduser()
    if report["rows"] == 0:
        if path.is_file() and path.stat().st_size == 0:
            return "the file is empty"
        if path.name.lower().endswith(".csv"):
            return "the file has a header row and no rows under it"
        return "the source holds no rows"
    if report.get("outside_split", 0) + report.get("without_solution", 0) == report["rows"]:
        return f"none of its {report['rows']} puzzles is a solved one of split {source.split!r}"
    if report["outside_task_ids"] == report["rows"]:
        return f"none of its {report['rows']} rows has a task_id in task_ids {source.task_ids!r}"
    return None


def _field(row: dict, name: str) -> Any:
    if row.get(name) is None:
        raise _BadRow(f"missing field {name!r}", f"field {name!r} is missing")
    return row[name]


def _bad(name: str, problem: str) -> _BadRow:
    return _BadRow(f"bad field {name!r}", f"field {name!r} {problem}")


def _task_id(row: dict, name: str) -> int:
    value = _field(row, name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise _bad(name, f"is not an integer task id: {value!r} (task_ids needs one)")


def _text(row: dict, name: str, required: bool = True, label: str | None = None) -> str:
    """A string field; a required one must be present and not blank. `label` names it."""
    label = label or name
    if row.get(name) is None:
        if not required:
            return ""
        raise _BadRow(f"missing field {label!r}", f"field {label!r} is missing")
    value = row[name]
    if not isinstance(value, str):
        kind = type(value).__name__
        raise _BadRow(f"non-string field {label!r}", f"field {label!r} is a {kind}, not a string")
    if required and not value.strip():
        raise _BadRow(f"empty field {label!r}", f"field {label!r} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # JSON's "\\ud800": a half of a character
        bad = value[error.start]
        raise _BadRow(
            f"lone surrogate in field {label!r}",
            f"field {label!r} holds a lone surrogate (\\u{ord(bad):04x}, character "
            f"{error.start}), half of a character that no text can hold; "
            "fix the escape in the file",
        ) from None
    return value


def _convert(row: dict, source: SourceConfig, names: dict[str, str]) -> tuple[str, str, str, bool]:
    """(instruction, input, output, had a system message) for one row."""
    if source.format in ("alpaca", "fields"):
        instruction = _text(row, names["instruction"])
        input_, output = _text(row, names["input"], False), _text(row, names["output"])
        if source.layout == "completion":  # the text to continue is all there is
            return "\n".join(part for part in (instruction, input_) if part), "", output, False
        return instruction, input_, output, False
    if source.format == "mbpp":
        return (*_mbpp(row, names, source.layout), False)
    if source.format == "p3":
        return (*p3.convert(row, source.layout, _text, _field), False)
    return _messages(row, names["messages"])


def _mbpp(row: dict, names: dict[str, str], layout: str) -> tuple[str, str, str]:
    """An MBPP row asked exactly as kodcu-eval asks (kodcu/mbpp.py), answered with its code.

    chat: the task text and all its tests, answered in a ```python block;
    completion: the text and first test in a docstring, continued with the code.
    MBPP's code uses Windows line ends; they become "\\n" so the model does not learn "\\r".
    """
    text = _text(row, names["text"])
    code = _text(row, names["code"]).replace("\r\n", "\n").strip()
    tests = _field(row, names["test_list"])
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise _bad(names["test_list"], "is not a non-empty list of strings")
    for index, test in enumerate(tests):
        _text({"test": test}, "test", label=f"{names['test_list']}[{index}]")
    if layout == "completion":
        return mbpp.base_prompt(text, tests), "", code
    if layout == "function":
        prompt, body = function_prompt(text, code, tests)
        return prompt, "", body
    return mbpp.instruction(text, tests), "", f"```python\n{code}\n```"


def _messages(row: dict, name: str) -> tuple[str, str, str, bool]:
    """A single-turn chat: an optional system message, one user and one assistant message.

    The Alpaca layout has no place for a system prompt (its system slot holds the Alpaca
    preamble), so a system message's text is dropped; the source report counts how many.
    Multi-turn rows are bad rows: splitting them would train on answers without their context.
    """
    messages = _field(row, name)
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _bad(name, "is not a list of message objects")
    roles = [message.get("role") for message in messages]
    had_system = bool(roles) and roles[0] == "system"
    turns = messages[1:] if had_system else messages
    if [message.get("role") for message in turns] != ["user", "assistant"]:
        raise _BadRow(
            "not a single-turn chat",
            f"field {name!r} has roles {roles}; only [system,] user, assistant rows are supported",
        )
    first = len(messages) - 2  # the user message's index
    instruction = _text(turns[0], "content", label=f"{name}[{first}].content")
    output = _text(turns[1], "content", label=f"{name}[{first + 1}].content")
    return instruction, "", output, had_system
