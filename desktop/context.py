"""Fit a conversation into the model's context window, saying what was left out.

A conversation outgrows the context sooner or later. Rather than let the
engine refuse the request (or truncate silently), the oldest turns are left out
of the prompt, newest kept first, and the caller is told how many so the user
can see it. A system message, when present, and the latest question are always
kept.

    fitted = fit_context(messages, n_ctx=4096, max_tokens=512, count=counter)
    fitted.messages, fitted.left_out, fitted.prompt_tokens
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from desktop.client import ApiError, Message, count_tokens

# Tokens a chat template adds around each message (role markers, separators).
# Kodcu's Alpaca template adds about 8; ChatML-style templates about 5.
MESSAGE_OVERHEAD = 8


class ContextError(ValueError):
    """The latest question alone does not fit; the message says what to do."""


@dataclass
class FittedContext:
    messages: list[Message]
    """What to send: the system message, then the newest turns that fit."""
    left_out: int
    """How many of the oldest messages did not fit."""
    prompt_tokens: int
    """Estimated prompt size in tokens, template overhead included."""


def fit_context(
    messages: list[Message], n_ctx: int, max_tokens: int, count: Callable[[str], int]
) -> FittedContext:
    """Keep the newest messages whose tokens, plus room for the answer, fit in n_ctx."""
    budget = n_ctx - max_tokens
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    used = sum(count(m["content"]) + MESSAGE_OVERHEAD for m in system)
    kept: list[Message] = []
    for message in reversed(turns):
        cost = count(message["content"]) + MESSAGE_OVERHEAD
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    if turns and not kept:
        question = count(turns[-1]["content"])
        raise ContextError(
            f"Your message is about {question} tokens, but the model's context holds "
            f"{n_ctx} tokens including {max_tokens} for the answer. Shorten the message, "
            "or choose a larger context size."
        )
    kept.reverse()
    return FittedContext(system + kept, len(turns) - len(kept), used)


class TokenCounter:
    """Counts tokens with the engine's own tokenizer, remembering each text's count.

    A server without llama-cpp-python's counting route (a remote endpoint) gets
    an estimate of three characters a token, which errs on the long side.
    """

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self._counts: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._counts:
            try:
                self._counts[text] = count_tokens(self.base_url, self.api_key, text)
            except ApiError:
                self._counts[text] = len(text) // 3 + 1
        return self._counts[text]
