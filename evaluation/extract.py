"""Code out of a model's answer: fenced blocks and stop sequences.

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
