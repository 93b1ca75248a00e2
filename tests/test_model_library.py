"""The model library on real files: listing, describing with a cache, adding, removing."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from desktop import model_library
from desktop.gguf_metadata import MetadataError, ModelInfo
from desktop.model_library import CURATED, CopyCancelled, LibraryError, ModelLibrary
from kodcu.model_file import ModelFileError
from kodcu.paths import data_dir
from tests import gguf_files


def small_gguf(path: Path, padding: int = 0) -> Path:
    return gguf_files.write_metadata_only_gguf(
        path, {"general.architecture": "llama", "kodcu.padding": "x" * padding}
    )


@pytest.fixture
def library(tmp_path: Path, default_model: Path) -> ModelLibrary:
    return ModelLibrary(tmp_path / "models")


@pytest.fixture
def child_runs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths read_metadata was called with (each call starts a child process)."""
    calls: list[Path] = []
    real = model_library.read_metadata

    def counting(path: Path, timeout_s: float = 30, cancel=None) -> ModelInfo:
        calls.append(path)
        return real(path, timeout_s, cancel)

    monkeypatch.setattr(model_library, "read_metadata", counting)
    return calls


def test_default_folder_is_in_the_data_dir(default_model: Path) -> None:
    assert ModelLibrary().folder == data_dir() / "models"


def test_embedded_model_first_then_the_folder_by_name(
    library: ModelLibrary, default_model: Path
) -> None:
    for name in ("b.gguf", "A.gguf", "c.gguf"):
        small_gguf(library.folder / name)
    (library.folder / "notes.txt").write_text("not a model")
    (library.folder / "d.gguf.part").write_bytes(b"GGUF")

    entries = library.models()

    assert [e.path for e in entries] == [
        default_model,
        *(library.folder / n for n in ("A.gguf", "b.gguf", "c.gguf")),
    ]
    assert [e.embedded for e in entries] == [True, False, False, False]
    assert entries[1].file_size == (library.folder / "A.gguf").stat().st_size
    assert all(e.info is None for e in entries), "nothing is described until asked"


def test_describe_is_cached_across_libraries(
    library: ModelLibrary, default_model: Path, child_runs: list[Path]
) -> None:
    embedded = library.models()[0]
    info = library.describe(embedded)
    assert info.architecture == "gemma3" and embedded.info == info
    assert child_runs == [default_model]

    assert library.describe(embedded) == info
    again = ModelLibrary(library.folder).models()[0]
    assert again.info == info, "models() fills in what the cache knows"
    assert ModelLibrary(library.folder).describe(again) == info
    assert child_runs == [default_model], "no second child process"
    assert (library.folder / ".metadata-cache.json").is_file()


def test_a_changed_file_is_described_again(
    library: ModelLibrary, default_model: Path, tmp_path: Path, child_runs: list[Path]
) -> None:
    path = gguf_files.with_metadata_string(
        default_model, library.folder / "chat.gguf", "tokenizer.chat_template", "{{ x }}"
    )
    entry = library.models()[1]
    assert library.describe(entry).chat_template is True

    shutil.copyfile(default_model, path)  # the same name, now without a template
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    entry = library.models()[1]
    assert entry.info is None
    assert library.describe(entry).chat_template is False
    assert child_runs == [path, path]


def test_a_bad_file_raises_each_time(library: ModelLibrary, child_runs: list[Path]) -> None:
    gguf_files.unknown_architecture(library.folder / "odd.gguf")
    entry = library.models()[1]
    for _ in range(2):
        with pytest.raises(MetadataError, match="unknown model architecture"):
            library.describe(entry)
    assert len(child_runs) == 2, "failures are not cached: the file may be replaced"


def test_add_file_copies_with_progress(library: ModelLibrary, tmp_path: Path) -> None:
    source = small_gguf(tmp_path / "Coder.gguf", padding=9 * 1024 * 1024)
    total = source.stat().st_size
    calls: list[tuple[int, int]] = []

    copy = library.add_file(source, progress=lambda done, size: calls.append((done, size)))

    assert copy == library.folder / "Coder.gguf"
    assert copy.read_bytes() == source.read_bytes()
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert len(calls) > 2
    assert [e.path for e in library.models()][1:] == [copy]


def test_add_file_refuses_a_text_file(library: ModelLibrary, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="this is a text file, not a GGUF model"):
        library.add_file(gguf_files.text_file(tmp_path / "page.gguf"))
    assert list(library.folder.iterdir()) == []


def test_add_file_keeps_a_different_file_of_the_same_name(
    library: ModelLibrary, tmp_path: Path
) -> None:
    mine = small_gguf(library.folder / "model.gguf", padding=10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    other = small_gguf(tmp_path / "a" / "model.gguf", padding=20)
    third = small_gguf(tmp_path / "b" / "model.gguf", padding=30)
    before = mine.read_bytes()

    assert library.add_file(other) == library.folder / "model (2).gguf"
    assert library.add_file(third) == library.folder / "model (3).gguf"
    assert library.add_file(other) == library.folder / "model (2).gguf", "already there"
    assert mine.read_bytes() == before
    assert (library.folder / "model (3).gguf").read_bytes() == third.read_bytes()


def test_cancel_leaves_nothing_in_the_folder(library: ModelLibrary, tmp_path: Path) -> None:
    source = small_gguf(tmp_path / "big.gguf", padding=12 * 1024 * 1024)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(CopyCancelled):
        library.add_file(source, progress=progress, cancel=cancel)
    assert list(library.folder.iterdir()) == []


def test_remove(library: ModelLibrary, tmp_path: Path) -> None:
    path = small_gguf(library.folder / "old.gguf")
    library.remove(path)
    assert not path.exists()
    assert len(library.models()) == 1


def test_remove_refuses_the_embedded_model(library: ModelLibrary, default_model: Path) -> None:
    with pytest.raises(LibraryError, match="built-in default model cannot be removed"):
        library.remove(library.models()[0].path)
    assert default_model.is_file()


def test_remove_refuses_files_elsewhere(library: ModelLibrary, tmp_path: Path) -> None:
    elsewhere = small_gguf(tmp_path / "mine.gguf")
    with pytest.raises(LibraryError, match="not in the model folder"):
        library.remove(elsewhere)
    assert elsewhere.exists()


def test_curated_list() -> None:
    assert len(CURATED) == 5
    for model in CURATED:
        assert model.filename.endswith(".gguf") and "/" in model.repo_id
        assert model.size_hint_gb is None or model.size_hint_gb > 0
