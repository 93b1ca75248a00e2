"""Reading a data source's rows: local JSON, JSON lines, CSV and Parquet files, or the Hub.

    rows, sha256, lines = open_rows(SourceConfig("train.jsonl"))
    for index, row in rows: ...   # a dict per row, or a BadRow where the row cannot be read

trainer/data.py turns the rows into examples. A row that cannot be read (malformed JSON,
invalid UTF-8, surplus CSV cells) comes as a BadRow in its place, so that the caller can
name its line and skip it; a file that cannot be read at all raises DataError.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.data import SourceConfig

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".csv", ".parquet")

# "owner/name" as the Hub spells dataset ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DataError(ValueError):
    """Bad training data or data settings; the message names file, row and field."""


class BadRow(Exception):
    """A row that cannot become an Example: `key` is counted, `message` is shown."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def open_rows(source: SourceConfig) -> tuple[Iterator[tuple[int, Any]], str, bool]:
    """The rows of a source as (index, row), its fingerprint, and whether indexes are lines."""
    path = Path(source.path).expanduser()
    name = path.name.lower()
    if not path.exists():
        if HUB_ID.match(source.path) and not name.endswith(SUFFIXES):
            return _open_hub(source)
        raise DataError(
            f"{source.path}: file not found; give a path to a .json, .jsonl, .jsonl.gz, .csv or "
            ".parquet file (relative paths start at the current directory) or a Hub id owner/name"
        )
    sha256 = _sha256(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl_rows(path), sha256, True
    if name.endswith((".json", ".json.gz")):
        return enumerate(_json_rows(path, source.path)), sha256, False
    if name.endswith(".csv"):
        return _csv_rows(path), sha256, False
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq  # a dependency of `datasets`; loaded only when needed

        try:
            return enumerate(pq.read_table(path).to_pylist()), sha256, False
        except Exception as error:  # pyarrow raises its own types for a damaged file
            raise DataError(f"{source.path}: not a readable Parquet file ({error})") from None
    raise DataError(f"{source.path}: unknown file type; use one of {', '.join(SUFFIXES)}")


def _open_hub(source: SourceConfig) -> tuple[Iterator[tuple[int, Any]], str, bool]:
    import datasets  # heavy; only Hub sources need it

    try:
        dataset = datasets.load_dataset(
            source.path, source.subset, split=source.split, revision=source.revision
        )
    except Exception as error:
        raise DataError(
            f"{source.path}: no such local file, and loading it as a Hub dataset failed "
            f"({type(error).__name__}: {error}); check the path, the network, or the Hub id"
        ) from error
    revision = source.revision or _hub_revision(source.path)
    fingerprint = f"{source.path}@{revision}" if revision else source.path
    return enumerate(dataset), fingerprint, False


def _hub_revision(dataset_id: str) -> str | None:
    """The commit the Hub resolves the dataset to, when the Hub answers."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(dataset_id).sha
    except Exception:
        return None  # offline after a cached load: the report shows the id alone


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text_file(path: Path):
    """The file as text; utf-8-sig reads a leading byte-order mark (Windows editors
    write one) as nothing rather than as part of the first row."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def _binary_file(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(0-based line index, row) per non-blank line; a malformed line yields a BadRow.

    Lines are decoded one by one, so invalid UTF-8 on one line is that line's problem
    (named, and skippable) rather than the whole file's.
    """
    with _binary_file(path) as file:
        for index, raw in enumerate(file):
            if index == 0:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # Windows editors write one
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = raw[error.start]
                yield (
                    index,
                    BadRow(
                        "invalid UTF-8",
                        f"not UTF-8 text (byte 0x{byte:02x} at column {error.start + 1}); "
                        "save the file as UTF-8",
                    ),
                )
                continue
            if not line.strip():
                continue  # blank lines hold no row
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as error:
                yield index, BadRow("malformed JSON", f"not valid JSON ({error})")


def _json_rows(path: Path, shown: str) -> list:
    with _text_file(path) as file:
        try:
            data = json.load(file)
        except json.JSONDecodeError as error:
            hint = (
                " (one object per line? name the file .jsonl)" if "Extra data" in str(error) else ""
            )
            raise DataError(f"{shown}: not valid JSON: {error}{hint}") from None
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        found = f"; its rows may be the list under {lists[0]!r}" if lists else ""
        raise DataError(
            f"{shown}: the file is a JSON object, not an array of rows{found}; "
            "write the rows as a top-level JSON array or as JSON lines (.jsonl)"
        )
    if not isinstance(data, list):
        raise DataError(f"{shown}: the file holds a {type(data).__name__}, not an array of rows")
    return data


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        for index, row in enumerate(csv.DictReader(file)):
            if None in row:  # DictReader keeps surplus cells under the key None
                yield (
                    index,
                    BadRow("more cells than columns", "the row has more cells than columns"),
                )
            else:
                yield index, {key: value for key, value in row.items() if value is not None}
