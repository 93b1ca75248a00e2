"""The engine on the real default model: start, stream, stop, crash, restart, bad files."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from desktop.client import ApiError, ChatStream
from desktop.engine import Engine, EngineConfig, EngineError
from tests import gguf_files

QUESTION = [
    {"role": "user", "content": "Write a Python function that returns the square of a number."}
]
# Token id 1 is <eos> in Gemma's vocabulary: banning it keeps the model talking,
# so a stop can be told apart from an answer that ended by itself.
ENDLESS = {"logit_bias": {"1": -100.0}, "logit_bias_type": "input_ids"}


def get(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_engine_listens_on_loopback_with_a_random_key(engine: Engine) -> None:
    assert engine.base_url.startswith("http://127.0.0.1:")
    assert len(engine.api_key) >= 24
    assert engine.chat_template == "alpaca", "the base model has no template of its own"
    listening = [
        c for c in psutil.Process(engine.pid).net_connections() if c.status == psutil.CONN_LISTEN
    ]
    assert [c.laddr.ip for c in listening] == ["127.0.0.1"]


def test_api_key_is_enforced(engine: Engine) -> None:
    models = engine.base_url + "/models"
    assert get(models, None) == 401
    assert get(models, "wrong-key") == 401
    assert get(models, engine.api_key) == 200
    with pytest.raises(ApiError) as caught:
        list(ChatStream(engine.base_url, "wrong-key", QUESTION, max_tokens=4))
    assert caught.value.status == 401
    assert "API key" in str(caught.value)


def test_streams_a_real_answer(engine: Engine) -> None:
    stream = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=64, temperature=0)
    pieces = list(stream)
    assert len(pieces) > 5, "the answer arrives as many pieces, not one block"
    assert "".join(pieces).strip()
    assert stream.stats.tokens == len(pieces)
    assert stream.stats.time_to_first_token_s is not None
    assert stream.stats.tokens_per_s and stream.stats.tokens_per_s > 1
    assert stream.stats.finish_reason in ("stop", "length")


def test_stop_ends_generation_in_the_child_not_only_the_stream(engine: Engine) -> None:
    stream = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=1500, extra=ENDLESS)
    for received, _ in enumerate(stream, start=1):
        if received == 10:
            stream.cancel()
    assert stream.stats.finish_reason == "cancelled"
    # Were generation still running, the child would keep a core or two busy for
    # the rest of the 1500 tokens (tens of seconds here). Stopped, it goes idle
    # once the token in flight is done.
    deadline = time.monotonic() + 10
    while True:
        before = cpu_seconds(engine.pid)
        time.sleep(1.0)
        busy = cpu_seconds(engine.pid) - before
        if busy < 0.2:
            break
        assert time.monotonic() < deadline, f"child still busy ({busy:.2f} s CPU per s)"
    # And the engine is free at once for the next question.
    follow_up = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=8)
    assert list(follow_up)
    assert follow_up.stats.time_to_first_token_s < 2.0


def test_a_new_request_interrupts_a_running_one(engine: Engine) -> None:
    first = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=1500, extra=ENDLESS)
    pieces = iter(first)
    next(pieces)
    second = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=8)
    assert list(second), "the second request is answered without waiting 1500 tokens"
    first.cancel()
    list(pieces)


def test_engine_restarts_after_its_child_dies(default_model: Path) -> None:
    with Engine(EngineConfig(model=default_model, n_ctx=1024)) as engine:
        first_pid = engine.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while engine.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not engine.is_running()
        with pytest.raises(ApiError):
            list(ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=4))
        engine.restart()
        second_pid = engine.pid
        assert engine.is_running() and second_pid != first_pid
        assert list(ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=8))
    assert second_pid is not None and not psutil.pid_exists(second_pid)


def test_stop_leaves_no_process(default_model: Path) -> None:
    engine = Engine(EngineConfig(model=default_model, n_ctx=1024))
    engine.start()
    pid = engine.pid
    engine.stop()
    assert pid is not None and not psutil.pid_exists(pid)


@pytest.mark.parametrize(
    ("make_file", "expected"),
    [
        (lambda d, m: d / "missing.gguf", "does not exist"),
        (lambda d, m: gguf_files.text_file(d / "readme.gguf"), "text file"),
        (lambda d, m: gguf_files.random_bytes(d / "noise.gguf"), "GGUF signature"),
        (lambda d, m: gguf_files.truncated_copy(m, d / "half.gguf"), "truncated or damaged"),
        (
            lambda d, m: gguf_files.unknown_architecture(d / "kodcunet.gguf"),
            "unknown model architecture: 'kodcunet'",
        ),
    ],
    ids=["missing", "text", "random-bytes", "truncated", "unknown-architecture"],
)
def test_bad_model_file_gives_a_clear_error(
    tmp_path: Path, default_model: Path, make_file, expected: str
) -> None:
    path = make_file(tmp_path, default_model)
    engine = Engine(EngineConfig(model=path, startup_timeout_s=60))
    with pytest.raises(EngineError) as caught:
        engine.start()
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert not engine.is_running()


def test_port_in_use_is_reported_before_loading(default_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = Engine(EngineConfig(model=default_model, port=port))
        started = time.monotonic()
        with pytest.raises(EngineError) as caught:
            engine.start()
    assert f"port {port}" in str(caught.value) and "in use" in str(caught.value)
    assert time.monotonic() - started < 5, "no model load before the port check"


def test_engine_settings_reach_the_server(default_model: Path) -> None:
    with Engine(EngineConfig(model=default_model, n_ctx=512)) as engine:
        long_prompt = [{"role": "user", "content": "x " * 600}]
        with pytest.raises(urllib.error.HTTPError) as caught:
            post_chat(engine, {"messages": long_prompt})
        assert caught.value.code == 400, "a prompt longer than n_ctx=512 is refused"


def test_chat_template_from_gguf_metadata_is_used(
    tmp_path: Path, default_model: Path, engine: Engine
) -> None:
    # Gemma's own turn markers, which the base model's GGUF does not carry.
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n"
    )
    model = gguf_files.with_metadata_string(
        default_model, tmp_path / "templated.gguf", "tokenizer.chat_template", template
    )
    body = {"messages": QUESTION, "max_tokens": 1}
    with Engine(EngineConfig(model=model, n_ctx=1024)) as templated_engine:
        assert templated_engine.chat_template == "gguf"
        templated = post_chat(templated_engine, body)
    assert engine.chat_template == "alpaca"
    alpaca = post_chat(engine, body)
    # Gemma's turns take 20 tokens for this question; the Alpaca preamble alone is more.
    assert templated["usage"]["prompt_tokens"] < 25 < alpaca["usage"]["prompt_tokens"]


def post_chat(engine: Engine, body: dict) -> dict:
    request = urllib.request.Request(
        engine.base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {engine.api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_an_answer_cut_off_goes_on_where_it_stopped(engine: Engine) -> None:
    # When the last message is the unfinished answer, the prompt ends with its text
    # (no end of turn, no new "### Response:"), and only new text comes back.
    body = {"messages": QUESTION, "max_tokens": 20, "temperature": 0}
    cut = post_chat(engine, body)
    first = cut["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "length"
    continued = post_chat(
        engine, {**body, "messages": [*QUESTION, {"role": "assistant", "content": first}]}
    )
    rest = continued["choices"][0]["message"]["content"]
    assert rest.strip() and not rest.startswith(first[:10]), "a continuation, not a new answer"
    # The prompt grew by the cut-off answer's own tokens (about 20; re-tokenising
    # may merge or split one at the edge) and by nothing else.
    grown = continued["usage"]["prompt_tokens"] - cut["usage"]["prompt_tokens"]
    assert 18 <= grown <= 21, grown
