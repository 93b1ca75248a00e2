"""Split a Markdown answer into prose and fenced code blocks, whole or while it streams.

The chat view renders prose and code differently, so an answer is cut into
`TextBlock`s and `CodeBlock`s following the CommonMark rules for fenced code
that matter in practice:

- a fence is a line of at least three backticks or tildes, indented by at most
  three spaces; the first word of the info string after it is the language;
  a backtick fence's info string may not contain a backtick (that is inline code);
- the closing fence uses the same character, is at least as long as the opening
  one, is indented by at most three spaces and has nothing after it but spaces;
- content lines lose up to as many leading spaces as the opening fence had;
- a fence still open at the end of the text runs to the end (``closed=False``).

The text of a `TextBlock` is the raw text between fences; blocks of only
whitespace are dropped. A code block's code excludes the fence lines and the
line break before the closing fence.

`BlockStream` does the same incrementally and only ever looks at the new text
and the current unfinished line, so a long answer costs the same per piece.
This module is model code and must not import Qt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TextBlock:
    """Prose between code blocks, as written (Markdown source)."""

    text: str


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block; ``closed`` is False while its closing fence has not come."""

    language: str | None
    code: str
    closed: bool


Block = TextBlock | CodeBlock

_OPENING_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
# A partial line that may still grow into an opening fence. It is held back
# from the pending text block so that a view never shows a fence being typed.
_MAYBE_OPENING_FENCE = re.compile(r" {0,3}(`{0,2}|~{0,2}|`{3,}[^`]*|~{3,}.*)")


def _opening_fence(line: str) -> tuple[int, str, int, str | None] | None:
    """(indent, fence character, fence length, language) when ``line`` opens a fence."""
    match = _OPENING_FENCE.fullmatch(line)
    if match is None:
        return None
    indent, fence, info = match.groups()
    if fence[0] == "`" and "`" in info:
        return None
    words = info.split()
    return len(indent), fence[0], len(fence), (words[0] if words else None)


class BlockStream:
    """Cuts streamed text into blocks; pieces may split anywhere, even inside a fence line.

    ``feed`` returns the blocks finished by that piece, each exactly once;
    ``pending`` is the block still growing, ``finish`` ends the stream.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # The current line, not yet ended by a line break.
        self._line = ""
        # Text mode: the raw lines of the current text block, with their breaks.
        self._text_parts: list[str] = []
        # Code mode (``_fence`` is set): the opening fence and the content lines.
        self._fence: str | None = None
        self._fence_indent = 0
        self._language: str | None = None
        self._code_lines: list[str] = []
        self._maybe_closing: re.Pattern[str] | None = None
        self._closing: re.Pattern[str] | None = None
        self._pending: Block | None = None
        self._pending_stale = False

    def feed(self, text: str) -> list[Block]:
        """Add a piece of the answer; return the blocks that this piece finished."""
        finished: list[Block] = []
        start = 0
        while (end := text.find("\n", start)) >= 0:
            line = self._line + text[start:end]
            self._line = ""
            finished.extend(self._take_line(line, ended=True))
            start = end + 1
        self._line += text[start:]
        self._pending_stale = True
        return finished

    def pending(self) -> Block | None:
        """The unfinished block at the tail, or None when there is nothing to show yet.

        A pending code block's code, and a pending text block's text, only ever
        grow: each value is a prefix of the finished one. A partial line that may
        still become a fence is left out until it is decided.
        """
        if self._pending_stale:
            self._pending = self._build_pending()
            self._pending_stale = False
        return self._pending

    def finish(self) -> list[Block]:
        """End the stream: return the last blocks and start afresh."""
        finished: list[Block] = []
        if self._line:
            # The end of the text also ends its last line, so it may close a fence.
            finished.extend(self._take_line(self._line, ended=False))
            self._line = ""
        if self._fence is not None:
            finished.append(CodeBlock(self._language, "\n".join(self._code_lines), closed=False))
        else:
            finished.extend(self._flush_text())
        self._reset()
        return finished

    def _take_line(self, line: str, ended: bool) -> list[Block]:
        """Process one complete line (``ended``: it was followed by a line break)."""
        if self._fence is None:
            opening = _opening_fence(line)
            if opening is None:
                self._text_parts.append(line + "\n" if ended else line)
                return []
            finished = self._flush_text()
            self._open_code(*opening)
            return finished
        assert self._closing is not None
        if self._closing.fullmatch(line):
            block = CodeBlock(self._language, "\n".join(self._code_lines), closed=True)
            self._fence = None
            self._code_lines = []
            return [block]
        self._code_lines.append(self._dedent(line))
        return []

    def _open_code(self, indent: int, char: str, length: int, language: str | None) -> None:
        self._fence = char * length
        self._fence_indent = indent
        self._language = language
        self._code_lines = []
        fence = re.escape(char)
        self._closing = re.compile(rf" {{0,3}}{fence}{{{length},}}[ \t]*")
        self._maybe_closing = re.compile(rf" {{0,3}}({fence}*|{fence}{{{length},}}[ \t]*)")

    def _flush_text(self) -> list[Block]:
        text = "".join(self._text_parts)
        self._text_parts = []
        return [TextBlock(text)] if text.strip() else []

    def _dedent(self, line: str) -> str:
        # Content lines lose the opening fence's indentation, and no more.
        spaces = len(line) - len(line.lstrip(" "))
        return line[min(spaces, self._fence_indent) :]

    def _build_pending(self) -> Block | None:
        if self._fence is None:
            # Joined once here; later calls reuse the single joined part.
            text = "".join(self._text_parts)
            self._text_parts = [text] if text else []
            if not _MAYBE_OPENING_FENCE.fullmatch(self._line):
                text += self._line
            return TextBlock(text) if text.strip() else None
        assert self._maybe_closing is not None
        code = "\n".join(self._code_lines)
        # Joining N lines equals joining the joined string with the next ones.
        self._code_lines = [code] if self._code_lines else []
        if self._line and not self._maybe_closing.fullmatch(self._line):
            code = (
                f"{code}\n{self._dedent(self._line)}"
                if self._code_lines
                else self._dedent(self._line)
            )
        return CodeBlock(self._language, code, closed=False)


def split_blocks(text: str) -> list[Block]:
    """Cut a whole answer into text and code blocks."""
    stream = BlockStream()
    return stream.feed(text) + stream.finish()
