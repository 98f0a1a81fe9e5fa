"""The top bar: mode badge, market and feed status, total P&L, available cash, clock, halt and settings."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from app.engine.events import AccountSummary, MarketStatus, StreamStatus
from app.engine.portfolio.money import format_money
from app.ui import theme
from app.ui.card import STATE_COLORS, pnl_state
from app.ui.widgets import ElidedLabel, button, local_time

MODES = {"sim": "SIM", "paper": "PAPER", "live": "LIVE"}


def market_text(status: MarketStatus | None) -> str:
    """"OPEN until 16:00" or "CLOSED · opens Mon 09:30", in the wall's local time."""
    if status is None:
        return "MARKET ?"
    if status.is_open:
        return f"OPEN until {local_time(status.next_close)}"
    return f"CLOSED · opens {local_time(status.next_open, '%a %H:%M')}"


def stream_text(status: StreamStatus | None) -> tuple[str, QColor]:
    """The feed state and its colour: live green, reconnecting or limited amber, failed red, else grey."""
    if status is None:
        return "FEED ?", theme.DIM
    # The reason of a degraded feed goes to the notice line (the window does that): the header is too
    # narrow on the 7" panel for more than the state.
    name = "SIM FEED" if status.simulated else "FEED"
    text = f"{name} {'ok' if status.state == 'live' else status.state}"
    color = {"live": theme.GREEN, "reconnecting": theme.AMBER, "limited": theme.AMBER,
             "failed": theme.RED}.get(status.state, theme.DIM)
    return text, color


class Header(QWidget):
    """Shows the engine's market, stream and account state; emits the user's halt/resume/settings taps."""

    halt_requested = Signal()
    resume_requested = Signal()
    settings_requested = Signal()

    def __init__(self, mode: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._halted = False
        self.badge = QLabel()
        self.badge.setObjectName("modeBadge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.market = ElidedLabel()
        self.stream = ElidedLabel()
        self.pnl = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
        self.cash = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
        self.clock = QLabel()
        self.clock.setProperty("textSize", "large")
        self.halt_button: QPushButton = button("HALT", kind="danger")
        self.halt_button.setObjectName("haltButton")
        self.settings_button: QPushButton = button("⚙")
        self.settings_button.setObjectName("settingsButton")
        self.halt_button.clicked.connect(self._halt_clicked)
        self.settings_button.clicked.connect(self.settings_requested)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(self.badge)
        layout.addWidget(self.market, 4)
        layout.addWidget(self.stream, 3)
        layout.addWidget(self.pnl, 2)
        layout.addWidget(self.cash, 2)
        layout.addWidget(self.clock)
        layout.addWidget(self.halt_button)
        layout.addWidget(self.settings_button)
        for w in (self.market, self.stream):
            w.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        for w in (self.pnl, self.cash):  # money never elides: the status lines give way first
            w.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)

        self.set_mode(mode)
        self.set_market(None)
        self.set_stream(None)
        self.set_account(None)
        self._clock_timer = QTimer(self)
        self._clock_timer.timeout.connect(self._tick)
        self._clock_timer.start(1000)
        self._tick()

    # -- engine state ----------------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """Badge for 'sim', 'paper' or 'live' (LIVE is white on red)."""
        mode = mode if mode in MODES else "sim"
        self.badge.setText(MODES[mode])
        self.badge.setProperty("mode", mode)
        self.badge.style().unpolish(self.badge)  # the mode rarely changes; a re-polish is fine here
        self.badge.style().polish(self.badge)

    @property
    def mode_text(self) -> str:
        """The badge's text."""
        return self.badge.text()

    def set_market(self, status: MarketStatus | None) -> None:
        """Market open/closed line."""
        self.market.setText(market_text(status))
        self._market_now = status.now if status is not None else None
        self._tick()
        self.market.set_color(theme.GREEN if status is not None and status.is_open else theme.DIM)

    def set_stream(self, status: StreamStatus | None) -> None:
        """Feed line with its reason when degraded."""
        text, color = stream_text(status)
        self.stream.setText(text)
        self.stream.set_color(color)

    def set_account(self, account: AccountSummary | None) -> None:
        """Total P&L, available cash and the halt button's sense."""
        if account is None:
            self.pnl.setText("P&L —")
            self.cash.setText("CASH —")
            self.pnl.set_color(theme.DIM)
            self._set_halted(False)
            return
        self.pnl.setText(f"P&L {format_money(account.total_pnl, signed=True)}")
        self.pnl.set_color(STATE_COLORS[pnl_state(account.total_pnl)])
        if account.available_cash is None:
            self.cash.setText("CASH unavailable")
            self.cash.set_color(theme.AMBER)
        else:
            self.cash.setText(f"CASH {format_money(account.available_cash)}")
            self.cash.set_color(theme.WHITE)
        if account.mode in MODES and MODES[account.mode] != self.badge.text():
            self.set_mode(account.mode)
        self._set_halted(account.halted)

    def _set_halted(self, halted: bool) -> None:
        self._halted = halted
        self.halt_button.setText("RESUME" if halted else "HALT")
        self.halt_button.setProperty("kind", "primary" if halted else "danger")
        self.halt_button.style().unpolish(self.halt_button)
        self.halt_button.style().polish(self.halt_button)

    @property
    def halted(self) -> bool:
        """Whether the last account summary said trading is halted."""
        return self._halted

    def _halt_clicked(self) -> None:
        (self.resume_requested if self._halted else self.halt_requested).emit()

    def _tick(self) -> None:
        # The simulated market runs on its own clock: show its time, not the wall's.
        sim_now = getattr(self, "_market_now", None) if self.badge.text() == MODES["sim"] else None
        text = (sim_now or datetime.now()).astimezone().strftime("%H:%M")
        if self.clock.text() != text:
            self.clock.setText(text)
