"""The code block view: exact copies, language labels and real highlighting."""

from __future__ import annotations

import pytest
from pygments.lexers import PythonLexer
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.token import Keyword, String, _TokenType
from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QGuiApplication,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
)
from PySide6.QtWidgets import QPlainTextEdit

from desktop import code_block
from desktop.code_block import COPIED_TEXT, COPY_TEXT, MAX_VISIBLE_LINES, CodeBlockView
from desktop.highlight import PygmentsHighlighter, language_label, lexer_for

PYTHON_CODE = (
    "import os\n"
    "\n"
    "def greet(name):   \n"
    '    """Say hello.\n'
    "\n"
    "    Uses `name` as given.\n"
    '    """\n'
    '    return f"Hello, {name} from {os.getcwd()}"'
)
JS_CODE = "function add(a, b) {\n  const s = `sum ${a + b}`;  \n  return s;\n}\t"
SQL_CODE = "SELECT `id`, name  \nFROM users\nWHERE name LIKE '%a%';\n"
GIBBERISH = "qwzx plo vrrm\nzzkq mmt\nlorem ipsum dolor"


def make_view(qtbot, code: str, language: str | None, style: str = "friendly") -> CodeBlockView:
    view = CodeBlockView(code, language, style=style)
    qtbot.addWidget(view)
    view.resize(640, 200)
    view.show()
    return view


def format_at(document: QTextDocument, line: int, column: int) -> QTextCharFormat | None:
    """The highlighter's format at a position, or None where it left the text plain."""
    ranges = document.findBlockByNumber(line).layout().formats()
    for format_range in ranges:
        if format_range.start <= column < format_range.start + format_range.length:
            # A copy: the range's own format goes with the list.
            return QTextCharFormat(format_range.format)
    return None


def color_at(document: QTextDocument, line: int, column: int) -> str | None:
    fmt = format_at(document, line, column)
    if fmt is None or not fmt.hasProperty(QTextFormat.Property.ForegroundBrush):
        return None
    return fmt.foreground().color().name()


def style_color(style: str, token: _TokenType) -> str:
    return "#" + get_style_by_name(style).style_for_token(token)["color"]


# --- Copy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "language"),
    [(PYTHON_CODE, "python"), (JS_CODE, "javascript"), (SQL_CODE, "sql"), (JS_CODE, None)],
)
def test_copy_puts_exactly_the_code_on_the_clipboard(
    qtbot, code: str, language: str | None
) -> None:
    view = make_view(qtbot, code, language)
    QGuiApplication.clipboard().setText("something else")
    qtbot.mouseClick(view.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == code
    assert view.copy_button.text() == COPIED_TEXT
    qtbot.waitUntil(lambda: view.copy_button.text() == COPY_TEXT, timeout=5_000)


def test_copy_while_streaming_has_all_code_so_far(qtbot) -> None:
    view = make_view(qtbot, "", "python")
    view.append_code("x = 1  \n")
    view.append_code("y = `2`")
    view.copy()
    assert QGuiApplication.clipboard().text() == "x = 1  \ny = `2`"


# --- Language ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "code", "label"),
    [
        ("python", PYTHON_CODE, "Python"),
        ("py", PYTHON_CODE, "Python"),
        ("js", JS_CODE, "JavaScript"),
        ("sql", SQL_CODE, "SQL"),
        ("c++", "int main() {}", "C++"),
        ("rust", "fn main() {}", "Rust"),
        # No tag, or one Pygments does not know: guessed from the code.
        (None, PYTHON_CODE, "Python"),
        ("notalanguage", PYTHON_CODE, "Python"),
        (None, "#!/bin/bash\necho hello world\n", "Bash"),
        # Nothing to go on: plain text.
        (None, GIBBERISH, "Text"),
        (None, "x = 1", "Text"),
        ("plaintext", PYTHON_CODE, "Text"),
    ],
)
def test_language_label(qtbot, language: str | None, code: str, label: str) -> None:
    view = make_view(qtbot, code, language)
    assert view.language_label.text() == label
    assert language_label(lexer_for(language, code)) == label


def test_poor_guesses_fall_back_to_text() -> None:
    assert isinstance(lexer_for(None, GIBBERISH), TextLexer)
    assert isinstance(lexer_for(None, ""), TextLexer)
    assert isinstance(lexer_for("unknown-tag", GIBBERISH), TextLexer)


def test_controls_have_accessible_names(qtbot) -> None:
    view = make_view(qtbot, PYTHON_CODE, "python")
    assert view.copy_button.accessibleName() == "Copy code"
    assert view.run_button.accessibleName() == "Run code"
    assert view.output.accessibleName() == "Run output"
    assert view.language_label.accessibleName() == "Code language"
    assert view.editor.accessibleName() == "Code"
    assert view.editor.accessibleDescription() == "Python code"
    assert view.accessibleName() == "Code block"


# --- Highlighting --------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "language", "keyword", "identifier"),
    [
        (PYTHON_CODE, "python", (2, 0), (2, 4)),  # def / greet
        (SQL_CODE, "sql", (0, 0), (0, 13)),  # SELECT / name
        (JS_CODE, "js", (0, 0), (0, 9)),  # function / add
    ],
)
def test_keywords_are_coloured_unlike_identifiers(
    qtbot, code: str, language: str, keyword: tuple[int, int], identifier: tuple[int, int]
) -> None:
    view = make_view(qtbot, code, language)
    document = view.editor.document()
    keyword_color = color_at(document, *keyword)
    assert keyword_color is not None
    assert keyword_color != color_at(document, *identifier)


def test_docstring_is_coloured_on_every_line(qtbot) -> None:
    view = make_view(qtbot, PYTHON_CODE, "python")
    document = view.editor.document()
    doc_color = style_color("friendly", String.Doc)
    for line, column in [(3, 4), (5, 8), (6, 4)]:
        assert color_at(document, line, column) == doc_color
    assert color_at(document, 2, 4) != doc_color


def test_switching_style_recolours(qtbot) -> None:
    view = make_view(qtbot, PYTHON_CODE, "python")
    document = view.editor.document()
    assert color_at(document, 2, 0) == style_color("friendly", Keyword)
    light_base = view.editor.palette().color(QPalette.ColorRole.Base)
    view.set_style("monokai")
    assert view.highlighter.style_name() == "monokai"
    assert color_at(document, 2, 0) == style_color("monokai", Keyword)
    assert color_at(document, 5, 4) == style_color("monokai", String.Doc)
    assert view.editor.palette().color(QPalette.ColorRole.Base) != light_base


def test_an_edit_above_recolours_the_lines_below(qtbot) -> None:
    editor = QPlainTextEdit()
    qtbot.addWidget(editor)
    document = editor.document()
    # The empty line keeps its (empty) formatting, so Qt itself would stop there.
    document.setPlainText("first = 1\nsecond = 2\n\nthird = 3")
    highlighter = PygmentsHighlighter(document, PythonLexer(), "friendly")
    assert highlighter.lexer().name == "Python"
    assert color_at(document, 3, 0) is None
    # Opening a string on the first line turns every later line into string.
    cursor = QTextCursor(document)
    cursor.insertText('"""')
    string_color = style_color("friendly", String)
    assert color_at(document, 1, 0) == string_color
    assert color_at(document, 3, 0) == string_color
    cursor.deletePreviousChar()
    assert color_at(document, 3, 0) is None


def test_streamed_code_is_appended_and_coloured(qtbot) -> None:
    view = make_view(qtbot, "", None)
    document = view.editor.document()
    changes: list[tuple[int, int, int]] = []
    document.contentsChange.connect(lambda at, removed, added: changes.append((at, removed, added)))
    pieces = [PYTHON_CODE[i : i + 7] for i in range(0, len(PYTHON_CODE), 7)]
    for piece in pieces:
        view.append_code(piece)
    assert view.code() == PYTHON_CODE
    qtbot.waitUntil(lambda: view.editor.toPlainText() == PYTHON_CODE, timeout=5_000)
    # Text only ever went in at the end: the document was never rebuilt.
    assert changes and all(removed == 0 for _, removed, _ in changes)
    # Without a tag the block is plain text until it is finished, then guessed.
    assert view.language_label.text() == "Text"
    view.set_code(PYTHON_CODE, None)
    assert view.language_label.text() == "Python"
    assert all(removed == 0 for _, removed, _ in changes)
    assert color_at(document, 2, 0) == style_color("friendly", Keyword)
    assert color_at(document, 5, 8) == style_color("friendly", String.Doc)


def test_set_code_replaces_different_code(qtbot) -> None:
    view = make_view(qtbot, "print(1)", "python")
    view.set_code(SQL_CODE, "sql")
    assert view.editor.toPlainText() == SQL_CODE
    assert view.code() == SQL_CODE
    assert view.language() == "sql"
    assert view.language_label.text() == "SQL"


# --- Size ----------------------------------------------------------------------


def code_of(lines: int) -> str:
    return "\n".join(f"value_{i} = {i}" for i in range(lines))


def test_short_blocks_show_every_line_without_an_inner_scroll_bar(qtbot) -> None:
    for lines in (1, 12, MAX_VISIBLE_LINES):
        view = make_view(qtbot, code_of(lines), "python")
        qtbot.waitExposed(view)
        scroll_bar = view.editor.verticalScrollBar()
        assert view.editor.verticalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        assert scroll_bar.maximum() == 0
        assert isinstance(view.editor, QPlainTextEdit)
        assert view.editor.lineWrapMode() == QPlainTextEdit.LineWrapMode.NoWrap


def test_long_blocks_scroll_inside_a_capped_height(qtbot) -> None:
    capped = make_view(qtbot, code_of(MAX_VISIBLE_LINES), "python")
    long = make_view(qtbot, code_of(3 * MAX_VISIBLE_LINES), "python")
    qtbot.waitExposed(long)
    assert long.editor.height() == capped.editor.height()
    assert long.editor.verticalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAsNeeded
    assert long.editor.verticalScrollBar().maximum() > 0


def test_height_grows_while_streaming(qtbot) -> None:
    view = make_view(qtbot, "a = 1", "python")
    one_line = view.editor.height()
    view.append_code("\nb = 2\nc = 3")
    qtbot.waitUntil(lambda: view.editor.height() > one_line, timeout=5_000)


def test_a_wide_line_scrolls_sideways_and_keeps_every_line_visible(qtbot) -> None:
    view = make_view(qtbot, "x = '" + "a" * 400 + "'\ny = 2", "python")
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: view.editor.horizontalScrollBar().isVisible(), timeout=5_000)
    assert view.editor.verticalScrollBar().maximum() == 0


@pytest.mark.parametrize(
    ("language", "code"),
    [
        # Lexers of other kinds than the plain regex one: extended and delegating.
        ("ruby", "def hello\n  puts <<~TEXT\n    hi\n  TEXT\nend"),
        ("html+jinja", "<ul>\n{% for x in items %}\n  <li>{{ x }}</li>\n{% endfor %}\n</ul>"),
        ("diff", "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new"),
        ("yaml", "name: kodcu\nitems:\n  - one\n  - two"),
    ],
)
def test_other_lexers_colour_something(qtbot, language: str, code: str) -> None:
    view = make_view(qtbot, code, language)
    document = view.editor.document()
    lines = code.split("\n")
    coloured = [
        (line, column)
        for line, text in enumerate(lines)
        for column in range(len(text))
        if color_at(document, line, column) is not None
    ]
    assert coloured


def run_block(qtbot, view: CodeBlockView) -> str:
    with qtbot.waitSignal(view.ran, timeout=30_000):
        qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
        assert not view.run_button.isEnabled(), "one run at a time"
    assert view.output.isVisible() and view.run_button.isEnabled()
    return view.output.toPlainText()


def test_run_shows_the_output_and_how_the_program_ended(qtbot) -> None:
    view = CodeBlockView("import sys\nprint(6 * 7)\nprint('oops', file=sys.stderr)\n", "python")
    qtbot.addWidget(view)
    view.show()
    assert view.run_button.isVisible() and not view.output.isVisible()
    shown = run_block(qtbot, view)
    assert shown.startswith("42\nstderr:\noops\n[exit status 0 · ")


def test_run_reports_a_failure_and_a_runaway_program(qtbot, monkeypatch) -> None:
    failing = CodeBlockView("raise ValueError('bad input')\n", "python")
    qtbot.addWidget(failing)
    failing.show()
    assert "ValueError: bad input" in run_block(qtbot, failing)
    monkeypatch.setattr(code_block, "RUN_WALL_S", 1.0)  # a short wait for the test
    endless = CodeBlockView("while True:\n    pass\n", "python")
    qtbot.addWidget(endless)
    endless.show()
    assert "[timeout: " in run_block(qtbot, endless)


def test_only_python_blocks_can_be_run(qtbot) -> None:
    view = CodeBlockView("SELECT 1;", "sql")
    qtbot.addWidget(view)
    view.show()
    assert not view.run_button.isVisible()
