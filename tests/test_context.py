"""Long conversations are fitted into the context, newest first, and the cut is reported."""

from __future__ import annotations

import pytest

from desktop.client import ApiError, count_tokens
from desktop.context import MESSAGE_OVERHEAD, ContextError, fit_context
from desktop.engine import Engine


def words(text: str) -> int:  # a stand-in tokenizer: one token per word
    return len(text.split())


def turn(role: str, n: int) -> dict[str, str]:
    return {"role": role, "content": " ".join([role] * n)}


def test_everything_fits() -> None:
    messages = [turn("user", 10), turn("assistant", 10), turn("user", 10)]
    fitted = fit_context(messages, n_ctx=1000, max_tokens=100, count=words)
    assert fitted.messages == messages and fitted.left_out == 0
    assert fitted.prompt_tokens == 30 + 3 * MESSAGE_OVERHEAD


def test_oldest_turns_go_first_and_the_system_message_stays() -> None:
    system = {"role": "system", "content": "Be brief."}
    old = [turn("user", 400), turn("assistant", 400)]
    recent = [turn("user", 100), turn("assistant", 100), turn("user", 50)]
    fitted = fit_context([system, *old, *recent], n_ctx=800, max_tokens=200, count=words)
    assert fitted.messages == [system, *recent]
    assert fitted.left_out == 2
    assert fitted.prompt_tokens <= 800 - 200


def test_a_question_too_long_for_the_context_is_refused_with_advice() -> None:
    with pytest.raises(ContextError) as caught:
        fit_context([turn("user", 5000)], n_ctx=4096, max_tokens=512, count=words)
    assert "5000 tokens" in str(caught.value) and "4096" in str(caught.value)


def test_engine_counts_tokens_with_the_model_tokenizer(engine: Engine) -> None:
    short = count_tokens(engine.base_url, engine.api_key, "def square(x): return x * x")
    longer = count_tokens(engine.base_url, engine.api_key, "def square(x): return x * x\n" * 10)
    assert 5 < short < 20 and longer >= 9 * short
    with pytest.raises(ApiError):
        count_tokens(engine.base_url, "wrong-key", "x")
