"""Greedy loops: where a completion has fallen into one, and the tokens that continue it.

    period = loop_period(generated, piece)         # None, or the length of the block
    draft = counting(generated, piece, digits)     # None, or an endless iterator
    next(draft)   # the token counting on puts next

A small model often falls into a loop it keeps to the token limit: on HumanEval, 101
of the default model's 164 greedy completions run to 384 tokens. The batched decoder
(evaluation/batched.py) drafts the loop's continuation and has the model check every
drafted token (`--drafts loops`, the default); a draft is never taken on trust. Two
kinds of loop are drafted:

- a block of tokens repeated LOOP_REPEATS times at the end of the completion: the
  draft repeats the block;
- lines whose numbers step by a constant from copy to copy (`if n == 7: return 7`,
  `x[8]`, ...), COUNT_REPEATS times over: the draft counts on. A model may break its
  count (`if n == 20: return 19`), and a legitimate table is then only a draft that
  fails its check. Needs a tokenizer with one token per digit.

`--drafts none` drafts nothing: the model decodes every token in a step of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count, pairwise

DRAFT_MODES = ("loops", "none")
"""`--drafts`: loops drafts the loops below for the model to check; none drafts nothing."""
FIRST_COUNT_DRAFT = 32
"""Tokens of a counting draft checked in its first step (doubled while it holds)."""
LOOP_REPEATS = 3
"""Copies of one block at the end of a greedy completion that make it a loop."""
BLANK_REPEATS = 8
"""As many copies for a block of blank lines, which code has a few of in a row."""
INLINE_PERIOD = 8
"""The shortest block, in tokens, that loops within a line (`0, 0, 0` is no loop)."""
COUNT_REPEATS = 5
"""Copies of a block of lines whose numbers count before counting on is worth a draft."""
COUNT_LINES = 8
"""The longest block of counting lines looked for."""

Piece = Callable[[int], str]
"""A token's text."""


def loop_period(tokens: list[int], piece: Piece) -> int | None:
    """The length P when `tokens` end in a loop: LOOP_REPEATS copies of one P-token block.

    A block that holds a line break must be whole lines (checked where a line ends; a
    loop of lines has a rotation that ends there) and hold code, or be blank lines
    repeated BLANK_REPEATS times; a block within a line must be INLINE_PERIOD tokens
    or longer.
    """
    n = len(tokens)
    for period in range(1, n // LOOP_REPEATS + 1):
        if tokens[n - 1 - period] != tokens[-1]:
            continue  # the cheap test first
        if not _repeats(tokens, period, LOOP_REPEATS):
            continue
        text = "".join(map(piece, tokens[n - period :]))
        if "\n" not in text:
            found = period >= INLINE_PERIOD
        else:  # whole lines, of code or else many blank ones
            found = "\n" in piece(tokens[-1]) and (
                bool(text.strip()) or _repeats(tokens, period, BLANK_REPEATS)
            )
        if found:
            return period
    return None


def _repeats(tokens: list[int], period: int, times: int) -> bool:
    """Whether `tokens` end with `times` copies of their last `period` tokens."""
    n, block = len(tokens), tokens[len(tokens) - period :]
    if n < times * period:
        return False
    return all(tokens[n - (k + 1) * period : n - k * period] == block for k in range(1, times))


def counting(tokens: list[int], piece: Piece, digits: list[int]) -> Iterator[int] | None:
    """The continuation of COUNT_REPEATS blocks of lines whose numbers step by constants:
    a draft for the model to check. `digits` are the tokens of "0" to "9"."""
    if "\n" not in piece(tokens[-1]):
        return None  # whole lines only
    value = {token: str(d) for d, token in enumerate(digits)}
    # Where lines start: the completion's start, and after each line break.
    ends = [0] + [i + 1 for i, token in enumerate(tokens) if "\n" in piece(token)]
    for lines in range(1, COUNT_LINES + 1):
        if len(ends) < COUNT_REPEATS * lines + 1:
            return None
        bounds = ends[len(ends) - 1 - COUNT_REPEATS * lines :: lines]  # block edges, in order
        found = [_shape(tokens[a:b], value) for a, b in pairwise(bounds)]
        last = found[-1]
        shapes = [s for s in found if s is not None and last is not None and s[0] == last[0]]
        if len(shapes) < COUNT_REPEATS:
            continue
        numbers = [s[1] for s in shapes]
        steps = [b - a for a, b in zip(numbers[-2], numbers[-1], strict=True)]
        steady = all(
            [b - a for a, b in zip(earlier, later, strict=True)] == steps
            for earlier, later in pairwise(numbers)
        )
        text = "".join(map(piece, tokens[bounds[-2] :]))
        if steady and any(steps) and min(steps) >= 0 and text.strip():
            return _count_on(shapes[-1][0], numbers[-1], steps, digits)
    return None


def _shape(block: list[int], value: dict[int, str]) -> tuple[list[int | None], list[int]] | None:
    """The block with each run of digit tokens as None, and the runs' numbers."""
    shape: list[int | None] = []
    numbers: list[int] = []
    run = ""
    for token in [*block, -1]:  # -1 ends a run at the end
        if token in value:
            run += value[token]
            continue
        if run:
            if len(run) > 1 and run[0] == "0":
                return None  # 007: counting on would drop the zeros
            shape.append(None)
            numbers.append(int(run))
            run = ""
        if token != -1:
            shape.append(token)
    return shape, numbers


def _count_on(
    shape: list[int | None], last: list[int], steps: list[int], digits: list[int]
) -> Iterator[int]:
    for k in count(1):
        numbers = iter(n + k * s for n, s in zip(last, steps, strict=True))
        for token in shape:
            if token is None:
                yield from (digits[int(d)] for d in str(next(numbers)))
            else:
                yield token
