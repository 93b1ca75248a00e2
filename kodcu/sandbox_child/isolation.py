"""Isolation of the runner: no network, and writes only inside the run directory.
THIS IS NOT A SECURITY SANDBOX (see `kodcu.sandbox`): it takes away the two things a
wrong program most often harms (the user's files and the network), not every escape.

    report = isolate(run_dir)   # in the runner, after its limits, before the program
    report["network"], report["files"], report["missing"]

- network: a new network namespace inside a new user namespace (no root needed where the
  kernel allows unprivileged user namespaces). It has only a loopback interface, down:
  every connect, 127.0.0.1 included, fails. Where namespaces are refused, Landlock's TCP
  rules (kernel 6.7+) forbid TCP connect and bind instead.
- files: Landlock (kernel 5.13+): writing, creating, removing, renaming or truncating
  files is allowed only beneath the run directory (and writing to /dev/null). Reading is
  not restricted.
- shared memory: in the same new user namespace a new mount namespace gets a tmpfs of
  its own on /dev/shm (the size of the run's memory limit), where writes are allowed:
  multiprocessing's locks and queues work, and nothing there is seen by, or left for,
  other processes. Without the namespaces /dev/shm is out of bounds like any other
  folder, and multiprocessing fails.

Both are set on the runner process itself and inherited by everything it starts. What
could not be set is listed in `missing`, and the caller says so with the outcome. On
macOS a Seatbelt profile does the same (`seatbelt`); Windows has no such isolation here.
Standard library only (ctypes), like the rest of this package.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x4000, 0x40000
SHM = "/dev/shm"
PR_SET_NO_NEW_PRIVS = 38

# Landlock system calls (the same numbers on x86-64 and arm64) and flags.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem rights that change something, by the Landlock ABI version that added them.
WRITE_FILE = 1 << 1
FS_WRITES_V1 = WRITE_FILE | sum(1 << bit for bit in range(4, 13))  # remove, make *
REFER = 1 << 13  # v2: rename or link across directories
TRUNCATE = 1 << 14  # v3
ACCESS_NET_BIND_TCP = 1 << 0  # v4
ACCESS_NET_CONNECT_TCP = 1 << 1  # v4


def isolate(run_dir: str, shm_mb: int = 64) -> dict:
    """Isolate this process (single-threaded: a fresh fork) and report what holds."""
    if sys.platform == "darwin":
        from .seatbelt import isolate as isolate_macos

        return isolate_macos(run_dir)
    libc = ctypes.CDLL(None, use_errno=True)
    report: dict = {"network": None, "files": None, "shm": None, "missing": []}
    abi = _syscall(libc, SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    problem = _network_namespace(libc)
    if problem is None:
        report["network"] = "namespace"
        report["shm"] = "private" if _private_shm(libc, shm_mb) else None
    elif abi >= 4:
        report["network"] = "landlock-tcp"  # set with the filesystem rules below
        report["missing"].append(f"network: UDP and other non-TCP sockets ({problem})")
    else:
        report["missing"].append(f"network ({problem})")
    if abi < 1:
        report["missing"].append("files (this kernel has no Landlock)")
        return report
    writable = [run_dir, SHM] if report["shm"] else [run_dir]
    problem = _landlock(libc, abi, writable, tcp=report["network"] == "landlock-tcp")
    if problem is None:
        report["files"] = "landlock"
    else:
        report["missing"].append(f"files ({problem})")
        if report["network"] == "landlock-tcp":
            report["network"] = None
            report["missing"].append(f"network ({problem})")
    return report


def _network_namespace(libc: ctypes.CDLL) -> str | None:
    """Enter a new user and network namespace; None when done, else why not."""
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0:
        return f"user namespaces refused: {os.strerror(ctypes.get_errno())}"
    # Keep our own ids inside, so the run directory stays ours to write.
    try:
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"{uid} {uid} 1"),
            ("/proc/self/gid_map", f"{gid} {gid} 1"),
        ):
            with open(path, "w") as file:
                file.write(text)
    except OSError as error:
        return f"cannot map the user id: {error}"
    return None


def _private_shm(libc: ctypes.CDLL, size_mb: int) -> bool:
    """A tmpfs of this mount namespace's own on /dev/shm; False where it cannot be had."""
    if not os.path.isdir(SHM):
        return False
    # Mounts made here must not propagate back to the host's namespace.
    if libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        return False
    options = f"size={size_mb}m,mode=1777".encode()
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV)
    return libc.mount(b"tmpfs", SHM.encode(), b"tmpfs", flags, options) == 0


def _landlock(libc: ctypes.CDLL, abi: int, writable: list[str], tcp: bool) -> str | None:
    """Allow writes only beneath the `writable` folders (and to /dev/null); with `tcp`, no
    TCP at all."""
    writes = FS_WRITES_V1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if tcp else 0
    # struct landlock_ruleset_attr {u64 handled_access_fs; u64 handled_access_net; ...}
    attr = struct.pack("=QQ", writes, net) if abi >= 4 else struct.pack("=Q", writes)
    ruleset = _syscall(libc, SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        return f"Landlock refused the ruleset: {os.strerror(ctypes.get_errno())}"
    try:
        file_rights = WRITE_FILE | (TRUNCATE if abi >= 3 else 0)
        rules = [(folder, writes) for folder in writable] + [("/dev/null", file_rights)]
        for path, rights in rules:
            problem = _allow(libc, ruleset, path, rights)
            if problem:
                return problem
        one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
        if libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), one, zero, zero, zero) != 0:
            return f"no_new_privs refused: {os.strerror(ctypes.get_errno())}"
        if _syscall(libc, SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            return f"Landlock refused to restrict: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(ruleset)
    return None


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> str | None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as error:
        if path == "/dev/null":  # a system without it: writes there are simply not allowed
            return None
        return f"cannot open {path}: {error}"
    try:
        # struct landlock_path_beneath_attr {u64 allowed_access; s32 parent_fd} (packed)
        rule = struct.pack("=Qi", rights, fd)
        if _syscall(libc, SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0):
            return f"Landlock refused a rule for {path}: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(fd)
    return None


def _syscall(libc: ctypes.CDLL, number: int, *args: int | bytes | None) -> int:
    """syscall(2) with every integer passed as a full long (it is variadic)."""
    converted = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    return libc.syscall(ctypes.c_long(number), *converted)
