"""Check a built bundle the way a new user meets it: fresh home, no network, no display.

    python packaging/bundle_test.py [dist/kodcu]        (`make bundle-test` runs this)

1. `kodcu --smoke PROMPT` with an empty home and cache folder, offscreen: the default
   model is assembled on this first run, and a real answer must come back (exit 0,
   text, a tokens/s line), with the built-in Kodcu Coder adapter over the model.
   Proxies point at a closed port, so any attempt to reach the internet fails
   instead of passing unnoticed.
2. The window opens offscreen (Linux and macOS): the app starts its engine child,
   then Ctrl+C (SIGINT) must close the window in order, exit 0 and stop the child.
3. Programs run the way the Run button runs them (the sandbox, re-entering the app): an
   ordinary one passes; an endless loop, a memory bomb, a write to the home directory and
   a connect to 127.0.0.1 each end with their reason, or (where the OS cannot isolate)
   the run says so.
4. Nothing of the training stack is inside (build.py checks it, and again here).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build import ROOT, check_bundle, executable_of  # noqa: E402

PROMPT = "Write a Python function that adds two numbers."
MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
CODER_FILE = "kodcu-coder-270m-lora.gguf"
CLOSED_PORT_PROXY = "http://127.0.0.1:9"
TEXT = {"capture_output": True, "encoding": "utf-8", "errors": "replace"}
"""The app writes UTF-8 everywhere (it runs in Python's UTF-8 mode)."""


def fresh_environment(home: Path) -> dict[str, str]:
    """A first-run environment: every user folder empty and inside `home`, no display."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KODCU_")}
    env |= {"HOME": str(home), "USERPROFILE": str(home), "QT_QPA_PLATFORM": "offscreen"}
    # The app's own overrides as well: on Windows the user folders come from the shell
    # API, not from the environment.
    env |= {"KODCU_CACHE_DIR": str(home / "cache"), "KODCU_DATA_DIR": str(home / "data")}
    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "LOCALAPPDATA", "APPDATA"):
        env[name] = str(home / name.lower())
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = CLOSED_PORT_PROXY
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"  # the engine is on loopback
    env["HF_HUB_OFFLINE"] = "1"
    return env


def check_smoke(app: Path, env: dict[str, str], home: Path) -> None:
    started = time.monotonic()
    # One engine thread: on a shared or busy machine (CI) llama.cpp's threads wait for
    # each other by spinning, and two threads on a loaded 2-core machine run 20x slower.
    command = [str(app), "--smoke", PROMPT, "--threads", "1"]
    done = subprocess.run(command, env=env, timeout=600, **TEXT)
    seconds = time.monotonic() - started
    print(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"--smoke exited {done.returncode}:\n{done.stderr[-3000:]}")
    answer = done.stdout.split("time to first token:")[0].strip()
    if not answer or "tokens/s:" not in done.stdout:
        raise SystemExit(f"--smoke printed no answer:\n{done.stdout}\n{done.stderr[-3000:]}")
    models = [p for p in home.rglob(MODEL_NAME) if p.is_file()]
    if not models:
        raise SystemExit(f"the default model was not assembled under the fresh home {home}")
    # The built-in coder adapter travels in the bundle and runs over the default model.
    if not [p for p in home.rglob(CODER_FILE) if p.is_file()] or CODER_FILE not in done.stderr:
        raise SystemExit(f"--smoke did not run the built-in {CODER_FILE}:\n{done.stderr[-3000:]}")
    print(f"smoke: passed in {seconds:.1f} s (first run: model assembled at {models[0]})")


def engine_children(pid: int) -> list[int]:
    """Processes whose parent is `pid` and whose command line is the engine child's."""
    table = subprocess.run(
        ["ps", "-A", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=True
    )
    found = []
    for line in table.stdout.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and int(fields[1]) == pid and "--engine-child" in fields[2]:
            found.append(int(fields[0]))
    return found


def check_window(app: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [str(app)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="utf-8",
        errors="replace",
    )
    try:
        deadline = time.monotonic() + 120
        children: list[int] = []
        while not children and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            children = engine_children(proc.pid)
        if not children:
            output = proc.stdout.read() if proc.poll() is not None else ""
            raise SystemExit(f"the window did not start its engine (exit {proc.poll()}):\n{output}")
        time.sleep(3)  # the Ctrl+C handler is installed once the window is shown
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the window exited {proc.returncode} on Ctrl+C:\n{output[-3000:]}")
    if any(engine_children(proc.pid)) or _alive(children):
        raise SystemExit(f"the engine child {children} outlived the window")
    print("window: opened offscreen, started its engine, closed on Ctrl+C with exit 0")


def _alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except OSError:
            continue
        return True
    return False


RUN_BUTTON_PROGRAM = "import json, statistics\nprint(json.dumps(statistics.mean([1, 2, 3])))\n"

# What a new user's Run button meets: each program with its limits, inside the frozen app.
HOSTILE_RUNS = """
import json, sys
from kodcu.sandbox import Limits, run_program
quick = Limits(wall_s=10, cpu_s=10)
programs = {{
    "ordinary": ({ordinary!r}, Limits()),
    "endless loop": ("while True:\\n    pass\\n", Limits(wall_s=3, cpu_s=3)),
    "memory bomb": ("x = []\\nwhile True:\\n    x.append(bytearray(1 << 24))\\n",
                    Limits(wall_s=20, memory_mb=256)),
    "home write": ("open({home_file!r}, 'a').write('x')\\n", quick),
    "connect": ("import socket\\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\\n",
                quick),
}}
seen = {{}}
for name, (source, limits) in programs.items():
    outcome = run_program(source, limits)
    seen[name] = [outcome.status, outcome.reason, outcome.isolation, outcome.stdout.strip()]
print(json.dumps(seen))
"""


def check_run_button(app: Path, env: dict[str, str], home: Path) -> None:
    """The Run button's sandbox, driven inside the frozen app through its own flags: an
    ordinary program passes; an endless loop, a memory bomb, a write to the home directory
    and a connect to 127.0.0.1 each end with their reason (the last two: where the OS
    isolates, else the run says that it is not isolated)."""
    import json
    import socket

    home_file = home / "written-by-run.txt"
    with tempfile.TemporaryDirectory() as folder, socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = HOSTILE_RUNS.format(ordinary=RUN_BUTTON_PROGRAM, home_file=str(home_file), port=port)
        Path(folder, "program.py").write_text(code, encoding="utf-8")
        command = [str(app), "--sandbox-child", "run", folder, "main"]
        done = subprocess.run(command, env=env, timeout=300, cwd=folder, **TEXT)
        try:
            server.accept()
            reached = True
        except TimeoutError:
            reached = False
    try:
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(
            f"the Run button's sandbox failed:\n{done.stdout}\n{done.stderr[-3000:]}"
        ) from None
    problems = run_button_problems(seen, home_file.exists(), reached)
    home_file.unlink(missing_ok=True)
    for name, (status, reason, isolation, _) in seen.items():
        print(f"run button, {name}: {status} {reason} {isolation}".rstrip())
    if problems:
        raise SystemExit("the Run button's sandbox failed:\n" + "\n".join(problems))


def run_button_problems(seen: dict, home_written: bool, reached: bool) -> list[str]:
    problems = []
    if seen["ordinary"][0] != "passed" or seen["ordinary"][3] != "2":
        problems.append(f"an ordinary program did not pass: {seen['ordinary']}")
    if seen["endless loop"][0] != "timeout":
        problems.append(
            f"an endless loop was not stopped by its time limit: {seen['endless loop']}"
        )
    if seen["memory bomb"][0] != "memory":
        problems.append(f"a memory bomb was not stopped by its memory limit: {seen['memory bomb']}")
    for name, escaped, what in (
        ("home write", home_written, "files"),
        ("connect", reached, "network"),
    ):
        status, _, isolation, _ = seen[name]
        said = "not isolated" in isolation and what in isolation
        if (escaped or status == "passed") and not said:
            problems.append(f"{name} got through and the run did not say so: {seen[name]}")
        isolating = sys.platform.startswith("linux") or sys.platform == "darwin"
        if isolating and not said and status != "failed":
            problems.append(f"{name} should have failed on {sys.platform}: {seen[name]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, nargs="?", default=ROOT / "dist" / "kodcu")
    args = parser.parse_args(argv)
    app = executable_of(args.bundle.resolve())
    check_bundle(args.bundle)
    with tempfile.TemporaryDirectory(prefix="kodcu-first-run-") as folder:
        home = Path(folder)
        env = fresh_environment(home)
        check_smoke(app, env, home)
        check_run_button(app, env, home)
        if os.name == "posix":
            check_window(app, env)
        else:
            print("window: not checked here (no Ctrl+C for a windowed app); --smoke covers it")
    print("bundle test passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
