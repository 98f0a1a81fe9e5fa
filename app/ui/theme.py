"""The kiosk look: black terminal, white monospace text, green/red accents, sizes derived from the window.

Colours of text that changes at run time (P&L, status) are set through the widget palette, never the
style sheet: a style-sheet ``color`` would override every palette change and re-polishing a widget per
update is far too slow for 50 cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication, QWidget

FONT_FAMILIES = ["DejaVu Sans Mono", "Liberation Mono", "Monospace"]

BLACK = QColor("#000000")
WHITE = QColor("#ffffff")
GREY = QColor("#4b5563")  # separators and idle borders
DIM = QColor("#9ca3af")  # secondary text
GREEN = QColor("#22c55e")
RED = QColor("#ef4444")
AMBER = QColor("#f59e0b")

MIN_TOUCH_PX = 48
# The repository's resources/ ships inside the package as app/resources (see pyproject.toml).
STYLE_SHEET = files("app") / "resources" / "kiosk.qss"


@dataclass(frozen=True, slots=True)
class Metrics:
    """Pixel sizes for one window size: fonts, touch targets and card widths all scale with it.

    Readability from 2 m on the 7" panel (0.193 mm/px) needs about 40 px for a figure: ``glance_px``.
    ``scale`` is 1.0 on the 800×480 panel and grows with the smaller of the height and width ratios,
    so a 1920×1080 monitor shows the same layout, larger, and nothing is ever cut off.
    """

    scale: float
    small_px: int
    base_px: int
    large_px: int
    huge_px: int
    figure_px: int  # what must read from across the room: a card's ticker and price
    glance_px: int  # the biggest figures: a card's P&L, the account's value and day's P&L (≈ 8 mm at 800×480)
    touch_px: int
    pad_px: int
    card_width: int
    radius_px: int

    @classmethod
    def for_size(cls, size: QSize) -> "Metrics":
        """Metrics for a window of ``size`` (sizes below 800×480 use the 800×480 metrics)."""
        scale = min(size.height() / 480, size.width() / 800)
        scale = max(1.0, min(scale, 4.0))
        return cls(
            scale=round(scale, 3),
            small_px=round(11 * scale),
            base_px=round(13 * scale),
            large_px=round(17 * scale),
            huge_px=round(24 * scale),
            figure_px=round(24 * scale),
            glance_px=round(40 * scale),
            touch_px=max(MIN_TOUCH_PX, round(44 * scale)),
            pad_px=round(8 * scale),
            card_width=round(244 * scale),
            radius_px=max(2, round(3 * scale)),
        )


def mono_font(px: int, *, bold: bool = False) -> QFont:
    """The terminal font at ``px`` pixels, falling back through :data:`FONT_FAMILIES`."""
    font = QFont()
    font.setFamilies(FONT_FAMILIES)
    font.setStyleHint(QFont.StyleHint.Monospace)
    font.setPixelSize(max(1, px))
    font.setBold(bold)
    return font


def set_text_color(widget: QWidget, color: QColor) -> None:
    """Recolour a widget's text cheaply (palette only; no style-sheet re-polish)."""
    palette = widget.palette()
    if palette.color(QPalette.ColorRole.WindowText) == color:
        return
    palette.setColor(QPalette.ColorRole.WindowText, color)
    palette.setColor(QPalette.ColorRole.Text, color)
    palette.setColor(QPalette.ColorRole.ButtonText, color)
    widget.setPalette(palette)


def base_palette() -> QPalette:
    """White on black for every role the kiosk uses; disabled text is grey."""
    palette = QPalette()
    for role in (QPalette.ColorRole.Window, QPalette.ColorRole.Base, QPalette.ColorRole.Button,
                 QPalette.ColorRole.AlternateBase):
        palette.setColor(role, BLACK)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.BrightText):
        palette.setColor(role, WHITE)
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, GREY)
    palette.setColor(QPalette.ColorRole.Highlight, WHITE)
    palette.setColor(QPalette.ColorRole.HighlightedText, BLACK)
    return palette


def install_palette() -> None:
    """Make white-on-black the application palette.

    Widgets under a style sheet take their unset palette roles from the application, not from
    their parent, so the window's own palette would leave labels black on black.
    """
    app = QApplication.instance()
    if isinstance(app, QApplication):
        app.setPalette(base_palette())


def stylesheet(metrics: Metrics) -> str:
    """``resources/kiosk.qss`` with its ``@name@`` size tokens filled in from ``metrics``."""
    text = STYLE_SHEET.read_text(encoding="utf-8")
    tokens = {
        "fonts": ", ".join(f'"{f}"' for f in FONT_FAMILIES),
        "small": f"{metrics.small_px}px",
        "base": f"{metrics.base_px}px",
        "large": f"{metrics.large_px}px",
        "huge": f"{metrics.huge_px}px",
        "figure": f"{metrics.figure_px}px",
        "glance": f"{metrics.glance_px}px",
        "touch": f"{metrics.touch_px}px",
        "pad": f"{metrics.pad_px}px",
        "halfpad": f"{max(2, metrics.pad_px // 2)}px",
        "radius": f"{metrics.radius_px}px",
    }
    for name, value in tokens.items():
        text = text.replace(f"@{name}@", value)
    return text
