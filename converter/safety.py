"""Outputs that are whole or absent, a disk check before the work, and progress lines.

    check_free_space(out_dir, needed=estimate, what="F16 + 2 quantizations")
    with partial_output(out_dir / "m-F16.gguf") as partial:
        write(partial)                      # renamed to m-F16.gguf only when this succeeds
    with step("quantize Q4_K_M") as done:
        ...
        done(path)                          # "quantize Q4_K_M: 3.1 s, 120.4 MB -> m-Q4_K_M.gguf"

A file that a failed or interrupted step was writing is removed, so the output folder
never holds a half-written `.gguf` that looks like a finished one.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from converter import ConvertError

PARTIAL_SUFFIX = ".partial"
MERGE_TEMP_PREFIX = ".merged-"
GB = 1024**3
DEFAULT_MARGIN_BYTES = 512 * 1024**2
"""Free space kept beyond the estimate: the estimate is rough and the disk is shared."""


def say(message: str) -> None:
    """One progress line on stderr (stdout stays clean for scripts)."""
    print(message, file=sys.stderr, flush=True)


def human_size(size: float) -> str:
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        size /= 1024
        if size < 1024 or unit == "TB":
            break
    return f"{size:.1f} {unit}"


def partial_path(final: Path) -> Path:
    """The name a file is written under until it is complete: hidden, not ending in .gguf."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


@contextmanager
def partial_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it to `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(final)
    partial.unlink(missing_ok=True)
    try:
        yield partial
        if not partial.is_file():
            raise ConvertError(f"{final}: the step finished without writing its file")
        os.replace(partial, final)
    except BaseException:
        # Also on Ctrl+C: the half-written file must not survive.
        partial.unlink(missing_ok=True)
        raise


def remove_stale_partials(folder: Path) -> int:
    """Remove partial files and merge folders that a run killed outright left behind."""
    removed = 0
    for path in folder.glob(f".*{PARTIAL_SUFFIX}"):
        if path.is_file():
            path.unlink()
            removed += 1
    for path in folder.glob(f"{MERGE_TEMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def check_free_space(
    folder: Path, needed: int, what: str, margin: int = DEFAULT_MARGIN_BYTES
) -> int:
    """Raise ConvertError unless `folder`'s disk has `needed` + `margin` bytes free.

    Returns the free bytes. `folder` may not exist yet: its nearest existing parent is
    the disk that will hold it.
    """
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + margin:
        raise ConvertError(
            f"not enough disk space in {folder}: {what} needs about {needed / GB:.2f} GB "
            f"(+{margin / GB:.2f} GB margin) but {free / GB:.2f} GB is free; free some "
            "space, choose another --out, or ask for fewer outputs"
        )
    return free


@contextmanager
def step(label: str) -> Iterator[Callable[[Path], None]]:
    """Print `label` when a step starts and its time (and output size) when it ends."""
    say(f"{label} ...")
    start = time.perf_counter()
    result: list[Path] = []
    yield result.append
    seconds = time.perf_counter() - start
    if result and result[-1].exists():
        path = result[-1]
        size = path.stat().st_size if path.is_file() else folder_size(path)
        say(f"{label}: {seconds:.1f} s, {human_size(size)} -> {path.name}")
    else:
        say(f"{label}: {seconds:.1f} s")


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
