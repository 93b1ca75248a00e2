"""Downloads from a real HTTP server on 127.0.0.1 that behaves like the Hub."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop.hub_download import DownloadCancelled, DownloadError, download
from tests import gguf_files
from tests.hub_server import HubServer

REPO = "org/coder-GGUF"
NAME = "coder-q4_k_m.gguf"


def small_gguf(tmp_path: Path, padding: int = 600_000) -> bytes:
    """A valid GGUF header with a long string value, so the body spans many chunks."""
    path = tmp_path / "source.gguf"
    gguf_files.write_metadata_only_gguf(
        path, {"general.architecture": "llama", "kodcu.padding": "x" * padding}
    )
    return path.read_bytes()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    # urllib honours proxy variables; the test server must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with HubServer(tmp_path / "hub") as server:
        yield server


def test_download_with_progress_to_the_total(hub: HubServer, tmp_path: Path) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    calls: list[tuple[int, int | None]] = []

    path = download(
        REPO, NAME, tmp_path / "models", endpoint=hub.url, progress=lambda *a: calls.append(a)
    )

    assert path == tmp_path / "models" / NAME
    assert path.read_bytes() == data
    assert not path.with_name(NAME + ".part").exists()
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert hub.requests[0].path == f"/{REPO}/resolve/main/{NAME}"


def test_resume_after_a_dropped_connection(hub: HubServer, tmp_path: Path) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    hub.drop_after = 200_000
    dest = tmp_path / "models"

    with pytest.raises(DownloadError, match="ended after 200000 of .* try again to resume"):
        download(REPO, NAME, dest, endpoint=hub.url)
    assert (dest / (NAME + ".part")).stat().st_size == 200_000
    assert not (dest / NAME).exists()

    path = download(REPO, NAME, dest, endpoint=hub.url)

    assert hub.requests[-1].headers.get("Range") == "bytes=200000-"
    assert path.read_bytes() == data
    assert not (dest / (NAME + ".part")).exists()


def test_cancel_keeps_the_part_for_a_resume(hub: HubServer, tmp_path: Path) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    hub.chunk_bytes, hub.chunk_delay_s = 16 * 1024, 0.01
    cancel = threading.Event()
    dest = tmp_path / "models"

    def progress(done: int, total: int | None) -> None:
        if done >= 100_000:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download(REPO, NAME, dest, endpoint=hub.url, progress=progress, cancel=cancel)
    kept = (dest / (NAME + ".part")).stat().st_size
    assert 100_000 <= kept < len(data)
    assert not (dest / NAME).exists()

    path = download(REPO, NAME, dest, endpoint=hub.url)
    assert hub.requests[-1].headers.get("Range") == f"bytes={kept}-"
    assert path.read_bytes() == data


def test_a_complete_part_is_finished_not_appended_to(hub: HubServer, tmp_path: Path) -> None:
    # The server answers 416 to a Range past the end; the file is fetched again.
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(data + b"stale")

    assert download(REPO, NAME, dest, endpoint=hub.url).read_bytes() == data


def test_silence_times_out_and_keeps_the_part(hub: HubServer, tmp_path: Path) -> None:
    hub.publish(REPO, NAME, small_gguf(tmp_path))
    hub.stall_after = 100_000
    dest = tmp_path / "models"

    with pytest.raises(DownloadError, match="sent nothing for 0.5 s.*try again to resume"):
        download(REPO, NAME, dest, endpoint=hub.url, timeout_s=0.5)
    assert (dest / (NAME + ".part")).stat().st_size == 100_000


def test_missing_file_says_which(hub: HubServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        download(REPO, "nope.gguf", tmp_path, endpoint=hub.url, revision="v2")
    assert f"no file nope.gguf in repo {REPO} at revision v2" in str(caught.value)


def test_private_repository_asks_for_a_token(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    hub.token = "hf_secret"

    with pytest.raises(DownloadError, match="needs a Hugging Face token"):
        download(REPO, NAME, tmp_path / "models", endpoint=hub.url)
    path = download(REPO, NAME, tmp_path / "models", endpoint=hub.url, token="hf_secret")
    assert path.read_bytes() == data
    assert hub.requests[-1].headers["Authorization"] == "Bearer hf_secret"


def test_redirect_to_a_cdn_is_followed_without_the_token(hub: HubServer, tmp_path: Path) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    hub.redirect_host = "localhost"  # another host name for the same server

    path = download(REPO, NAME, tmp_path / "models", endpoint=hub.url, token="hf_secret")

    assert path.read_bytes() == data
    resolve, cdn = hub.requests
    assert resolve.path.startswith(f"/{REPO}/resolve/") and cdn.path.startswith("/cdn/")
    assert resolve.headers["Authorization"] == "Bearer hf_secret"
    assert "Authorization" not in cdn.headers, "the token stays with the Hub"


@pytest.mark.parametrize("redirect", [False, True])
def test_sha256_mismatch_is_not_installed(hub: HubServer, tmp_path: Path, redirect: bool) -> None:
    hub.publish(REPO, NAME, small_gguf(tmp_path))
    hub.etag = "0" * 64
    hub.redirect_host = "127.0.0.1" if redirect else None
    dest = tmp_path / "models"

    with pytest.raises(DownloadError, match="sha256 does not match"):
        download(REPO, NAME, dest, endpoint=hub.url)
    assert list(dest.iterdir()) == []


def test_resumed_download_is_checked_whole(hub: HubServer, tmp_path: Path) -> None:
    # A .part from another version of the file: the sha256 of the whole result fails.
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(data[:1000].replace(b"llama", b"gemma"))

    with pytest.raises(DownloadError, match="sha256 does not match"):
        download(REPO, NAME, dest, endpoint=hub.url)
    assert list(dest.iterdir()) == []


def test_a_body_that_is_not_gguf_is_deleted(hub: HubServer, tmp_path: Path) -> None:
    hub.publish(REPO, NAME, b"<!doctype html><title>Sign in</title>\n" * 50)
    dest = tmp_path / "models"

    with pytest.raises(DownloadError, match="is not a GGUF model .*deleted it"):
        download(REPO, NAME, dest, endpoint=hub.url)
    assert list(dest.iterdir()) == []


def test_endpoint_from_hf_endpoint(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")

    assert download(REPO, NAME, tmp_path / "models").read_bytes() == data
    assert len(hub.requests) == 1


def test_unreachable_endpoint(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(DownloadError, match=f"cannot reach {endpoint}: are you online?"):
        download(REPO, NAME, tmp_path, endpoint=endpoint)


@pytest.mark.parametrize("bad", [".", "/", "..", "models/", "../x.gguf", "notes.txt", ".gguf"])
def test_a_name_that_is_not_a_plain_gguf_file_is_refused(
    hub: HubServer, tmp_path: Path, bad: str
) -> None:
    dest = tmp_path / "models"
    with pytest.raises(DownloadError, match="GGUF file name|must not start with a dot"):
        download(REPO, bad, dest, endpoint=hub.url)
    assert hub.requests == [], "refused before anything is asked of the Hub"
    assert not dest.exists() or list(dest.iterdir()) == []


def test_a_folder_in_the_repository_is_fine(hub: HubServer, tmp_path: Path) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, f"Q4_K_M/{NAME}", data)
    path = download(REPO, f"Q4_K_M/{NAME}", tmp_path / "models", endpoint=hub.url)
    assert path == tmp_path / "models" / NAME and path.read_bytes() == data


def test_an_existing_model_is_never_replaced_without_overwrite(
    hub: HubServer, tmp_path: Path
) -> None:
    data = small_gguf(tmp_path)
    hub.publish(REPO, NAME, data)
    mine = tmp_path / "models" / NAME
    mine.parent.mkdir()
    mine.write_bytes(b"my own model")
    with pytest.raises(DownloadError, match=f"{NAME} is already in .*replace it"):
        download(REPO, NAME, mine.parent, endpoint=hub.url)
    assert mine.read_bytes() == b"my own model"
    download(REPO, NAME, mine.parent, endpoint=hub.url, overwrite=True)
    assert mine.read_bytes() == data
