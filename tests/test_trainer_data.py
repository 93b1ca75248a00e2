"""The trainer reads instruction rows from every supported file type and format, names
bad rows precisely, and splits train / validation the same way every time."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.problems import mbpp_problem
from trainer.data import DataError, Example, SourceConfig, load_examples, split_examples

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MBPP = DATA / "mbpp" / "mbpp.jsonl"

ROWS = [
    {"instruction": "Reverse a list.", "input": "", "output": "xs[::-1]"},
    {"instruction": "Add two numbers.", "input": "a = 1, b = 2", "output": "a + b"},
    {"instruction": "Say hi.", "output": "print('hi')"},  # no input at all
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write(path: Path, rows: list[dict]) -> Path:
    """The rows in the file type that `path`'s name asks for."""
    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.writelines(json.dumps(row) + "\n" for row in rows)
    elif name.endswith(".jsonl"):
        write_jsonl(path, rows)
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif name.endswith(".csv"):
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)
    elif name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def load(path: Path, on_bad_row: str = "error", **options) -> tuple[list[Example], dict]:
    examples, reports = load_examples([SourceConfig(str(path), **options)], on_bad_row)
    return examples, reports[0]


@pytest.mark.parametrize("name", ["d.json", "d.jsonl", "d.jsonl.gz", "d.csv", "d.parquet"])
def test_every_file_type_gives_the_same_examples(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, ROWS)
    examples, report = load(path)
    assert [(ex.instruction, ex.input, ex.output) for ex in examples] == [
        ("Reverse a list.", "", "xs[::-1]"),
        ("Add two numbers.", "a = 1, b = 2", "a + b"),
        ("Say hi.", "", "print('hi')"),
    ]
    assert [(ex.source, ex.row) for ex in examples] == [(str(path), i) for i in range(3)]
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (report["rows"], report["kept"], report["skipped"]) == (3, 3, 0)


def test_sources_are_read_in_order_with_one_report_each(tmp_path: Path) -> None:
    first = write(tmp_path / "a.jsonl", ROWS[:1])
    second = write(tmp_path / "b.json", ROWS[1:])
    examples, reports = load_examples([SourceConfig(str(first)), SourceConfig(str(second))])
    assert [ex.output for ex in examples] == ["xs[::-1]", "a + b", "print('hi')"]
    assert [(r["source"], r["kept"]) for r in reports] == [(str(first), 1), (str(second), 2)]


def test_json_object_is_rejected_with_the_key_of_its_list(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": ROWS}))
    with pytest.raises(DataError, match=r"wrapped\.json.*not an array of rows.*'data'"):
        load(path)


def test_missing_file_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "train.jsonl"
    with pytest.raises(DataError, match=r"train\.jsonl: file not found"):
        load(missing)


def test_hub_id_that_cannot_be_reached_says_so(tmp_path: Path) -> None:
    # A fresh process: the Hub client reads its offline switch and cache folder at import.
    script = (
        "from trainer.data import SourceConfig, load_examples\n"
        "try:\n"
        "    load_examples([SourceConfig('someone/some-dataset')])\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert (
        "some-dataset: no such local file, and loading it as a Hub dataset failed" in result.stdout
    )


def test_alpaca_fields_can_be_renamed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Why?", "answer": "Because."}])
    (example,), _ = load(path, fields={"instruction": "question", "output": "answer"})
    assert (example.instruction, example.input, example.output) == ("Why?", "", "Because.")


def test_fields_format_maps_columns(tmp_path: Path) -> None:
    rows = [{"q": "Sort it.", "ctx": "[3, 1]", "a": "sorted(xs)", "extra": 1}]
    path = write(tmp_path / "qa.csv", rows)
    mapping = {"instruction": "q", "input": "ctx", "output": "a"}
    (example,), _ = load(path, format="fields", fields=mapping)
    assert (example.instruction, example.input, example.output) == (
        "Sort it.",
        "[3, 1]",
        "sorted(xs)",
    )


def test_fields_format_without_a_mapping_says_what_it_needs(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(DataError, match="needs fields.instruction and fields.output"):
        load(path, format="fields", fields={"instruction": "q"})


def test_a_misspelt_field_name_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(DataError, match=r"\['ouput'\] mean nothing for format 'alpaca'"):
        load(path, fields={"ouput": "answer"})


MBPP_ROW = {
    "task_id": 700,
    "text": "Write a function to add one.",
    "code": "def add_one(x):\r\n    return x + 1",
    "test_list": ["assert add_one(1) == 2", "assert add_one(0) == 1"],
}


def test_mbpp_chat_rows_are_asked_as_kodcu_eval_asks_and_answer_in_a_fenced_block(
    tmp_path: Path,
) -> None:
    (example,), _ = load(write_jsonl(tmp_path / "m.jsonl", [MBPP_ROW]), format="mbpp")
    # The evaluation's instruct prompt for the same row, so training and scoring agree.
    problem = mbpp_problem(MBPP_ROW, "MBPP/700")
    assert example.instruction == problem.instruction
    assert "assert add_one(1) == 2\nassert add_one(0) == 1" in example.instruction
    assert example.output == "```python\ndef add_one(x):\n    return x + 1\n```"
    assert (example.input, example.layout) == ("", "chat")


def test_mbpp_completion_rows_continue_kodcu_evals_base_prompt(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [MBPP_ROW])
    (example,), _ = load(path, format="mbpp", layout="completion")
    problem = mbpp_problem(MBPP_ROW, "MBPP/700")
    assert example.instruction == problem.base_prompt
    assert example.output == "def add_one(x):\n    return x + 1"
    assert example.layout == "completion"
    # What the model learns to write is what the sandbox runs and passes.
    program = problem.program(example.output, kind="base")
    exec(compile(program + "\n" + problem.test, "mbpp", "exec"), {})  # noqa: S102


def test_mbpp_function_rows_are_in_humaneval_shape_and_run(tmp_path: Path) -> None:
    helper = {
        **MBPP_ROW,
        "task_id": 701,
        "code": "import math\r\ndef add_one(x):\r\n\treturn x + 1",
    }
    two_defs = {**MBPP_ROW, "task_id": 702, "code": "def add_one(x):\n    return x + 1\nY = 2"}
    path = write_jsonl(tmp_path / "m.jsonl", [MBPP_ROW, helper, two_defs])
    (plain, with_import), report = load(path, format="mbpp", layout="function")
    assert plain.instruction == (
        'def add_one(x):\n    """Write a function to add one.\n'
        "    >>> add_one(1)\n    2\n    >>> add_one(0)\n    1\n"
        '    """\n'
    )
    assert plain.output == "    return x + 1" and plain.layout == "completion"
    # What comes before the function stays before it; its indentation is the body's.
    assert with_import.instruction.startswith('import math\ndef add_one(x):\n\t"""Write')
    for example in (plain, with_import):
        exec(
            compile(example.instruction + example.output + "\nassert add_one(4) == 5", "f", "exec"),
            {},
        )  # noqa: S102
    # A good row the layout cannot show is counted, not an error.
    assert report["outside_layout"] == {
        "code follows function 'add_one'; its body would not end the text": 1
    }
    with pytest.raises(DataError, match="layout 'function' is for format 'mbpp' rows only"):
        load(path, layout="function")


def test_alpaca_completion_rows_continue_the_instruction(tmp_path: Path) -> None:
    row = {"instruction": "def square(x):", "input": '    """x times x."""'}
    row["output"] = "    return x * x"
    (example,), _ = load(write_jsonl(tmp_path / "c.jsonl", [row]), layout="completion")
    assert example.instruction == 'def square(x):\n    """x times x."""'
    assert (example.input, example.output, example.layout) == ("", "    return x * x", "completion")


def test_an_unknown_or_impossible_layout_names_the_source(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(DataError, match=r"qa.jsonl: layout 'base' is not one of"):
        load(path, layout="base")
    with pytest.raises(DataError, match=r"qa.jsonl: format 'messages' rows are chats"):
        load(path, format="messages", layout="completion")
    with pytest.raises(DataError, match=r"format 'python' rows are completions"):
        load(tmp_path, format="python", layout="chat", licence="MIT")


def test_mbpp_task_ids_select_the_train_split() -> None:
    if not MBPP.is_file():
        pytest.skip(f"MBPP data not present at {MBPP}")
    examples, report = load(MBPP, format="mbpp", task_ids="601-974")
    assert len(examples) == 374
    assert report["outside_task_ids"] == 600
    assert report["rows"] == 974
    # Row indexes are file lines: task ids run 1..974 in order.
    assert {ex.row + 1 for ex in examples} == set(range(601, 975))


def test_several_task_id_ranges_and_a_limit(tmp_path: Path) -> None:
    rows = [{**ROWS[0], "task_id": i, "output": f"out {i}"} for i in range(1, 11)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    examples, report = load(path, task_ids="2-3, 8-10")
    assert [ex.output for ex in examples] == ["out 2", "out 3", "out 8", "out 9", "out 10"]
    assert report["outside_task_ids"] == 5
    limited, report = load(path, task_ids="2-3,8-10", limit=3)
    assert [ex.output for ex in limited] == ["out 2", "out 3", "out 8"]
    assert report["rows"] == report["kept"] + report["skipped"] + report["outside_task_ids"]


def test_bad_task_id_range_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", ROWS)
    with pytest.raises(DataError, match="task_ids '974-601'"):
        load(path, task_ids="974-601")


def test_messages_format_takes_one_user_and_one_assistant_turn(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi."}]},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Sum?"},
                {"role": "assistant", "content": "sum(xs)"},
            ]
        },
    ]
    examples, report = load(write_jsonl(tmp_path / "chat.jsonl", rows), format="messages")
    assert [(ex.instruction, ex.input, ex.output) for ex in examples] == [
        ("Hi?", "", "Hi."),
        ("Sum?", "", "sum(xs)"),
    ]
    # The Alpaca layout has no place for a system prompt: its loss is counted, not silent.
    assert report["system_messages_dropped"] == 1


def test_multi_turn_chats_are_bad_rows(tmp_path: Path) -> None:
    turns = ["user", "assistant", "user", "assistant"]
    row = {"messages": [{"role": role, "content": "x"} for role in turns]}
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError, match=r"chat\.jsonl, line 1: field 'messages' has roles"):
        load(path, format="messages")
    examples, report = load(path, "skip", format="messages")
    assert examples == []
    assert report["skipped_by_reason"] == {"not a single-turn chat": 1}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"instruction": "x"}, "field 'output' is missing"),
        ({"instruction": "x", "output": "  "}, "field 'output' is empty"),
        ({"instruction": 3, "output": "y"}, "field 'instruction' is a int, not a string"),
        ({"instruction": "x", "output": None}, "field 'output' is missing"),
        (["x", "y"], "the row is a list, not an object"),
    ],
)
def test_bad_row_error_names_file_line_and_field(tmp_path: Path, row: object, message: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [ROWS[0], row])
    with pytest.raises(DataError) as error:
        load(path)
    assert str(error.value) == (
        f"{path}, line 2: {message}; fix the row or set data.on_bad_row: skip"
    )


def test_bad_row_in_a_json_array_names_its_row(tmp_path: Path) -> None:
    path = write(tmp_path / "train.json", [ROWS[0], ROWS[1], {"instruction": "x"}])
    with pytest.raises(DataError, match=r"train\.json, row 2: field 'output' is missing"):
        load(path)


def test_malformed_json_line_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"instruction": "x", "output": \n')
    with pytest.raises(DataError, match=r"train\.jsonl, line 3: not valid JSON"):
        load(path)


def test_csv_row_with_too_many_cells_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("instruction,output\nx,y\na,b,c\n")
    with pytest.raises(DataError, match=r"train\.csv, row 1: the row has more cells than columns"):
        load(path)


def test_skip_mode_counts_each_reason(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(row) for row in ROWS]
    lines += [
        json.dumps({"instruction": "x"}),
        json.dumps({"instruction": "y"}),
        json.dumps({"instruction": "", "output": "z"}),
        json.dumps("just a string"),
        "{broken",
    ]
    path.write_text("\n".join(lines) + "\n")
    examples, report = load(path, "skip")
    assert len(examples) == 3
    assert report["skipped_by_reason"] == {
        "missing field 'output'": 2,
        "empty field 'instruction'": 1,
        "row is not an object": 1,
        "malformed JSON": 1,
    }
    assert (report["rows"], report["kept"], report["skipped"]) == (8, 3, 5)


def test_unknown_on_bad_row_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", ROWS)
    with pytest.raises(DataError, match="on_bad_row is 'ignore'"):
        load(path, "ignore")


def examples_of(n: int) -> list[Example]:
    return [Example(f"task {i}", "", f"answer {i}", "mem", i) for i in range(n)]


def test_split_is_deterministic_and_partitions_the_data() -> None:
    examples = examples_of(200)
    train, validation = split_examples(examples, 0.1, seed=3)
    assert (len(train), len(validation)) == (180, 20)
    assert sorted(train + validation, key=lambda ex: ex.row) == examples
    assert split_examples(examples, 0.1, seed=3) == (train, validation)
    assert split_examples(examples, 0.1, seed=4)[1] != validation
    # Not simply the tail of the data.
    assert validation != examples[-20:]


def test_the_layouts_of_one_task_are_held_out_together() -> None:
    # Kodcu Coder's recipe: MBPP's train split asked three ways, each task three examples.
    sources = [
        SourceConfig(str(MBPP), format="mbpp", task_ids="601-974", layout=layout)
        for layout in ("chat", "completion", "function")
    ]
    examples, _ = load_examples(sources)

    def tasks(rows: list[Example]) -> set[tuple[str, int]]:
        return {(ex.source, ex.row) for ex in rows}

    train, validation = split_examples(examples, 0.03, seed=42)
    assert tasks(train).isdisjoint(tasks(validation))
    assert len(tasks(validation)) == round(374 * 0.03)
    # Every layout of a held-out task is held out: none of it is trained on.
    assert len(validation) == sum(ex.row in {r for _, r in tasks(validation)} for ex in examples)
    # Example by example, a held-out task's other layouts land in training.
    train, validation = split_examples(examples, 0.03, seed=42, unit="example")
    assert tasks(train) & tasks(validation)
    with pytest.raises(DataError, match="validation_unit"):
        split_examples(examples, 0.03, seed=42, unit="task")


def test_with_one_example_per_row_either_unit_gives_the_same_split() -> None:
    examples = examples_of(200)
    for seed in range(3):
        by_row = split_examples(examples, 0.1, seed=seed)
        assert by_row == split_examples(examples, 0.1, seed=seed, unit="example")


def test_split_sizes_at_the_edges() -> None:
    assert split_examples(examples_of(10), 0.0, seed=0) == (examples_of(10), [])
    train, validation = split_examples(examples_of(10), 0.01, seed=0)
    assert (len(train), len(validation)) == (9, 1)
    with pytest.raises(DataError, match="validation_fraction"):
        split_examples(examples_of(10), 1.0, seed=0)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_byte_order_mark_is_read_as_nothing(tmp_path: Path, suffix: str) -> None:
    # Windows editors start UTF-8 files with a byte-order mark; the first row still counts.
    path = tmp_path / f"bom{suffix}"
    if suffix == ".json":
        text = json.dumps(ROWS)
    else:
        text = "".join(json.dumps(row) + "\n" for row in ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    examples, report = load(path)
    assert [e.instruction for e in examples] == [row["instruction"] for row in ROWS]
    examples, report = load(path, on_bad_row="skip")
    assert len(examples) == len(ROWS) and report["skipped"] == 0


def test_a_lone_surrogate_is_a_bad_row_named_by_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "half.jsonl"
    lines = [json.dumps(ROWS[0]), '{"instruction": "Say \\ud800 hi", "output": "hi"}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"half.jsonl, line 2: field 'instruction' holds a lone "):
        load(path)
    examples, report = load(path, on_bad_row="skip")
    assert len(examples) == 1
    assert report["skipped_by_reason"] == {"lone surrogate in field 'instruction'": 1}


# Nothing to train on: the file and the cause, in either mode, before hygiene runs.
@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("empty.jsonl", "", "the file is empty"),
        ("header.csv", "instruction,input,output\n", "the file has a header row and no rows"),
        ("empty.json", "[]", "the source holds no rows"),
    ],
)
def test_a_source_with_no_rows_names_the_file_and_why(
    tmp_path: Path, on_bad_row: str, name: str, content: str, cause: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as error:
        load(path, on_bad_row)
    assert str(error.value).startswith(f"{path}: {cause}")
    assert "nothing to train on" in str(error.value)


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_columns_of_another_format_are_named_with_how_to_map_them(
    tmp_path: Path, on_bad_row: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,completion\nAdd two numbers.,a + b\nSay hi.,print('hi')\n")
    with pytest.raises(DataError) as error:
        load(path, on_bad_row)
    message = str(error.value)
    assert message.startswith(str(path))
    assert "the rows' columns are prompt, completion" in message
    assert "format 'alpaca' reads instruction, output" in message
    assert "fields: {instruction: <column>, output: <column>}" in message
    assert "on_bad_row: skip" not in message  # skipping would drop every row
    # The mapping the message asks for reads the file.
    examples, _ = load(path, fields={"instruction": "prompt", "output": "completion"})
    assert [e.output for e in examples] == ["a + b", "print('hi')"]


def test_rows_outside_task_ids_say_so(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mbpp.jsonl", [{"task_id": 3, "text": "t", "code": "c"}])
    with pytest.raises(DataError, match=r"none of its 1 rows has a task_id in task_ids '601-974'"):
        load(path, format="mbpp", task_ids="601-974")


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_invalid_utf8_on_one_line_names_that_line_and_skip_keeps_the_rest(
    tmp_path: Path, suffix: str
) -> None:
    lines = [json.dumps(ROWS[0]).encode(), b'{"instruction": "caf\xe9", "output": "x"}']
    lines.append(json.dumps(ROWS[1]).encode())
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(DataError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}, line 2: not UTF-8 text (byte 0xe9 at column 21)")
    examples, report = load(path, "skip")
    assert [e.instruction for e in examples] == [ROWS[0]["instruction"], ROWS[1]["instruction"]]
    assert report["skipped_by_reason"] == {"invalid UTF-8": 1}
