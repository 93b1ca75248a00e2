"""Syntax highlighting for code blocks: Pygments lexers and styles inside Qt text documents.

`lexer_for` picks a lexer from a fence's language tag, or guesses one from the
code; `PygmentsHighlighter` colours a QTextDocument with it. The highlighter
lexes the whole document after each change, so tokens that span lines
(docstrings, block comments) are coloured on every line they cover, and it
works the same for every lexer Pygments has, not only the regex-based ones.
"""

from __future__ import annotations

from bisect import bisect_right

from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, guess_lexer
from pygments.lexers.special import TextLexer
from pygments.style import Style
from pygments.styles import get_style_by_name
from pygments.token import Token, _TokenType
from pygments.util import ClassNotFound
from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)

LIGHT_STYLE = "friendly"
DARK_STYLE = "monokai"

# Fence tags that mean "no language" but that Pygments does not know by name.
_PLAIN_TAGS = frozenset({"plaintext", "plain", "txt", "none", "nohighlight", "nohl"})
# Guessing from a line or two is mostly noise.
_MIN_GUESS_CHARS = 16
# guess_lexer returns the best score even when every lexer scores near zero
# (TextLexer itself scores 0.01), so such a "winner" is no evidence at all.
_MIN_GUESS_SCORE = 0.1

# The languages answers use most. Importing a lexer's module costs 5-30 ms the
# first time, long enough to stutter a streaming answer, so the app imports
# these in the background at start-up (`warm_up`).
COMMON_LANGUAGES = (
    "python", "javascript", "typescript", "sql", "rust", "bash", "c", "cpp", "java",
    "go", "json", "yaml", "html", "css",
)  # fmt: skip

# One token: (column in its line, length, token type).
Span = tuple[int, int, _TokenType]


def lexer_for(language: str | None, code: str) -> Lexer:
    """The lexer for a fence's language tag; without a tag, or an unknown one, a guess."""
    if language:
        tag = language.strip().lower()
        if tag in _PLAIN_TAGS:
            return TextLexer()
        try:
            return get_lexer_by_name(tag)
        except ClassNotFound:
            pass
    return _guess_lexer(code)


def warm_up(languages: tuple[str, ...] = COMMON_LANGUAGES) -> None:
    """Import the lexers for `languages` now, so the first code block does not wait."""
    for name in languages:
        get_lexer_by_name(name)


def _guess_lexer(code: str) -> Lexer:
    if len(code.strip()) < _MIN_GUESS_CHARS:
        return TextLexer()
    try:
        lexer = guess_lexer(code)
    except ClassNotFound:
        return TextLexer()
    if type(lexer).analyse_text(code) <= _MIN_GUESS_SCORE:
        return TextLexer()
    return lexer


def language_label(lexer: Lexer) -> str:
    """The name shown above a code block: "Python", "JavaScript", "SQL", "Text"."""
    if isinstance(lexer, TextLexer):
        return "Text"
    return str(lexer.name)


def default_style_name() -> str:
    """A dark Pygments style when the desktop uses a dark colour scheme, else a light one."""
    if QGuiApplication.instance() is None:
        return LIGHT_STYLE
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return DARK_STYLE
    if scheme == Qt.ColorScheme.Light:
        return LIGHT_STYLE
    # The scheme is unknown on some desktops; the window colour still tells.
    dark = QGuiApplication.palette().window().color().lightness() < 128
    return DARK_STYLE if dark else LIGHT_STYLE


def style_colors(name: str) -> tuple[QColor, QColor]:
    """(background, plain text) colours of a Pygments style."""
    style = get_style_by_name(name)
    background = QColor(style.background_color)
    color = style.style_for_token(Token).get("color")
    if color:
        return background, QColor(f"#{color}")
    # Styles without a text colour rely on the reader's default, dark on light.
    fallback = "#000000" if background.lightness() >= 128 else "#f8f8f2"
    return background, QColor(fallback)


def _char_format(style: type[Style], token: _TokenType) -> QTextCharFormat | None:
    """The Qt format for a token type, or None when the style leaves it plain."""
    # Lexers may invent token types that a style does not list; their parents are styled.
    while not style.styles_token(token) and token.parent is not None:
        token = token.parent
    spec = style.style_for_token(token)
    fmt = QTextCharFormat()
    plain = True
    if spec["color"]:
        fmt.setForeground(QColor(f"#{spec['color']}"))
        plain = False
    if spec["bgcolor"]:
        fmt.setBackground(QColor(f"#{spec['bgcolor']}"))
        plain = False
    if spec["bold"]:
        fmt.setFontWeight(QFont.Weight.Bold)
        plain = False
    if spec["italic"]:
        fmt.setFontItalic(True)
        plain = False
    if spec["underline"]:
        fmt.setFontUnderline(True)
        plain = False
    return None if plain else fmt


def _spans_by_line(lines: list[str], lexer: Lexer) -> list[list[Span]]:
    """Lex the lines as one text and cut every token at the line breaks."""
    starts: list[int] = []
    position = 0
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    spans: list[list[Span]] = [[] for _ in lines]
    # A final line break, as Lexer.get_tokens adds, keeps rules that end at "\n" working.
    # The unprocessed tokens carry positions in exactly the text given, which the
    # preprocessing of get_tokens (stripping, tab expansion) would shift.
    text = "\n".join(lines) + "\n"
    for index, token, value in lexer.get_tokens_unprocessed(text):
        line = bisect_right(starts, index) - 1
        column = index - starts[line]
        for number, part in enumerate(value.split("\n")):
            if number:
                line += 1
                column = 0
            if part and line < len(spans):
                spans[line].append((column, len(part), token))
            column += len(part)
    return spans


class PygmentsHighlighter(QSyntaxHighlighter):
    """Colours a QTextDocument with a Pygments lexer and style.

    After each change the whole document is lexed once and each token is cut
    into per-block ranges. A block's state is a signature of its ranges: blocks
    whose ranges changed outside the edited region (a docstring opened above
    them) are found by that signature and highlighted again.
    """

    def __init__(
        self, document: QTextDocument, lexer: Lexer | None = None, style: str | None = None
    ) -> None:
        super().__init__(None)
        self.setParent(document)
        self._lexer: Lexer = lexer if lexer is not None else TextLexer()
        self._style_name = style or default_style_name()
        self._style: type[Style] = get_style_by_name(self._style_name)
        self._formats: dict[_TokenType, QTextCharFormat | None] = {}
        self._spans: list[list[Span]] = []
        self._signatures: list[int] = []
        self._stale = True
        # Connected before setDocument connects Qt's own reformatting, so the tokens
        # are known to be stale before any block of a changed document is formatted.
        document.contentsChange.connect(self._mark_stale)
        self.setDocument(document)
        # Connected after it, so this runs once Qt has formatted the edited blocks.
        document.contentsChange.connect(self._repair_other_blocks)
        self.rehighlight()

    def lexer(self) -> Lexer:
        return self._lexer

    def set_lexer(self, lexer: Lexer) -> None:
        self._lexer = lexer
        self._stale = True
        self.rehighlight()

    def style_name(self) -> str:
        return self._style_name

    def set_style(self, name: str) -> None:
        """Switch to another Pygments style (by name) and colour everything again."""
        self._style = get_style_by_name(name)
        self._style_name = name
        self._formats.clear()
        self.rehighlight()

    def highlightBlock(self, text: str) -> None:  # noqa: N802 - Qt's name
        if self._stale:
            self._relex()
        number = self.currentBlock().blockNumber()
        if number >= len(self._spans):
            return
        for column, length, token in self._spans[number]:
            fmt = self._format(token)
            if fmt is not None:
                self.setFormat(column, length, fmt)
        self.setCurrentBlockState(self._signatures[number])

    def _format(self, token: _TokenType) -> QTextCharFormat | None:
        if token not in self._formats:
            self._formats[token] = _char_format(self._style, token)
        return self._formats[token]

    def _relex(self) -> None:
        # Block texts rather than toPlainText(): that also breaks lines at U+2028,
        # which would shift every later block.
        lines: list[str] = []
        block = self.document().firstBlock()
        while block.isValid():
            lines.append(block.text())
            block = block.next()
        self._spans = _spans_by_line(lines, self._lexer)
        # Masked to a non-negative int: -1 is Qt's "no state".
        self._signatures = [hash(tuple(spans)) & 0x3FFFFFFF for spans in self._spans]
        self._stale = False

    def _mark_stale(self, _position: int, _removed: int, _added: int) -> None:
        self._stale = True

    def _repair_other_blocks(self, _position: int, _removed: int, _added: int) -> None:
        if self._stale:
            self._relex()
        block = self.document().firstBlock()
        while block.isValid():
            number = block.blockNumber()
            if number < len(self._signatures) and block.userState() != self._signatures[number]:
                self.rehighlightBlock(block)
            block = block.next()
