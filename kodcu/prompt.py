"""The prompt format of Kodcu models: Alpaca instructions, as a chat template.

The original system fine-tuned its models on Alpaca-style rows
(instruction / input / output) laid out as

    Below is an instruction that describes a task. ...

    ### Instruction:
    {instruction}

    ### Response:
    {output}<eos>

Kodcu keeps that layout, written once as a Jinja chat template so that it travels
with the model the same way any other template does: the trainer writes it into
the tokenizer config, the converter carries it into the GGUF metadata
(``tokenizer.chat_template``), and the desktop applies it to a model whose GGUF
has no template of its own (the embedded default base model).

A system message, when given, replaces the preamble. Earlier turns are laid out
one after the other so a conversation reads as a sequence of instructions.
"""

from __future__ import annotations

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

# The original system's second variant, for rows whose `input` gives context.
ALPACA_INPUT_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request."
)

# `bos_token`, `eos_token` and `add_generation_prompt` are the standard
# chat-template variables (transformers and llama.cpp both pass them). The BOS
# token is written by the template, as in most Hugging Face templates, so the
# tokenizer must not add a second one.
ALPACA_CHAT_TEMPLATE = (
    "{{- bos_token if bos_token else '' -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- messages[0]['content'] -}}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{{- '" + ALPACA_PREAMBLE + "' -}}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '\\n\\n### Instruction:\\n' + message['content'] -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '\\n\\n### Response:\\n' + message['content'] + eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n\\n### Response:\\n' -}}{%- endif -%}"
)

# A base model that was never tuned on this format runs on into the next
# "instruction" of its own; these strings end the answer there.
ALPACA_STOP_STRINGS = ["\n### Instruction:", "\n### Response:", "\n### Input:"]


def alpaca_messages(instruction: str, input: str = "", output: str | None = None) -> list[dict]:
    """One Alpaca row as chat messages that the template above renders in Alpaca's layout.

    A row without `input` uses the template's own preamble. A row with one gets the
    second preamble as a system message and its input under `### Input:`, so both of
    the original system's prompt variants come out of the one template, and training
    (which renders rows through the tokenizer's chat template) and inference (which
    renders chats through the GGUF's) see the same text.
    """
    if input.strip():
        messages = [
            {"role": "system", "content": ALPACA_INPUT_PREAMBLE},
            {"role": "user", "content": f"{instruction}\n\n### Input:\n{input}"},
        ]
    else:
        messages = [{"role": "user", "content": instruction}]
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages
