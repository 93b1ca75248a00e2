"""Where Kodcu keeps files on the user's machine.

The platform's proper places come from platformdirs (XDG on Linux,
~/Library/Caches on macOS, %LOCALAPPDATA% on Windows). Two environment
variables move them, which tests and portable installs use:

    KODCU_CACHE_DIR   re-creatable files (the assembled default model)
    KODCU_DATA_DIR    the user's own data (conversations, settings, models)
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "kodcu"


def cache_dir() -> Path:
    """Directory for files Kodcu can rebuild, created on first use."""
    path = Path(os.environ.get("KODCU_CACHE_DIR") or platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory for the user's own data, created on first use."""
    path = Path(os.environ.get("KODCU_DATA_DIR") or platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path
