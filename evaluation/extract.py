"""Code out of a model's answer: fenced blocks, stop sequences, runaway repetition.

extract_code("Here:\\n```python\\ndef f(): ...\\n```")   # 'def f(): ...'
cut_at_stops(completion, ["\\ndef ", "\\nclass "])
"""

from __future__ import annotations

import re

FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = {"", "python", "py", "python3"}


def extract_code(answer: str) -> str:
    """The Python code of a chat answer.

    The fenced blocks tagged Python (or untagged) are joined in order, so an answer
    that puts an import and the function in two blocks still runs; an answer with no
    fence at all is taken as code.
    """
    blocks = [body for tag, body in FENCE.findall(answer) if tag.lower() in PYTHON_TAGS]
    if not blocks:
        return answer.strip("\n") + "\n"
    return "\n\n".join(block.strip("\n") for block in blocks) + "\n"


def cut_at_stops(text: str, stops: list[str]) -> str:
    """Text up to the first stop sequence (servers that ignore `stop` get cut here)."""
    ends = [text.index(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


def repeating(text: str, times: int = 4) -> bool:
    """Whether the text ends with the same non-empty line `times` times over.

    Greedy decoding that repeats a line has entered a loop it stays in until the
    token limit; stopping there saves the time and, for code, changes nothing that
    the full-length completion would not also have (the same line again).
    """
    lines = text.split("\n")
    if len(lines) <= times:
        return False
    last = lines[-1 - times : -1]  # complete lines only
    return bool(last[0].strip()) and all(line == last[0] for line in last)
