"""How every tool runs a GGUF through llama-cpp-python: the thread count and the chat layout.

    llama = Llama(model_path=..., n_threads=default_threads())
    format_chat = chat_formatter(llama)       # kodcu-eval lays chats out itself
    use_chat_template(llama)                  # the desktop's engine: create_chat_completion

The desktop's engine and kodcu-eval lay chats out with the same code, so a model is
scored on the prompts the app sends it. llama_cpp is imported inside the functions
that are handed a loaded model, never when this module is imported.
"""

from __future__ import annotations

import os
from typing import Any


def default_threads() -> int:
    """CPU threads for generation.

    On small machines every core helps; on larger ones half the logical CPUs is
    usually the physical core count, and hyper-threads slow llama.cpp down.
    """
    cpus = os.cpu_count() or 1
    return cpus if cpus <= 4 else cpus // 2


def chat_formatter(llama: Any) -> Any:
    """Lays a chat out as a prompt, in the model's own template or Kodcu's Alpaca one.

    Returns a llama-cpp-python chat formatter: called with `messages=`, it gives
    the prompt text and its stop strings. When the last message is the
    assistant's, its text is not closed as a turn: the prompt ends with it, so
    the model goes on from where the answer was cut off ("assistant prefill", as
    llama.cpp's own server does).
    """
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from kodcu.prompt import ALPACA_CHAT_TEMPLATE, ALPACA_STOP_STRINGS

    template = llama.metadata.get("tokenizer.chat_template")
    stop_strings = [] if template else ALPACA_STOP_STRINGS
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    formatter = Jinja2ChatFormatter(
        template=template or ALPACA_CHAT_TEMPLATE,
        eos_token=eos,
        bos_token=bos,
        stop_token_ids=[eos_id],
    )

    def format_chat(*, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        prefill = ""
        if messages and messages[-1].get("role") == "assistant":
            prefill = messages[-1].get("content") or ""
            messages = messages[:-1]
        response = formatter(messages=messages, **kwargs)
        response.prompt += prefill
        response.stop = [eos, *stop_strings] if eos else list(stop_strings)
        return response

    return format_chat


def use_chat_template(llama: Any) -> str:
    """Lay chats out in the model's own template, or Kodcu's Alpaca one; return which.

    The handler takes precedence over llama-cpp-python's own choice (a built-in
    format it guesses from the template, or its fallback, Llama 2's format).
    """
    from llama_cpp.llama_chat_format import chat_formatter_to_chat_completion_handler

    llama.chat_handler = chat_formatter_to_chat_completion_handler(chat_formatter(llama))
    return "gguf" if llama.metadata.get("tokenizer.chat_template") else "alpaca"
