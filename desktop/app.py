"""Start the desktop app: check the display, set the look, open the window.

python -m desktop          (or `kodcu`)
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from desktop.display_check import display_problem
from desktop.window import MainWindow


def run_window(model: Path, n_threads: int | None = None, adapter: Path | None = None) -> int:
    problem = display_problem()
    if problem:
        print(f"kodcu: {problem}", file=sys.stderr)
        return 1
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Kodcu")
    window = MainWindow(model, n_threads=n_threads, adapter=adapter)
    window.apply_theme("system")
    # Follow the desktop when the user switches between light and dark.
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: window.apply_theme("system"))
    window.show()
    # Ctrl+C in the terminal closes the window in order (engine stopped). Qt's
    # event loop runs no Python code while idle, so a timer lets the handler run.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake_python = QTimer(interval=250)
    wake_python.timeout.connect(lambda: None)
    wake_python.start()
    return app.exec()
