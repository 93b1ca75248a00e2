"""Limits on Windows: a Job Object around the supervisor and all it starts.
THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`).

    problem = contain(limits)   # in the supervisor, before it starts the runner; "" when done

Windows has no resource limits per process and no process groups to kill; a job has both.
The supervisor puts itself in a new job (nested jobs: Windows 8 and later), so the runner
and everything the program starts are in it from their first instruction:

- at most `processes` processes of the program (the supervisor is one more): creating
  another fails in the program with an OSError;
- at most `memory_mb` committed per process (as RLIMIT_AS on Linux): an allocation beyond
  fails, a MemoryError in Python;
- kill on close: the supervisor holds the job's only handle, so when it ends or is killed,
  whatever is left in the job is killed with it, a grandchild whose parent died included;
- no error dialog: a crash ends the process instead of waiting for someone to click.

Time stays with the caller's wall-clock limit. Standard library only (ctypes).
"""

from __future__ import annotations

import ctypes
import sys

JOB_OBJECT_LIMIT_ACTIVE_PROCESS = 0x0008
JOB_OBJECT_LIMIT_PROCESS_MEMORY = 0x0100
JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x0400
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
SEM_FAILCRITICALERRORS = 0x0001
SEM_NOGPFAULTERRORBOX = 0x0002


class BasicLimits(ctypes.Structure):
    """JOBOBJECT_BASIC_LIMIT_INFORMATION (winnt.h); 64 bytes on 64-bit Windows."""

    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class IoCounters(ctypes.Structure):
    """IO_COUNTERS (winnt.h)."""

    _fields_ = [
        ("ReadOperationCount", ctypes.c_uint64),
        ("WriteOperationCount", ctypes.c_uint64),
        ("OtherOperationCount", ctypes.c_uint64),
        ("ReadTransferCount", ctypes.c_uint64),
        ("WriteTransferCount", ctypes.c_uint64),
        ("OtherTransferCount", ctypes.c_uint64),
    ]


class ExtendedLimits(ctypes.Structure):
    """JOBOBJECT_EXTENDED_LIMIT_INFORMATION (winnt.h); 144 bytes on 64-bit Windows."""

    _fields_ = [
        ("BasicLimitInformation", BasicLimits),
        ("IoInfo", IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def job_limits(limits: dict) -> ExtendedLimits:
    """The job's limits for the run's `limits` (Limits as a dict)."""
    info = ExtendedLimits()
    basic = info.BasicLimitInformation
    basic.LimitFlags = (
        JOB_OBJECT_LIMIT_ACTIVE_PROCESS
        | JOB_OBJECT_LIMIT_PROCESS_MEMORY
        | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
        | JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    )
    basic.ActiveProcessLimit = limits["processes"] + 1  # and the supervisor
    info.ProcessMemoryLimit = limits["memory_mb"] * 1024 * 1024
    return info


def contain(limits: dict) -> str:
    """Put this process in a new job with `limits`; "" when done, else why not. The job's
    handle is left open on purpose: it lives as long as this process (kill on close)."""
    if sys.platform != "win32":
        return "Job Objects are a Windows feature"
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    error = ctypes.WinError  # the message of the last error, by its code
    kernel32.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
    kernel32.CreateJobObjectW.restype = ctypes.c_void_p
    kernel32.SetInformationJobObject.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32
    ]  # fmt: skip
    kernel32.AssignProcessToJobObject.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    kernel32.GetCurrentProcess.restype = ctypes.c_void_p
    kernel32.SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX)  # inherited
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return f"cannot create a job object: {error(ctypes.get_last_error())}"
    info = job_limits(limits)
    size = ctypes.sizeof(info)
    if not kernel32.SetInformationJobObject(
        job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS, ctypes.byref(info), size
    ):
        return f"cannot set the job's limits: {error(ctypes.get_last_error())}"
    if not kernel32.AssignProcessToJobObject(job, kernel32.GetCurrentProcess()):
        return f"cannot enter the job: {error(ctypes.get_last_error())}"
    return ""
