"""The lazy transactions model answers the roles the table view paints with, and nothing else."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt

from app.ui import theme
from app.ui.transactions_model import BATCH, TransactionsModel


def rows(n: int) -> list[tuple[str, str, str]]:
    return [(f"t{i}", "BUY" if i % 2 else "SELL", f"{i}") for i in range(n)]


def test_cells_are_text_aligned_and_coloured_by_side(qapp):
    model = TransactionsModel(("TIME", "SIDE", "SHARES"), lambda row: row)
    model.set_rows(rows(BATCH + 5))
    assert model.rowCount() == BATCH and model.canFetchMore()  # the rest as the view scrolls
    cell = model.index(3, 1)
    assert model.data(cell, Qt.ItemDataRole.DisplayRole) == "BUY"
    assert model.data(model.index(4, 1)) == "SELL"  # display is the default role
    assert model.data(model.index(4, 1), Qt.ItemDataRole.ForegroundRole) == theme.RED
    assert model.data(cell, Qt.ItemDataRole.ForegroundRole) == theme.GREEN
    assert model.data(model.index(3, 0), Qt.ItemDataRole.ForegroundRole) is None  # only the side
    left = int((Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter).value)
    right = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
    assert model.data(model.index(0, 0), Qt.ItemDataRole.TextAlignmentRole) == left
    assert model.data(model.index(0, 2), Qt.ItemDataRole.TextAlignmentRole) == right
    for role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.FontRole):
        assert model.data(cell, role) is None
    assert model.data(QModelIndex()) is None
    model.fetchMore()
    assert model.rowCount() == BATCH + 5 and not model.canFetchMore()
    assert model.data(model.index(BATCH + 4, 2)) == f"{BATCH + 4}"
