"""The top bar: mode, market with a countdown, feed, date; the account's value and day's P&L at a glance;
cash, clock, halt and settings."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from app.engine.events import AccountSummary, MarketStatus, StreamStatus
from app.engine.portfolio.money import format_money_compact
from app.ui import theme
from app.ui.card import STATE_COLORS, pnl_state
from app.ui.widgets import ElidedLabel, button

MODES = {"sim": "SIM", "paper": "PAPER", "live": "LIVE"}
NEW_YORK = ZoneInfo("America/New_York")


def countdown(delta: timedelta) -> str:
    """``in 14 h 32 min`` / ``in 2 d 3 h`` / ``in 5 min`` (whole minutes, rounded up), ``now`` when due."""
    minutes = math.ceil(delta.total_seconds() / 60)
    if minutes <= 0:
        return "now"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"in {days} d {hours} h"
    if hours:
        return f"in {hours} h {mins} min"
    return f"in {mins} min"


def market_text(status: MarketStatus | None, now: datetime | None = None) -> str:
    """"OPEN · closes 16:00 ET · in 3 h 55 min" or "CLOSED · opens Wed 09:30 ET · in 14 h 32 min".

    Exchange times are in New York time (what the market's hours are quoted in); ``now`` defaults to
    the status's own moment.
    """
    if status is None:
        return "MARKET ?"
    now = now or status.now
    if status.is_open:
        return f"OPEN · closes {status.next_close.astimezone(NEW_YORK):%H:%M} ET · {countdown(status.next_close - now)}"
    return f"CLOSED · opens {status.next_open.astimezone(NEW_YORK):%a %H:%M} ET · {countdown(status.next_open - now)}"


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
    """Shows the engine's market, stream and account state; emits the user's halt/resume/settings taps.

    Two rows beside the HALT and settings buttons: the status line (mode, market with the next open
    or close and a countdown, feed, date, clock) and the glance line (the account's value and the
    day's P&L in glance-size digits, the cash free for new cards).
    """

    halt_requested = Signal()
    resume_requested = Signal()
    settings_requested = Signal()

    def __init__(self, mode: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._halted = False
        self._market: MarketStatus | None = None
        self._market_now: datetime | None = None
        self.badge = QLabel()
        self.badge.setObjectName("modeBadge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.market = ElidedLabel()
        self.stream = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
        self.date = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
        self.value = ElidedLabel(size="glance")
        self.pnl = ElidedLabel(size="glance")
        self.cash = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
        # What the glance P&L covers is said in words: TODAY is the running cards' day; ALL CARDS
        # is every card since it started, the stopped cards' realised P&L included.
        self.total = ElidedLabel(size="small", align=Qt.AlignmentFlag.AlignRight)
        self.clock = ElidedLabel(size="large", align=Qt.AlignmentFlag.AlignRight)
        self.halt_button: QPushButton = button("HALT", kind="danger")
        self.halt_button.setObjectName("haltButton")
        self.settings_button: QPushButton = button("⚙", kind="icon")  # a square touch target, no text padding
        self.settings_button.setObjectName("settingsButton")
        self.halt_button.clicked.connect(self._halt_clicked)
        self.settings_button.clicked.connect(self.settings_requested)

        status = QHBoxLayout()
        status.setSpacing(10)
        status.addWidget(self.badge)
        status.addWidget(self.market)
        status.addWidget(self.stream, 1)
        status.addWidget(self.date)
        status.addWidget(self.clock)
        glance = QHBoxLayout()
        glance.setSpacing(6)
        self._captions = []
        # "RUNNING TODAY" on two lines beside the day's P&L: a card stopped today is in ALL CARDS.
        for caption, widget in (("VALUE", self.value), ("RUNNING TODAY", self.pnl)):
            cap = ElidedLabel(caption, size="small", lines=caption.count(" ") + 1)
            cap.set_color(theme.DIM)
            cap.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
            self._captions.append(cap)
            glance.addWidget(cap, 0, Qt.AlignmentFlag.AlignBottom)
            glance.addWidget(widget)
            glance.addSpacing(6)  # 14 pushed an 800×480 window past its screen with six-figure amounts
        side = QVBoxLayout()
        side.setSpacing(0)
        side.addStretch(1)
        side.addWidget(self.total)
        side.addWidget(self.cash)
        glance.addLayout(side, 1)
        rows = QVBoxLayout()
        rows.setSpacing(0)
        rows.addLayout(status)
        rows.addLayout(glance)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addLayout(rows, 1)
        layout.addWidget(self.halt_button)
        layout.addWidget(self.settings_button)
        for tall in (self.halt_button, self.settings_button):
            tall.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Expanding)  # the header's height
        # The market line, the money and the clock never elide: the feed line gives way first.
        for whole in (self.market, self.date, self.value, self.pnl, self.cash, self.total, self.clock):
            whole.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        self.stream.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

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
        """Market open/closed line with the next open or close and a countdown."""
        self._market = status
        self._market_now = status.now if status is not None else None
        self.market.set_color(theme.GREEN if status is not None and status.is_open else theme.DIM)
        self._tick()

    def set_stream(self, status: StreamStatus | None) -> None:
        """Feed line (its reason, when degraded, goes to the notice line)."""
        text, color = stream_text(status)
        self.stream.setText(text)
        self.stream.set_color(color)

    def set_account(self, account: AccountSummary | None) -> None:
        """Account value, the day's P&L, available cash and the halt button's sense."""
        if account is None:
            for label in (self.value, self.pnl):
                label.setText("—")
                label.set_color(theme.DIM)
            self.cash.setText("CASH —")
            self.total.setText("ALL CARDS —")
            self.total.set_color(theme.DIM)
            self._set_halted(False)
            return
        self.total.setText(f"ALL CARDS {format_money_compact(account.all_cards_pnl, signed=True)}")
        self.total.set_color(STATE_COLORS[pnl_state(account.all_cards_pnl)])
        if account.value is None:
            self.value.setText("—")
            self.value.set_color(theme.DIM)
        else:
            self.value.setText(format_money_compact(account.value))
            self.value.set_color(theme.WHITE)
        if account.day_pnl is None:
            self.pnl.setText("—")
            self.pnl.set_color(theme.DIM)
        else:
            self.pnl.setText(format_money_compact(account.day_pnl, signed=True))
            self.pnl.set_color(STATE_COLORS[pnl_state(account.day_pnl)])
        if account.available_cash is None:
            self.cash.setText("CASH unavailable")
            self.cash.set_color(theme.AMBER)
        else:
            self.cash.setText(f"CASH {format_money_compact(account.available_cash)}")
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

    def now(self) -> datetime:
        """The moment the header shows: the simulated market's clock in SIM, else the wall's."""
        if self.badge.text() == MODES["sim"] and self._market_now is not None:
            return self._market_now
        return datetime.now(timezone.utc)

    def _tick(self) -> None:
        now = self.now().astimezone()
        for label, text in ((self.clock, f"{now:%H:%M}"), (self.date, f"{now:%a} {now.day} {now:%b}"),
                            (self.market, market_text(self._market, now))):
            if label.text() != text:
                label.setText(text)
