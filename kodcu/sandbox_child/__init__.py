"""The child side of the sandbox: the supervisor, the program runner, and the process
bookkeeping that both sides share. THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`).

    python -I -c BOOT CHILD_DIR supervise RUN_DIR LIMITS_JSON
    python -I -c BOOT CHILD_DIR run RUN_DIR main|module
    kodcu --sandbox-child supervise|run ...      (the same, in a frozen app)

`kodcu.sandbox` starts the supervisor in a new session (`supervisor`). It forks the
runner (`runner`), which sets the resource limits on itself and executes
`RUN_DIR/program.py`; the supervisor waits for it, kills whatever it left behind and
writes `exit.json`. `processes` reads the process table, for the supervisor and for the
caller's watcher.

This package is started by its name from its parent folder (BOOT, CHILD_DIR), not as
`kodcu.sandbox_child`: no other part of Kodcu is imported into the process that runs the
program, and the folder leaves sys.path before the program starts, so the program cannot
import its neighbours. Imported, the child comes from its compiled bytecode
(`__pycache__`), where a script would be compiled anew for every program. So these
modules import only the standard library (and psutil, where installed) and each other,
relatively. A frozen app has no `python`: its entry point dispatches FROZEN_FLAG to
main() before it imports anything else.
"""

from __future__ import annotations

import json
import os

PROGRAM = "program.py"
"""The program's source, in the run directory."""
WORK = "work"
"""The program's working directory, inside the run directory."""
RESULT = "result.json"
"""Written by the runner: how far the program got."""
ISOLATION = "isolation.json"
"""Written by the runner on Linux and macOS: what isolation holds (isolation.py)."""
EXIT = "exit.json"
"""Written by the supervisor: the runner's exit code, or why it could not start."""
FROZEN_FLAG = "--sandbox-child"
"""A frozen app (PyInstaller) runs this package's main() when started with this first
argument."""
CHILD_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
"""The folder that holds this package, put on sys.path by BOOT for the import alone."""
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); import sandbox_child; del sys.path[0]; "
    "sandbox_child.main(sys.argv[2:])"
)
"""How a child process starts, given CHILD_DIR and then main's arguments."""


def main(argv: list[str]) -> None:
    """`supervise RUN_DIR LIMITS_JSON` or `run RUN_DIR main|module`."""
    # Imported here, not above: the caller imports this package for its names alone.
    if argv[0] == "supervise":
        from .supervisor import supervise

        supervise(argv[1], json.loads(argv[2]))
    else:
        from .runner import run

        run(argv[1], argv[2] == "main")
