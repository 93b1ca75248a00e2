"""`format: python`: documented functions of a folder of .py files become completion rows."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest

from kodcu.prompt import ALPACA_CHAT_TEMPLATE
from tests.test_trainer_train import make_config
from tests.tiny_models import tiny_model, tiny_tokenizer
from trainer.data import DataError, SourceConfig, load_examples
from trainer.features import IGNORE_INDEX, encode_examples
from trainer.train import run

pytestmark = pytest.mark.usefixtures("offline_hub")

MODULE = '''"""A module."""
import functools


def area(width, height):
    """The area of a rectangle.

    >>> area(2, 3)
    6
    """
    # width times height
    return width * height


@functools.cache
def fib(n):
    """The n-th Fibonacci number."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def fetch(queue):
    """Take the next item."""
    item = await queue.get()
    return item


def undocumented(x):
    return x


def abstract(x):
    """Subclasses say."""
    raise NotImplementedError


def placeholder():
    """Nothing yet."""
    pass


def same_line():
    """Doc."""; return 1


class Shape:
    def side(self):
        """A method: its class is not in the prompt."""
        return 1
'''


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def load(path: Path, on_bad_row: str = "error", **options):
    options.setdefault("licence", "MIT")
    return load_examples([SourceConfig(str(path), format="python", **options)], on_bad_row)


def test_each_documented_module_level_function_is_one_row_as_written(tmp_path: Path):
    write(tmp_path, "shapes.py", MODULE)
    examples, [report] = load(tmp_path)
    assert [e.instruction.split("(")[0].split()[-1] for e in examples] == ["area", "fib", "fetch"]
    area, fib, fetch = examples
    assert area.instruction == (
        'def area(width, height):\n    """The area of a rectangle.\n\n    >>> area(2, 3)\n'
        '    6\n    """\n'
    )
    assert area.output == "    # width times height\n    return width * height\n"
    assert fib.instruction.startswith("@functools.cache\ndef fib(n):\n")
    assert fetch.instruction.startswith("async def fetch(queue):")
    assert {e.layout for e in examples} == {"completion"} and {e.input for e in examples} == {""}
    assert area.source == str(tmp_path / "shapes.py") and area.row == 4  # the def's line index
    assert report["licence"] == "MIT"
    assert (report["files"], report["rows"], report["kept"]) == (1, 3, 3)


def test_encodings_and_line_ends_are_those_the_file_declares(tmp_path: Path):
    latin = "# -*- coding: latin-1 -*-\ndef caf\u00e9():\n"
    latin += '    """Caf\u00e9."""\n    return "\u00e9"\n'
    write(tmp_path, "a.py", latin.encode("latin-1"))
    write(tmp_path, "b.py", MODULE.replace("\n", "\r\n").encode())
    examples, _ = load(tmp_path)
    assert examples[0].instruction == 'def caf\u00e9():\n    """Caf\u00e9."""\n'
    assert examples[0].output == '    return "\u00e9"\n'
    assert "\r" not in "".join(e.instruction + e.output for e in examples)
    assert len(examples) == 4


def test_a_file_that_is_not_python_is_a_bad_row_named_with_its_line(tmp_path: Path):
    write(tmp_path, "good.py", MODULE)
    broken = write(tmp_path, "broken.py", "def f(:\n    pass\n")
    with pytest.raises(DataError, match=rf"{broken}: not valid Python \(line 1: SyntaxError"):
        load(tmp_path)
    examples, [report] = load(tmp_path, on_bad_row="skip")
    assert len(examples) == 3
    assert report["skipped_by_reason"] == {"not valid Python": 1}
    assert (report["files"], report["rows"], report["skipped"]) == (2, 4, 1)


def test_installed_packages_are_never_read_under_the_folders_licence(tmp_path: Path):
    write(tmp_path, "mine.py", MODULE)
    write(tmp_path, "lib/site-packages/other/code.py", MODULE)
    write(tmp_path, "dist-packages/more.py", MODULE)
    examples, [report] = load(tmp_path)
    assert {e.source for e in examples} == {str(tmp_path / "mine.py")}
    assert report["files"] == 1


def test_the_licence_is_required_and_other_paths_are_refused(tmp_path: Path):
    write(tmp_path, "m.py", MODULE)
    with pytest.raises(DataError, match="needs the source's licence"):
        load(tmp_path, licence=None)
    with pytest.raises(DataError, match="a folder or a .py file"):
        load(write(tmp_path, "notes.txt", "hello"))
    with pytest.raises(DataError, match="task_ids and fields mean nothing"):
        load(tmp_path, task_ids="1-5")
    examples, _ = load(tmp_path / "m.py", limit=2)  # one file; limit counts rows
    assert len(examples) == 2


def test_max_response_lines_keeps_short_bodies_and_counts_the_rest(tmp_path: Path):
    write(tmp_path, "shapes.py", MODULE)  # bodies: area 2 lines, fib 1, fetch 2
    examples, [report] = load(tmp_path, max_response_lines=1)
    assert [e.instruction.split("(")[0].split()[-1] for e in examples] == ["fib"]
    assert (report["rows"], report["kept"], report["over_max_response_lines"]) == (3, 1, 2)
    assert len(load(tmp_path, max_response_lines=2)[0]) == 3
    with pytest.raises(DataError, match="use 1 or more"):
        load(tmp_path, max_response_lines=0)
    long = write(tmp_path / "long", "m.py", 'def f(x):\n    """F."""\n    y = x\n    return y\n')
    with pytest.raises(DataError, match="every one of its 1 responses is longer than max_resp"):
        load(long, max_response_lines=1)


def test_completion_rows_are_the_text_itself_with_loss_on_the_body_and_eos(tmp_path: Path):
    write(tmp_path, "shapes.py", MODULE)
    examples, _ = load(tmp_path)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE  # as the trainer sets it; not used here
    [first, *_], stats = encode_examples(examples, tokenizer, max_length=512)
    prompt = tokenizer(examples[0].instruction)["input_ids"]  # with BOS, as a base prompt
    assert first.input_ids[: len(prompt)] == prompt and prompt[0] == tokenizer.bos_token_id
    assert first.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    response = first.labels[len(prompt) :]
    assert response[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(response[:-1]) == examples[0].output
    assert "### Instruction" not in tokenizer.decode(first.input_ids)


def test_pythons_own_library_gives_thousands_of_rows_that_parse(tmp_path: Path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    examples, [report] = load(stdlib, on_bad_row="skip", licence="PSF-2.0")
    assert len(examples) > 1000 and report["kept"] == len(examples)
    assert not any("site-packages" in e.source for e in examples)
    for example in examples[::50]:
        compile(example.instruction + example.output, example.source, "exec")  # a whole def


def test_training_on_a_python_source_records_its_licence(tmp_path: Path):
    write(tmp_path / "code", "shapes.py", MODULE)
    base = tiny_model(tmp_path / "base", "llama")
    source = {"path": str(tmp_path / "code"), "format": "python", "licence": "MIT", "limit": None}
    output_dir = run(make_config(tmp_path, base, sources=source, training={"max_steps": 2}))
    record = json.loads((output_dir / "kodcu.json").read_text())
    [report] = record["data"]["sources"]
    assert (report["licence"], report["kept"]) == ("MIT", 3)
