"""Process bookkeeping for both sides of the sandbox: the process table, the watcher
thread, and killing by marker or by tree. THIS IS NOT A SECURITY SANDBOX (see
`kodcu.sandbox`).

    table = process_table()                  # pid -> (parent pid, resident bytes)
    below = descendants(table, supervisor_pid)
    WATCHER.add(check)                       # check(table) every 50 ms until discarded
    kill_marked(b"KODCU_SANDBOX_RUN=<random>")

The supervisor uses the table to kill what the program left behind; the caller's
watcher uses it to count a run's processes and their memory. Standard library only
(psutil where there is no /proc): it runs in the supervisor (see `sandbox_child`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

LINUX = sys.platform.startswith("linux")


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
        fields = _stat_fields(name)
        if fields is None:
            continue  # it ended while we looked
        if fields[0] in (b"Z", b"X"):
            continue
        table[int(name)] = (int(fields[1]), int(fields[21]) * page)
    return table


def _stat_fields(name: str) -> list[bytes] | None:
    """The fields of /proc/NAME/stat from field 3 (the state) on; None if it is gone."""
    try:
        with open(f"/proc/{name}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


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


def scan_marked(marker: bytes) -> tuple[list[int], list[int]]:
    """The processes whose environment holds `marker` (a whole `NAME=value` entry, or a
    `NAME=` prefix), and those whose environment cannot be seen yet because they are in
    the middle of an exec (Linux only). Every process a run started carries its marker
    unless it replaced its environment."""
    found: list[int] = []
    unsettled: list[int] = []
    if not LINUX:
        return _psutil_marked(marker), unsettled
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        environ = _environ(name)
        if environ == b"\0":  # empty: perhaps in the middle of an exec
            in_exec = _in_exec(name)
            if in_exec:
                unsettled.append(int(name))
                continue
            if in_exec is False:  # it may have finished its exec since the first look
                environ = _environ(name)
        if environ is not None and b"\0" + marker in environ:
            found.append(int(name))
    return found, unsettled


def _environ(name: str) -> bytes | None:
    """Process `name`'s environment after a NUL; None if it is gone or not ours to read."""
    try:
        with open(f"/proc/{name}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return None


PF_KTHREAD = 0x00200000


def _in_exec(name: str) -> bool | None:
    """Whether process `name` is between an exec's new address space and its environment;
    None for one with no environment to wait for (a kernel thread, a zombie, one gone).
    A parent that started it with vfork (Python's subprocess does) resumes at that point,
    before the environment is in place: for a moment it reads as empty, and a scan would
    miss a marked process. Its end address (env_end, field 51 of /proc/PID/stat) is 0
    until then; a process whose environment really is empty has it set."""
    fields = _stat_fields(name)
    if (
        fields is None
        or len(fields) < 49
        or fields[0] in (b"Z", b"X")
        or int(fields[6]) & PF_KTHREAD
    ):
        return None
    return int(fields[48]) == 0


def _psutil_marked(marker: bytes) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    found = []
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
    Repeated because a process may start another between the look and the kill, because
    a process in the middle of an exec shows its environment only a moment later, and
    because on a busy machine a killed process can take a while to be gone."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids, unsettled = scan_marked(marker)
        if not pids and not unsettled:
            break
        killed.update(pid for pid in pids if kill(pid))
        time.sleep(0.002)
    return len(killed)


def kill(pid: int) -> bool:
    """SIGKILL `pid` (SIGTERM where there is no SIGKILL); False if it could not be sent."""
    try:
        os.kill(pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        return True
    except OSError:
        return False


class ProcessWatcher:
    """One thread in the calling process that reads the process table every `interval`
    seconds and hands it to each running run, so the cost of a look does not grow with the
    workers."""

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
