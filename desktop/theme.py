"""Light and dark looks: Qt's Fusion style with a light or a dark palette.

"system" follows the desktop's colour scheme (and changes with it); "light" and
"dark" force one. Code blocks take a Pygments style that matches.

    style_name = apply_theme(app, "system")
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from desktop.highlight import DARK_STYLE, LIGHT_STYLE
from desktop.settings import THEMES

Role = QPalette.ColorRole
# Fusion's dark look: (role, colour). Disabled text is dimmed separately.
DARK_COLORS = (
    (Role.Window, "#2b2b2b"),
    (Role.WindowText, "#e6e6e6"),
    (Role.Base, "#1e1e1e"),
    (Role.AlternateBase, "#2b2b2b"),
    (Role.ToolTipBase, "#3a3a3a"),
    (Role.ToolTipText, "#e6e6e6"),
    (Role.PlaceholderText, "#8c8c8c"),
    (Role.Text, "#e6e6e6"),
    (Role.Button, "#353535"),
    (Role.ButtonText, "#e6e6e6"),
    (Role.BrightText, "#ff6b6b"),
    (Role.Link, "#6cb4ff"),
    (Role.Highlight, "#2f65ca"),
    (Role.HighlightedText, "#ffffff"),
)


def system_is_dark() -> bool:
    scheme = QGuiApplication.styleHints().colorScheme()
    if scheme != Qt.ColorScheme.Unknown:
        return scheme == Qt.ColorScheme.Dark
    return QGuiApplication.palette().window().color().lightness() < 128


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in DARK_COLORS:
        palette.setColor(role, QColor(color))
    for role in (Role.Text, Role.WindowText, Role.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return palette


def apply_theme(app: QApplication, theme: str) -> str:
    """Give the app the theme's look; return the Pygments style for code blocks."""
    if theme not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}, not {theme!r}")
    dark = theme == "dark" or (theme == "system" and system_is_dark())
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    return DARK_STYLE if dark else LIGHT_STYLE
