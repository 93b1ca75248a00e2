"""One sandboxed run, seen from the caller: start the supervisor, watch, kill, judge.

    run = Run(run_dir, Limits())          # run_dir: a fresh temporary directory
    outcome = run.execute(source, stdin="", as_main=True, start=time.monotonic())
    run.stop("killed", "the sandbox was closed")     # from another thread, ends it early

`kodcu.sandbox` (run_program, Sandbox) drives this; the child processes are
`kodcu.sandbox_child`. THIS IS NOT A SECURITY SANDBOX: see `kodcu.sandbox` for what
it stops and what it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from kodcu import sandbox_child as child
from kodcu.sandbox.outcome import Limits, Outcome
from kodcu.sandbox_child.processes import WATCHER, descendants, kill_marked, kill_tree

MARKER = "KODCU_SANDBOX_RUN"
"""The environment variable that marks every process of a run."""
POSIX = os.name == "posix"
NOT_ISOLATED_HERE = (
    "not isolated: on this OS the program can use the network and write files outside "
    "its directory (isolation is implemented for Linux and macOS)"
)
ISOLATING = sys.platform.startswith("linux") or sys.platform == "darwin"
"""The runner isolates itself here (kodcu/sandbox_child/isolation.py)."""


def supervisor_command(run_dir: str, limits: str) -> list[str]:
    """The command line that starts a run's supervisor."""
    if getattr(sys, "frozen", False):
        # A frozen app (PyInstaller) has no python to run the child script with: it
        # re-enters its own entry point, which dispatches this flag before anything else.
        return [sys.executable, child.FROZEN_FLAG, "supervise", run_dir, limits]
    # With site: the runner, a fork of the supervisor, imports what the program imports.
    command = [sys.executable, "-I", "-X", "utf8", "-c", child.BOOT, child.CHILD_DIR]
    return [*command, "supervise", run_dir, limits]


class Run:
    """One program in one child: start, watch, kill, judge."""

    def __init__(self, run_dir: str, limits: Limits):
        self.run_dir, self.limits = run_dir, limits
        self.marker = f"{MARKER}={uuid.uuid4().hex}"
        self.wake = threading.Event()
        self.verdict: tuple[str, str] | None = None  # set by whoever ends the run early
        self.verdict_lock = threading.Lock()
        self.output = Output(limits.output_bytes, self)
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
            supervisor_command(self.run_dir, json.dumps(limits)),
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
            kill_tree(proc.pid)
        kill_marked(self.marker.encode())
        proc.wait()

    def check(self, table: dict[int, tuple[int, int]]) -> None:
        """Called by the watcher with the process table."""
        if self.pid not in table:
            return
        below = descendants(table, self.pid)
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
        isolation = self._isolation()
        return Outcome(status, reason, exception, code, stdout, stderr, duration, isolation)

    def _isolation(self) -> str:
        """What did not hold of Limits.isolate, in words; "" when all did (or none was asked)."""
        if not self.limits.isolate:
            return ""
        if not ISOLATING:
            return NOT_ISOLATED_HERE
        report = _read_json(Path(self.run_dir, child.ISOLATION))
        if report is None:  # the runner did not get that far (then the status says why)
            return "not isolated: the program did not start"
        missing = report.get("missing") or []
        return "not isolated: " + "; ".join(missing) if missing else ""


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


class Output:
    """stdout and stderr of one run, kept up to a shared limit; the rest is counted and
    dropped, and going over the limit ends the run."""

    def __init__(self, limit: int, run: Run):
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


def remove_tree(path: str) -> str:
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
