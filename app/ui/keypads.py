"""On-screen keypads: there is no keyboard on the wall. Every key is a touch target of at least 48 px."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QPushButton, QSizePolicy, QWidget

from app.ui import theme
from app.ui.widgets import button

BACK, CLEAR, OK = "BACK", "CLEAR", "OK"
_LABELS = {BACK: "⌫", CLEAR: "CLR", OK: "OK"}

PIN_KEYS: tuple[tuple[str, ...], ...] = (("1", "2", "3"), ("4", "5", "6"), ("7", "8", "9"), (BACK, "0", OK))
NUMBER_KEYS: tuple[tuple[str, ...], ...] = (("1", "2", "3", BACK), ("4", "5", "6", CLEAR),
                                            ("7", "8", "9", "."), ("0", "0", "0", "0"))
LETTER_KEYS: tuple[tuple[str, ...], ...] = (tuple("ABCDEFG"), tuple("HIJKLMN"), tuple("OPQRSTU"),
                                            ("V", "W", "X", "Y", "Z", ".", BACK))


class Keypad(QWidget):
    """A grid of keys; ``rows`` name each cell, and a key repeated in a row spans those cells.

    Emits ``key`` with the key's name: a character, or :data:`BACK`, :data:`CLEAR`, :data:`OK`.
    """

    key = Signal(str)

    def __init__(self, rows: Sequence[Sequence[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._columns = max(len(r) for r in rows)
        self._rows = len(rows)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        self._grid = grid
        for r, row in enumerate(rows):
            c = 0
            while c < len(row):
                name = row[c]
                span = 1
                while c + span < len(row) and row[c + span] == name:
                    span += 1
                key = button(_LABELS.get(name, name), kind="key")
                if name == OK:
                    key.setProperty("accent", True)
                key.setObjectName(f"key_{name}")
                key.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
                key.clicked.connect(lambda _=False, n=name: self.key.emit(n))
                grid.addWidget(key, r, c, 1, span)
                self.buttons[name] = key
                c += span

    def minimum_width(self, metrics: theme.Metrics) -> int:
        """Narrowest width that keeps every key a full touch target at ``metrics`` (+2: the key's border)."""
        return self._columns * (metrics.touch_px + 2) + (self._columns - 1) * self._grid.spacing()

    def minimum_height(self, metrics: theme.Metrics) -> int:
        """Lowest height that keeps every key a full touch target at ``metrics``."""
        return self._rows * (metrics.touch_px + 2) + (self._rows - 1) * self._grid.spacing()

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Keep keys at least a touch target in both directions."""
        self.setMinimumSize(self.minimum_width(metrics), self.minimum_height(metrics))

    def set_keys_enabled(self, enabled: bool) -> None:
        """Enable or disable every key (PIN lockout, busy)."""
        for key in self.buttons.values():
            key.setEnabled(enabled)


def edit_text(text: str, key: str, *, max_len: int = 32) -> str:
    """``text`` after pressing ``key``: BACK drops the last character, CLEAR empties, others append."""
    if key == BACK:
        return text[:-1]
    if key == CLEAR:
        return ""
    if key == OK:
        return text
    if len(text) >= max_len:
        return text
    return text + key
