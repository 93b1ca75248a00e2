"""Programs that attack the sandbox, as data: name -> program -> how it must end.

Every one must end as a failure with its reason, leave no process behind, and leave the
evaluator alive and able to run the next program. Programs that print pids or their working
directory let the tests check that those processes and that directory are gone.
"""

from __future__ import annotations

from dataclasses import dataclass

from kodcu.sandbox import Limits

LIMITS = Limits(wall_s=3, cpu_s=3, memory_mb=256, processes=16, file_size_mb=4)
"""Tight limits, so that the corpus runs in seconds."""


@dataclass(frozen=True)
class Hostile:
    program: str
    """The program text (prompt + completion when `test` is given)."""
    statuses: tuple[str, ...]
    """The statuses it may end with; never "passed"."""
    reason: str
    """A regular expression the outcome's reason must match."""
    test: str | None = None
    """Tests to check the program against, as check_program does."""
    entry_point: str | None = None
    """The function the tests' check() is called with."""


ADD = "def add(a, b):\n    return a + b\n"
CHECK_ADD = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
SLEEPER = "[sys.executable, '-c', 'import time; time.sleep(60)']"

HOSTILE: dict[str, Hostile] = {
    "infinite loop": Hostile("while True:\n    pass\n", ("timeout",), "time over"),
    "fork bomb": Hostile(
        # 2**10 processes unless stopped; bounded so a broken sandbox cannot take the machine.
        "import os, time\nfor _ in range(10):\n    os.fork()\ntime.sleep(60)\n",
        ("killed", "failed"),
        "more than 16 processes|BlockingIOError",  # the watcher, or RLIMIT_NPROC for a user
    ),
    "memory bomb": Hostile(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 24))\n",
        ("memory",),
        "MemoryError|memory over",
    ),
    "memory spread over processes": Hostile(
        "import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        break\n"
        "block = bytearray(100 << 20)\ntime.sleep(60)\n",
        ("memory",),
        "memory over 256 MB",
    ),
    "gigabytes of output": Hostile(
        "import sys\nline = 'x' * (1 << 20)\nfor _ in range(4096):\n    sys.stdout.write(line)\n",
        ("output_limit",),
        "output over 1048576 bytes",
    ),
    "gigabytes of error output": Hostile(
        "import os\nfor _ in range(4096):\n    os.write(2, bytes(1 << 20))\n",
        ("output_limit",),
        "output over",
    ),
    "sys.exit(0) before the checks": Hostile(
        "def add(a, b):\n    return a - b\n\nimport sys\nsys.exit(0)\n",
        ("failed",),
        r"sys\.exit\(0\) before the end",
        CHECK_ADD,
        "add",
    ),
    "exit() before the checks": Hostile(
        "def add(a, b):\n    return a - b\n\nexit()\n",
        ("failed",),
        "before the end",
        CHECK_ADD,
        "add",
    ),
    "os._exit(0) before the checks": Hostile(
        "def add(a, b):\n    return a - b\n\nimport os\nos._exit(0)\n",
        ("failed",),
        "exit code 0 before the end",
        CHECK_ADD,
        "add",
    ),
    "recursion bomb": Hostile(
        "def down(n):\n    return down(n + 1)\n\ndown(0)\n",
        ("failed", "killed"),
        "RecursionError|SIGSEGV",
    ),
    "kills its parent": Hostile(
        "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(60)\n",
        ("killed",),
        "supervisor",
    ),
    "kills its own process group": Hostile(
        "import os, signal\nos.killpg(0, signal.SIGKILL)\n", ("killed",), "supervisor|SIGKILL"
    ),
    "reads stdin": Hostile("answer = input()\n", ("failed",), "EOFError"),
    "detached grandchild": Hostile(
        f"import subprocess, sys\np = subprocess.Popen({SLEEPER}, start_new_session=True)\n"
        "print(p.pid, flush=True)\n",
        ("failed",),
        r"left 1 process\(es\) running",
    ),
    "grandchild without the environment": Hostile(
        # Double fork + setsid + an empty environment: only the subreaper still sees it.
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    pid = os.fork()\n"
        "    if pid == 0:\n        os.execve('/bin/sleep', ['sleep', '60'], {})\n"
        "    print(pid, flush=True)\n    os._exit(0)\ntime.sleep(0.5)\n",
        ("failed",),
        r"left \d process\(es\) running",
    ),
    "grandchild that outlives a killed supervisor": Hostile(
        "import os, signal, subprocess, sys\n"
        f"p = subprocess.Popen({SLEEPER}, start_new_session=True)\n"
        "print(p.pid, flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\n",
        ("killed",),
        "supervisor",
    ),
    "huge file": Hostile(
        "import os\nprint(os.getcwd(), flush=True)\nwith open('big.bin', 'wb') as f:\n"
        "    for _ in range(64):\n        f.write(bytes(1 << 20))\n",
        ("failed",),
        "File too large",
    ),
    "closes stdout, then fails its check": Hostile(
        ADD + "import os\nos.close(1)\nadd = None\n", ("failed",), "TypeError", CHECK_ADD, "add"
    ),
    "ignores SIGTERM": Hostile(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(1)\n",
        ("timeout",),
        "wall time over 3 s",
    ),
    "locks its own directory": Hostile(
        "import os\nprint(os.getcwd(), flush=True)\nos.makedirs('a/b')\nos.chmod('a', 0)\n"
        "os.chmod('.', 0o500)\nraise ValueError('locked')\n",
        ("failed",),
        "ValueError: locked",
    ),
    "syntax error": Hostile("def add(a, b)\n    return a + b\n", ("syntax_error",), "line 1"),
}


def main() -> None:
    """`python -m tests.hostile_programs`: run the corpus one by one, print how each ended."""
    from kodcu.sandbox import check_program, run_program

    print("| program | status | reason | seconds |")
    print("| --- | --- | --- | ---: |")
    for name, hostile in HOSTILE.items():
        if hostile.test is None:
            outcome = run_program(hostile.program, LIMITS)
        else:
            outcome = check_program(hostile.program, hostile.test, hostile.entry_point, LIMITS)
        reason = (outcome.reason or "").splitlines()[0][:90] if outcome.reason else ""
        print(f"| {name} | {outcome.status} | {reason} | {outcome.duration_s:.2f} |", flush=True)
    survivor = run_program(ADD + "assert add(2, 3) == 5\n", LIMITS)
    print(f"\nan ordinary program after them: {survivor.status}")


if __name__ == "__main__":
    main()
