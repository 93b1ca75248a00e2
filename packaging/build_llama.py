"""Build the llama-cpp-python wheel from its source release, with Kodcu's llama.cpp patches.

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON ..." \\
        python packaging/build_llama.py 0.3.36 WHEEL_DIR

`make run` and `make test` run this once per set of build flags and patches (the
Makefile keys WHEEL_DIR by both). It downloads the source release with pip (or takes it
from pip's cache), applies every `packaging/llama-patches/*.patch` in name order, and
compiles the wheel into WHEEL_DIR. Each patch says at its top what it changes and why.
A patch that no longer applies (after a llama-cpp-python upgrade) stops the build with
its name: refresh the patch against the new source, or delete it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PATCHES = Path(__file__).resolve().parent / "llama-patches"


def download_source(version: str, folder: Path) -> Path:
    """Download and unpack the llama-cpp-python source release; return its top folder."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", "--dest", str(folder), f"llama-cpp-python=={version}"]
    subprocess.run(command, check=True)
    archives = sorted(folder.glob("llama_cpp_python-*.tar.gz"))
    if len(archives) != 1:
        raise SystemExit(f"pip download gave {len(archives)} source archives in {folder}, not 1")
    with tarfile.open(archives[0]) as archive:
        if hasattr(tarfile, "data_filter"):  # refuse links and paths out of the folder
            archive.extractall(folder, filter="data")
        else:  # Python without the filter: a source release from the package index
            archive.extractall(folder)
    source = folder / f"llama_cpp_python-{version}"
    if not (source / "vendor" / "llama.cpp").is_dir():
        raise SystemExit(f"{archives[0].name}: no vendor/llama.cpp inside; not a source release?")
    return source


def apply_patches(source: Path, patches: list[Path]) -> None:
    """Apply each patch to the unpacked source with `git apply`; stop at one that fails."""
    git = shutil.which("git")
    if git is None:
        raise SystemExit("Applying packaging/llama-patches needs git on PATH.")
    # Outside any repository git apply works like patch(1); the ceiling keeps git from
    # finding one above the temporary folder and taking paths relative to its top.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(source.parent)}
    for patch in patches:
        result = subprocess.run(
            [git, "apply", "-p1", str(patch)], cwd=source, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise SystemExit(
                f"{patch} does not apply to {source.name}:\n{result.stderr.strip()}\n"
                "Refresh it against this version's source, or delete it."
            )
        print(f"applied {patch.name}", flush=True)


def build_wheel(source: Path, wheel_dir: Path) -> None:
    """Compile the wheel; CMAKE_ARGS from the environment picks llama.cpp's build flags."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir"]
    command += ["--wheel-dir", str(wheel_dir), str(source)]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("version", help="llama-cpp-python version, for example 0.3.36")
    parser.add_argument("wheel_dir", type=Path, help="folder the wheel is written to")
    args = parser.parse_args(argv)
    patches = sorted(PATCHES.glob("*.patch"))
    with tempfile.TemporaryDirectory(prefix="llama-cpp-python-") as temporary:
        source = download_source(args.version, Path(temporary))
        apply_patches(source, patches)
        build_wheel(source, args.wheel_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
