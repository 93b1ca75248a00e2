"""What a sandboxed run may use (Limits) and how it ended (Outcome, STATUSES).

    outcome = run_program("print(6 * 7)", Limits(wall_s=3, memory_mb=512))
    outcome.status in STATUSES, outcome.passed, outcome.reason, outcome.stdout

THIS IS NOT A SECURITY SANDBOX: the limits stop accidents and runaway programs, not an
attacker (see `kodcu.sandbox`).
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("passed", "failed", "timeout", "memory", "syntax_error", "output_limit")
STATUSES += ("killed", "error")
"""Every status an Outcome can have."""


@dataclass
class Limits:
    """What one run may use."""

    wall_s: float = 10.0
    """Wall-clock seconds from start to end, interpreter start-up included."""
    cpu_s: float = 10.0
    """CPU seconds per process (RLIMIT_CPU, rounded up)."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS, Linux) and resident memory of all the run's
    processes together (the watcher, every platform it can see processes on)."""
    processes: int = 64
    """Processes alive at once below the supervisor: the program and all it starts."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE): a write beyond fails."""
    output_bytes: int = 1 << 20
    """stdout and stderr together; more ends the run as output_limit."""
    isolate: bool = True
    """Cut the program off the network and let it write only in its own directory, where
    the OS allows (Linux: namespaces and Landlock; macOS: a Seatbelt profile;
    kodcu/sandbox_child/isolation.py);
    Outcome.isolation says what did not hold."""


@dataclass
class Outcome:
    """How a run ended."""

    status: str
    """One of STATUSES: "passed" only if the program ran to its end, exited 0 and left no
    process running."""
    reason: str
    """What happened, for people: "AssertionError: assert f(2) == 4 (line 9)", ..."""
    exception: str | None
    """The exception type name when the program raised one (SystemExit for sys.exit)."""
    returncode: int | None
    """The program's exit code, negative for a signal; None when it was never known."""
    stdout: str
    """What the program printed, cut at the output limit with a note."""
    stderr: str
    """Its error output, likewise."""
    duration_s: float
    """Wall-clock seconds the run took."""
    isolation: str = ""
    """What was not isolated, for people ("" when the program had no network and could
    write only in its directory): "not isolated: network (...)", or the OS's reason."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"
