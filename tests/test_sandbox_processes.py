"""Finding a run's processes by their marker (kodcu.sandbox_child.processes), at the
moments a one-look scan gets wrong."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psutil
import pytest

from kodcu.sandbox import Sandbox
from kodcu.sandbox_child.processes import kill_marked, scan_marked
from tests.hostile_programs import HOSTILE, LIMITS
from tests.test_sandbox import running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_grandchild_still_in_its_exec_when_the_supervisor_dies_is_killed():
    # Python's subprocess starts a child with vfork: the parent resumes once the child's
    # exec has replaced its memory, a moment before the new environment is in place. A
    # program that starts a daemon and kills its supervisor at once ends the run inside
    # that moment about once in 150 runs (2-core x86-64 CPU), and a scan that took the
    # empty environment at its word left the daemon running. 200 runs, four at a time.
    program = HOSTILE["grandchild that outlives a killed supervisor"].program
    with Sandbox(LIMITS, workers=4) as sandbox:
        outcomes = [f.result() for f in [sandbox.submit(program) for _ in range(200)]]
    left = [o.stdout.strip() for o in outcomes if o.stdout.strip() and running(int(o.stdout))]
    for pid in left:
        psutil.Process(int(pid)).kill()
    assert {o.status for o in outcomes} == {"killed"}
    assert left == []


def test_a_process_whose_environment_is_empty_is_not_waited_for():
    # An environment that is empty for good (execve with {}) must not pass for one that is
    # not in place yet, or every run's clean-up would wait out its timeout beside it.
    sleeper = subprocess.Popen(["/bin/sleep", "30"], env={})
    try:
        deadline = time.monotonic() + 5
        while psutil.Process(sleeper.pid).cmdline() != ["/bin/sleep", "30"]:
            assert time.monotonic() < deadline, "the sleeper never finished its exec"
            time.sleep(0.01)
        marker = f"KODCU_SANDBOX_RUN={uuid.uuid4().hex}".encode()
        found, unsettled = scan_marked(marker)
        assert sleeper.pid not in found
        assert sleeper.pid not in unsettled
        start = time.monotonic()
        assert kill_marked(marker, timeout_s=5.0) == 0
        assert time.monotonic() - start < 4  # the scan ended; it did not wait out 5 s
        assert sleeper.poll() is None  # and an unmarked process is left alone
    finally:
        sleeper.kill()
        sleeper.wait()


def test_marked_processes_are_found_and_killed():
    marker = f"KODCU_SANDBOX_RUN={uuid.uuid4().hex}"
    name, _, value = marker.partition("=")
    code = "import time; time.sleep(30)"
    sleeper = subprocess.Popen([sys.executable, "-c", code], env={name: value})
    try:
        deadline = time.monotonic() + 5
        while sleeper.pid not in scan_marked(marker.encode())[0]:
            assert time.monotonic() < deadline, "the marked sleeper was never found"
            time.sleep(0.01)
        assert kill_marked(marker.encode()) == 1
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()
