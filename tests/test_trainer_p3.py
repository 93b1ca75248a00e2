"""`format: p3`: Python Programming Puzzles become rows, train puzzles only by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data import DataError, SourceConfig, load_examples

# Three puzzles in P3's layout: two instances of a train puzzle (one unsolved), one of a
# test puzzle. Written as P3 writes them: the docstring indented, the body without a
# final newline.
PUZZLES = [
    {
        "name": "Study_1:0",
        "sat": "def sat(s: str):\n    return s.count('o') == 1000 and s.count('oo') == 0",
        "sol_header": "def sol():",
        "sol_docstring": '    """Find a string with 1000 \'o\'s but no two adjacent \'o\'s."""',
        "sol_bodies": ["    return ('h' + 'o') * 1000"],
    },
    {
        "name": "Study_1:1",
        "sat": "def sat(s: str):\n    return s.count('a') == 10",
        "sol_header": "def sol():",
        "sol_docstring": '    """Find a string with ten a\'s."""',
        "sol_bodies": [],
    },
    {
        "name": "IntNeg:0",
        "sat": "def sat(x: int, a=93252338):\n    return -x == a",
        "sol_header": "def sol(a=93252338):",
        "sol_docstring": '    """Solve a unary negation problem"""',
        "sol_bodies": ["    return - a"],
    },
]


@pytest.fixture
def puzzles(tmp_path: Path) -> Path:
    path = tmp_path / "puzzles.json"
    path.write_text(json.dumps(PUZZLES))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["Study_1"], "test": ["IntNeg"]}))
    return path


def _run(source: SourceConfig) -> str:
    """Run the row's program: the prompt and response together, then the puzzle's check."""
    [example], _ = load_examples([source])
    namespace: dict = {}
    exec(example.instruction + example.output, namespace)  # noqa: S102 - our own fixture
    return namespace["sat"](namespace["sol"]())


def test_train_puzzles_become_signature_docstring_body_rows(puzzles: Path) -> None:
    source = SourceConfig(str(puzzles), format="p3", licence="MIT")
    [example], [report] = load_examples([source])
    # HumanEval's shape: the check, then sol's signature and docstring; the body follows.
    assert example.layout == "completion"
    assert example.instruction.startswith("def sat(s: str):")
    assert example.instruction.endswith(
        'def sol():\n    """Find a string with 1000 \'o\'s but no two adjacent \'o\'s."""\n'
    )
    assert example.output == "    return ('h' + 'o') * 1000\n"
    assert _run(source) is True  # the row is a solved puzzle, not just text
    # The test puzzle is left out, and so is the instance without a solution; both counted.
    assert report["rows"] == 3 and report["kept"] == 1
    assert report["outside_split"] == 1 and report["without_solution"] == 1
    assert report["licence"] == "MIT"


def test_chat_rows_ask_for_sol_and_answer_in_a_python_block(puzzles: Path) -> None:
    source = SourceConfig(str(puzzles), format="p3", layout="chat", split="test")
    [example], _ = load_examples([source])
    assert example.layout == "chat"
    assert example.instruction.startswith("Solve a unary negation problem\n\n")
    assert "Write the Python function `def sol(a=93252338)`" in example.instruction
    assert "```python\ndef sat(x: int, a=93252338):\n    return -x == a\n```" in example.instruction
    assert example.output == "```python\ndef sol(a=93252338):\n    return - a\n```"


def test_split_all_reads_every_solved_puzzle(puzzles: Path) -> None:
    (puzzles.parent / "split.json").unlink()  # not needed for all
    examples, [report] = load_examples([SourceConfig(str(puzzles), format="p3", split="all")])
    assert [e.instruction.split(":")[0] for e in examples] == ["def sat(s", "def sat(x"]
    assert report["outside_split"] == 0 and report["without_solution"] == 1


def test_limit_counts_the_rows_of_the_split_only(puzzles: Path) -> None:
    rows = json.loads(puzzles.read_text())
    puzzles.write_text(json.dumps([rows[2], rows[0], {**rows[0], "name": "Study_1:2"}]))
    # The test puzzle first: a limit that counted it would leave one train row.
    examples, [report] = load_examples([SourceConfig(str(puzzles), format="p3", limit=2)])
    assert len(examples) == 2 and report["outside_split"] == 1


def test_a_missing_split_file_is_named(puzzles: Path) -> None:
    (puzzles.parent / "split.json").unlink()
    with pytest.raises(DataError, match="split.json beside the file.*split: all"):
        load_examples([SourceConfig(str(puzzles), format="p3")])


def test_a_split_with_no_solved_puzzle_is_named(puzzles: Path) -> None:
    (puzzles.parent / "split.json").write_text(json.dumps({"train": ["Nope"], "test": []}))
    with pytest.raises(DataError, match="none of its 3 puzzles is a solved one of split 'train'"):
        load_examples([SourceConfig(str(puzzles), format="p3")])


def test_a_bad_instance_names_its_row_and_field(puzzles: Path) -> None:
    rows = json.loads(puzzles.read_text())
    rows[0]["sol_bodies"] = "    return 1"  # a string, not P3's list
    puzzles.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 0: field 'sol_bodies' is not a list of strings"):
        load_examples([SourceConfig(str(puzzles), format="p3")])
    kept, [report] = load_examples([SourceConfig(str(puzzles), format="p3")], on_bad_row="skip")
    assert kept == [] and report["skipped_by_reason"] == {"bad field 'sol_bodies'": 1}
