"""Say clearly why Qt cannot open a window, before Qt aborts the process.

On Linux, Qt's X11 plugin (xcb) needs system libraries that minimal installs
lack (libxcb-cursor0, libxcb-icccm4, ...). Qt then prints "Could not load the Qt
platform plugin" and aborts, which tells a user little. We look first and name
the missing libraries and the command that installs them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from pathlib import Path

# Loaded by Qt at run time with dlopen, so a plain load of the plugin misses them.
RUNTIME_XCB_LIBRARIES = {"xcb-cursor": "libxcb-cursor0"}
DEBIAN_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
    "libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0"
)


def _xcb_plugin() -> Path | None:
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def missing_xcb_libraries(plugin: Path | None) -> list[str]:
    """Names of the shared libraries that keep Qt's xcb plugin from loading."""
    missing: list[str] = []
    if plugin is not None:
        try:
            ctypes.CDLL(str(plugin))
        except OSError as exc:
            # "libxcb-icccm.so.4: cannot open shared object file: No such file or directory"
            missing += re.findall(r"(lib[\w.+-]+\.so[\w.]*): cannot open", str(exc)) or [str(exc)]
    for name in RUNTIME_XCB_LIBRARIES:
        if ctypes.util.find_library(name) is None:
            missing.append(f"lib{name}.so.0")
    return missing


def display_problem() -> str | None:
    """A message for the user when no window can be opened, else None."""
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None  # offscreen, wayland, eglfs...: Qt's own checks apply
    if not platform and os.environ.get("WAYLAND_DISPLAY"):
        return None
    if not os.environ.get("DISPLAY"):
        return (
            "No display to open a window on (DISPLAY is not set). Run Kodcu in a desktop "
            'session, or use `kodcu --smoke "PROMPT"` or `kodcu-serve` on a terminal.'
        )
    missing = missing_xcb_libraries(_xcb_plugin())
    if missing:
        return (
            f"Qt cannot open a window: missing system libraries {', '.join(missing)}. "
            f"On Debian or Ubuntu: sudo apt install {DEBIAN_PACKAGES}"
        )
    return None
