"""The supervisor: the process the sandbox starts for each run, and the runner's parent.
THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`).

    supervise(run_dir, {"wall_s": 10, "cpu_s": 10, ..., "deadline_s": 15, "as_main": True})

It makes itself a child subreaper (Linux), so that everything the program starts stays
below it even after a double fork and `setsid`; forks the runner (`runner.run_forked`),
which sets the resource limits on itself; waits for it; kills whatever it left behind;
and writes `exit.json` (the runner's exit code). The program's parent is the supervisor,
never the caller, so a program that kills its parent kills only the supervisor. Where
there is no fork (Windows) it enters a Job Object with the run's limits and starts the
runner as a Python of its own, inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from . import BOOT, CHILD_DIR, EXIT, FROZEN_FLAG, WORK
from .processes import LINUX, kill, process_table
from .runner import run_forked

PR_SET_CHILD_SUBREAPER = 36


def supervise(run_dir: str, limits: dict) -> None:
    exit_path = os.path.join(run_dir, EXIT)
    if LINUX:
        _become_subreaper()
    if hasattr(signal, "SIGALRM"):
        # Only reached if the evaluator died without killing the run: end it all.
        signal.signal(signal.SIGALRM, lambda *_: os.killpg(0, signal.SIGKILL))
        signal.setitimer(signal.ITIMER_REAL, limits["deadline_s"])
    if LINUX and os.geteuid() != 0:
        # RLIMIT_NPROC counts every task of the user, so it can only be a backstop above
        # what the user already runs; the evaluator counts the run's own processes.
        limits["nproc"] = _user_tasks() + 4 * limits["processes"]
    if os.name != "posix":
        _write_json(exit_path, _run_apart(run_dir, limits))
        return
    runner = os.fork()
    if runner == 0:
        run_forked(run_dir, limits)  # the runner: never returns
    # Orphans reparent to us (subreaper), so reap every child, not only the runner.
    returncode = None
    while returncode is None:
        pid, status = os.waitpid(-1, 0)
        if pid == runner:
            returncode = os.waitstatus_to_exitcode(status)
    leftovers = _kill_children() if LINUX else 0
    _write_json(exit_path, {"returncode": returncode, "leftovers": leftovers})
    os._exit(0)  # all is written: the interpreter's teardown would only cost time


def _run_apart(run_dir: str, limits: dict) -> dict:
    """Where there is no fork (Windows): the runner as a Python of its own, inside the Job
    Object that this process has just entered with the run's limits (jobs.py)."""
    import subprocess

    from .jobs import contain

    problem = contain(limits)
    if problem:  # never run the program without its limits
        return {"error": f"not run: the limits cannot be enforced ({problem})"}
    mode = "main" if limits["as_main"] else "module"
    try:
        runner = subprocess.Popen(runner_command(run_dir, mode), cwd=os.path.join(run_dir, WORK))
    except (OSError, subprocess.SubprocessError) as error:
        return {"error": f"cannot start the program: {error}"}
    return {"returncode": runner.wait(), "leftovers": 0}


def runner_command(run_dir: str, mode: str) -> list[str]:
    """The command line of a runner started on its own, `mode` "main" or "module"."""
    if getattr(sys, "frozen", False):  # no python beside a frozen app: re-enter the app
        return [sys.executable, FROZEN_FLAG, "run", run_dir, mode]
    # Started as the supervisor is, so it too runs from the child's compiled bytecode.
    return [sys.executable, "-I", "-X", "utf8", "-c", BOOT, CHILD_DIR, "run", run_dir, mode]


def _become_subreaper() -> None:
    import ctypes

    # Without it, escaped grandchildren are found by the evaluator's marker scan alone.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _kill_children() -> int:
    """Kill and reap our children until none is left: each killed child's own children
    reparent to us, so this also reaches grandchildren that called setsid."""
    killed: set[int] = set()
    for _ in range(1000):
        children = [pid for pid, (ppid, _) in process_table().items() if ppid == os.getpid()]
        if not children:
            break
        killed.update(pid for pid in children if kill(pid))
        _reap()
    _reap()
    return len(killed)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _user_tasks() -> int:
    uid, tasks = os.getuid(), 0
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                tasks += len(os.listdir(f"/proc/{name}/task"))
        except OSError:
            continue
    return tasks


def _write_json(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
