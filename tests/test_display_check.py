"""A missing display or missing Qt system libraries give a message, not a Qt abort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from desktop.display_check import display_problem, missing_xcb_libraries


def test_offscreen_needs_no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    assert display_problem() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux-only here")
def test_no_display_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "DISPLAY is not set" in (display_problem() or "")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux-only here")
def test_library_with_a_missing_dependency_is_named(tmp_path: Path) -> None:
    # A real shared library linked against another that is then removed, as when
    # a system package is not installed.
    source = tmp_path / "probe.c"
    source.write_text("int kodcu_probe(void) { return 1; }\n")
    dependency = tmp_path / "libkodcu-absent.so.7"
    plugin = tmp_path / "libplugin.so"
    build = ["cc", "-shared", "-fPIC", str(source), "-o"]
    subprocess.run([*build, str(dependency), "-Wl,-soname,libkodcu-absent.so.7"], check=True)
    subprocess.run([*build, str(plugin), "-Wl,--no-as-needed", str(dependency)], check=True)
    dependency.unlink()
    assert "libkodcu-absent.so.7" in missing_xcb_libraries(plugin)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 is Linux-only here")
def test_app_without_display_exits_with_the_message(default_model: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    done = subprocess.run(
        [sys.executable, "-m", "desktop"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "DISPLAY is not set" in done.stderr
    assert "Traceback" not in done.stderr
