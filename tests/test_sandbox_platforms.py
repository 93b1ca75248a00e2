"""The macOS and Windows parts of the sandbox, as far as a Linux machine can check them:
the Seatbelt profile the runner applies on macOS, the Job Object's limits on Windows laid
out as winnt.h lays them out, and the refusal to run a program whose limits cannot be set.
The installers workflow runs the frozen app's hostile programs on both systems
(packaging/bundle_test.py)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from kodcu.sandbox_child import PROGRAM, RESULT, WORK
from kodcu.sandbox_child.jobs import (
    JOB_OBJECT_LIMIT_ACTIVE_PROCESS,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY,
    BasicLimits,
    ExtendedLimits,
    contain,
    job_limits,
)
from kodcu.sandbox_child.seatbelt import isolate, profile
from kodcu.sandbox_child.supervisor import _run_apart

LIMITS = {"processes": 8, "memory_mb": 256, "as_main": True}


def test_the_seatbelt_profile_denies_network_and_writes_outside_the_run_directory(
    tmp_path: Path,
) -> None:
    real = tmp_path / 'runs "quoted"'
    real.mkdir()
    (tmp_path / "link").symlink_to(real)  # /var and /tmp are links on macOS
    lines = profile(str(tmp_path / "link")).splitlines()
    assert lines[:4] == ["(version 1)", "(allow default)", "(deny network*)", "(deny file-write*)"]
    # The allowance comes last (the last matching rule wins), for the real path, quoted.
    quoted = str(real).replace('"', '\\"')
    assert lines[4] == (
        f'(allow file-write* (subpath "{quoted}") (literal "/dev/null") (literal "/dev/zero"))'
    )


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="applies the profile for real")
def test_without_seatbelt_the_run_reports_both_missing(tmp_path: Path) -> None:
    report = isolate(str(tmp_path))
    assert report["network"] is None and report["files"] is None
    assert [item.split(" (")[0] for item in report["missing"]] == ["network", "files"]


def test_the_job_limits_are_laid_out_as_winnt_h_lays_them_out() -> None:
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("the documented sizes are those of 64-bit Windows")
    assert ctypes.sizeof(BasicLimits) == 64 and ctypes.sizeof(ExtendedLimits) == 144
    offsets = {name: getattr(BasicLimits, name).offset for name in ("LimitFlags", "Affinity")}
    assert offsets == {"LimitFlags": 16, "Affinity": 48}
    assert BasicLimits.ActiveProcessLimit.offset == 40
    assert (ExtendedLimits.IoInfo.offset, ExtendedLimits.ProcessMemoryLimit.offset) == (64, 112)


def test_the_job_bounds_processes_and_memory_and_kills_the_tree_on_close() -> None:
    info = job_limits(LIMITS)
    basic = info.BasicLimitInformation
    wanted = (
        JOB_OBJECT_LIMIT_ACTIVE_PROCESS
        | JOB_OBJECT_LIMIT_PROCESS_MEMORY
        | JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    )
    assert basic.LimitFlags & wanted == wanted
    assert basic.ActiveProcessLimit == 8 + 1  # the program's processes and the supervisor
    assert info.ProcessMemoryLimit == 256 * 1024 * 1024


def test_a_program_whose_limits_cannot_be_set_is_not_run(tmp_path: Path) -> None:
    # The Windows supervisor's path, where no Job Object can be made (as on this system).
    assert contain(LIMITS) != ""
    (tmp_path / WORK).mkdir()
    marker = tmp_path / "ran"
    (tmp_path / PROGRAM).write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    exit_record = _run_apart(str(tmp_path), dict(LIMITS))
    assert exit_record["error"].startswith("not run: the limits cannot be enforced (")
    assert not marker.exists() and not (tmp_path / RESULT).exists()
