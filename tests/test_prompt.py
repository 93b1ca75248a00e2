"""Kodcu's Alpaca chat template renders the layout of the original system."""

from __future__ import annotations

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from kodcu.prompt import (
    ALPACA_CHAT_TEMPLATE,
    ALPACA_INPUT_PREAMBLE,
    ALPACA_PREAMBLE,
    alpaca_messages,
)


def render(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    # The same renderer the engine uses for a GGUF without a template.
    formatter = Jinja2ChatFormatter(
        ALPACA_CHAT_TEMPLATE,
        eos_token="<eos>",
        bos_token="<bos>",
        add_generation_prompt=add_generation_prompt,
    )
    return formatter(messages=messages).prompt


def test_single_instruction() -> None:
    prompt = render([{"role": "user", "content": "Reverse a list in Python."}])
    assert prompt == (
        f"<bos>{ALPACA_PREAMBLE}\n\n### Instruction:\nReverse a list in Python.\n\n### Response:\n"
    )


def test_system_message_replaces_the_preamble() -> None:
    prompt = render(
        [{"role": "system", "content": "You write terse Go."}, {"role": "user", "content": "Hi"}]
    )
    assert prompt.startswith("<bos>You write terse Go.\n\n### Instruction:\nHi")
    assert ALPACA_PREAMBLE not in prompt


def test_earlier_turns_end_with_eos_and_the_prompt_asks_for_a_response() -> None:
    prompt = render(
        [
            {"role": "user", "content": "Add 1 and 2."},
            {"role": "assistant", "content": "3"},
            {"role": "user", "content": "Now in binary."},
        ]
    )
    assert "### Response:\n3<eos>\n\n### Instruction:\nNow in binary.\n\n### Response:\n" in prompt
    assert prompt.count("<bos>") == 1


def test_tokenizer_without_bos_gets_no_literal_none() -> None:
    formatter = Jinja2ChatFormatter(ALPACA_CHAT_TEMPLATE, eos_token="</s>", bos_token="")
    prompt = formatter(messages=[{"role": "user", "content": "x"}]).prompt
    assert prompt.startswith(ALPACA_PREAMBLE)


def test_both_alpaca_variants_come_out_of_the_one_template() -> None:
    plain = render(alpaca_messages("Sort a list.", "", "sorted(xs)"), add_generation_prompt=False)
    assert plain == (
        f"<bos>{ALPACA_PREAMBLE}\n\n### Instruction:\nSort a list."
        "\n\n### Response:\nsorted(xs)<eos>"
    )
    with_input = render(alpaca_messages("Sum these.", "1 2 3"))
    assert with_input == (
        f"<bos>{ALPACA_INPUT_PREAMBLE}\n\n### Instruction:\nSum these.\n\n### Input:\n1 2 3"
        "\n\n### Response:\n"
    )
