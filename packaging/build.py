"""Build the desktop app for this operating system, check it, and report its size.

    python packaging/build.py              # dist/kodcu/ (and dist/Kodcu.app on macOS)

`make bundle` runs this on Linux and the installer workflow on Windows and macOS.
After PyInstaller it fails if a shared library of llama-cpp-python is missing from
the bundle or if a module of the training stack got in, then writes
dist/kodcu-size.md (see size_report.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from freeze_config import MUST_BE_ABSENT  # noqa: E402
from size_report import size_report  # noqa: E402

PACKAGING = Path(__file__).resolve().parent
ROOT = PACKAGING.parent
LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")


def llama_library_names() -> list[str]:
    """File names of the shared libraries that llama-cpp-python installed in llama_cpp/lib."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llama_cpp is not installed here: run `make bundle` (it installs it).")
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    names = [p.name for p in lib.iterdir() if any(s in p.name for s in LIBRARY_SUFFIXES)]
    if not names:
        raise SystemExit(f"{lib}: no shared libraries; reinstall llama-cpp-python.")
    return sorted(names)


def missing_llama_libraries(bundle: Path, names: list[str]) -> list[str]:
    """The names with no file under a llama_cpp/lib folder of `bundle`, where llama_cpp looks."""
    found = {p.name for p in bundle.rglob("*") if p.parent.as_posix().endswith("llama_cpp/lib")}
    return [name for name in names if name not in found]


def modules_in_archive(executable: Path) -> list[str]:
    """Names of the Python modules frozen into the executable's archive."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    archive = CArchiveReader(str(executable))
    names: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        for name in archive.toc:
            if name.endswith(".pyz"):
                pyz = Path(folder) / "modules.pyz"
                pyz.write_bytes(archive.extract(name))
                names += list(ZlibArchiveReader(str(pyz)).toc)
    if not names:
        raise SystemExit(f"{executable}: no module archive found inside; cannot check it.")
    return names


def forbidden_content(bundle: Path, modules: list[str]) -> list[str]:
    """Files, folders and modules of the training stack found in the bundle."""
    found = []
    for path in bundle.rglob("*"):
        if path.name.split(".")[0] in MUST_BE_ABSENT:
            found.append(str(path.relative_to(bundle)))
    found += [name for name in modules if name.split(".")[0] in MUST_BE_ABSENT]
    return found


def executable_of(bundle: Path) -> Path:
    """The console executable of the bundle folder or Kodcu.app (what --smoke runs)."""
    if bundle.suffix == ".app":
        bundle = bundle / "Contents" / "MacOS"
    for name in ("kodcu-cli.exe", "Kodcu", "kodcu"):
        if (bundle / name).is_file():
            return bundle / name
    raise SystemExit(f"{bundle}: no Kodcu executable inside; did PyInstaller fail?")


def check_bundle(bundle: Path) -> None:
    """Raise SystemExit naming what is wrong with the built folder."""
    missing = missing_llama_libraries(bundle, llama_library_names())
    if missing:
        raise SystemExit(
            f"{bundle}: llama_cpp/lib lacks {', '.join(missing)}; llama.cpp would not load. "
            "Check collect_dynamic_libs in packaging/kodcu.spec."
        )
    forbidden = forbidden_content(bundle, modules_in_archive(executable_of(bundle)))
    if forbidden:
        raise SystemExit(
            f"{bundle}: the training stack got in ({', '.join(forbidden[:10])}); "
            "add its importer to EXCLUDED_MODULES in packaging/freeze_config.py."
        )


def build(dist: Path, work: Path) -> Path:
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    command += ["--distpath", str(dist), "--workpath", str(work), str(PACKAGING / "kodcu.spec")]
    subprocess.run(command, check=True, cwd=ROOT)
    return dist / "kodcu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's cache"
    )
    args = parser.parse_args(argv)
    bundle = build(args.dist, args.work)
    check_bundle(bundle)
    report = size_report(bundle)
    (args.dist / "kodcu-size.md").write_text(report, encoding="utf-8")
    print(report)
    print(f"Built {bundle}; run {executable_of(bundle)} --smoke 'PROMPT' to try it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
