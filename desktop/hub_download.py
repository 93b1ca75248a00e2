"""Download one GGUF file from the Hugging Face Hub, resumably, with the standard library.

    from desktop.hub_download import DownloadCancelled, DownloadError, download

    path = download(
        "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        data_dir() / "models",
        progress=lambda done, total: print(done, total),
        cancel=stop_event,                 # a threading.Event; set it to stop
    )

The file is fetched from ``{endpoint}/{repo_id}/resolve/{revision}/{filename}``
(endpoint: the argument, else $HF_ENDPOINT, else https://huggingface.co) into
``filename.part``. A later call resumes a .part left by a cancel, a dropped
connection or a timeout. The finished file is checked (size, the sha256 the Hub
announces for LFS files, the GGUF header) before it takes its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from kodcu.model_file import ModelFileError, check_gguf_file

DEFAULT_ENDPOINT = "https://huggingface.co"
READ_TIMEOUT_S = 30.0
CHUNK_BYTES = 256 * 1024
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class DownloadError(Exception):
    """A download that failed, with a message that says what to do."""


class DownloadCancelled(Exception):
    """The cancel event was set; the .part file stays for a later resume."""


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib, remembering the Hub's headers on the way.

    The Hub answers /resolve/ for an LFS file with a redirect to a CDN and puts
    the file's sha256 in X-Linked-ETag on that redirect, not on the CDN's answer.
    The token is for the Hub only, so it is dropped when the host changes.
    """

    def __init__(self) -> None:
        self.redirected = False
        self.linked_etag: str | None = None

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        self.redirected = True
        self.linked_etag = self.linked_etag or headers.get("X-Linked-ETag")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _sha256_from_etag(etag: str | None) -> str | None:
    value = (etag or "").strip().removeprefix("W/").strip('"').lower()
    return value if SHA256_HEX.fullmatch(value) else None


def _total_size(response: Any, start: int) -> int | None:
    """The whole file's size, from Content-Range on a 206 or Content-Length on a 200."""
    if response.status == 206:
        match = re.search(r"/(\d+)$", response.headers.get("Content-Range", ""))
        if match:
            return int(match.group(1))
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (start if response.status == 206 else 0)


def _http_error(exc: urllib.error.HTTPError, repo_id: str, filename: str, revision: str) -> str:
    if exc.code in (401, 403):
        return (
            f"the Hub refused {repo_id} (HTTP {exc.code}): this repository needs a Hugging Face "
            "token, or the token has no access. Create one at https://huggingface.co/settings/"
            "tokens and accept the model's terms on its page."
        )
    if exc.code == 404:
        return (
            f"no file {filename} in repo {repo_id} at revision {revision} (HTTP 404). "
            "Check the repository and file names on the Hub."
        )
    return f"the Hub answered HTTP {exc.code} {exc.reason} for {filename}. Try again later."


def _open(url: str, token: str | None, start: int, timeout_s: float) -> tuple[Any, _Redirects]:
    headers = {"User-Agent": "kodcu"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if start:
        headers["Range"] = f"bytes={start}-"
    redirects = _Redirects()
    opener = urllib.request.build_opener(redirects)
    response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    return response, redirects


def _copy_body(
    response: Any,
    out: IO[bytes],
    digest: Any | None,
    done: int,
    total: int | None,
    progress: Callable[[int, int | None], None] | None,
    cancel: threading.Event | None,
) -> int:
    """Append the body to `out`; return the bytes the file now holds."""
    while True:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {Path(out.name).name} cancelled")
        # read1 returns what has arrived, so a slow server cannot delay a cancel.
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            return done
        out.write(chunk)
        if digest is not None:
            digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


class AlreadyThere(DownloadError):
    """A model of that name is already there; ask before replacing it (`overwrite`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path.name} is already in {path.parent}; replace it?")
        self.path = path


def gguf_file_name(filename: str) -> str:
    """The local name of a Hub file: its last part, which must be a plain *.gguf name.
    Anything else (".", "/", "..", "a/", "notes.txt") is refused with what to type."""
    parts = filename.replace("\\", "/").split("/")
    name = parts[-1]
    if any(part in ("", ".", "..") for part in parts) or not name.lower().endswith(".gguf"):
        raise DownloadError(
            f"{filename!r} is not a GGUF file name: give the file's name in the repository, "
            "ending in .gguf (a folder before it is fine: Q4_K_M/model-q4_k_m.gguf)"
        )
    if name.lower() == ".gguf" or name.startswith("."):
        raise DownloadError(f"{filename!r}: the file name must not start with a dot")
    return name


def download(
    repo_id: str,
    filename: str,
    dest_folder: Path,
    *,
    revision: str = "main",
    endpoint: str | None = None,
    token: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    overwrite: bool = False,
) -> Path:
    """Fetch `filename` from `repo_id` into `dest_folder` and return its path.

    `token` defaults to $HF_TOKEN. `progress(done, total)` gets bytes so far and
    the whole size (None when the server does not say). `timeout_s` is how long
    the server may stay silent. A file of the same name already in `dest_folder` is
    replaced only with `overwrite` (ask the user first). Raises DownloadError or
    DownloadCancelled.
    """
    name = gguf_file_name(filename)
    base = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    url = f"{base}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"
    dest_folder.mkdir(parents=True, exist_ok=True)
    final = dest_folder / name
    if final.exists() and not overwrite:
        raise AlreadyThere(final)
    part = final.with_name(final.name + ".part")
    start = part.stat().st_size if part.exists() else 0

    try:
        try:
            response, redirects = _open(url, token, start, timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not start:
                raise
            exc.close()
            # The .part is as long as the file, or longer (a stale one): start over.
            part.unlink()
            start = 0
            response, redirects = _open(url, token, start, timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection open
        raise DownloadError(_http_error(exc, repo_id, filename, revision)) from exc
    except OSError as exc:  # URLError included: refused, no DNS, no route, TLS
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {base}: are you online? ({reason})") from exc

    with response:
        if response.status != 206:
            start = 0  # the server sent the whole file: start over
        total = _total_size(response, start)
        if redirects.redirected:
            # After a redirect only the Hub's own header counts: a CDN's ETag may be
            # 64 hex digits without being the file's sha256.
            expected_sha = _sha256_from_etag(redirects.linked_etag)
        else:
            etag = response.headers.get("X-Linked-ETag") or response.headers.get("ETag")
            expected_sha = _sha256_from_etag(etag)
        digest = hashlib.sha256() if expected_sha else None
        if digest is not None and start:
            with part.open("rb") as f:  # the sha256 covers the bytes we already have
                while block := f.read(4 * 1024 * 1024):
                    digest.update(block)
        if progress is not None:
            progress(start, total)
        try:
            with part.open("ab" if start else "wb") as out:
                done = _copy_body(response, out, digest, start, total, progress, cancel)
        except TimeoutError as exc:
            raise DownloadError(
                f"{base} sent nothing for {timeout_s:g} s while downloading {filename}. "
                "The partial download is kept: try again to resume."
            ) from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"the connection to {base} broke ({exc!r}). The partial download is kept: "
                "try again to resume."
            ) from exc

    if total is not None and done < total:
        raise DownloadError(
            f"the connection to {base} ended after {done} of {total} bytes of {filename}. "
            "The partial download is kept: try again to resume."
        )
    if total is not None and done > total:
        part.unlink()
        raise DownloadError(
            f"{filename} came out larger than the server said ({done} > {total} bytes); "
            "deleted it. Download it again."
        )
    if digest is not None and digest.hexdigest() != expected_sha:
        part.unlink()
        raise DownloadError(
            f"{filename} is damaged: its sha256 does not match the one the Hub gives; "
            "deleted it. Download it again."
        )
    try:
        check_gguf_file(part)
    except ModelFileError as exc:
        part.unlink()
        raise DownloadError(
            f"{repo_id}/{filename} is not a GGUF model ({exc.problem}); deleted it. "
            "Choose a .gguf file from the repository."
        ) from exc
    os.replace(part, final)
    return final
