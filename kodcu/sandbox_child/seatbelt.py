"""Isolation of the runner on macOS: a Seatbelt profile (the mechanism of sandbox-exec),
applied by the runner to itself and inherited by everything it starts.
THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`).

    report = isolate(run_dir)   # {"network": "seatbelt", "files": "seatbelt", "missing": []}

The profile allows everything else and denies every network operation and every file write
outside the run directory (and /dev/null). `sandbox_init` is the C call behind
`sandbox-exec -p`: deprecated by Apple, still present, and used the same way by other
tools that run code for users. Standard library only (ctypes), like the rest of this package.
"""

from __future__ import annotations

import ctypes
import os

WRITABLE_DEVICES = ("/dev/null", "/dev/zero")
LIBRARIES = (None, "/usr/lib/libsandbox.1.dylib", "/usr/lib/libSystem.B.dylib")
"""Where sandbox_init is looked for: the process's own symbols (libSystem is always loaded),
then the libraries that define it, by path."""


def profile(run_dir: str) -> str:
    """The SBPL profile: no network; writes only beneath `run_dir` and to WRITABLE_DEVICES.

    Later rules win over earlier ones in SBPL, so the allowances come after the denials.
    The run directory is given by its real path: /var and /tmp are links on macOS, and the
    kernel checks the real one.
    """
    allowed = [f'(subpath "{_quoted(os.path.realpath(run_dir))}")']
    allowed += [f'(literal "{device}")' for device in WRITABLE_DEVICES]
    return "\n".join(
        [
            "(version 1)",
            "(allow default)",
            "(deny network*)",
            "(deny file-write*)",
            f"(allow file-write* {' '.join(allowed)})",
        ]
    )


def isolate(run_dir: str) -> dict:
    """Apply the profile to this process and report what holds."""
    report: dict = {"network": None, "files": None, "missing": []}
    problem = _sandbox_init(profile(run_dir))
    if problem:
        report["missing"] += [f"network ({problem})", f"files ({problem})"]
    else:
        report["network"] = report["files"] = "seatbelt"
    return report


def _sandbox_init(text: str) -> str | None:
    """sandbox_init(profile, 0, &error) from libSystem; None when done, else why not."""
    found = None
    for library in LIBRARIES:
        try:
            found = ctypes.CDLL(library)
            sandbox_init, sandbox_free_error = found.sandbox_init, found.sandbox_free_error
            break
        except (OSError, AttributeError):
            found = None
    if found is None:
        return "no sandbox_init in this system"
    sandbox_init.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_char_p)]
    sandbox_init.restype = ctypes.c_int
    error = ctypes.c_char_p()
    if sandbox_init(text.encode(), 0, ctypes.byref(error)) == 0:
        return None
    message = (error.value or b"").decode("utf-8", "replace").strip() or "no reason given"
    if error:
        sandbox_free_error.argtypes = [ctypes.c_char_p]
        sandbox_free_error(error)
    return f"the sandbox profile was refused: {message}"


def _quoted(path: str) -> str:
    """`path` inside an SBPL string literal."""
    return path.replace("\\", "\\\\").replace('"', '\\"')
