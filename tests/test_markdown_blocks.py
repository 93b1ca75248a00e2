"""Splitting answers into text and fenced code blocks, whole and while streaming."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from desktop.markdown_blocks import Block, BlockStream, CodeBlock, TextBlock, split_blocks

PYTHON_ANSWER = '''Here is a function that squares a number:

```python
def square(x: int) -> int:
    """Return x squared.

    Works for negative numbers too.
    """
    return x * x
```

You can call it like `square(3)`, which returns `9`.
'''

JS_AND_SQL_ANSWER = """First the query:

```sql
SELECT name, COUNT(*) AS orders
FROM customers
WHERE created_at > '2024-01-01'
GROUP BY name;
```
Then fetch it from JavaScript:
```js title="client.js"
async function load() {
  const rows = await db.query(`SELECT 1`);

  return rows;
}
```
```bash
npm run start
```

Done.
"""

NESTED_ANSWER = """To show a fence inside Markdown, use a longer one:

````markdown
Some text
```python
print("inner")
```
````

And tildes work too:

  ~~~ c++
  int main() { return 0; }
    // indented more
  ~~~

"""

UNCLOSED_ANSWER = """Sure, here is the start:

```rust
fn main() {
    let v = vec![1, 2, 3];
    for x in &v {
        println!("{}", x);"""

CLOSED_AT_END = "Short one:\n```\nplain\n```"

ANSWERS = [PYTHON_ANSWER, JS_AND_SQL_ANSWER, NESTED_ANSWER, UNCLOSED_ANSWER, CLOSED_AT_END]


def stream(pieces: list[str]) -> list[Block]:
    blocks = BlockStream()
    finished: list[Block] = []
    for piece in pieces:
        finished.extend(blocks.feed(piece))
    return finished + blocks.finish()


def random_pieces(text: str, rng: random.Random) -> list[str]:
    pieces = []
    start = 0
    while start < len(text):
        size = rng.randint(1, 12)
        pieces.append(text[start : start + size])
        start += size
    return pieces


# --- The splitting rules ------------------------------------------------------


def test_text_and_code_blocks() -> None:
    assert split_blocks(PYTHON_ANSWER) == [
        TextBlock("Here is a function that squares a number:\n\n"),
        CodeBlock(
            "python",
            'def square(x: int) -> int:\n    """Return x squared.\n\n'
            '    Works for negative numbers too.\n    """\n    return x * x',
            closed=True,
        ),
        TextBlock("\nYou can call it like `square(3)`, which returns `9`.\n"),
    ]


def test_several_blocks_and_whitespace_between_them() -> None:
    blocks = split_blocks(JS_AND_SQL_ANSWER)
    assert [type(block).__name__ for block in blocks] == [
        "TextBlock",
        "CodeBlock",
        "TextBlock",
        "CodeBlock",
        "CodeBlock",
        "TextBlock",
    ]
    sql, js, bash = blocks[1], blocks[3], blocks[4]
    assert isinstance(sql, CodeBlock) and sql.language == "sql"
    assert sql.code.startswith("SELECT name") and sql.code.endswith("GROUP BY name;")
    assert isinstance(js, CodeBlock) and js.language == "js"
    # Backticks inside code, and an empty line, are code.
    assert "db.query(`SELECT 1`);\n\n  return rows;" in js.code
    assert bash == CodeBlock("bash", "npm run start", closed=True)
    assert blocks[5] == TextBlock("\nDone.\n")


@pytest.mark.parametrize(
    ("opening", "closing", "language"),
    [
        ("```python", "```", "python"),
        ("```js title=x", "```", "js"),
        ("``` c++", "```", "c++"),
        ("```   sql   ", "```", "sql"),
        ("```", "```", None),
        ("~~~ts", "~~~", "ts"),
        ("~~~ weird`tag", "~~~", "weird`tag"),
        ("````md", "````", "md"),
    ],
)
def test_language_is_the_first_word_of_the_info_string(
    opening: str, closing: str, language: str | None
) -> None:
    assert split_blocks(f"{opening}\ncode\n{closing}\n") == [
        CodeBlock(language, "code", closed=True)
    ]


def test_backtick_info_string_with_a_backtick_is_not_a_fence() -> None:
    text = "```not a fence``` and more\nx\n"
    assert split_blocks(text) == [TextBlock(text)]


def test_short_runs_are_not_fences() -> None:
    text = "Use ``x`` here.\n``\ny\n"
    assert split_blocks(text) == [TextBlock(text)]


def test_fence_indented_up_to_three_spaces_and_content_dedented() -> None:
    text = "   ```py\n   a = 1\n     b = 2\n c = 3\n  ```\n"
    assert split_blocks(text) == [CodeBlock("py", "a = 1\n  b = 2\nc = 3", closed=True)]


def test_four_spaces_is_not_a_fence() -> None:
    text = "    ```py\n    x\n"
    assert split_blocks(text) == [TextBlock(text)]


def test_closing_fence_rules() -> None:
    # Same character, at least as long, nothing but spaces after it.
    assert split_blocks("```\na\n~~~\n```\n") == [CodeBlock(None, "a\n~~~", closed=True)]
    assert split_blocks("````\na\n```\n`````\n") == [CodeBlock(None, "a\n```", closed=True)]
    assert split_blocks("```\na\n```  \t\n") == [CodeBlock(None, "a", closed=True)]
    assert split_blocks("```\na\n```py\n```\n") == [CodeBlock(None, "a\n```py", closed=True)]
    # Indented four spaces it is content.
    assert split_blocks("```\na\n    ```\n") == [CodeBlock(None, "a\n    ```", closed=False)]


def test_code_keeps_its_inner_lines_exactly() -> None:
    assert split_blocks("```\n```\n") == [CodeBlock(None, "", closed=True)]
    assert split_blocks("```\n\n```\n") == [CodeBlock(None, "", closed=True)]
    assert split_blocks("```\n\n\n```\n") == [CodeBlock(None, "\n", closed=True)]
    assert split_blocks("```\nx  \n\n```\n") == [CodeBlock(None, "x  \n", closed=True)]


def test_unclosed_fence_runs_to_the_end() -> None:
    *_, last = split_blocks(UNCLOSED_ANSWER)
    assert last == CodeBlock(
        "rust",
        'fn main() {\n    let v = vec![1, 2, 3];\n    for x in &v {\n        println!("{}", x);',
        closed=False,
    )
    assert split_blocks("Text\n```py") == [TextBlock("Text\n"), CodeBlock("py", "", closed=False)]
    assert split_blocks("```py\nx = 1\n") == [CodeBlock("py", "x = 1", closed=False)]


def test_closing_fence_at_the_very_end_closes() -> None:
    assert split_blocks(CLOSED_AT_END) == [
        TextBlock("Short one:\n"),
        CodeBlock(None, "plain", closed=True),
    ]


def test_nested_fences_and_tildes() -> None:
    blocks = split_blocks(NESTED_ANSWER)
    assert blocks[1] == CodeBlock(
        "markdown", 'Some text\n```python\nprint("inner")\n```', closed=True
    )
    assert blocks[3] == CodeBlock(
        "c++", "int main() { return 0; }\n  // indented more", closed=True
    )
    assert len(blocks) == 4


def test_no_blocks_for_empty_or_blank_text() -> None:
    assert split_blocks("") == []
    assert split_blocks(" \n\n") == []


# --- Streaming -----------------------------------------------------------------


@pytest.mark.parametrize("answer", ANSWERS)
def test_streaming_gives_the_same_blocks_however_the_text_is_cut(answer: str) -> None:
    expected = split_blocks(answer)
    assert stream([answer]) == expected
    assert stream(list(answer)) == expected
    rng = random.Random(1234)
    for _ in range(20):
        assert stream(random_pieces(answer, rng)) == expected


@pytest.mark.parametrize("answer", ANSWERS)
def test_finished_blocks_are_reported_once_and_pending_only_grows(answer: str) -> None:
    expected = split_blocks(answer)
    blocks = BlockStream()
    finished: list[Block] = []
    for char in answer:
        new = blocks.feed(char)
        finished.extend(new)
        # Blocks come out in order and are already in their final form.
        assert finished == expected[: len(finished)]
        pending = blocks.pending()
        if pending is not None:
            final = expected[len(finished)]
            assert type(pending) is type(final)
            if isinstance(pending, CodeBlock):
                assert isinstance(final, CodeBlock)
                assert final.code.startswith(pending.code)
                assert pending.language == final.language and not pending.closed
            else:
                assert isinstance(final, TextBlock)
                assert final.text.startswith(pending.text)
    assert finished + blocks.finish() == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        expected[0].closed = False  # type: ignore[union-attr]


def test_fence_split_across_pieces() -> None:
    blocks = BlockStream()
    assert blocks.feed("Look:\n``") == []
    # A partial line that may become a fence is not shown as text.
    assert blocks.pending() == TextBlock("Look:\n")
    assert blocks.feed("`py\n") == [TextBlock("Look:\n")]
    assert blocks.pending() == CodeBlock("py", "", closed=False)
    assert blocks.feed("x = 1\ny") == []
    assert blocks.pending() == CodeBlock("py", "x = 1\ny", closed=False)
    assert blocks.feed(" = 2\n``") == []
    # The partial closing fence is held back from the code.
    assert blocks.pending() == CodeBlock("py", "x = 1\ny = 2", closed=False)
    assert blocks.feed("`") == []
    assert blocks.feed("\nafter") == [CodeBlock("py", "x = 1\ny = 2", closed=True)]
    assert blocks.pending() == TextBlock("after")
    assert blocks.finish() == [TextBlock("after")]
    assert blocks.pending() is None


def test_a_backtick_line_that_turns_out_not_to_be_a_fence_is_text() -> None:
    blocks = BlockStream()
    blocks.feed("``")
    assert blocks.pending() is None
    blocks.feed("`inline` code")
    assert blocks.pending() == TextBlock("```inline` code")


def test_feed_work_does_not_grow_with_the_text_so_far() -> None:
    body = "".join(f"    value_{i} = compute({i})  # step {i}\n" for i in range(3000))
    answer = f"Long:\n```python\n{body}```\nEnd.\n"
    blocks = BlockStream()
    started = time.perf_counter()
    finished: list[Block] = []
    for char in answer:
        finished.extend(blocks.feed(char))
    elapsed = time.perf_counter() - started
    assert finished + blocks.finish() == split_blocks(answer)
    # About 120,000 pieces take well under a second; re-scanning the text so far
    # for each of them would take minutes.
    assert elapsed < 3
