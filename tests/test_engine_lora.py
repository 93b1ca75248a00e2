"""LoRA adapters applied at run time over the default model, by the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.client import ChatStream
from desktop.engine import Engine, EngineConfig, EngineError
from tests import gguf_files

QUESTION = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def greedy(engine: Engine) -> str:
    stream = ChatStream(engine.base_url, engine.api_key, QUESTION, max_tokens=24, temperature=0)
    return "".join(stream)


def answer_with(default_model: Path, adapter: Path | None) -> str:
    with Engine(EngineConfig(model=default_model, n_ctx=512, lora_path=adapter)) as engine:
        return greedy(engine)


def test_an_adapter_changes_the_answer_and_an_empty_one_does_not(
    tmp_path: Path, default_model: Path
) -> None:
    # A fresh engine for each answer: the shared one has served other tests' chats, and
    # a prompt read after a cached prefix is summed in other pieces, which with AVX-512
    # kernels was enough to flip a greedy token of this small model.
    base = answer_with(default_model, None)
    tuned = answer_with(default_model, gguf_files.random_lora(default_model, tmp_path / "a.gguf"))
    empty = gguf_files.random_lora(default_model, tmp_path / "empty.gguf", scale=0.0)
    assert tuned != base, "the adapter's weights reached the model"
    assert answer_with(default_model, empty) == base, "B = 0 leaves the model as it was"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda tmp, model: gguf_files.write_lora_gguf(tmp / "x.gguf", "llama", {}, 8.0),
            "made for llama models, and gemma-3-270m-q4_k_m.gguf is a gemma3 model",
        ),
        (lambda tmp, model: model, "this is a model file, not a LoRA adapter"),
        (lambda tmp, model: gguf_files.text_file(tmp / "x.gguf"), "text file"),
        (lambda tmp, model: tmp / "missing.gguf", "does not exist"),
    ],
    ids=["other-architecture", "a-model", "text", "missing"],
)
def test_a_wrong_adapter_is_refused_before_it_can_crash_the_engine(
    tmp_path: Path, default_model: Path, make, problem: str
) -> None:
    adapter = make(tmp_path, default_model)
    with pytest.raises(EngineError) as caught:
        Engine(EngineConfig(model=default_model, lora_path=adapter)).start()
    assert str(adapter) in str(caught.value) and problem in str(caught.value)
