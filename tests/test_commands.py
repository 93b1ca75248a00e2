"""The commands as a user runs them: `kodcu --smoke`, `kodcu-serve`, and `kodcu` killed hard."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from evaluation.extract import extract_code
from kodcu.coder import coder_path
from kodcu.sandbox import run_program

PROMPT = "Write a Python function that returns the square of a number."


def engine_children(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "desktop.engine_child" in " ".join(c.cmdline())]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def chat(url: str, key: str | None) -> int:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url + "/chat/completions", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["choices"][0]["message"]["content"]
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_smoke_answers_with_a_square_function_that_runs_and_prints_both_figures(
    default_model,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "desktop", "--smoke", PROMPT, "--max-tokens", "128"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert str(coder_path()) in done.stderr, "the built-in Kodcu Coder runs by default"
    ttft = re.search(r"^time to first token: (\d+) ms$", done.stdout, re.MULTILINE)
    speed = re.search(r"^tokens/s: ([\d.]+)$", done.stdout, re.MULTILINE)
    assert ttft and speed, done.stdout
    assert float(speed.group(1)) > 1
    # The answer: a fenced Python function that squares, run in the sandbox.
    answer = done.stdout[: ttft.start()]
    assert re.search(r"```python\n.*\n```", answer, re.DOTALL), answer
    code = extract_code(answer)
    name = next(n.name for n in ast.walk(ast.parse(code)) if isinstance(n, ast.FunctionDef))
    checks = f"\nassert {name}(3) == 9\nassert {name}(-4) == 16\nassert {name}(0) == 0\n"
    outcome = run_program(code + checks, as_main=False)
    assert outcome.status == "passed", f"{answer}\n{outcome.reason}"


def test_smoke_fails_clearly_on_a_bad_model(tmp_path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("just some notes\n")
    done = subprocess.run(
        [sys.executable, "-m", "desktop", "--smoke", PROMPT, "--model", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "text file" in done.stderr and str(bad) in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
def test_serve_prints_url_and_key_and_enforces_the_key(default_model, host: str) -> None:
    args = [sys.executable, "-m", "desktop.serve", "--ctx", "1024"]
    if host != "127.0.0.1":
        args += ["--host", host]  # the default must be the loopback address
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout
        url = server.stdout.readline().strip().removeprefix("URL: ")
        key = server.stdout.readline().strip().removeprefix("API key: ")
        assert url.startswith(f"http://{host}:") and url.endswith("/v1"), url
        assert chat(url, None) == 401
        assert chat(url, "not-the-key") == 401
        assert chat(url, key) == 200
        [child] = engine_children(server.pid)
        listening = [c.laddr.ip for c in child.net_connections() if c.status == "LISTEN"]
        assert listening == [host]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
    assert not engine_children(server.pid)


def test_ctrl_c_closes_the_app_and_its_engine(default_model) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    app = subprocess.Popen(
        [sys.executable, "-m", "desktop"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        [child] = wait_for(lambda: engine_children(app.pid), 60, "the engine to start")
        wait_for(
            lambda: any(c.status == "LISTEN" for c in child.net_connections()), 60,
            "the engine to listen",
        )  # fmt: skip
        app.send_signal(signal.SIGINT)
        assert app.wait(15) == 0
        assert app.stderr and "Traceback" not in app.stderr.read()
        assert not psutil.pid_exists(child.pid), "the app stopped its engine before exiting"
    finally:
        if app.poll() is None:
            app.kill()


def test_no_engine_left_after_the_app_is_killed_with_sigkill(default_model) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    app = subprocess.Popen(
        [sys.executable, "-m", "desktop"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        [child] = wait_for(lambda: engine_children(app.pid), 60, "the engine to start")
        wait_for(
            lambda: any(c.status == "LISTEN" for c in child.net_connections()),
            60,
            "the engine to listen",
        )
        app.kill()  # SIGKILL: the app gets no chance to clean up
        app.wait(10)
        gone, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, f"engine {child.pid} outlived the app"
    finally:
        if app.poll() is None:
            app.kill()


def test_serve_exits_with_a_reason_when_its_engine_dies(default_model) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "desktop.serve", "--ctx", "1024"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout
        assert server.stdout.readline().startswith("URL: ")
        [child] = engine_children(server.pid)
        child.kill()
        assert server.wait(15) == 1
        assert server.stderr
        assert "engine stopped unexpectedly (killed by SIGKILL)" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()


def test_serve_takes_its_key_from_the_environment_or_a_file_and_warns_about_the_flag(
    tmp_path, monkeypatch, capsys
) -> None:
    from desktop.serve import _parser, api_key

    monkeypatch.delenv("KODCU_API_KEY", raising=False)
    assert api_key(_parser().parse_args([])) is None, "a random key by default"
    monkeypatch.setenv("KODCU_API_KEY", "from-env")
    assert api_key(_parser().parse_args([])) == "from-env"
    key_file = tmp_path / "key.txt"
    key_file.write_text("from-file\n")
    assert api_key(_parser().parse_args(["--api-key-file", str(key_file)])) == "from-file"
    assert capsys.readouterr().err == ""
    assert api_key(_parser().parse_args(["--api-key", "on-the-line"])) == "on-the-line"
    assert "visible to every user" in capsys.readouterr().err
    key_file.write_text("\n")
    with pytest.raises(ValueError, match="key.txt: its first line is empty"):
        api_key(_parser().parse_args(["--api-key-file", str(key_file)]))
    with pytest.raises(ValueError, match="cannot be read"):
        api_key(_parser().parse_args(["--api-key-file", str(tmp_path / "missing")]))


def test_serve_refuses_a_damaged_adapter_in_one_line(default_model, tmp_path: Path) -> None:
    # A LoRA GGUF whose header claims a 2**62-byte key: once a bare MemoryError.
    adapter = tmp_path / "damaged.gguf"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62)
    adapter.write_bytes(header + bytes(64))
    done = subprocess.run(
        [sys.executable, "-m", "desktop.serve", "--lora", str(adapter)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [message] = [line for line in done.stderr.splitlines() if line.startswith("kodcu-serve:")]
    assert str(adapter) in message and "damaged" in message
