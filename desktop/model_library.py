"""The user's models: the embedded default model plus every GGUF in the models folder.

    from desktop.model_library import CURATED, ModelLibrary

    library = ModelLibrary()                        # folder: data_dir() / "models"
    for entry in library.models():                  # the embedded model first, then by name
        info = entry.info or library.describe(entry)    # a child process, once per file version
        print(entry.path.name, info.parameter_label, info.quantization)

    path = library.add_file(Path("Downloads/model.gguf"), progress=on_bytes, cancel=event)
    library.remove(path)

Descriptions are cached in ``folder / ".metadata-cache.json"`` under the file's
path, size and modification time, so a file that changes is described again.
Only successes are cached: a file that failed may have been replaced since.
CURATED lists coding models to offer for download
(with desktop.hub_download).
"""

from __future__ import annotations

import filecmp
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop.gguf_metadata import ModelInfo, read_metadata
from kodcu.default_model import default_model_path, ensure_default_model
from kodcu.model_file import check_gguf_file
from kodcu.paths import data_dir

CACHE_NAME = ".metadata-cache.json"
COPY_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class CuratedModel:
    label: str
    repo_id: str
    filename: str
    size_hint_gb: float | None
    """Download size, when we have checked it; None otherwise."""


# Each repo and file name is the one published on the Hub (each one a single
# Q4_K_M file, as the `resolve/main/<file>` links that many projects use show);
# a download is still checked against the Hub's own sha256 and size.
CURATED: list[CuratedModel] = [
    CuratedModel(
        "Qwen2.5-Coder 0.5B Instruct",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        None,
    ),
    CuratedModel(
        "Qwen2.5-Coder 1.5B Instruct",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        None,
    ),
    CuratedModel(
        "Qwen2.5-Coder 7B Instruct",
        "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
        "qwen2.5-coder-7b-instruct-q4_k_m.gguf",
        None,
    ),
    CuratedModel(
        "Code Llama 7B Instruct",
        "TheBloke/CodeLlama-7B-Instruct-GGUF",
        "codellama-7b-instruct.Q4_K_M.gguf",
        None,
    ),
    CuratedModel(
        "Mistral 7B Instruct v0.2",
        "TheBloke/Mistral-7B-Instruct-v0.2-GGUF",
        "mistral-7b-instruct-v0.2.Q4_K_M.gguf",
        None,
    ),
]


class LibraryError(ValueError):
    """Something the library will not do, with a message for the user."""


class CopyCancelled(Exception):
    """add_file was cancelled; nothing was left in the folder."""


@dataclass
class ModelEntry:
    path: Path
    file_size: int
    modified_ns: int
    embedded: bool = False
    info: ModelInfo | None = None
    """Filled by ModelLibrary.describe, or from its cache when models() lists the file."""


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class ModelLibrary:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder if folder is not None else data_dir() / "models"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cache_lock = threading.Lock()  # describe() may run in worker threads

    # -- listing and describing --------------------------------------------------

    def models(self) -> list[ModelEntry]:
        """The embedded default model, then every *.gguf in the folder by name."""
        paths = sorted(self.folder.glob("*.gguf"), key=lambda p: (p.name.casefold(), p.name))
        entries = [self._entry(ensure_default_model(), embedded=True)]
        for path in paths:
            try:
                entries.append(self._entry(path))
            except FileNotFoundError:
                continue  # removed while we listed
        cache = self._load_cache()
        for entry in entries:
            entry.info = self._cached_info(cache, entry)
        return entries

    def describe(self, entry: ModelEntry, cancel: threading.Event | None = None) -> ModelInfo:
        """Architecture, size, quantization...; raises MetadataError for a bad file
        (or when `cancel` is set while the file is read)."""
        cached = self._cached_info(self._load_cache(), entry)
        if cached is not None:
            entry.info = cached
            return cached
        info = read_metadata(entry.path, cancel=cancel)
        with self._cache_lock:
            cache = self._load_cache()
            cache[str(entry.path)] = {
                "size": entry.file_size,
                "mtime_ns": entry.modified_ns,
                "info": info.to_json(),
            }
            self._save_cache(cache)
        entry.info = info
        return info

    @staticmethod
    def _entry(path: Path, embedded: bool = False) -> ModelEntry:
        stat = path.stat()
        return ModelEntry(path, stat.st_size, stat.st_mtime_ns, embedded=embedded)

    @staticmethod
    def _cached_info(cache: dict[str, Any], entry: ModelEntry) -> ModelInfo | None:
        record = cache.get(str(entry.path)) or {}
        key = (record.get("size"), record.get("mtime_ns"))
        if key != (entry.file_size, entry.modified_ns):
            return None  # never described, or the file changed since
        return ModelInfo.from_json(record["info"])

    def _load_cache(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / CACHE_NAME).read_text(encoding="utf-8"))
            return data["files"] if data.get("version") == 1 else {}
        except (OSError, ValueError, KeyError, AttributeError):
            return {}  # missing or damaged: describe again

    def _save_cache(self, cache: dict[str, Any]) -> None:
        live = {path: record for path, record in cache.items() if Path(path).exists()}
        target = self.folder / CACHE_NAME
        temporary = target.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"version": 1, "files": live}, indent=1), "utf-8")
        os.replace(temporary, target)  # readers never see half a file

    # -- adding and removing -----------------------------------------------------

    def add_file(
        self,
        source: Path,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Copy a GGUF model into the folder and return the copy's path.

        Raises ModelFileError for a file that is not a GGUF model. A different
        file of the same name is kept: the copy becomes "name (2).gguf". An
        identical file already there is returned as it is.
        """
        check_gguf_file(source)
        if source.resolve().parent == self.folder.resolve():
            return source
        target = self._free_name(source)
        if target.exists():
            return target
        part = _part(target)
        total = source.stat().st_size
        done = 0
        try:
            with source.open("rb") as src, part.open("wb") as out:
                if progress is not None:
                    progress(done, total)
                while chunk := src.read(COPY_CHUNK_BYTES):
                    if cancel is not None and cancel.is_set():
                        raise CopyCancelled(f"copying {source.name} was cancelled")
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)  # after a cancel or an error (a full disk)
        return target

    def _free_name(self, source: Path) -> Path:
        """Where a copy of `source` goes: its name, "name (2).gguf"... or an identical file."""
        stem = source.stem if source.suffix.lower() == ".gguf" else source.name
        candidate = self.folder / f"{stem}.gguf"
        number = 2
        # A .part may be a download waiting to be resumed: leave its name alone too.
        while candidate.exists() or _part(candidate).exists():
            if (
                candidate.is_file()
                and candidate.stat().st_size == source.stat().st_size
                and filecmp.cmp(candidate, source, shallow=False)
            ):
                return candidate
            candidate = self.folder / f"{stem} ({number}).gguf"
            number += 1
        return candidate

    def remove(self, path: Path) -> None:
        """Delete a model file from the folder. The embedded model is never removed."""
        if path.resolve() == default_model_path().resolve():
            raise LibraryError(f"{path}: the built-in default model cannot be removed.")
        if path.resolve().parent != self.folder.resolve() or path.suffix != ".gguf":
            raise LibraryError(f"{path}: this file is not in the model folder {self.folder}.")
        path.unlink()
        with self._cache_lock:
            cache = self._load_cache()
            if cache.pop(str(path), None) is not None:
                self._save_cache(cache)
