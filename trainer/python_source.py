"""Training rows from Python source: each documented function, as HumanEval asks for one.

    data:
      sources:
        - path: /usr/lib/python3.12       # a folder (read recursively) or one .py file
          format: python
          licence: PSF-2.0                 # required: the rows are the files' own text
      on_bad_row: skip                     # a file that does not parse is a bad row

HumanEval and the editors that complete code give a model a function's signature and
docstring and expect its body. Source code that is already on a machine under a
permissive licence (Python's standard library, say) is full of exactly that: every
module-level function with a docstring is one row,

- prompt: its decorators, signature and docstring, as written;
- response: the rest of the function, as written, then the end of text (EOS).

The prompt is not wrapped in a chat template ("completion" layout: the model continues
the text, as `kodcu-eval --prompt base` asks it to). Methods are left out (their class
is missing from the prompt), as are functions whose body is only `pass`, `...` or
`raise NotImplementedError`, and `site-packages` / `dist-packages` folders (other
packages, other licences). Files are read in sorted order, so the rows are the same
on every machine with the same files. The source's report counts the files read, its
rows (each function, and each file that failed to parse: a bad row, see `on_bad_row`)
and rows kept, and records the licence and a sha256 over every file's name and bytes.
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path

from trainer.data import SKIP_HINT, DataError, Example, SourceConfig

TRIVIAL = ("pass", "...", "raise NotImplementedError")


THIRD_PARTY = {"site-packages", "dist-packages"}
"""Folders of installed packages: each under a licence of its own, so never read as part
of a folder whose licence the source names (Python's lib/ holds site-packages)."""


def python_files(path: Path) -> list[Path]:
    """The .py files of a folder (recursively, sorted, third-party folders left out) or
    the file itself."""
    if path.is_file():
        return [path]
    return sorted(
        file
        for file in path.rglob("*.py")
        if file.is_file() and not THIRD_PARTY & set(file.relative_to(path).parts[:-1])
    )


def read_source(data: bytes) -> str:
    """A file's text in the encoding it declares (PEP 263; UTF-8 by default), with "\\n" ends."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    return text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")


def documented_functions(text: str) -> Iterator[tuple[int, str, str]]:
    """(0-based line of the def, prompt, body) for each module-level documented function.

    Raises SyntaxError (with its line) for text that is not Python.
    """
    lines = text.split("\n")
    with warnings.catch_warnings():  # old files' invalid escapes: their problem, not the user's
        warnings.simplefilter("ignore")
        tree = ast.parse(text)
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if ast.get_docstring(node, clean=False) is None or len(node.body) < 2:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        docstring_end = node.body[0].end_lineno  # 1-based, inclusive
        statements = node.body[1:]
        if docstring_end is None or node.end_lineno is None:
            continue
        if statements[0].lineno <= docstring_end:  # `"""Doc."""; return x` on one line
            continue
        body = "\n".join(lines[docstring_end : node.end_lineno]) + "\n"
        if len(statements) == 1 and body.strip().startswith(TRIVIAL):
            continue
        prompt = "\n".join(lines[first:docstring_end]) + "\n"
        yield first, prompt, body


def load_python(source: SourceConfig, on_bad_row: str, report: dict) -> list[Example]:
    """The rows of a `format: python` source (trainer.data.SourceConfig); fills `report`."""
    path = Path(source.path).expanduser()
    if not (path.is_dir() or (path.is_file() and path.suffix == ".py")):
        raise DataError(f"{source.path}: format python reads a folder or a .py file; none here")
    if not source.licence:
        raise DataError(
            f"{source.path}: format python needs the source's licence (licence: PSF-2.0, say): "
            "the rows are the files' own text, and the adapter's record must say under what terms"
        )
    if source.task_ids or source.fields:
        raise DataError(f"{source.path}: task_ids and fields mean nothing for format python")
    files = python_files(path)
    digest = hashlib.sha256()
    examples: list[Example] = []
    report |= {"files": 0, "licence": source.licence}
    for file in files:
        if source.limit is not None and len(examples) >= source.limit:
            break
        name = str(file.relative_to(path)) if file != path else file.name
        try:
            data = file.read_bytes()
            functions = list(documented_functions(read_source(data)))
        except OSError as error:
            functions = f"cannot be read ({error.strerror or error})"
        except (SyntaxError, ValueError, LookupError, RecursionError) as error:  # bad text
            line = getattr(error, "lineno", None)
            where = f"line {line}: " if line else ""
            functions = f"not valid Python ({where}{type(error).__name__}: {error})"
        else:
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        report["files"] += 1
        if isinstance(functions, str):  # the whole file is one bad row
            if on_bad_row == "error":
                raise DataError(f"{file}: {functions}; {SKIP_HINT}")
            reason = functions.split(" (")[0]
            report["skipped_by_reason"][reason] = report["skipped_by_reason"].get(reason, 0) + 1
            report["rows"] += 1
            continue
        if source.limit is not None:
            functions = functions[: source.limit - len(examples)]
        report["rows"] += len(functions)
        for line, prompt, body in functions:
            examples.append(Example(prompt, "", body, str(file), line, "completion"))
    report["sha256"] = digest.hexdigest()
    return examples
