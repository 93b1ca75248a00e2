"""The chat view renders streamed answers block by block and never redoes finished blocks."""

from __future__ import annotations

import random

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from desktop.chat_view import ChatView, MessageView, ProseView
from desktop.code_block import CodeBlockView
from desktop.markdown_blocks import CodeBlock, split_blocks

ANSWER = """Here is the function:

```python
def square(x: int) -> int:
    \"\"\"Return x squared.\"\"\"
    return x * x
```

The same in JavaScript:

```js
const square = (x) => x * x;
```

And a query to check it:

```sql
SELECT 3 * 3 AS nine;
```
Done.
"""


def stream(view: MessageView, text: str, seed: int = 7) -> None:
    rng = random.Random(seed)
    position = 0
    while position < len(text):
        size = rng.randint(1, 6)  # a token is a few characters
        view.append(text[position : position + size])
        position += size


def kinds(view: MessageView) -> list[str]:
    return [
        "code" if isinstance(widget, CodeBlockView) else "prose" for widget in view.block_views()
    ]


@pytest.fixture()
def chat(qtbot) -> ChatView:
    view = ChatView()
    view.resize(700, 500)
    qtbot.addWidget(view)
    view.show()
    return view


def test_streamed_answer_ends_as_the_same_blocks_as_the_whole_text(qtbot, chat) -> None:
    answer = chat.add_message("assistant")
    stream(answer, ANSWER)
    answer.end()
    expected = split_blocks(ANSWER)
    assert kinds(answer) == ["code" if isinstance(b, CodeBlock) else "prose" for b in expected]
    codes = [w for w in answer.block_views() if isinstance(w, CodeBlockView)]
    assert [(c.code(), c.language()) for c in codes] == [
        (b.code, b.language) for b in expected if isinstance(b, CodeBlock)
    ]
    assert answer.text() == ANSWER
    assert [c.language_label.text() for c in codes] == ["Python", "JavaScript", "SQL"]


def test_finished_blocks_are_not_rendered_again(qtbot, chat, monkeypatch) -> None:
    touched: list[int] = []
    for method in ("set_code", "append_code", "set_style"):
        real = getattr(CodeBlockView, method)

        def spy(self: CodeBlockView, *args, _real=real) -> None:
            touched.append(id(self))
            _real(self, *args)

        monkeypatch.setattr(CodeBlockView, method, spy)
    monkeypatch.setattr(ProseView, "set_markdown", _spy_markdown(touched))
    answer = chat.add_message("assistant")
    first_block_end = ANSWER.index("```\n", ANSWER.index("```python") + 3) + 4
    stream(answer, ANSWER[:first_block_end])
    answer._render()  # what the render timer does next
    prose, code = answer.block_views()
    assert isinstance(code, CodeBlockView) and code.code().endswith("return x * x")
    touched.clear()
    stream(answer, ANSWER[first_block_end:])
    answer.end()
    assert answer.block_views()[:2] == [prose, code]
    assert id(code) not in touched and id(prose) not in touched


def _spy_markdown(touched: list[int]):
    real = ProseView.set_markdown

    def spy(self: ProseView, markdown: str) -> None:
        touched.append(id(self))
        real(self, markdown)

    return spy


def test_rendering_is_throttled_not_per_piece(qtbot, chat) -> None:
    answer = chat.add_message("assistant")
    answer.append("Hello ")
    answer.append("world")
    assert answer.block_views() == [], "nothing is rendered synchronously per piece"
    qtbot.waitUntil(lambda: len(answer.block_views()) == 1, timeout=2_000)
    prose = answer.block_views()[0]
    assert isinstance(prose, ProseView) and prose.markdown == "Hello world"


def test_copy_message_copies_the_markdown_source(qtbot, chat) -> None:
    message = chat.add_message("assistant", ANSWER)
    qtbot.mouseClick(message.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == ANSWER


def test_copy_on_a_code_block_copies_exactly_its_code(qtbot, chat) -> None:
    message = chat.add_message("assistant", ANSWER)
    sql = [w for w in message.block_views() if isinstance(w, CodeBlockView)][2]
    qtbot.mouseClick(sql.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "SELECT 3 * 3 AS nine;"


def test_view_follows_the_stream_unless_the_reader_scrolled_up(qtbot, chat) -> None:
    for _ in range(6):
        chat.add_message("user", "A question\n\n" * 5)
    bar = chat.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    answer = chat.add_message("assistant")
    stream(answer, ANSWER * 2)
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() and len(answer.block_views()) > 3)
    bar.setValue(0)  # the reader goes back up
    stream(answer, ANSWER)
    answer.end()
    qtbot.wait(100)  # let layout settle; the view must not jump back down
    assert bar.value() == 0


def test_remove_from_drops_later_messages(qtbot, chat) -> None:
    for text in ("one", "two", "three"):
        chat.add_message("user", text)
    chat.remove_from(1)
    assert [m.text() for m in chat.messages()] == ["one"]


def test_dark_theme_recolours_the_app_and_every_code_block(qtbot, chat) -> None:
    from PySide6.QtWidgets import QApplication

    from desktop.highlight import DARK_STYLE, LIGHT_STYLE
    from desktop.theme import apply_theme

    app = QApplication.instance()
    message = chat.add_message("assistant", ANSWER)
    try:
        chat.set_code_style(apply_theme(app, "dark"))
        assert app.palette().window().color().lightness() < 100
        codes = [w for w in message.block_views() if isinstance(w, CodeBlockView)]
        assert {c.highlighter.style_name() for c in codes} == {DARK_STYLE}
        later = chat.add_message("assistant", "```py\nx = 1\n```")
        assert later.block_views()[0].highlighter.style_name() == DARK_STYLE
        chat.set_code_style(apply_theme(app, "light"))
        assert app.palette().window().color().lightness() > 150
        assert {c.highlighter.style_name() for c in codes} == {LIGHT_STYLE}
        with pytest.raises(ValueError):
            apply_theme(app, "purple")
    finally:
        apply_theme(app, "light")
