"""A card's transactions as a lazy table model: rows are formatted only when the view paints them.

Filling a QTableWidget made an item per cell up front (446 ms for 10k fills, on the UI thread,
again whenever the open card traded). This model keeps the engine's sequence as given and hands
the view rows a batch at a time (``fetchMore``), so opening a card with years of fills costs the
same as opening a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from app.ui import theme

BATCH = 200  # rows handed to the view per fetchMore
_CACHE = 512  # formatted rows kept (a screenful is ~20)

_Index = QModelIndex | QPersistentModelIndex
_DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
_ALIGNMENT = int(Qt.ItemDataRole.TextAlignmentRole.value)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole.value)
_LEFT = int((Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter).value)
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)


class TransactionsModel(QAbstractTableModel):
    """Read-only rows over a sequence of transactions (newest first), formatted by ``row_text``."""

    def __init__(self, columns: Sequence[str], row_text: Callable[[Any], tuple[str, ...]],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._columns = tuple(columns)
        self._row_text = row_text
        self._rows: Sequence[Any] = ()
        self._shown = 0  # rows the view has been given so far
        self._texts: dict[int, tuple[str, ...]] = {}

    def set_rows(self, rows: Sequence[Any]) -> None:
        """Show ``rows`` (kept, not copied); the view gets the first batch now, the rest as it scrolls."""
        self.beginResetModel()
        self._rows = rows
        self._shown = min(BATCH, len(rows))
        self._texts.clear()
        self.endResetModel()

    def total(self) -> int:
        """All rows, including those not handed to the view yet."""
        return len(self._rows)

    def text(self, row: int, column: int) -> str:
        """The text of one cell (formatted on first use)."""
        texts = self._texts.get(row)
        if texts is None:
            if len(self._texts) >= _CACHE:
                self._texts.clear()
            texts = self._texts[row] = self._row_text(self._rows[row])
        return texts[column]

    # -- QAbstractTableModel -------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        """Rows handed to the view so far."""
        return 0 if parent.isValid() else self._shown

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        """The fixed columns."""
        return 0 if parent.isValid() else len(self._columns)

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008 - Qt's signature
        """True while rows remain that the view has not been given."""
        return not parent.isValid() and self._shown < len(self._rows)

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:  # noqa: B008 - Qt's signature
        """Hand the view the next batch of rows (asked for as it scrolls near the end)."""
        if parent.isValid():
            return
        more = min(BATCH, len(self._rows) - self._shown)
        if more <= 0:
            return
        self.beginInsertRows(QModelIndex(), self._shown, self._shown + more - 1)
        self._shown += more
        self.endInsertRows()

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Column titles."""
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal \
                and 0 <= section < len(self._columns):
            return self._columns[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Text, alignment (time and side left, figures right) and the side's colour."""
        # A view asks about ten roles of every cell it paints: the roles used are compared as plain
        # ints first, so the others cost next to nothing (a screenful is ~1,000 calls per repaint).
        if role == _DISPLAY:
            if not index.isValid() or index.row() >= self._shown:
                return None
            return self.text(index.row(), index.column())
        if role == _ALIGNMENT:
            return _LEFT if index.column() < 2 else _RIGHT
        if role == _FOREGROUND and index.column() == 1 and index.isValid() and index.row() < self._shown:
            return theme.GREEN if self.text(index.row(), 1) == "BUY" else theme.RED
        return None
